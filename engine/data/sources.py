"""Preference data kept the way Hugging Face users keep it: parquet, `save_to_disk` folders, the hub cache.

A source string in `[data] train` / `[data.eval]` is one of:

- `pairs.jsonl[.gz]`, `pairs.json[.gz]` — read by `engine.data.pairs` itself;
- `shard.parquet`, or a glob such as `data/train-*.parquet` — read with pyarrow (what `datasets` reads
  parquet with), shards in sorted order;
- a folder written by `Dataset.save_to_disk` (it holds `state.json`) — `datasets.load_from_disk`;
- `hf:<repo>[:<config>][@<split>]` — from the local hub cache only, never the network: the
  snapshot `huggingface_hub` downloaded (`datasets--owner--name` under HF_HUB_CACHE), else the
  Arrow cache `datasets` prepared (`owner___name` under HF_DATASETS_CACHE). Missing both is one
  line saying what to download and where, before `datasets` is asked anything.

Every row then goes through `engine.data.pairs`'s one parser, so parquet, Arrow and JSONL rows of the same
shape give the same pairs, with the same `source: row i: …` errors. `datasets` and pyarrow are
imported inside these functions only, and this module itself is torch-free: the CLI's preflight
calls `check_source` before a run folder exists, and the UI process never loads `datasets`.
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def load_dataset_source(spec: str, columns: dict[str, str] | None = None):
    """Rows of a parquet / Arrow / hub source through `engine.data.pairs`'s parser (a LoadResult); its
    fingerprint for provenance."""
    from engine.data.pairs import DataError, _collect

    problem = check_source(spec)
    if problem:
        raise DataError(problem)
    if spec.startswith(HF_PREFIX):
        rows, digest, fmt = _hub_rows(spec)
    elif _is_arrow_folder(spec):
        rows, digest, fmt = _disk_rows(spec), _files_digest(_data_files(Path(spec))), "arrow"
    else:
        files = sorted(glob.glob(spec)) if glob.has_magic(spec) else [spec]
        rows, digest, fmt = _parquet_rows(spec, files), _files_digest([Path(f) for f in files]), "parquet"
    result = _collect(rows, spec, digest, columns)
    result.format = f"{fmt}:{result.format}"
    return result


def _numbered(spec: str, rows: Iterator[dict]) -> Iterator[tuple[str, Any]]:
    for i, row in enumerate(rows, 1):
        yield f"{spec}: row {i}", row


def _parquet_rows(spec: str, files: list[str]) -> Iterator[tuple[str, Any]]:
    import pyarrow.parquet as pq

    from engine.data.pairs import DataError

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

    from engine.data.pairs import DataError

    try:
        ds = load_from_disk(spec)
    except Exception as e:  # a folder datasets cannot read: one line, not its traceback
        raise DataError(f"{spec}: not a readable save_to_disk folder ({str(e).splitlines()[0]})") from None
    if isinstance(ds, DatasetDict):
        if len(ds) != 1:
            raise DataError(f"{spec}: a DatasetDict with splits {sorted(ds)}; point at one split's folder")
        ds = next(iter(ds.values()))
    return _numbered(spec, iter(ds))


def _hub_rows(spec: str) -> tuple[Iterator[tuple[str, Any]], str, str]:
    repo, config, split = parse_hf(spec)
    os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"  # read before datasets' import
    from datasets import load_dataset

    from engine.data.pairs import DataError

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
    return _numbered(spec, iter(ds)), hashlib.sha256(digest.encode()).hexdigest(), "hf"


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
