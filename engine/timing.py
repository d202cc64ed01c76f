"""Seconds per phase of a training step, for the `timing_s/*` metrics: where a step's time goes.

A step's throughput (`samples_per_s`) says how fast, not why; a profile of one phase at a time says
why, but not on the run that was slow. These laps are cheap enough to log every step. On a GPU the
device runs ahead of Python, so each lap first waits for it (`sync`), or the time of one phase's
kernels would be booked to the next phase that happens to wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Laps:
    def __init__(self, sync: Callable[[], None] | None = None):
        self._sync = sync or (lambda: None)
        self.seconds: dict[str, float] = {}
        self._sync()
        self._start = self._last = time.perf_counter()

    def lap(self, key: str) -> None:
        """Book the time since the previous lap (or the start) to `key`, adding to what it has."""
        self._sync()
        now = time.perf_counter()
        self.seconds[key] = self.seconds.get(key, 0.0) + now - self._last
        self._last = now

    def total(self) -> float:
        return time.perf_counter() - self._start
