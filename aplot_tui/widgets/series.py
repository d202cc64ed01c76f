"""A metric's points at full resolution, and the min/max-bucketed view a chart draws.

A chart a few hundred cells wide cannot show 100,000 points, and averaging them would hide
the spikes a person watches for (a loss blow-up, a KL jump). So each bucket keeps its
minimum and its maximum, in step order: the drawn line still reaches every extreme.
Pure Python, no Textual: the headless report draws from the same views.
"""

from __future__ import annotations

import math
from array import array


def downsample(xs: list[float], ys: list[float], buckets: int) -> tuple[list[float], list[float]]:
    """At most 2·buckets points: each bucket's min and max (in index order) of `ys`."""
    n = len(ys)
    if buckets <= 0 or n <= 2 * buckets:
        return list(xs), list(ys)
    out_x: list[float] = []
    out_y: list[float] = []
    for b in range(buckets):
        lo, hi = b * n // buckets, (b + 1) * n // buckets
        seg = ys[lo:hi]
        mn, mx = min(seg), max(seg)
        i_mn, i_mx = lo + seg.index(mn), lo + seg.index(mx)
        for i in sorted({i_mn, i_mx}):
            out_x.append(xs[i])
            out_y.append(ys[i])
    return out_x, out_y


class Series:
    """Appended point by point as metric lines arrive; `view(n)` is cached until the next append."""

    __slots__ = ("xs", "ys", "_view", "_view_key")

    def __init__(self) -> None:
        self.xs = array("d")
        self.ys = array("d")
        self._view: tuple[list[float], list[float]] = ([], [])
        self._view_key: tuple[int, int] = (-1, -1)

    def __len__(self) -> int:
        return len(self.ys)

    def append(self, x: float, y: float) -> None:
        self.xs.append(x)
        self.ys.append(y)

    def extend(self, xs: list[float], ys: list[float]) -> None:
        self.xs.extend(xs)
        self.ys.extend(ys)

    def view(self, max_points: int) -> tuple[list[float], list[float]]:
        key = (len(self.ys), max_points)
        if key != self._view_key:
            self._view = downsample(self.xs, self.ys, max(1, max_points // 2))
            self._view_key = key
        return self._view

    @property
    def last(self) -> float | None:
        return self.ys[-1] if self.ys else None


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (1, 2, 2.5 or 5 times a power of ten apart)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0]
    if hi <= lo:
        lo, hi = lo - 0.5 * (abs(lo) or 1), hi + 0.5 * (abs(hi) or 1)
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    t = start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    if ticks[-1] < hi:
        ticks.append(round(t, 12))
    return ticks
