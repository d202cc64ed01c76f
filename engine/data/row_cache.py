"""Parsed data sets cached beside the run store: `<runs>/.cache/rows/<key>/rows.npz`.

The launch preflight reads every data set in full, in the parent, before a run folder exists; the
trainer needs the same pairs minutes later in another process (or on a Slurm node). Parsing twice
would pay the JSON decoding and row parsing twice for nothing, so the preflight publishes what it
parsed and the trainer (and the next launch's preflight) reads it back: a few flat arrays instead
of a JSON parse (bench/token_cache.py times both).

The key covers everything a parse depends on: the source as written, the fingerprint of its bytes
(a file's sha256, a multi-file source's digest, a hub snapshot's commit), the column mapping, and
the row layer's own code (the source text of the modules that parse), so a changed file, mapping or
parser can never hit a stale entry. Only a complete, valid parse is ever stored: a hit is a set
that passed every check before. Texts are stored as UTF-8 (surrogatepass: JSON strings may hold
lone surrogates) plus offsets, never pickled.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import json
from pathlib import Path

import numpy as np

from engine.data import cache
from engine.data.rows import LoadResult, Pair

FORMAT = 3  # 2: the mapped columns a set lacks; 3: N-way items
ROWS = "rows.npz"
TEXTS = ("prompt", "chosen", "rejected")
PARSERS = ("rows.py", "sources.py", "row_cache.py")  # the code a cached parse depends on


def cache_root(runs_root: Path) -> Path:
    return cache.root(runs_root, "rows")


@functools.cache
def code_digest() -> str:
    """sha256 over the parsing modules' source: an edit to how rows parse retires every entry."""
    here = Path(__file__).parent
    h = hashlib.sha256()
    for name in PARSERS:
        h.update((here / name).read_bytes())
    return h.hexdigest()


def key(spec: str, fingerprint: str, columns: dict[str, str] | None) -> str:
    """The entry of `spec` read with `columns`; `fingerprint` is what the read set's `sha256` says."""
    body = json.dumps({"format": FORMAT, "spec": spec, "fingerprint": fingerprint,
                       "columns": sorted((columns or {}).items()), "code": code_digest()})
    return hashlib.sha256(body.encode()).hexdigest()[:32]


def _pack(texts: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """UTF-8 bytes of every text end to end, and int64 offsets (n + 1) into them; None as empty."""
    encoded = [(t or "").encode("utf-8", "surrogatepass") for t in texts]
    off = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)), out=off[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), off


def _unpack(buf: np.ndarray, off: np.ndarray) -> list[str]:
    raw, ends = buf.tobytes(), off.tolist()
    return [raw[a:b].decode("utf-8", "surrogatepass") for a, b in zip(ends, ends[1:], strict=False)]


def store(root: Path, k: str, result: LoadResult) -> bool:
    """Publish a parsed set; False (and nothing left behind) when the store cannot be written,
    which costs the next reader a parse and nothing else."""
    try:
        with cache.publishing(root, k) as tmp:
            if tmp is not None:  # packed only when there is no entry yet
                with open(tmp / ROWS, "wb") as fh:
                    np.savez(fh, **_arrays(result))
        return True
    except OSError:
        return False


def _arrays(result: LoadResult) -> dict[str, np.ndarray]:
    """A parsed set as flat arrays: texts as one buffer plus offsets per side, margins and subsets with presence masks."""
    arrays = {}
    for side in (*TEXTS, "subset"):
        arrays[side], arrays[f"{side}_off"] = _pack([getattr(p, side) for p in result.pairs])
    arrays["has_subset"] = np.fromiter((p.subset is not None for p in result.pairs), dtype=bool)
    arrays["has_margin"] = np.fromiter((p.margin is not None for p in result.pairs), dtype=bool)
    arrays["margin"] = np.fromiter((0.0 if p.margin is None else p.margin for p in result.pairs), dtype=np.float64)
    arrays["item"] = np.fromiter((-1 if p.item is None else p.item for p in result.pairs), dtype=np.int64)
    if (arrays["item"] >= 0).any():  # an N-way set: which completions each pair holds, and the rows' ids
        arrays["slots"] = np.array([(p.chosen_slot, p.rejected_slot) for p in result.pairs], dtype=np.int32)
        arrays["item_id"], arrays["item_id_off"] = _pack([p.item_id for p in result.pairs])
        arrays["has_item_id"] = np.fromiter((p.item_id is not None for p in result.pairs), dtype=bool)
    meta = {"skipped_empty": result.skipped_empty, "sha256": result.sha256, "format": result.format,
            "absent": result.absent, "columns": result.columns}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    return arrays


def _pairs(*columns: list) -> list[Pair]:
    """Pairs built with the collector paused: 100k new objects in a row start collections that walk
    the whole heap and find nothing to free (half this read's time on a loaded machine)."""
    paused = gc.isenabled()
    gc.disable()
    try:
        return [Pair(*row) for row in zip(*columns, strict=True)]
    finally:
        if paused:
            gc.enable()


def load(root: Path, k: str, spec: str) -> LoadResult | None:
    """The cached set read from `spec`, or None on a miss (or an entry that cannot be read)."""
    try:
        with np.load(Path(root) / k / ROWS) as z:
            arrays = {name: z[name] for name in z.files}
        meta = json.loads(arrays["meta"].tobytes())
    except (OSError, ValueError, KeyError):
        return None
    prompt, chosen, rejected = (_unpack(arrays[s], arrays[f"{s}_off"]) for s in TEXTS)
    margins = [m if has else None for m, has in zip(arrays["margin"].tolist(), arrays["has_margin"].tolist(),
                                                     strict=True)]
    subsets = [None] * len(prompt)
    if arrays["has_subset"].any():  # most sets have no subsets: nothing to decode
        subset = _unpack(arrays["subset"], arrays["subset_off"])
        subsets = [s if has else None for s, has in zip(subset, arrays["has_subset"].tolist(), strict=True)]
    n = len(prompt)
    items, slots, ids = [None] * n, [(0, 0)] * n, [None] * n
    if "slots" in arrays:
        items = arrays["item"].tolist()
        slots = arrays["slots"].tolist()
        ids = [s if has else None for s, has in zip(_unpack(arrays["item_id"], arrays["item_id_off"]),
                                                   arrays["has_item_id"].tolist(), strict=True)]
    pairs = _pairs(prompt, chosen, rejected, margins, subsets, items, [c for c, _ in slots], [r for _, r in slots], ids)
    return LoadResult(pairs, meta["skipped_empty"], spec, meta["sha256"], meta["format"], meta["absent"],
                      meta["columns"])
