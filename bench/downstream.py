"""Does an APLOT reward model make a better policy? The downstream study on the synthetic task.

The synthetic task has a known gold reward, so a reward model can be judged by what it does to a
policy, not only by its pair accuracy. For each seed and each reward-model loss (BT, the SPEC-default
APLOT, and the study's best APLOT variant, min-max cost normalisation):

1. train the demo reward model (`--preset demo-rm`, that loss, that seed);
2. run GRPO against it (`--preset demo-grpo`, same seed), which also draws the reference's best-of-n
   curve (`ppo.bon_samples`, n = 1 … 64, picked by that RM, scored by the gold rule).

Reported per loss (mean ± sd over seeds) and against BT paired by seed (t interval, engine.analysis.stats):
the RM's held-out accuracy; best-of-64's gold win-rate against a reference sample (KL 3.17 nats);
the GRPO policy's gold win-rate against the reference at the end and at the win-rate eval whose KL
is nearest best-of-64's (the "matched KL" point; the RL run's KL is its logged sequence KL).

    .venv/bin/python bench/downstream.py [--seeds 0 1 2 3 4] [--parallel 2] [--store bench/.cache/downstream]

Runs already completed in the store are reused (it can be interrupted and run again). Prints the
table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine import metrics as M  # noqa: E402
from engine.analysis import stats  # noqa: E402
from engine.runs import store as mf  # noqa: E402

LOSSES = {
    "bt": ["loss.type=bt"],
    "aplot (SPEC default)": ["loss.type=aplot"],
    "aplot, min-max costs": ["loss.type=aplot", "loss.aplot.normalize_costs=minmax"],
}
BON = 64


def aplot(store: Path, *args: str) -> None:
    cmd = [sys.executable, "-m", "aplot_tui.cli", "--runs-dir", str(store), "run", *args, "-q"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)  # noqa: S603 - an argument list
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {proc.stderr.strip()[-2000:]}")


def ensure(store: Path, name: str, preset: str, *overrides: str) -> mf.RunPaths:
    """The completed run called `name` in the store; run `--preset preset` with the overrides first
    if there is none (so an interrupted study picks up where it stopped)."""
    def completed() -> mf.RunPaths | None:
        return next((paths for paths, manifest in mf.list_runs(store)
                     if manifest.get("name") == name and manifest.get("status") == "completed"), None)

    if (paths := completed()) is None:
        aplot(store, "--preset", preset, f"name=\"{name}\"", *overrides)
        paths = completed()
    return paths


def one(store: Path, loss: str, seed: int) -> dict:
    """Train (or reuse) the RM and the GRPO run of one (loss, seed); their figures."""
    tag = f"{loss.split()[0]}{'-minmax' if 'min-max' in loss else ''}-s{seed}"
    rm = ensure(store, f"ds-rm-{tag}", "demo-rm", f"seed={seed}", *LOSSES[loss])
    rl = ensure(store, f"ds-grpo-{tag}", "demo-grpo", f"seed={seed}", f"ppo.reward_model_run=\"{rm.id}\"",
                f"ppo.bon_samples={BON}")
    summary = mf.read(rm)["summary"]
    records = M.read_all(rl.metrics)
    (bon,) = [r.data for r in records if r.split == M.BON_SPLIT]
    kl_by_step = {r.step: r.data[M.KL] for r in records if r.split == M.TRAIN}
    wins = [(r.step, r.data[M.WIN_RATE]) for r in records if r.split == M.eval_split("win") and r.step > 0]
    matched_step, matched_win = min(wins, key=lambda w: abs(kl_by_step.get(w[0], 1e9) - bon["kl"][-1]))
    return {"loss": loss, "seed": seed, "rm_accuracy": summary.get(M.metric_key(M.eval_split(M.HELDOUT), M.ACCURACY)),
            "bon_win": bon["win"][-1], "bon_gold": bon["gold"][-1], "bon_kl": bon["kl"][-1],
            "rl_win": wins[-1][1], "rl_kl": kl_by_step[max(kl_by_step)],
            "rl_win_matched": matched_win, "rl_kl_matched": kl_by_step[matched_step],
            "bon_curve": {k: bon[k] for k in ("n", "kl", "proxy", "gold", "win")}}


def report(rows: list[dict], key: str, names: list[str], fields: tuple, compared: tuple, base: str = "bt",
           lower_is_better: tuple = ()) -> None:
    """Mean ± sd over seeds of each `fields` for each `names` (rows' `key`), then each of the names
    after `base` against it, paired by seed, for the `compared` fields."""
    print(f"| {key} | " + " | ".join(fields) + " |")
    print("|---" * (len(fields) + 1) + "|")
    for name in names:
        cells = []
        for f in fields:
            xs = np.array([r[f] for r in rows if r[key] == name], dtype=float)
            m, s = stats.mean_sd(xs[np.isfinite(xs)])
            shown = "—" if np.isnan(m) else f"{m:.3f} ± {s:.3f}"
            cells.append(shown if np.isfinite(xs).all() or np.isnan(m) else f"{shown} ({np.isfinite(xs).sum()}/{len(xs)})")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"\nagainst {base}, paired by seed: mean difference [t 95 %]")
    for name in names[names.index(base) + 1:]:
        for f in compared:
            g = stats.grouped({r["seed"]: r[f] for r in rows if r[key] == base},
                              {r["seed"]: r[f] for r in rows if r[key] == name})
            print(f"  {name} − {base}, {f}: {g.diff:+.3f} [{g.low:+.3f}, {g.high:+.3f}], {len(g.seeds)} seeds — "
                  f"{g.verdict(base, name, f not in lower_is_better)}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--store", type=Path, default=ROOT / "bench" / ".cache" / "downstream")
    args = ap.parse_args()
    args.store.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    jobs = [(loss, seed) for seed in args.seeds for loss in LOSSES]
    with ThreadPoolExecutor(args.parallel) as pool:
        rows = list(pool.map(lambda job: one(args.store, *job), jobs))
    wall = time.time() - t0
    fields = ("rm_accuracy", "bon_win", "bon_gold", "rl_win", "rl_kl", "rl_win_matched", "rl_kl_matched")
    print(f"{len(args.seeds)} seeds, wall {wall / 60:.1f} min; mean ± sd over seeds")
    report(rows, "loss", list(LOSSES), fields, ("rm_accuracy", "bon_win", "rl_win", "rl_win_matched"))
    print(json.dumps({"wall_s": round(wall, 1), "rows": rows}))


if __name__ == "__main__":
    main()
