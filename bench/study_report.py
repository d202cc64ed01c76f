"""The real-data study's table: per-run results (bench/real_accuracy.py) → per-method rows → Markdown.

Pure functions, no torch: seeds are summarised as mean ± sample sd; convergence is the first eval
step at which a run's ID accuracy reaches BT's final ID accuracy (the mean over BT's seeds);
"shorter wins" is a rule, so its per-bucket accuracy follows from the bucket counts alone.
`bench/real_accuracy.py report SWEEP` feeds it a sweep's runs.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine.analysis import bias_checks as D  # noqa: E402

UNTRAINED = "untrained"
SHORTER_WINS = "shorter wins"


# ---------------------------------------------------------------------------- statistics


def mean_sd(xs: list[float | None]) -> dict:
    """Mean and sample sd (n − 1) of the numbers in xs; sd is None below two values."""
    vals = [float(x) for x in xs if isinstance(x, (int, float))]
    return {"mean": statistics.fmean(vals) if vals else None,
            "sd": statistics.stdev(vals) if len(vals) > 1 else None, "n": len(vals)}


def steps_to_reach(curve: list[list[float]], target: float) -> int | None:
    """First eval step whose accuracy is ≥ target; None if the curve never gets there."""
    for step, acc in sorted(curve, key=lambda p: p[0]):
        if isinstance(acc, (int, float)) and acc >= target - 1e-9:
            return int(step)
    return None


def shorter_wins_buckets(overall: float, bucket_n: dict[str, int]) -> dict[str, float | None]:
    """Accuracy per length bucket of the rule "the shorter response wins".

    With d = len⁺ − len⁻ the rule scores 1 when d < 0, ½ when d = 0 and 0 when d > 0. The bucket
    threshold is ≥ 5 tokens, so the rule is always right on "chosen_shorter" and always wrong on
    "chosen_longer"; its score on "similar" is what remains of the overall: (overall·n − n_shorter)/n_similar.
    """
    n_s, n_sim, n_l = (int(bucket_n.get(b) or 0) for b in D.BUCKETS)
    n = n_s + n_sim + n_l
    similar = (overall * n - n_s) / n_sim if n_sim else None
    return {"chosen_shorter": 1.0 if n_s else None, "similar": similar, "chosen_longer": 0.0 if n_l else None}


# ---------------------------------------------------------------------------- rows


def convergence_set(results: list[dict]) -> str:
    """The set whose curve the steps-to-BT column reads: `curve`, where the runs score a small set along
    the way and the test sets only at the end (`eval.final_only`), else `id`."""
    return "curve" if any(len(r.get("curve", {}).get("curve", [])) > 1 for r in results) else "id"


def method_row(method: str, runs: list[dict], target: float | None, along: str = "id") -> dict:
    """One method's row over its seeds; `along`: the eval set of the steps-to-BT column."""
    sets = ("id", "ood")
    row = {"method": method, "seeds": sorted(r["seed"] for r in runs),
           **{s: mean_sd([r["final"][s]["accuracy"] for r in runs if s in r["final"]]) for s in sets},
           "buckets": {s: {b: mean_sd([r["final"][s]["buckets"][b] for r in runs if s in r["final"]])["mean"]
                           for b in D.BUCKETS} for s in sets}}
    if target is not None and method != UNTRAINED:
        reached = [steps_to_reach(r["curve"].get(along, []), target) for r in runs]
        hit = [s for s in reached if s is not None]
        row["steps_to_bt"] = {"values": reached, "reached": len(hit), "n": len(reached),
                              "mean": statistics.fmean(hit) if hit else None}
    margins = [r["margin"] for r in runs if r.get("margin")]
    if margins:
        row["margin"] = {k: mean_sd([m[k] for m in margins])["mean"] for k in ("mean", "std", "gap_corr")}
    return row


def shorter_wins_row(run: dict) -> dict:
    """The length rule on the pairs of one run's final evals (the same pairs, tokens and buckets)."""
    row: dict = {"method": SHORTER_WINS, "seeds": [], "buckets": {}}
    for s in ("id", "ood"):
        ev = run["final"].get(s)
        if ev is None:
            continue
        row[s] = {"mean": ev["shorter_wins_acc"], "sd": None, "n": 1}
        row["buckets"][s] = shorter_wins_buckets(ev["shorter_wins_acc"], ev["bucket_n"])
    return row


def direction_report(results: list[dict], methods: list[str], description: str) -> dict:
    """Rows of one direction: the two references, then each method of the grid that has results."""
    by_method: dict[str, list[dict]] = {}
    for r in results:
        by_method.setdefault(r["method"], []).append(r)
    bt = by_method.get("bt", [])
    along = convergence_set(results)
    target = mean_sd([r["final"].get(along, {}).get("accuracy") for r in bt])["mean"] if bt else None
    rows = []
    if UNTRAINED in by_method:
        rows.append(method_row(UNTRAINED, by_method[UNTRAINED], None))
    if results:
        rows.append(shorter_wins_row(by_method.get(UNTRAINED, results)[0]))
    rows += [method_row(m, by_method[m], target, along) for m in methods if m in by_method]
    trained = [r for r in results if r["method"] != UNTRAINED]
    sample = (by_method.get(UNTRAINED) or results or [{"final": {}}])[0]["final"]
    return {"description": description, "bt_target": target, "convergence_set": along,
            "total_steps": max((r["steps"] for r in trained), default=None),
            "n_pairs": {s: v.get("n_pairs") for s, v in sample.items()},
            "bucket_n": {s: v.get("bucket_n") for s, v in sample.items()}, "rows": rows}


