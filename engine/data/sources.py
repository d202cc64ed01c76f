"""Preference data kept the way Hugging Face users keep it: parquet, `save_to_disk` folders, the hub cache.

A source string in `[data] train` / `[data.eval]` is one of:

- `pairs.jsonl[.gz]`, `pairs.json[.gz]` — read by `engine.data.rows` itself;
- `shard.parquet`, or a glob such as `data/train-*.parquet` — read with pyarrow (what `datasets` reads
  parquet with), shards in sorted order;
- a folder written by `Dataset.save_to_disk` (it holds `state.json`) — `datasets.load_from_disk`;
- `hf:<repo>[:<config>][@<split>]` — from the local hub cache only, never the network: the
  snapshot `huggingface_hub` downloaded (`datasets--owner--name` under HF_HUB_CACHE), else the
  Arrow cache `datasets` prepared (`owner___name` under HF_DATASETS_CACHE). Missing both is one
  line saying what to download and where, before `datasets` is asked anything.

`load_pairs` reads any of them, in full: every row goes through `engine.data.rows`'s one parser, so
parquet, Arrow and JSONL rows of the same shape give the same pairs, with the same `source: row i: …`
errors; `synthetic_pairs` makes the demo task's. `datasets` and pyarrow are imported inside the
functions that read their sources only, and this module is torch-free: the launch preflight
(`engine.data.sets.check`) reads every set through it before a run folder exists, and a JSONL
launch from the TUI never loads `datasets`.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from engine.data import row_cache
from engine.data.rows import DataError, LoadResult, collect, json_rows, read_regular_file

HF_PREFIX = "hf:"
SUPPORTED = ".jsonl or .json (optionally .gz), .parquet (or a glob of them), a save_to_disk folder, or hf:REPO"
HASH_CHUNK = 1 << 20


def is_dataset_source(spec: str) -> bool:
    """A source that `datasets`/pyarrow reads (everything but JSON lines and JSON files)."""
    return (spec.startswith(HF_PREFIX) or spec.endswith(".parquet") or glob.has_magic(spec)
            or _is_arrow_folder(spec))


def _is_arrow_folder(spec: str) -> bool:
    return os.path.isfile(os.path.join(spec, "state.json")) or os.path.isfile(os.path.join(spec, "dataset_dict.json"))


def parse_hf(spec: str) -> tuple[str, str | None, str]:
    """`hf:owner/name[:config][@split]` -> (repo, config or None, split; default "train")."""
    body = spec[len(HF_PREFIX):]
    body, _, split = body.partition("@")
    repo, _, config = body.partition(":")
    if not repo or repo.count("/") > 1 or not all(part.strip() for part in repo.split("/")):
        raise ValueError(f"{spec}: expected hf:OWNER/NAME[:CONFIG][@SPLIT]")
    return repo, config or None, split or "train"


def check_source(spec: str) -> str | None:
    """Why `spec` cannot be read, in one line, without importing `datasets` (None when it looks fine).
    The launcher's preflight calls this so a bad source fails before a run folder exists."""
    if spec.startswith(HF_PREFIX):
        try:
            repo, _, _ = parse_hf(spec)
        except ValueError as e:
            return str(e)
        return None if hub_snapshot(repo) or datasets_cache_dir(repo) else missing_hf_message(repo)
    if glob.has_magic(spec):
        files = sorted(glob.glob(spec))
        if not files:
            return f"{spec}: no file matches this pattern"
        bad = [f for f in files if not f.endswith(".parquet")]
        return f"{bad[0]}: unsupported file type in {spec}; a glob must match .parquet files" if bad else None
    if _is_arrow_folder(spec):
        return None
    if os.path.isdir(spec) and not spec.removesuffix(".gz").endswith((".jsonl", ".json")):
        return f"{spec}: a folder, but not one written by save_to_disk (no state.json)"
    if not os.path.exists(spec):
        return f"no such data file {spec!r}"
    if not os.path.isfile(spec):
        return f"not a regular file {spec!r}"
    if not spec.endswith(".parquet") and not spec.removesuffix(".gz").endswith((".jsonl", ".json")):
        return f"{spec}: unsupported file type; expected {SUPPORTED}"
    return None


# ---------------------------------------------------------------------------------------- hub cache


def hub_cache() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return Path(home) / "hub"


