"""Is a difference between two reward models real? Paired tests over the same eval pairs, and
over seeds. numpy only (scipy for one t quantile), so the CLI, the TUI and the engine share it.

Two runs on one eval set, pair by pair (`paired`):
- the accuracy difference B − A with a **paired bootstrap** percentile interval. Each pair is in one
  of four categories (both right, only A right, only B right, both wrong) and the difference depends
  only on the category counts; resampling n pairs with replacement therefore draws those counts from
  a multinomial with the observed proportions. `rng.multinomial(n, p, size=B)` is the same bootstrap
  as drawing B × n indices, exactly, at the cost of B four-way draws (100,000 pairs × 10,000
  resamples in milliseconds: `bench/stats_speed.py`).
- an **exact McNemar** p-value: under "equally good", each of the d discordant pairs is A's or B's
  with probability ½, so the two-sided p is 2 · P(Binomial(d, ½) ≤ min(b, c)), capped at 1 (summed
  in integers with `math.comb` up to 2,000 discordant pairs, scipy's binomial cdf beyond).

Two groups of runs over seeds (`grouped`, e.g. BT against APLOT): mean ± sample sd per group, and
the difference paired by seed (same seed = same data order and initialisation), with a **Student t**
interval over the per-seed differences (a bootstrap over three seeds would be meaningless).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95
RESAMPLES = 10_000
ALPHA = 0.05
EXACT_UP_TO = 2000  # discordant pairs summed in integers; above, scipy's binomial tail


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p over the discordant pairs (only A right, only B right); 1 with none."""
    d = only_a + only_b
    if d == 0:
        return 1.0
    k = min(only_a, only_b)
    if d <= EXACT_UP_TO:
        tail = sum(math.comb(d, i) for i in range(k + 1)) / 2**d  # exact integers, then one division
    else:  # the integer sum grows as d² digits; scipy's binomial cdf is exact to float precision
        from scipy.stats import binom

        tail = float(binom.cdf(k, d, 0.5))
    return min(1.0, 2.0 * tail)


def bootstrap_counts(counts: np.ndarray, n_resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """[B, 4] resampled category counts (both, only A, only B, neither) of a paired bootstrap."""
    counts = np.asarray(counts, dtype=np.int64)
    n = int(counts.sum())
    return np.random.default_rng(seed).multinomial(n, counts / n, size=n_resamples)


@dataclass(frozen=True)
class Paired:
    """Two runs on the same n pairs: accuracies, B − A with its interval, the discordant counts and p."""

    n: int
    acc_a: float
    acc_b: float
    diff: float
    low: float
    high: float
    only_a: int
    only_b: int
    p: float
    level: float = LEVEL

    @property
    def significant(self) -> bool:
        return self.p < ALPHA

    def verdict(self, a: str = "A", b: str = "B", p_adjusted: float | None = None) -> str:
        """The plain reading: 'difference within noise', or which is better and the p. With
        `p_adjusted` (one of several comparisons, see `holm`) the verdict follows the adjusted p."""
        p = self.p if p_adjusted is None else p_adjusted
        said = f"p = {self.p:.2g}" if p_adjusted is None else f"p = {self.p:.2g}, Holm {p_adjusted:.2g}"
        if p >= ALPHA:
            return f"difference within noise ({said})"
        return f"{b if self.diff > 0 else a} better, {said}"


def paired(correct_a, correct_b, n_resamples: int = RESAMPLES, level: float = LEVEL, seed: int = 0) -> Paired:
    """Compare two runs' per-pair correctness (bool arrays in the same pair order)."""
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"paired: need two equal, non-empty 1-d arrays, got {a.shape} and {b.shape}")
    n = len(a)
    counts = np.array([np.sum(a & b), np.sum(a & ~b), np.sum(~a & b), np.sum(~a & ~b)])
    diff = (counts[2] - counts[1]) / n
    draws = bootstrap_counts(counts, n_resamples, seed)
    diffs = (draws[:, 2] - draws[:, 1]) / n
    low, high = np.quantile(diffs, [(1 - level) / 2, (1 + level) / 2])
    return Paired(n, float(a.mean()), float(b.mean()), float(diff), float(low), float(high), int(counts[1]),
                  int(counts[2]), mcnemar_exact(int(counts[1]), int(counts[2])), level)