def build_report(results: list[dict], methods: list[str], method_overrides: dict[str, list[str]],
                 descriptions: dict[str, str], settings: dict) -> dict:
    """The whole table: every direction present in `results`, in order a, b."""
    directions = sorted({r["direction"] for r in results})
    return {"bench": "real_accuracy", "settings": settings,
            "methods": {m: method_overrides[m] for m in methods},
            "directions": {d: direction_report([r for r in results if r["direction"] == d], methods,
                                               descriptions.get(d, d)) for d in directions}}


# ---------------------------------------------------------------------------- Markdown


def fmt_acc(cell: dict | None) -> str:
    if not cell or cell.get("mean") is None:
        return "—"
    return f"{cell['mean']:.3f}" + (f" ± {cell['sd']:.3f}" if cell.get("sd") is not None else "")


def fmt_steps(cell: dict | None) -> str:
    if not cell:
        return "—"
    if cell["reached"] == 0:
        return "never"
    text = f"{cell['mean']:.0f}"
    return text if cell["reached"] == cell["n"] else f"{text} ({cell['reached']}/{cell['n']} seeds)"


def fmt_num(x: float | None, spec: str = ".3f") -> str:
    return "—" if x is None else format(x, spec)


def fmt_buckets(b: dict | None) -> str:
    if not b:
        return "—"
    return " / ".join(fmt_num(b.get(k), ".2f") for k in D.BUCKETS)


def markdown(report: dict) -> str:
    st = report["settings"]
    lines = [f"## APLOT vs Bradley-Terry on real data ({st.get('model', 'MiniLM-L6')}, max_length {st['max_length']}, "
             f"batch {st.get('batch_size', 16)}, lr {st['lr']:g}, "
             + (f"{st['max_steps']} steps" if st.get("max_steps") else "1 epoch") + ")", ""]
    lines.append("Methods (overrides on the config defaults): " + "; ".join(
        f"`{m}` = {' '.join(o)}" for m, o in report["methods"].items()) + ".")
    for d, rep in report["directions"].items():
        total = rep["total_steps"]
        lines += ["", f"### Direction {d}: {rep['description']}", ""]
        n = rep["n_pairs"]
        along = rep.get("convergence_set", "id")
        along_name = "ID" if along == "id" else along
        bn = {s: "/".join(str((v or {}).get(b, "?")) for b in D.BUCKETS) for s, v in rep["bucket_n"].items()}
        lines.append(f"Eval pairs: ID {n.get('id')}, OOD {n.get('ood')}; length buckets (chosen shorter / "
                     f"similar / chosen longer, ±max(5 tokens, 10 % of mean length)): ID {bn.get('id')}, "
                     f"OOD {bn.get('ood')}. BT's final {along_name} accuracy (the convergence target): "
                     f"{fmt_num(rep['bt_target'])}. One run's accuracy near 0.6 has a binomial standard error of "
                     + " / ".join(f"{math.sqrt(0.24 / n[s]):.3f} ({s.upper()})" for s in ("id", "ood") if n.get(s))
                     + ".")
        lines += ["", f"| method | seeds | ID acc | OOD acc | steps to BT's {along_name} acc (of {total}) | margin mean "
                      "| margin spread | corr(margin, gap) | ID acc by length (s/≈/l) | OOD acc by length (s/≈/l) |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for row in rep["rows"]:
            m = row.get("margin") or {}
            lines.append(" | ".join([
                f"| {row['method']}", ",".join(map(str, row["seeds"])) or "—", fmt_acc(row.get("id")),
                fmt_acc(row.get("ood")), fmt_steps(row.get("steps_to_bt")), fmt_num(m.get("mean")),
                fmt_num(m.get("std")), fmt_num(m.get("gap_corr"), "+.3f") if m else "—",
                fmt_buckets(row["buckets"].get("id")), fmt_buckets(row["buckets"].get("ood")) + " |"]))
    lines += ["", "untrained: the pretrained encoder with its fresh seeded head after one step at lr 1e-12; "
              "shorter wins: the rule on the same pairs and token lengths. Margin columns (aplot only): "
              "means over training steps of the batch mean, the within-batch sd and the Pearson "
              "correlation of the margin with the pair's reward gap."]
    if report.get("failed"):
        lines += ["", "Failed runs: " + "; ".join(f"{f['key']}: {f['error']}" for f in report["failed"])]
    return "\n".join(lines) + "\n"


def emit(result: dict) -> None:
    """The machine-readable last line."""
    print(json.dumps(result, sort_keys=True), flush=True)
