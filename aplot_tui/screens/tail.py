"""Following a text log by byte offset, for the run screen's log pane.

Only the end of an old log is shown (the last `backlog` bytes): opening a run with a 100 MB
log must not read it all. A line still being written is held back until its newline arrives.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from engine.metrics import LineTail


@dataclass
class LogTail(LineTail):
    backlog: int = 64 << 10
    offset: int | None = None  # None until the first read places it `backlog` bytes from the end

    def read_new(self, max_bytes: int = 1 << 20) -> list[str]:
        drop_first = False
        if self.offset is None:
            try:
                size = os.path.getsize(self.path)
            except OSError:
                return []
            self.offset = max(0, size - self.backlog)
            drop_first = self.offset > 0  # we start mid-line
        lines = self.read_lines(max_bytes)
        if drop_first and lines:
            lines = lines[1:]
        return [line.decode("utf-8", "replace").rstrip("\r") for line in lines]
