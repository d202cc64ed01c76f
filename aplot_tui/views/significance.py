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

import numpy as np

from aplot_tui.views import health
from aplot_tui.views.run_data import RunData, diff_fields, final_best, last_eval_step, last_step
from engine import metrics as M
from engine.analysis import predictions as P
from engine.analysis import rewardbench as RB
from engine.analysis import stats
from engine.runs import status as S

NOT_A_GROUP_FIELD = ("seed", "name", "tags", "notes")
GROUP_LABELS = ("G1", "G2")  # not A, B, …: those are the runs' letters in the same output


@dataclass
class PairLine:
    set_name: str
    a: RunData
    b: RunData
    result: stats.Paired
    measure: str = M.ACCURACY  # an RM's pair accuracy; an RL run's win-rate or its judge's score
    p_holm: float | None = None  # with several runs against A on this set: the Holm-adjusted p

    def verdict(self, a: str, b: str) -> str:
        return self.result.verdict(a, b, self.p_holm)

    @property
    def key(self) -> str:
        """What the line is about: `eval/heldout` for accuracy (as ever), else the metric's key."""
        split = M.eval_split(self.set_name)
        return split if self.measure == M.ACCURACY else M.metric_key(split, self.measure)

    def num(self, x: float) -> str:
        """A rate's difference in points; a score's as it is."""
        rate = self.measure in (M.ACCURACY, M.WIN_RATE, M.SECTIONS_MEAN) or self.measure.endswith("/" + M.ACCURACY)
        return _pct(x) if rate else f"{x:+.3f}"


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
        label = " ".join(f"{f}={_value(run.config, f)}" for f in fields_) or "all"
        groups.setdefault(label, []).append(run)
    return list(groups.items())


def _shared_sets(a: RunData, b: RunData) -> list[str]:
    sets = [s for s in P.sets(a.paths.dir) if s in P.sets(b.paths.dir)]
    return M.eval_set_order(sets)


def pair(a: RunData, b: RunData, set_name: str) -> list[tuple[str, stats.Paired]] | str:
    """The paired tests on one set (measure, result), or why they cannot be done (one line)."""
    pa, pb = P.read(a.paths.dir, set_name), P.read(b.paths.dir, set_name)
    if pa is None or pb is None:
        return f"{M.eval_split(set_name)}: no per-pair predictions in both runs"
    if isinstance(pa, P.Outcomes) != isinstance(pb, P.Outcomes):
        return f"{M.eval_split(set_name)}: one run's eval is a reward model's, the other's an RL run's"
    if isinstance(pa, P.Outcomes):
        return prompt_pairs(pa, pb)
    if isinstance(pa, P.Items) != isinstance(pb, P.Items):
        return f"{M.eval_split(set_name)}: one run's eval is item by item (N-way rows), the other's pair by pair"
    if isinstance(pa, P.Items):
        if len(pa.index) != len(pb.index) or not (pa.index == pb.index).all():
            return f"{M.eval_split(set_name)}: the runs evaluated different items ({len(pa.index)} vs {len(pb.index)})"
        return [(M.ACCURACY, stats.paired_values(pa.outcome, pb.outcome)),  # an item's outcome: 1, 1/t or 0
                *by_subset(a, b, set_name, pa.outcome, pb.outcome, None)]
    if len(pa.index) != len(pb.index) or not (pa.index == pb.index).all():
        return f"{M.eval_split(set_name)}: the runs evaluated different pairs ({len(pa.index)} vs {len(pb.index)})"
    return [(M.ACCURACY, stats.paired(pa.correct, pb.correct)), *by_subset(a, b, set_name, pa.correct, pb.correct, RB.v1_table())]


def by_subset(a: RunData, b: RunData, set_name: str, values_a, values_b, table) -> list[tuple[str, stats.Paired]]:
    """Per subset (and for RewardBench v1's data, per section and their mean) of a set both runs scored
    with the same subset labels: paired intervals (`engine.analysis.rewardbench.paired_scores`). An
    N-way set gets its subsets only: the Ties score is not a mean over items, so it has no interval here."""
    labels = P.read_labels(a.paths.dir, set_name)
    if not labels or labels != P.read_labels(b.paths.dir, set_name) or len(labels) != len(values_a):
        return []
    v1 = table is not None and any(label in RB.V1_COUNTS for label in labels)
    return list(RB.paired_scores(values_a, values_b, labels, table if v1 else None).items())


