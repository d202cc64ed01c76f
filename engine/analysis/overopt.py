"""A warning of reward over-optimisation that needs no gold: the proxy keeps rising while the reward
models' disagreement outruns its own running baseline.

Members of an RM ensemble agree where their training data was and drift apart where the policy has
moved into their error regions (Eisenstein et al. 2023, "Helping or Herding?"); a proxy that still
rises there is being bought with the members' errors. The rule, over the points a run logged (each a
rollout's proxy, `objective/scores`, and disagreement, `ensemble/std`), with W = `Rule.window`:

  at point n (≥ 2W points so far),  P_now, P_before = mean proxy of the last W points, of the W before
                                    D_now, D_before = the same for the disagreement
                                    B = mean disagreement of every point before the last W (running baseline)
  it holds when   P_now > P_before  and  D_now > D_before  and  D_now > Rule.ratio · B,
  and it fires at the first point where it has held for `Rule.patience` points in a row.

The three switches are `[ppo.ensemble] warn_window, warn_ratio, warn_patience` (5, 1.5, 2), in the manifest.

Torch-free (plain floats): the trainer runs it online for its train.log line, the UI on the stream.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    window: int = 5  # logged points in each trend window (W)
    ratio: float = 1.5  # how far the latest window's disagreement must exceed its running baseline
    patience: int = 2  # consecutive points the rule must hold before the warning fires


RULE = Rule()


def rule_of(config: dict) -> Rule:
    """The rule a run was configured with (`[ppo.ensemble] warn_*` of its manifest's config)."""
    ens = config.get("ppo", {}).get("ensemble", {})
    return Rule(window=ens.get("warn_window", RULE.window), ratio=ens.get("warn_ratio", RULE.ratio),
                patience=ens.get("warn_patience", RULE.patience))


@dataclass(frozen=True)
class Alarm:
    step: int
    proxy_before: float
    proxy_now: float
    disagreement_now: float
    baseline: float

    def line(self) -> str:
        """train.log's line, `[aplot] …` like the trainer's others."""
        return f"[aplot] over-optimisation warning at step {self.step}: {self.text()}"

    def text(self) -> str:
        times = f"{self.disagreement_now / self.baseline:.2g}× its" if self.baseline > 0 else "above its zero"
        return (f"the proxy rises ({self.proxy_before:.3g} → {self.proxy_now:.3g}) while the reward models' "
                f"disagreement runs {times} running baseline ({self.disagreement_now:.3g}): likely over-optimising "
                f"(no gold needed)")


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


class Watch:
    """The rule fed one logged point at a time; `add` returns the alarm once, at the point it fires."""

    def __init__(self, rule: Rule = RULE):
        self.rule = rule
        self.steps: list[int] = []
        self.proxy: list[float] = []
        self.disagreement: list[float] = []
        self.streak = 0
        self.fired: Alarm | None = None

    def holds(self) -> Alarm | None:
        """The rule at the latest point: the numbers it read where it holds, else None."""
        w, n = self.rule.window, len(self.steps)
        if w < 1 or n < 2 * w:
            return None
        p, d = self.proxy, self.disagreement
        p_now, p_before = _mean(p[n - w:]), _mean(p[n - 2 * w:n - w])
        d_now, d_before, baseline = _mean(d[n - w:]), _mean(d[n - 2 * w:n - w]), _mean(d[:n - w])
        if p_now > p_before and d_now > d_before and d_now > self.rule.ratio * baseline:
            return Alarm(self.steps[-1], p_before, p_now, d_now, baseline)
        return None

    def add(self, step: int, proxy: float, disagreement: float) -> Alarm | None:
        if not (math.isfinite(proxy) and math.isfinite(disagreement)):
            return None  # a non-finite point says nothing about the trend (another flag reports it)
        self.steps.append(int(step))
        self.proxy.append(float(proxy))
        self.disagreement.append(float(disagreement))
        alarm = self.holds()
        self.streak = self.streak + 1 if alarm is not None else 0
        if alarm is not None and self.fired is None and self.streak >= self.rule.patience:
            self.fired = alarm
            return alarm
        return None

    def state_dict(self) -> dict:
        return {"steps": self.steps, "proxy": self.proxy, "disagreement": self.disagreement}

    def load_state_dict(self, state: dict) -> None:
        """Replay the saved points: the streak and the alarm come back as they were."""
        self.__init__(self.rule)
        for s, p, d in zip(state["steps"], state["proxy"], state["disagreement"], strict=True):
            self.add(s, p, d)


def first_alarm(steps: Sequence[float], proxy: Sequence[float], disagreement: Sequence[float],
                rule: Rule = RULE) -> Alarm | None:
    """Where the warning fires first on a recorded stream (the three lists aligned by point), or None."""
    watch = Watch(rule)
    for s, p, d in zip(steps, proxy, disagreement, strict=True):
        watch.add(int(s), p, d)
    return watch.fired
