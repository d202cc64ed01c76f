"""One run as a comparison reads it (its manifest, metrics and per-pair predictions), the summary
rows of several, and the fields their configs differ in: what the compare screen, `aplot compare`, the
significance verdicts and the headless export all start from. No Textual and no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from engine import config as config_mod
from engine import metrics as M
from engine.metrics import metric_key
from engine.runs import status as S
from engine.runs import store as mf

DEFAULT_METRICS = {
    "rm": [M.LOSS, M.ACCURACY, M.EVERY_EVAL + M.ACCURACY, M.REWARD_GAP, M.MARGIN_MEAN, M.LEARNING_RATE],
    "ppo": [M.SCORES, M.GOLD_SCORE, M.KL, M.ENTROPY, M.CLIPFRAC, M.metric_key(M.eval_split(M.WIN), M.WIN_RATE),
            M.GOLD_VS_KL_RL, M.GOLD_VS_KL_BON],
    "dpo": [M.LOSS, M.REWARDS_ACCURACIES, M.EVERY_EVAL + M.ACCURACY, M.REWARDS_MARGINS, M.LOGPS_CHOSEN,
            M.LOGPS_REJECTED, M.metric_key(M.eval_split(M.WIN), M.WIN_RATE), M.metric_key(M.eval_split(M.WIN), M.KL)],
    "eval": [M.EVERY_EVAL + M.ACCURACY, M.EVERY_EVAL + M.SECTIONS_MEAN],
}
TABLE_METRICS = {
    "rm": [M.LOSS, M.ACCURACY, M.EVERY_EVAL + M.ACCURACY, M.EVERY_EVAL + M.REWARD_GAP,
           # the diagnostics side by side: accuracy against the length rules, calibration, length bias
           *(M.EVERY_EVAL + k for k in (M.SHORTER_WINS_ACC, M.ACC_CHOSEN_SHORTER, M.ACC_SIMILAR, M.ACC_CHOSEN_LONGER,
                                     M.REWARD_LENGTH_CORR, M.ECE))],
    "ppo": [M.SCORES, M.GOLD_SCORE, M.KL, M.metric_key(M.eval_split(M.WIN), M.WIN_RATE)],
    "dpo": [M.LOSS, M.REWARDS_ACCURACIES, M.EVERY_EVAL + M.ACCURACY, M.REWARDS_MARGINS,
            M.metric_key(M.eval_split(M.WIN), M.WIN_RATE), M.metric_key(M.eval_split(M.WIN), M.KL)],
    "eval": [M.EVERY_EVAL + M.ACCURACY, M.EVERY_EVAL + M.SECTIONS_MEAN, M.EVERY_EVAL + M.REWARD_GAP,
             *(M.EVERY_EVAL + k for k in (M.SHORTER_WINS_ACC, M.REWARD_LENGTH_CORR, M.ECE))],
}

@dataclass
class RunData:
    """One run's manifest and every metric series, read once."""

    paths: mf.RunPaths
    manifest: dict
    series: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.paths.id

    @property
    def label(self) -> str:
        return self.manifest.get("name") or self.id

    @property
    def kind(self) -> str:
        return self.manifest.get("kind", "rm")

    @property
    def config(self) -> dict:
        return self.manifest.get("config", {})

    def eval_sets(self) -> list[str]:
        return sorted({M.eval_set(M.split_key(k)[0]) for k in self.series if M.is_eval(k)})