def prompt_pairs(pa: P.Outcomes, pb: P.Outcomes) -> list[tuple[str, stats.Paired]] | str:
    """Two RL runs on the held-out prompts both evaluated (matched by the prompt's text): the win
    outcome against the opponent, and the judge's score of the response where both runs have one."""
    _, ia, ib = np.intersect1d(pa.prompt, pb.prompt, assume_unique=True, return_indices=True)
    if not len(ia):
        return f"{M.eval_split(pa.set_name)}: the runs share no held-out prompt"
    out = [(M.WIN_RATE, stats.paired_values(pa.outcome[ia], pb.outcome[ib]))]
    ga, gb = pa.gold[ia], pb.gold[ib]
    if np.isfinite(ga).all() and np.isfinite(gb).all():
        out.append((M.GOLD_SCORE, stats.paired_values(ga, gb)))
    return out


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
                out.pairs += [PairLine(s, base, other, r, measure) for measure, r in res]
    by_set: dict[str, list[PairLine]] = {}
    for line in out.pairs:
        by_set.setdefault(line.key, []).append(line)
    for lines in by_set.values():  # several runs against A on one set: one family, Holm-corrected
        if len(lines) > 1:
            for line, adjusted in zip(lines, stats.holm([x.result.p for x in lines]), strict=True):
                line.p_holm = adjusted
    out.note = out.note or "; ".join(notes)
    return out


@dataclass(frozen=True)
class Progress:
    """Where one run of a comparison stands: its numbers are only comparable at the same eval step,
    and an unfinished run's are not a finished run's."""

    letter: str
    status: str
    step: int  # the last step it logged
    total: int | None  # the steps it was set to run (the manifest's resolved total)
    eval_step: int | None  # the step of its last eval: what its final numbers and statistics are

    @property
    def finished(self) -> bool:
        return self.status == S.COMPLETED


def progress(runs: list[RunData], letters: dict[str, str]) -> list[Progress]:
    return [Progress(letters.get(r.id, r.label), S.effective(r.paths, r.manifest), last_step(r),
                     r.manifest.get("resolved", {}).get("total_steps"), last_eval_step(r)) for r in runs]


def step_lines(runs: list[RunData], letters: dict[str, str]) -> list[str]:
    """Which step each side is at, then a warning where the last evals differ in step or a run is
    unfinished (stopped, failed, crashed, running): `aplot compare` prints these above the statistics
    and the compare screen shows them beside its verdict."""
    where = progress(runs, letters)
    lines = [f"  {p.letter}  step {p.step}" + (f" of {p.total}" if p.total else "") + f", {p.status}"
             + (f"; last eval at step {p.eval_step}" if p.eval_step is not None else "; no eval") for p in where]
    evals = {p.eval_step for p in where if p.eval_step is not None}
    if len(evals) > 1:
        at = ", ".join(f"{p.letter} {p.eval_step}" for p in where if p.eval_step is not None)
        lines.append(f"  ⚠ last evals at different steps ({at}): a gap may be training time, not config")
    for p in where:
        if not p.finished:
            how = "is still running" if p.status in S.UNFINISHED else p.status
            lines.append(f"  ⚠ {p.letter} {how} at step {p.step}" + (f" of {p.total}" if p.total else "")
                         + ": its numbers are not those of a finished run")
    for run in runs:  # an RM ensemble's gold-free over-optimisation warning
        lines += [f"  ⚠ {letters[run.id]} {flag}" for flag in health.series_flags(run.series, run.config)]
    return lines


def warnings(runs: list[RunData], letters: dict[str, str]) -> list[str]:
    """Only the warnings of `step_lines` (the compare screen's line under its verdict)."""
    return [line.strip().removeprefix("⚠ ") for line in step_lines(runs, letters) if line.lstrip().startswith("⚠")]


def _pct(x: float) -> str:
    return f"{x * 100:+.1f}"


def text_lines(analysis: Analysis, letters: dict[str, str]) -> list[str]:
    """The statistics block of `aplot compare` and the screen: one line per set, a verdict in each."""
    lines = []
    if analysis.groups:
        la, lb = analysis.group_labels
        g1, g2 = GROUP_LABELS
        lines.append(f"groups (seed aside): mean ± sd over seeds; Δ = {g2} − {g1} in points, paired by seed, "
                     f"t {analysis.groups[0].result.level:.0%} interval")
        lines += [f"  {g1} = {la}", f"  {g2} = {lb}"]
        for g in analysis.groups:
            r = g.result
            lines.append(f"  {M.eval_split(g.set_name)}: {g1} {r.mean_a:.3f} ± {r.sd_a:.3f} (n={r.n_a})  {g2} "
                         f"{r.mean_b:.3f} ± {r.sd_b:.3f} (n={r.n_b})  Δ {_pct(r.diff)} [{_pct(r.low)}, {_pct(r.high)}]")
            lines.append(f"    → {r.verdict(g1, g2)}")
    for p in analysis.pairs:
        r, a, b = p.result, letters.get(p.a.id, "A"), letters.get(p.b.id, "B")
        lines.append(f"  {p.key}: {a} {r.acc_a:.3f}  {b} {r.acc_b:.3f}  Δ {p.num(r.diff)} "
                     f"[{p.num(r.low)}, {p.num(r.high)}]  {r.only_a}/{r.only_b} discordant  → {p.verdict(a, b)}")
    if analysis.pairs:
        first = analysis.pairs[0]
        if first.measure == M.ACCURACY:
            lines.insert(0, f"pair by pair ({first.result.n} pairs): Δ accuracy to A in points, "
                            f"paired bootstrap {first.result.level:.0%} interval, exact McNemar p")
        else:
            lines.insert(0, f"prompt by prompt ({first.result.n} shared held-out prompts): Δ to A, "
                            f"paired bootstrap {first.result.level:.0%} interval, exact sign test p")
        if any(p.p_holm is not None for p in analysis.pairs):
            lines.insert(1, "  several runs against A: the verdict follows McNemar p Holm-adjusted over the "
                            "runs on each set")
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
        unit = " points" if p.measure in (M.ACCURACY, M.WIN_RATE) else ""
        return (f"{p.key}: {b} − {a} = {p.num(p.result.diff)}{unit} [{p.num(p.result.low)}, "
                f"{p.num(p.result.high)}]: " + p.verdict(a, b))
    return analysis.note or "no statistics: the runs share no evaluated set"


