"""Whether the differences `aplot compare` and the compare screen show are real.

Two runs (or every run against the first): per eval set that both evaluated with per-pair
predictions, the accuracy difference with a paired bootstrap interval and an exact McNemar p
(`engine.analysis.stats.paired`). Several runs that fall into two groups, where a group is the runs whose
configs agree on every differing field except the seed (e.g. `loss.type = bt` against `aplot`, three
seeds each): mean ± sd per group and the difference paired by seed (`engine.analysis.stats.grouped`).
No Textual and no torch: the CLI, the screen and the exports all call `analyse`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aplot_tui.views.run_data import RunData, diff_fields, final_best
from engine import metrics as M
from engine.analysis import predictions as P
from engine.analysis import stats

NOT_A_GROUP_FIELD = ("seed", "name", "tags", "notes")


@dataclass
class PairLine:
    set_name: str
    a: RunData
    b: RunData
    result: stats.Paired


@dataclass
class GroupLine:
    set_name: str
    label_a: str
    label_b: str
    result: stats.Grouped


@dataclass
class Analysis:
    pairs: list[PairLine] = field(default_factory=list)
    groups: list[GroupLine] = field(default_factory=list)
    group_labels: list[str] = field(default_factory=list)
    note: str = ""


def letter(i: int) -> str:
    return chr(ord("A") + i) if i < 26 else f"R{i}"


def group_fields(runs: list[RunData]) -> list[str]:
    """The config fields the runs differ on, the seed (and free labels) aside."""
    return [path for path, _ in diff_fields([r.config for r in runs])
            if path.split(".")[0] not in NOT_A_GROUP_FIELD]


def _value(cfg: dict, path: str):
    node = cfg
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def group_runs(runs: list[RunData]) -> list[tuple[str, list[RunData]]]:
    """Runs grouped by their values of the differing fields (seed aside), in first-seen order."""
    fields_ = group_fields(runs)
    groups: dict[str, list[RunData]] = {}
    for run in runs:
        label = " ".join(f"{f.split('.')[-1]}={_value(run.config, f)}" for f in fields_) or "all"
        groups.setdefault(label, []).append(run)
    return list(groups.items())


def _shared_sets(a: RunData, b: RunData) -> list[str]:
    sets = [s for s in P.sets(a.paths.dir) if s in P.sets(b.paths.dir)]
    return M.eval_set_order(sets)


def pair(a: RunData, b: RunData, set_name: str) -> stats.Paired | str:
    """The paired test on one set, or why it cannot be done (one line)."""
    pa, pb = P.read(a.paths.dir, set_name), P.read(b.paths.dir, set_name)
    if pa is None or pb is None:
        return f"{M.eval_split(set_name)}: no per-pair predictions in both runs"
    if len(pa.index) != len(pb.index) or not (pa.index == pb.index).all():
        return f"{M.eval_split(set_name)}: the runs evaluated different pairs ({len(pa.index)} vs {len(pb.index)})"
    return stats.paired(pa.correct, pb.correct)


def final_accuracy(run: RunData, set_name: str) -> float | None:
    return final_best(run, M.metric_key(M.eval_split(set_name), M.ACCURACY))[0]


def analyse(runs: list[RunData]) -> Analysis:
    out = Analysis()
    groups = group_runs(runs)
    if len(groups) == 2 and any(len(g) > 1 for _, g in groups):
        (la, ga), (lb, gb) = groups
        out.group_labels = [la, lb]
        for s in M.eval_set_order(s for r in runs for s in r.eval_sets()):
            va = {r.config.get("seed"): v for r in ga if (v := final_accuracy(r, s)) is not None}
            vb = {r.config.get("seed"): v for r in gb if (v := final_accuracy(r, s)) is not None}
            if va and vb:
                out.groups.append(GroupLine(s, la, lb, stats.grouped(va, vb)))
        return out
    if len(groups) > 2 and any(len(g) > 1 for _, g in groups):
        out.note = f"{len(groups)} groups ({', '.join(label for label, _ in groups)}): compare two at a time"
    base = runs[0]
    notes = []
    for other in runs[1:]:
        sets = _shared_sets(base, other)
        if not sets:
            notes.append(f"{other.label}: no eval set with per-pair predictions shared with {base.label}")
        for s in sets:
            res = pair(base, other, s)
            if isinstance(res, str):
                notes.append(res)
            else:
                out.pairs.append(PairLine(s, base, other, res))
    out.note = out.note or "; ".join(notes)
    return out


def _pct(x: float) -> str:
    return f"{x * 100:+.1f}"


def text_lines(analysis: Analysis, letters: dict[str, str]) -> list[str]:
    """The statistics block of `aplot compare` and the screen: one line per set, a verdict in each."""
    lines = []
    if analysis.groups:
        la, lb = analysis.group_labels
        lines.append(f"groups (seed aside): mean ± sd over seeds; Δ = B − A in points, paired by seed, "
                     f"t {analysis.groups[0].result.level:.0%} interval")
        lines += [f"  A = {la}", f"  B = {lb}"]
        for g in analysis.groups:
            r = g.result
            lines.append(f"  {M.eval_split(g.set_name)}: A {r.mean_a:.3f} ± {r.sd_a:.3f} (n={r.n_a})  B {r.mean_b:.3f} ± "
                         f"{r.sd_b:.3f} (n={r.n_b})  Δ {_pct(r.diff)} [{_pct(r.low)}, {_pct(r.high)}]")
            lines.append(f"    → {r.verdict('A', 'B')}")
    for p in analysis.pairs:
        r, a, b = p.result, letters.get(p.a.id, "A"), letters.get(p.b.id, "B")
        lines.append(f"  {M.eval_split(p.set_name)}: {a} {r.acc_a:.3f}  {b} {r.acc_b:.3f}  Δ {_pct(r.diff)} "
                     f"[{_pct(r.low)}, {_pct(r.high)}]  {r.only_a}/{r.only_b} discordant  → {r.verdict(a, b)}")
    if analysis.pairs:
        lines.insert(0, f"pair by pair ({analysis.pairs[0].result.n} pairs): Δ accuracy to A in points, "
                        f"paired bootstrap {analysis.pairs[0].result.level:.0%} interval, exact McNemar p")
    if analysis.note:
        lines.append(f"  ({analysis.note})")
    return lines


def verdict_line(analysis: Analysis, letters: dict[str, str]) -> str:
    """The one line the compare screen shows beside the curves: the first set's verdict."""
    if analysis.groups:
        g = analysis.groups[0]
        return (f"{M.eval_split(g.set_name)}: {g.label_b} − {g.label_a} = {_pct(g.result.diff)} points "
                f"[{_pct(g.result.low)}, {_pct(g.result.high)}] over {len(g.result.diffs)} seeds: "
                + g.result.verdict(g.label_a, g.label_b))
    if analysis.pairs:
        p = analysis.pairs[0]
        a, b = letters.get(p.a.id, p.a.label), letters.get(p.b.id, p.b.label)
        return (f"{M.eval_split(p.set_name)}: {b} − {a} = {_pct(p.result.diff)} points [{_pct(p.result.low)}, "
                f"{_pct(p.result.high)}]: " + p.result.verdict(a, b))
    return analysis.note or "no statistics: the runs share no evaluated set"