def holm(ps) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the order given: several runs each tested against one
    keep the chance of any false "better" at ALPHA (Holm 1979). The i-th smallest of m is scaled by
    m − i + 1, and the adjusted values are made monotone in that order and capped at 1."""
    ps = [float(p) for p in ps]
    out = [1.0] * len(ps)
    running = 0.0
    for rank, i in enumerate(sorted(range(len(ps)), key=ps.__getitem__)):
        running = max(running, min(1.0, (len(ps) - rank) * ps[i]))
        out[i] = running
    return out


def paired_values(values_a, values_b, n_resamples: int = RESAMPLES, level: float = LEVEL, seed: int = 0) -> Paired:
    """Two runs' per-unit values on the same units (an RL run's per-prompt win outcome in {0, ½, 1}, or
    the judge's score of its response): the mean difference B − A with a paired bootstrap interval
    (prompts resampled with replacement), and a two-sided exact **sign test** over the prompts where
    the two differ (McNemar's test, which it is for 0/1 values). `only_a`/`only_b` count the prompts
    where A's value, or B's, is the higher; `acc_*` are the means."""
    a, b = np.asarray(values_a, dtype=float), np.asarray(values_b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"paired_values: need two equal, non-empty 1-d arrays, got {a.shape} and {b.shape}")
    d = b - a
    draws = np.random.default_rng(seed).integers(0, len(d), size=(n_resamples, len(d)))
    low, high = np.quantile(d[draws].mean(axis=1), [(1 - level) / 2, (1 + level) / 2])
    only_a, only_b = int(np.sum(d < 0)), int(np.sum(d > 0))
    return Paired(len(d), float(a.mean()), float(b.mean()), float(d.mean()), float(low), float(high), only_a, only_b,
                  mcnemar_exact(only_a, only_b), level)


@dataclass(frozen=True)
class Grouped:
    """Two groups over seeds: per-group mean ± sd, the per-seed differences B − A, their mean and t interval."""

    mean_a: float
    sd_a: float
    n_a: int
    mean_b: float
    sd_b: float
    n_b: int
    seeds: list
    diffs: list[float]
    diff: float
    low: float
    high: float
    level: float = LEVEL

    @property
    def significant(self) -> bool:
        return len(self.diffs) > 1 and not (self.low <= 0.0 <= self.high)

    def verdict(self, a: str = "A", b: str = "B", higher_is_better: bool = True) -> str:
        if len(self.diffs) < 2:
            return "too few shared seeds to judge (need 2)"
        if not self.significant:
            return "difference within noise (the interval holds 0)"
        return f"{b if (self.diff > 0) == higher_is_better else a} better ({int(self.level * 100)} % interval excludes 0)"


def mean_sd(xs) -> tuple[float, float]:
    xs = np.asarray(xs, dtype=float)
    if not len(xs):
        return float("nan"), float("nan")
    return float(xs.mean()), float(xs.std(ddof=1)) if len(xs) > 1 else 0.0


def t_interval(xs, level: float = LEVEL) -> tuple[float, float, float]:
    """Mean and Student-t interval of a small sample (n − 1 degrees of freedom); (m, m, m) for n = 1."""
    xs = np.asarray(xs, dtype=float)
    m = float(xs.mean())
    if len(xs) < 2:
        return m, m, m
    from scipy.stats import t  # the one quantile numpy lacks; imported when a group comparison asks

    half = float(t.ppf((1 + level) / 2, len(xs) - 1)) * float(xs.std(ddof=1)) / math.sqrt(len(xs))
    return m, m - half, m + half


def grouped(a: dict, b: dict, level: float = LEVEL) -> Grouped:
    """`a`, `b`: seed → value (e.g. final accuracy). The difference is paired on the seeds both have. A seed
    whose value is NaN (a run that never reached a point, a metric it never logged) counts as absent:
    NaN fails every comparison, so one of them would read as an interval that excludes 0."""
    a = {s: v for s, v in a.items() if math.isfinite(v)}
    b = {s: v for s, v in b.items() if math.isfinite(v)}
    ma, sa = mean_sd(list(a.values()))
    mb, sb = mean_sd(list(b.values()))
    seeds = sorted(set(a) & set(b))
    diffs = [float(b[s] - a[s]) for s in seeds]
    d, low, high = t_interval(diffs, level) if diffs else (float("nan"),) * 3
    return Grouped(ma, sa, len(a), mb, sb, len(b), seeds, diffs, d, low, high, level)
