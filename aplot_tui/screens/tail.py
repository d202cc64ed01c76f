"""Following a text log by byte offset, for the run screen's log pane.

Only the end of an old log is shown (the last `backlog` bytes): opening a run with a 100 MB
log must not read it all. A line still being written is held back until its newline arrives.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class LogTail:
    path: Path
    backlog: int = 64 << 10
    offset: int | None = None
    _pending: bytes = field(default=b"", repr=False)

    def read_new(self, max_bytes: int = 1 << 20) -> list[str]:
        try:
            size = os.path.getsize(self.path)
        except OSError:
            return []
        drop_first = False
        if self.offset is None:
            self.offset = max(0, size - self.backlog)
            drop_first = self.offset > 0  # we start mid-line
        if size < self.offset:  # truncated or replaced
            self.offset, self._pending = 0, b""
        if size == self.offset:
            return []
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            chunk = fh.read(min(size - self.offset, max_bytes))
        self.offset += len(chunk)
        lines = (self._pending + chunk).split(b"\n")
        self._pending = lines.pop()
        if drop_first and lines:
            lines = lines[1:]
        return [line.decode("utf-8", "replace").rstrip("\r") for line in lines]