def csv_columns(analysis: Analysis, runs: list[RunData]) -> dict[str, dict[str, object]]:
    """run id → extra wide-CSV cells: each set's difference to the first run, interval and p."""
    out: dict[str, dict[str, object]] = {r.id: {} for r in runs}
    for p in analysis.pairs:
        cells = out[p.b.id]
        key = f"{M.metric_key(M.eval_split(p.set_name), M.ACCURACY)} vs {p.a.id}"
        cells.update({f"{key} diff": p.result.diff, f"{key} ci_low": p.result.low, f"{key} ci_high": p.result.high,
                      f"{key} mcnemar_p": p.result.p})
    return out


def markdown(analysis: Analysis, letters: dict[str, str]) -> str:
    """The statistics as a Markdown table (the export's second table)."""
    rows = []
    for g in analysis.groups:
        r = g.result
        rows.append(f"| {M.eval_split(g.set_name)} | {g.label_a}: {r.mean_a:.3f} ± {r.sd_a:.3f} | {g.label_b}: {r.mean_b:.3f} ± "
                    f"{r.sd_b:.3f} | {_pct(r.diff)} [{_pct(r.low)}, {_pct(r.high)}] (t, by seed) | — | "
                    f"{r.verdict('A', 'B')} |")
    for p in analysis.pairs:
        r, a, b = p.result, letters.get(p.a.id, "A"), letters.get(p.b.id, "B")
        rows.append(f"| {M.eval_split(p.set_name)} | {a}: {r.acc_a:.3f} | {b}: {r.acc_b:.3f} | {_pct(r.diff)} [{_pct(r.low)}, "
                    f"{_pct(r.high)}] (bootstrap) | {r.p:.3g} | {r.verdict(a, b)} |")
    if not rows:
        return ""
    return ("| set | A | B | B − A, points (95 % interval) | McNemar p | verdict |\n|---|---|---|---|---|---|\n"
            + "\n".join(rows) + "\n")
