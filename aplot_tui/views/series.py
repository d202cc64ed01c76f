"""A metric's points at full resolution, its EMA, and the min/max-bucketed view a chart draws.

A chart a few hundred cells wide cannot show 100,000 points, and averaging them would hide
the spikes a person watches for (a loss blow-up, a KL jump). So each bucket keeps its
minimum and its maximum, in step order: the drawn line still reaches every extreme.
Per-step curves are noisy, so a chart may also draw the exponential moving average
(TensorBoard's smoothing slider: the same debiased EMA), kept incrementally as points arrive.
No Textual: the headless report draws from the same views.
"""

from __future__ import annotations

import math
from array import array

import numpy as np

SMOOTHING = (0.0, 0.6, 0.8, 0.9, 0.95, 0.99)  # the EMA weights the charts' control steps through


def downsample(xs, ys, buckets: int) -> tuple[list[float], list[float]]:
    """At most 2·buckets points: each bucket's min and max (in index order) of `ys`."""
    n = len(ys)
    if buckets <= 0 or n <= 2 * buckets:
        return list(xs), list(ys)
    x, y = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
    size = -(-n // buckets)  # points a bucket; the last one is padded so that one reshape covers all
    count = -(-n // size)
    low, high = np.full(count * size, np.inf), np.full(count * size, -np.inf)  # padding never wins
    low[:n], high[:n] = y, y
    starts = np.arange(count) * size
    lows, highs = starts + low.reshape(count, size).argmin(1), starts + high.reshape(count, size).argmax(1)
    keep = np.column_stack([np.minimum(lows, highs), np.maximum(lows, highs)]).ravel()  # in index order
    keep = keep[np.concatenate([[True], keep[1:] != keep[:-1]])]  # a flat bucket's min is its max
    return x[keep].tolist(), y[keep].tolist()


def bucket_means(xs, ys, buckets: int) -> tuple[list[float], list[float]]:
    """At most `buckets` points: each bucket's mean x and mean y. For a curve that is already
    smooth (an EMA), where min and max would only redraw the noise the smoothing removed."""
    n = len(ys)
    if buckets <= 0 or n <= buckets:
        return list(xs), list(ys)
    x, y = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
    edges = np.linspace(0, n, buckets + 1).astype(np.int64)  # every bucket gets n // buckets or one more
    counts = np.diff(edges)
    means = [np.add.reduceat(v, edges[:-1]) / counts for v in (x, y)]
    return means[0].tolist(), means[1].tolist()


def _block(weight: float) -> int:
    """Points per vectorised step: as many as keep weight**-k below 1e100 (float range, with room)."""
    return int(min(4096, max(16, 100 * math.log(10) / -math.log(weight))))


def ema(ys, weight: float, state: tuple[float, int] = (0.0, 0)) -> tuple[np.ndarray, tuple[float, int]]:
    """TensorBoard's debiased EMA of `ys` continuing from `state` (the biased value, points seen).

    `last_j = w·last_{j-1} + (1−w)·y_j`, shown as `last_j / (1 − w^count)`. A non-finite point
    neither moves the average nor counts; it is drawn as it is. Vectorised a block at a time
    (within a block, `last_j = w^(j+1)·last + (1−w)·w^j·Σ_{i≤j} w^(−i)·y_i`), so smoothing a
    100,000-point series costs milliseconds."""
    y = np.asarray(ys, dtype=np.float64)
    out = y.copy()
    finite = np.isfinite(y)
    values = y[finite]
    smoothed = np.empty_like(values)
    last, count = state
    size = _block(weight)
    powers = weight ** np.arange(size + 1)
    for lo in range(0, len(values), size):
        block = values[lo:lo + size]
        k = len(block)
        sums = np.cumsum(block / powers[:k])
        biased = powers[1:k + 1] * last + (1 - weight) * powers[:k] * sums
        smoothed[lo:lo + k] = biased / (1 - weight ** (count + np.arange(1, k + 1)))
        last, count = float(biased[-1]), count + k
    out[finite] = smoothed
    return out, (last, count)


class Series:
    """Appended point by point as metric lines arrive; `view(n)` is cached until the next append."""

    __slots__ = ("xs", "ys", "_views", "_ema")

    def __init__(self) -> None:
        self.xs = array("d")
        self.ys = array("d")
        self._views: dict[tuple[int, float], tuple[int, tuple[list[float], list[float]]]] = {}
        self._ema: dict[float, tuple[np.ndarray, tuple[float, int]]] = {}  # weight -> (smoothed, state)

    def __len__(self) -> int:
        return len(self.ys)

    def append(self, x: float, y: float) -> None:
        self.xs.append(x)
        self.ys.append(y)

    def extend(self, xs: list[float], ys: list[float]) -> None:
        # through numpy: ~15× faster than array.extend's per-item conversion for a 100,000-line open
        self.xs.frombytes(np.asarray(xs, dtype=np.float64).tobytes())
        self.ys.frombytes(np.asarray(ys, dtype=np.float64).tobytes())

    def smoothed(self, weight: float) -> np.ndarray:
        """The EMA of every point at `weight`, extended by only the points appended since."""
        values, state = self._ema.get(weight, (np.empty(0), (0.0, 0)))
        if len(values) < len(self.ys):
            new, state = ema(self.ys[len(values):], weight, state)
            values = np.concatenate([values, new])
            self._ema[weight] = (values, state)
        return values

    def view(self, max_points: int, smoothing: float = 0.0) -> tuple[list[float], list[float]]:
        """The drawn points, at most `max_points`: the raw points' extremes (min and max a
        bucket), or with smoothing > 0 the EMA's mean a bucket (a line through the trend)."""
        n, cached = self._views.get((max_points, smoothing), (-1, None))
        if n != len(self.ys) or cached is None:
            if smoothing:
                cached = bucket_means(self.xs, self.smoothed(smoothing), max_points)
            else:
                cached = downsample(self.xs, self.ys, max(1, max_points // 2))
            self._views[(max_points, smoothing)] = (len(self.ys), cached)
        return cached

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
