"""Tokenised pairs cached across runs, beside the run store: `<runs>/.cache/tokens/<key>/`.

The tenth run on a 100k-pair set should not tokenise it again. The key covers everything the token
ids depend on: the pairs' own text (a content digest, so a changed file, split or parser can never
hit a stale entry), the tokenizer (its serialised vocabulary, merges and templates), `max_length`,
the prompt floor and this module's format version. An entry is one `.npz` of flat int32 arrays plus
offsets, published atomically (`engine.data.cache`): two runs that race both tokenise, one rename
wins, neither reads half an entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engine.data import cache

FORMAT = 2  # 2: `no_prompt` is any pair with no prompt token, an empty prompt included
ITEMS = "items.npz"
FLAGS = ("prompt_len", "chosen_len", "rejected_len", "truncated", "no_prompt")


def cache_root(runs_root: Path) -> Path:
    return cache.root(runs_root, "tokens")


def tokenizer_digest(tokenizer: Any) -> str | None:
    """What identifies a tokenizer's output: its full serialisation (fast tokenizers); None when it has none."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    h = hashlib.sha256(backend.to_str().encode())
    h.update(json.dumps({"class": type(tokenizer).__name__, "special": tokenizer.all_special_ids,
                         "pad": tokenizer.pad_token_id, "eos": tokenizer.eos_token_id,
                         "sep": tokenizer.sep_token_id}, sort_keys=True).encode())
    return h.hexdigest()


def pairs_digest(pairs: Sequence[Any]) -> str:
    h = hashlib.blake2b(digest_size=32)
    for p in pairs:
        h.update(p.prompt.encode("utf-8", "surrogatepass") + b"\0" + p.chosen.encode("utf-8", "surrogatepass")
                 + b"\0" + p.rejected.encode("utf-8", "surrogatepass") + b"\1")
    return h.hexdigest()


def key(pairs: Sequence[Any], tokenizer: Any, max_length: int, prompt_floor: int) -> str | None:
    tok = tokenizer_digest(tokenizer)
    if tok is None:
        return None
    spec = json.dumps({"format": FORMAT, "pairs": pairs_digest(pairs), "n": len(pairs), "tokenizer": tok,
                       "max_length": max_length, "prompt_floor": prompt_floor}, sort_keys=True)
    return hashlib.sha256(spec.encode()).hexdigest()[:32]


def load(root: Path, k: str) -> list[dict] | None:
    """The cached items (ids as int32 views into one array per side), or None on a miss."""
    path = Path(root) / k / ITEMS
    try:
        with np.load(path) as z:
            arrays = {name: z[name] for name in z.files}
    except (OSError, ValueError, KeyError):
        return None
    out = []
    c_ids, c_off, r_ids, r_off = (arrays["chosen_ids"], arrays["chosen_off"], arrays["rejected_ids"],
                                  arrays["rejected_off"])
    flags = {name: arrays[name].tolist() for name in FLAGS}
    for i in range(len(c_off) - 1):
        item = {"chosen_ids": c_ids[c_off[i]:c_off[i + 1]], "rejected_ids": r_ids[r_off[i]:r_off[i + 1]]}
        for name in FLAGS:
            item[name] = flags[name][i] if name.endswith("len") else bool(flags[name][i])
        out.append(item)
    return out


def store(root: Path, k: str, items: Sequence[dict]) -> bool:
    """Write an entry atomically (`engine.data.cache.publishing`); an entry another run finished first
    is kept as it is.

    The cache only saves time, so a write that fails (a full disk, a file-size limit, a read-only
    store) costs the run nothing but this one line: it goes on with the ids it has. True if stored."""
    try:
        with cache.publishing(root, k) as tmp:
            if tmp is not None:
                _write(tmp, items)
        return True
    except OSError as e:
        print(f"[aplot] token cache not written ({e.strerror or e}): the next run tokenises again",
              file=sys.stderr, flush=True)
        return False


def _write(tmp: Path, items: Sequence[dict]) -> None:
    """The entry's one file: flat int32 ids and int64 offsets per side, plus the per-pair flags."""
    def flat(side: str) -> tuple[np.ndarray, np.ndarray]:
        lens = np.fromiter((len(it[side]) for it in items), dtype=np.int64, count=len(items))
        off = np.zeros(len(items) + 1, dtype=np.int64)
        np.cumsum(lens, out=off[1:])
        ids = np.concatenate([np.asarray(it[side], dtype=np.int32) for it in items]) if items else np.zeros(0, np.int32)
        return ids, off

    c_ids, c_off = flat("chosen_ids")
    r_ids, r_off = flat("rejected_ids")
    flags = {name: np.asarray([it[name] for it in items], dtype=np.int32) for name in FLAGS}
    with open(tmp / ITEMS, "wb") as fh:
        np.savez(fh, chosen_ids=c_ids, chosen_off=c_off, rejected_ids=r_ids, rejected_off=r_off, **flags)
        fh.flush()
        os.fsync(fh.fileno())
