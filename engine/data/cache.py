"""Entries cached beside the run store, `<runs>/.cache/<kind>/<key>/`, each published atomically.

An entry is written whole into a private temp folder, then renamed into place: two runs (or two
ranks) that race both write, one rename wins, and no reader ever sees half an entry. A cache only
saves time, so its callers treat a failed write (a full disk, a read-only store) as a miss next time.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path


def root(runs_root: Path, kind: str) -> Path:
    return Path(runs_root) / ".cache" / kind


def publish(root: Path, key: str, write: Callable[[Path], None]) -> None:
    """`write(folder)` fills a temp folder that becomes `root/key`; an entry already there is kept.
    Raises OSError when the entry cannot be written."""
    final = Path(root) / key
    if final.exists():
        return
    tmp = Path(root) / f".{key}.{os.getpid()}.{secrets.token_hex(3)}.tmp"
    try:
        tmp.mkdir(parents=True)
        write(tmp)
        try:
            os.rename(tmp, final)  # a folder onto a missing name: atomic; onto an existing one it fails
        except OSError:
            pass  # another run stored the same entry first
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
