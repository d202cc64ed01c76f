"""Is a run healthy, and what is its best so far: read from its metrics stream alone.

Textual-free (series in, words out), so the run screen's strip and `aplot show` can say the same
thing. The flags are deliberately few and blunt, each one a thing a person would stop a run for:
a non-finite loss, a loss that diverges, a KL past a threshold, a judge (win rate or gold)
that falls while the proxy reward the policy optimises rises (reward hacking, Gao et al. 2022), and,
with no gold at all, an RM ensemble whose disagreement outruns its baseline while the proxy rises
(engine.analysis.overopt).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from engine import metrics as M
from engine.analysis import overopt

KL_LIMIT = 10.0  # nats a response: far past where a KL-penalised policy usually sits
DIVERGE_FACTOR = 2.0  # the latest loss window this many times the best window's mean: diverging
WINDOW = 10  # train points a window of the loss trend
TREND_POINTS = 3  # judge points the falling-while-rising check needs
GAP_FACTOR = 50.0  # a pause this many times the usual step interval (and GAP_MIN_S) ends a segment
GAP_MIN_S = 300.0


@dataclass(frozen=True)
class Best:
    key: str
    value: float
    step: int
    checkpoint: str  # "checkpoints/step-N", "checkpoints/best", or "" when none holds that step


def best_eval(key: str, xs: Sequence[float], ys: Sequence[float], checkpoints: Sequence[str] = ()) -> Best | None:
    """The best value of an eval series by its direction (engine.metrics.best), with its step and
    the checkpoint that holds that step's weights, when one does."""
    value = M.best(key, ys)
    if value is None:
        return None
    step = int(next(x for x, y in zip(xs, ys, strict=True) if y == value))
    names = set(checkpoints)
    ckpt = f"checkpoints/step-{step}" if f"step-{step}" in names else ("checkpoints/best" if "best" in names else "")
    return Best(key, value, step, ckpt)


def loss_flags(ys: Sequence[float]) -> list[str]:
    """A non-finite train loss, or a recent window far above the best window so far."""
    if not ys:
        return []
    bad = [y for y in ys if not math.isfinite(y)]
    if bad:
        return [f"loss is {bad[-1]} ({len(bad)} of {len(ys)} points non-finite)"]
    if len(ys) < 3 * WINDOW:
        return []
    means = [sum(ys[i:i + WINDOW]) / WINDOW for i in range(0, len(ys) - WINDOW + 1, WINDOW)]
    recent, lowest = sum(ys[-WINDOW:]) / WINDOW, min(means)
    if lowest > 0 and recent > DIVERGE_FACTOR * lowest:
        return [f"loss diverging: {recent:.3g} now, {lowest:.3g} at its best"]
    return []


def kl_flags(ys: Sequence[float], limit: float = KL_LIMIT) -> list[str]:
    if ys and math.isfinite(ys[-1]) and ys[-1] > limit:
        return [f"KL {ys[-1]:.3g} past {limit:g}"]
    return []


def hacking_flags(judge: str, judge_xs: Sequence[float], judge_ys: Sequence[float],
                  proxy_xs: Sequence[float], proxy_ys: Sequence[float]) -> list[str]:
    """The judge falls over its last TREND_POINTS points while the proxy reward rose over the same steps."""
    if len(judge_ys) < TREND_POINTS or not proxy_ys:
        return []
    tail_x, tail_y = judge_xs[-TREND_POINTS:], judge_ys[-TREND_POINTS:]
    if not all(b < a for a, b in zip(tail_y, tail_y[1:], strict=False)):
        return []
    inside = [y for x, y in zip(proxy_xs, proxy_ys, strict=True) if tail_x[0] <= x <= tail_x[-1]]
    if len(inside) < 2 or inside[-1] <= inside[0]:
        return []
    return [f"{judge} falling ({tail_y[0]:.3g} → {tail_y[-1]:.3g}) while the reward rises: over-optimising the RM"]


def overopt_flags(proxy_xs: Sequence[float], proxy_ys: Sequence[float], disagreement_xs: Sequence[float],
                  disagreement_ys: Sequence[float], config: dict | None = None) -> list[str]:
    """The gold-free over-optimisation warning over the train points that logged both the proxy and
    the ensemble's disagreement, by the rule of the run's `config`: its train.log line, read back."""
    at = dict(zip(disagreement_xs, disagreement_ys, strict=True))
    points = [(x, y, at[x]) for x, y in zip(proxy_xs, proxy_ys, strict=True) if x in at]
    alarm = overopt.first_alarm(*zip(*points, strict=True), overopt.rule_of(config or {})) if points else None
    return [f"over-optimisation warning from step {alarm.step}: {alarm.text()}"] if alarm else []


def series_flags(series: dict[str, tuple[Sequence[float], Sequence[float]]], config: dict | None = None) -> list[str]:
    """`overopt_flags` of a run's series by key (views.run_data's), for `aplot show` and compare."""
    proxy, spread = series.get(M.metric_key(M.TRAIN, M.SCORES)), series.get(M.metric_key(M.TRAIN, M.ENSEMBLE_STD))
    return overopt_flags(*proxy, *spread, config) if proxy and spread else []


def segments(points: Sequence[tuple[float, int]], started_at: float | None = None) -> list[list[tuple[float, int]]]:
    """Train (time, step) points cut where the run was not running: at the last start (a resume's
    `started_at`) and at any pause far longer than the usual interval (an earlier stop and resume)."""
    if not points:
        return []
    deltas = sorted(b[0] - a[0] for a, b in zip(points, points[1:], strict=False))
    usual = deltas[len(deltas) // 2] if deltas else 0.0
    gap = max(GAP_MIN_S, GAP_FACTOR * usual)
    out = [[points[0]]]
    for prev, point in zip(points, points[1:], strict=False):
        resumed = started_at is not None and prev[0] < started_at <= point[0]
        if resumed or point[0] - prev[0] > gap:
            out.append([])
        out[-1].append(point)
    return out


def wall_time_s(points: Sequence[tuple[float, int]], started_at: float | None = None,
                end: float | None = None) -> float:
    """Seconds the run spent running, summed across its resumes (the pauses between them left out).
    The last segment counts from its start (`started_at`, start-up included) to `end` or its last point."""
    parts = segments(points, started_at)
    if not parts:
        return 0.0
    total = sum(seg[-1][0] - seg[0][0] for seg in parts[:-1])
    last = parts[-1]
    t0 = started_at if started_at is not None and started_at <= last[0][0] else last[0][0]
    return total + max((end if end is not None else last[-1][0]) - t0, 0.0)


def rate_points(points: Sequence[tuple[float, int]], started_at: float | None = None) -> list[tuple[float, int]]:
    """The points a step rate is measured over: the current segment's, never across a resume."""
    if not points or (started_at is not None and points[-1][0] < started_at):
        return []  # a new attempt has started and logged nothing yet: no rate, not the last attempt's
    return segments(points, started_at)[-1]
