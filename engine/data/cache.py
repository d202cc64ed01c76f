"""Entries cached beside the run store, `<runs>/.cache/<kind>/<key>/`, each published atomically.

An entry is written whole into a private temp folder, then renamed into place: two runs (or two
ranks) that race both write, one rename wins, and no reader ever sees half an entry. A cache only
saves time, so its callers treat a failed write (a full disk, a read-only store) as a miss next time.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path


def root(runs_root: Path, kind: str) -> Path:
    return Path(runs_root) / ".cache" / kind


@contextlib.contextmanager
def publishing(root: Path, key: str) -> Iterator[Path | None]:
    """A temp folder for the body of `with` to fill, renamed to `root/key` when the body ends; None
    when the entry is already there (it is kept). OSError when the entry cannot be written.

    A context manager rather than a write callback, so the writer's module is never called back."""
    final = Path(root) / key
    if final.exists():
        yield None
        return
    tmp = Path(root) / f".{key}.{os.getpid()}.{secrets.token_hex(3)}.tmp"
    try:
        tmp.mkdir(parents=True)
        yield tmp
        try:
            os.rename(tmp, final)  # a folder onto a missing name: atomic; onto an existing one it fails
        except OSError:
            pass  # another run stored the same entry first
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