def csv_columns(analysis: Analysis, runs: list[RunData]) -> dict[str, dict[str, object]]:
    """run id → extra wide-CSV cells: each set's difference to the first run, interval and p."""
    out: dict[str, dict[str, object]] = {r.id: {} for r in runs}
    for p in analysis.pairs:
        cells = out[p.b.id]
        key = f"{M.metric_key(M.eval_split(p.set_name), p.measure)} vs {p.a.id}"
        cells.update({f"{key} diff": p.result.diff, f"{key} ci_low": p.result.low, f"{key} ci_high": p.result.high,
                      f"{key} mcnemar_p": p.result.p, f"{key} holm_p": p.p_holm})
    return out


def markdown(analysis: Analysis, letters: dict[str, str]) -> str:
    """The statistics as a Markdown table (the export's second table)."""
    rows = []
    for g in analysis.groups:
        r = g.result
        rows.append(f"| {M.eval_split(g.set_name)} | {GROUP_LABELS[0]} = {g.label_a}: {r.mean_a:.3f} ± {r.sd_a:.3f} | "
                    f"{GROUP_LABELS[1]} = {g.label_b}: {r.mean_b:.3f} ± "
                    f"{r.sd_b:.3f} | {_pct(r.diff)} [{_pct(r.low)}, {_pct(r.high)}] (t, by seed) | — | "
                    f"{r.verdict(*GROUP_LABELS)} |")
    for p in analysis.pairs:
        r, a, b = p.result, letters.get(p.a.id, "A"), letters.get(p.b.id, "B")
        rows.append(f"| {p.key} | {a}: {r.acc_a:.3f} | {b}: {r.acc_b:.3f} | {p.num(r.diff)} [{p.num(r.low)}, "
                    f"{p.num(r.high)}] (bootstrap) | {r.p:.3g} | {p.verdict(a, b)} |")
    if not rows:
        return ""
    return ("| set | A | B | B − A, points (95 % interval) | McNemar p | verdict |\n|---|---|---|---|---|---|\n"
            + "\n".join(rows) + "\n")


def as_dict(runs: list[RunData], letters: dict[str, str]) -> dict:
    """The comparison as one JSON-ready object (`aplot compare --json`): the runs with where each
    stands, the warnings, the summary rows, the statistics with their verdicts, and the config diff."""
    from aplot_tui.views.run_data import table_rows

    analysis = analyse(runs)
    where = progress(runs, letters)
    g1, g2 = GROUP_LABELS
    return {
        "runs": [{"letter": p.letter, "id": r.id, "name": r.label, "kind": r.kind, "status": p.status,
                  "step": p.step, "total_steps": p.total, "eval_step": p.eval_step} for r, p in zip(runs, where, strict=True)],
        "warnings": warnings(runs, letters),
        "table": table_rows(runs),
        "pairs": [{"set": p.set_name, "measure": p.measure, "a": p.a.id, "b": p.b.id, "n": p.result.n, "acc_a": p.result.acc_a,
                   "acc_b": p.result.acc_b, "diff": p.result.diff, "ci_low": p.result.low, "ci_high": p.result.high,
                   "only_a": p.result.only_a, "only_b": p.result.only_b, "mcnemar_p": p.result.p, "holm_p": p.p_holm,
                   "verdict": p.verdict(letters.get(p.a.id, "A"), letters.get(p.b.id, "B"))} for p in analysis.pairs],
        "groups": [{"set": g.set_name, g1: g.label_a, g2: g.label_b, "mean_a": g.result.mean_a, "sd_a": g.result.sd_a,
                    "mean_b": g.result.mean_b, "sd_b": g.result.sd_b, "seeds": g.result.seeds, "diff": g.result.diff,
                    "ci_low": g.result.low, "ci_high": g.result.high, "verdict": g.result.verdict(g1, g2)}
                   for g in analysis.groups],
        "note": analysis.note,
        "config_diff": {path: values for path, values in diff_fields([r.config for r in runs])},
    }
