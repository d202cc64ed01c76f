"""Does APLOT converge faster than Bradley-Terry? Steps to reach BT's final held-out accuracy.

The paper's claim is about speed, so the question is asked of the accuracy-vs-step curve each run
logs (one held-out eval every ~10 % of the epoch), not of its last point. The target is BT's final
accuracy on that set, the mean over BT's seeds, so BT itself needs about all its steps to reach it
(a seed that ends below the mean never does). A run's crossing is interpolated linearly between the
last eval below the target and the first at or above it: with ten evals an epoch, taking the first
eval's step would round every method up to the same grid and hide a difference smaller than 10 %.
Before the first eval nothing is known, so a run already there at its first eval is given that
step: an upper bound, flagged. Seeds are paired against BT (same seed = same data order and
initialisation) with a Student t interval over the per-seed differences, the way the accuracy
tables are; a seed that never reaches the target is counted, and left out of the intervals.

Pure functions over plain data (bench/real_accuracy.py's `run_result` dicts), no torch:
`bench/real_accuracy.py convergence SWEEP` feeds it a sweep's runs.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine.analysis import stats  # noqa: E402

REFERENCE = "bt"


def finite_points(curve: list) -> list[tuple[float, float]]:
    """The curve's (step, accuracy) points with a number for an accuracy, by step."""
    return sorted((float(s), float(a)) for s, a in curve if isinstance(a, (int, float)) and math.isfinite(a))


def crossing_step(curve: list, target: float) -> tuple[float | None, bool]:
    """(step at which the curve first reaches `target`, whether that step is only an upper bound).

    Linear between the eval before the crossing and the eval that reaches it; the first eval's own
    step (bound = True) when it already reaches it; (None, False) when no eval does."""
    prev = None
    for step, acc in finite_points(curve):
        if acc >= target:
            if prev is None:
                return step, True
            s0, a0 = prev  # a0 < target <= acc, so acc > a0
            return s0 + (target - a0) * (step - s0) / (acc - a0), False
        prev = (step, acc)
    return None, False


def final_accuracy(curve: list) -> float | None:
    pts = finite_points(curve)
    return pts[-1][1] if pts else None


def interval(values: list[float], level: float = stats.LEVEL) -> dict:
    """Mean and t interval of the values (None for none); a single value is its own interval."""
    if not values:
        return {"mean": None, "low": None, "high": None, "n": 0}
    m, low, high = stats.t_interval(values, level)
    return {"mean": m, "low": low, "high": high, "n": len(values)}


def convergence(runs: list[dict], eval_set: str = "id", reference: str = REFERENCE,
                level: float = stats.LEVEL) -> dict:
    """Per method: each seed's steps to the reference's final `eval_set` accuracy, their mean with a
    t interval, and the per-seed difference method − reference with its t interval.

    `runs`: dicts with "method", "seed", "steps" (the run's last step) and "curve" ({set: [[step,
    accuracy], ...]}), as `real_accuracy.run_result` gives plus the first two."""
    curves = [(r, r.get("curve", {}).get(eval_set, [])) for r in runs]
    finals = [final_accuracy(c) for r, c in curves if r["method"] == reference]
    finals = [f for f in finals if f is not None]
    target = sum(finals) / len(finals) if finals else None
    methods: dict[str, dict] = {}
    for r, c in curves:
        m = methods.setdefault(r["method"], {"seeds": {}, "bound": [], "total_steps": 0, "evals": []})
        m["total_steps"] = max(m["total_steps"], int(r.get("steps") or 0))
        m["evals"].append(len(finite_points(c)))
        if target is None:
            continue
        step, bound = crossing_step(c, target)
        m["seeds"][r["seed"]] = step
        if bound:
            m["bound"].append(r["seed"])
    ref = {s: v for s, v in methods.get(reference, {"seeds": {}})["seeds"].items() if v is not None}
    out = {"eval_set": eval_set, "reference": reference, "target": target, "level": level, "methods": {}}
    for name, m in methods.items():
        reached = {s: v for s, v in m["seeds"].items() if v is not None}
        row = {"steps": dict(sorted(m["seeds"].items())), "reached": len(reached), "runs": len(m["seeds"]),
               "upper_bound_seeds": sorted(m["bound"]), "total_steps": m["total_steps"],
               "evals_per_run": sorted(set(m["evals"])), **interval(list(reached.values()), level)}
        if name != reference:
            shared = sorted(set(reached) & set(ref))
            diffs = [reached[s] - ref[s] for s in shared]
            row["vs_reference"] = {"seeds": shared, "diffs": diffs, **interval(diffs, level)}
        out["methods"][name] = row
    return out


def fmt(x: float | None, spec: str = ".0f") -> str:
    return "—" if x is None else format(x, spec)


def fmt_interval(cell: dict, spec: str = ".0f", sign: str = "") -> str:
    if cell.get("mean") is None:
        return "—"
    text = format(cell["mean"], sign + spec)
    if cell["n"] > 1:
        text += f" [{format(cell['low'], sign + spec)}, {format(cell['high'], sign + spec)}]"
    return text


def markdown(report: dict, title: str = "Convergence") -> str:
    """The convergence table: one row per method, the reference first."""
    lvl = f"{report['level']:.0%}"
    lines = [f"### {title}: steps to {report['reference']}'s final `{report['eval_set']}` accuracy "
             f"({fmt(report['target'], '.4f')}, the mean over its seeds)", "",
             f"| method | seeds reaching it | steps per seed | mean steps [{lvl} t] | share of the run "
             f"| Δ vs {report['reference']}, paired by seed [{lvl} t] | evals per run |",
             "|---|---|---|---|---|---|---|"]
    order = sorted(report["methods"], key=lambda m: m != report["reference"])
    for name in order:
        row = report["methods"][name]
        per_seed = ", ".join(f"{s}: {fmt(v)}" + ("≤" if s in row["upper_bound_seeds"] else "")
                             for s, v in row["steps"].items())
        share = (fmt(100 * row["mean"] / row["total_steps"], ".0f") + " %"
                 if row["mean"] is not None and row["total_steps"] else "—")
        vs = fmt_interval(row["vs_reference"], sign="+") if "vs_reference" in row else "—"
        lines.append(f"| {name} | {row['reached']}/{row['runs']} | {per_seed or '—'} | {fmt_interval(row)} | {share} "
                     f"| {vs} | {'/'.join(map(str, row['evals_per_run']))} |")
    lines += ["", "Steps are interpolated linearly between the evals either side of the crossing; '≤' marks a "
              "seed already at the target at its first eval (its step is an upper bound); '—' per seed: "
              "never reached (left out of the intervals). Negative Δ = fewer steps than "
              f"{report['reference']}."]
    return "\n".join(lines) + "\n"