def load_run(run_dir: Path | mf.RunPaths) -> RunData:
    paths = run_dir if isinstance(run_dir, mf.RunPaths) else mf.RunPaths(Path(run_dir))
    run = RunData(paths, mf.read(paths))
    for rec in M.read_all(paths.metrics):
        for name, value in rec.data.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                xs, ys = run.series.setdefault(metric_key(rec.split, name), ([], []))
                xs.append(rec.step)
                ys.append(float(value))
        if rec.split == M.BON_SPLIT and rec.data.get(M.BON_KL):
            run.series[M.GOLD_VS_KL_BON] = (list(rec.data[M.BON_KL]), list(rec.data[M.BON_GOLD]))
    kl, gold = M.against(*run.series.get(metric_key(M.TRAIN, M.KL), ([], [])),
                         *run.series.get(metric_key(M.TRAIN, M.GOLD_SCORE), ([], [])))
    if gold:  # Gao et al.'s picture: the judge's score against the KL spent, beside best-of-n's
        run.series[M.GOLD_VS_KL_RL] = (kl, gold)
    return run


def expand(patterns: list[str], runs: list[RunData]) -> list[str]:
    """Metric keys for patterns (`eval/*/accuracy` means every eval set), present in some run."""
    out: list[str] = []
    for pattern in patterns:
        if pattern.startswith(M.EVERY_EVAL):
            name = pattern.removeprefix(M.EVERY_EVAL)
            sets = M.eval_set_order(s for r in runs for s in r.eval_sets())
            keys = [metric_key(M.eval_split(s), name) for s in sets]
        else:
            keys = [pattern]
        out += [k for k in keys if k not in out and any(k in r.series for r in runs)]
    return out


def default_metrics(runs: list[RunData], table: dict[str, list[str]] = DEFAULT_METRICS) -> list[str]:
    kinds = list(dict.fromkeys(r.kind for r in runs))
    return expand([p for kind in kinds for p in table.get(kind, [])], runs)


def final_best(run: RunData, key: str) -> tuple[float | None, float | None]:
    """The last finite value and the best one by the metric's direction (`engine.metrics.best`: None
    for a train batch's value, KL, a baseline rule's accuracy and the like)."""
    xs, ys = run.series.get(key, ([], []))
    ys = [y for y in ys if math.isfinite(y)]
    if not ys:
        return None, None
    return ys[-1], M.best(key, ys)


def best_across(key: str, values: list) -> float | None:
    """The best of several runs' values of one metric (a summary row: `key` may end in ` final` or
    ` best`), by its direction; None with fewer than two numbers or where no best means anything."""
    numbers = [v for v in values if isinstance(v, float)]
    return M.best(key.removesuffix(" final").removesuffix(" best"), numbers) if len(numbers) > 1 else None


def last_step(run: RunData) -> int:
    """The last step the run logged (a series against KL aside)."""
    return max((xs[-1] for key, (xs, _) in run.series.items() if xs and not key.startswith(M.VS_KL)), default=0)


def last_eval_step(run: RunData) -> int | None:
    """The step of the run's last eval, which its final eval numbers and per-pair predictions are of."""
    return max((xs[-1] for key, (xs, _) in run.series.items() if xs and M.is_eval(M.split_key(key)[0])),
               default=None)


def table_rows(runs: list[RunData], metrics: list[str] | None = None) -> list[dict]:
    metrics = metrics if metrics is not None else default_metrics(runs, TABLE_METRICS)
    rows = []
    for run in runs:
        cfg = run.config
        row = {"id": run.id, "name": run.label, "kind": run.kind,
               "loss": M.loss_label(run.kind, cfg),
               "status": S.effective(run.paths, run.manifest),
               "steps": last_step(run)}
        for key in metrics:
            final, best = final_best(run, key)
            row[f"{key} final"] = final
            row[f"{key} best"] = best
        rows.append(row)
    return rows


def diff_fields(configs: list[dict]) -> list[tuple[str, list]]:
    """The config fields (dotted) on which any two runs differ, with each run's value."""
    if not configs:
        return []
    paths: dict[str, None] = {}
    for other in configs[1:]:
        paths.update(dict.fromkeys(config_mod.diff(configs[0], other)))
    out = []
    for path in sorted(paths):
        values = []
        for cfg in configs:
            node = cfg
            for part in path.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            values.append(node)
        out.append((path, values))
    return out