def datasets_cache() -> Path:
    if os.environ.get("HF_DATASETS_CACHE"):
        return Path(os.environ["HF_DATASETS_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return Path(home) / "datasets"


def hub_snapshot(repo: str) -> Path | None:
    """The snapshot folder `refs/main` points to in the hub cache (else the newest), or None."""
    root = hub_cache() / f"datasets--{repo.replace('/', '--')}"
    ref = root / "refs" / "main"
    if ref.is_file():
        snap = root / "snapshots" / ref.read_text().strip()
        if snap.is_dir():
            return snap
    snaps = sorted((root / "snapshots").glob("*"), key=lambda p: p.stat().st_mtime) if root.is_dir() else []
    return snaps[-1] if snaps else None


def datasets_cache_dir(repo: str) -> Path | None:
    d = datasets_cache() / repo.replace("/", "___")
    return d if d.is_dir() else None


def missing_hf_message(repo: str) -> str:
    return (f"hf:{repo}: not in the local cache (looked in {hub_cache()} and {datasets_cache()}); on a machine "
            f"with network run `huggingface-cli download --repo-type dataset {repo}` and copy its "
            f"datasets--{repo.replace('/', '--')} folder into {hub_cache()} (or point HF_HOME/HF_HUB_CACHE at it)")


# ---------------------------------------------------------------------------------------- loading


def load_pairs(spec: str, columns: dict[str, str] | None = None, cache: Path | None = None) -> LoadResult:
    """Every row of a source, in full, through the one row parser (a LoadResult; the first bad row
    is a DataError naming the source and the line or row). With `cache` (the run store's row cache)
    a set parsed before, bytes, mapping and parser alike, is read back instead of parsed again; the
    preflight publishes what it parsed (`engine.data.sets.check`), this only reads."""
    spec = str(spec)
    if is_dataset_source(spec):
        fingerprint, fmt, rows = _open_dataset(spec)
    elif spec.removesuffix(".gz").endswith((".jsonl", ".json")):
        raw = read_regular_file(spec)
        fingerprint, fmt = hashlib.sha256(raw).hexdigest(), ""
        rows = functools.partial(json_rows, spec, raw)
    else:
        raise DataError(f"{spec}: unsupported file type; expected {SUPPORTED}")
    if cache is not None and (hit := row_cache.load(cache, row_cache.key(spec, fingerprint, columns), spec)):
        return hit
    result = collect(rows(), spec, fingerprint, columns)
    if fmt:
        result.format = f"{fmt}:{result.format}"
    return result


def synthetic_pairs(n: int, seed: int, noise: float, length_bias: float = 0.0) -> LoadResult:
    """The demo task's pairs; the hash covers the generated rows, so it identifies (n, seed, noise,
    length bias, code)."""
    from engine.data.synthetic import make_pairs

    rows = make_pairs(n, seed, label_noise=noise, length_bias=length_bias)
    digest = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()
    result = collect([(f"synthetic: row {i}", r) for i, r in enumerate(rows, 1)], "synthetic", digest)
    result.format = "synthetic"
    return result


def _open_dataset(spec: str) -> tuple[str, str, Callable[[], Iterator[tuple[str, Any]]]]:
    """(fingerprint, format, rows) of a parquet / Arrow / hub source: the fingerprint costs a read of
    the bytes (or nothing, for a hub snapshot), the rows are read only when asked for."""
    problem = check_source(spec)
    if problem:
        raise DataError(problem)
    if spec.startswith(HF_PREFIX):
        repo, _, _ = parse_hf(spec)
        snap = hub_snapshot(repo)
        if snap is None:  # the Arrow cache `datasets` prepared: its fingerprint comes with the load
            rows, digest = _hub_rows(spec)
            return digest, "hf", lambda: rows
        return _digest(f"{repo}@{snap.name}"), "hf", lambda: _hub_rows(spec)[0]
    if _is_arrow_folder(spec):
        return _files_digest(_data_files(Path(spec))), "arrow", lambda: _disk_rows(spec)
    files = sorted(glob.glob(spec)) if glob.has_magic(spec) else [spec]
    return _files_digest([Path(f) for f in files]), "parquet", lambda: _parquet_rows(spec, files)


def _numbered(spec: str, rows: Iterator[dict]) -> Iterator[tuple[str, Any]]:
    for i, row in enumerate(rows, 1):
        yield f"{spec}: row {i}", row


def _parquet_rows(spec: str, files: list[str]) -> Iterator[tuple[str, Any]]:
    import pyarrow.parquet as pq

    def rows() -> Iterator[dict]:
        for f in files:
            try:
                pf = pq.ParquetFile(f)
            except Exception as e:  # pyarrow raises ArrowInvalid / OSError for a file that is not parquet
                raise DataError(f"{f}: not a readable parquet file ({str(e).splitlines()[0]})") from None
            for batch in pf.iter_batches(batch_size=4096):
                yield from batch.to_pylist()

    return _numbered(spec, rows())


def _disk_rows(spec: str) -> Iterator[tuple[str, Any]]:
    from datasets import DatasetDict, load_from_disk

    try:
        ds = load_from_disk(spec)
    except Exception as e:  # a folder datasets cannot read: one line, not its traceback
        raise DataError(f"{spec}: not a readable save_to_disk folder ({str(e).splitlines()[0]})") from None
    if isinstance(ds, DatasetDict):
        if len(ds) != 1:
            raise DataError(f"{spec}: a DatasetDict with splits {sorted(ds)}; point at one split's folder")
        ds = next(iter(ds.values()))
    return _numbered(spec, iter(ds))


def _hub_rows(spec: str) -> tuple[Iterator[tuple[str, Any]], str]:
    repo, config, split = parse_hf(spec)
    os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"  # read before datasets' import
    from datasets import load_dataset

    snap = hub_snapshot(repo)
    try:
        if snap is not None:  # the downloaded files: datasets reads the folder with its own builders
            ds = load_dataset(str(snap), config, split=split)
            digest = f"{repo}@{snap.name}"
        else:
            ds = load_dataset(repo, config, split=split)
            digest = f"{repo}@{ds._fingerprint}"
    except Exception as e:  # an unknown split or config, a corrupt cache
        raise DataError(f"{spec}: cannot load from the local cache ({str(e).splitlines()[0][:300]})") from None
    return _numbered(spec, iter(ds)), _digest(digest)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _data_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _files_digest(files: list[Path]) -> str:
    """sha256 over every file's name and bytes, in order: the fingerprint of a multi-file source."""
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0")
        with open(f, "rb") as fh:
            while chunk := fh.read(HASH_CHUNK):
                h.update(chunk)
    return h.hexdigest()
