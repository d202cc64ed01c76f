"""Does DPO beat a reward model + RL on the synthetic task, and does the APLOT margin help DPO?

Gold is known on the synthetic task, so every method is judged the same way: its gold win-rate against
the reference on PPO's held-out prompts, against its KL from that reference on the same prompts. For
each seed and each `data.length_bias` (0: an honest rater; 0.5: the rater that favours longer answers):

1. DPO (`--preset demo-dpo`, `dpo.pairs = "reference"`): pairs of the reference's own two samples per
   prompt, rated by the task's rater, kept in the run folder (`reference_pairs.jsonl`). The pairs depend
   on the seed and the bias only, so DPO, APLOT-margin DPO, IPO and SimPO of one seed train on the same
   pairs.
2. A Bradley-Terry RM (`--preset demo-rm`) trained on that same file, two epochs, then GRPO against it
   (`--preset demo-grpo`, same seed), which also draws the reference's best-of-n curve picked by that RM
   (`ppo.bon_samples`, n = 1 … 64).

Each run's curve is its win-rate evals (KL, gold win-rate); see `curve` for where each KL is measured. "At matched KL" is each run's (KL, win) frontier
interpolated linearly at a KL every method reaches (not the eval nearest it; see `at_kl`); best-of-n's
curve is analytic in n. Reported: mean ± sd over seeds, and each method against
DPO paired by seed (t interval).

    .venv/bin/python bench/dpo_vs_rl.py [--seeds 0 1 2] [--biases 0 0.5] [--kl 1 2 3] [--parallel 2]
        [--store bench/.cache/dpo_vs_rl]

Runs already completed in the store are reused (it can be interrupted and run again). Prints the tables,
then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from downstream import ensure, report

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine import metrics as M  # noqa: E402
from engine.runs import store as mf  # noqa: E402

DPO = {"dpo": "sigmoid", "dpo+aplot": "aplot", "ipo": "ipo", "simpo": "simpo"}
METHODS = (*DPO, "rm+grpo", "rm+bon")
BON = 64
EVERY = 10  # steps between win-rate evals (the presets' 20 leaves the curve too coarse to interpolate)


def curve(paths: mf.RunPaths) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(KL, gold win-rate, response length) at each win-rate eval of a run, in step order. A DPO eval
    measures its KL and length on the held-out prompts themselves; a GRPO eval does not, so those are the
    rollout's at that step (its sequence KL on training prompts, 0 before the first update)."""
    records = M.read_all(paths.metrics)
    train = {r.step: r.data for r in records if r.split == M.TRAIN}
    recs = sorted((r for r in records if r.split == M.eval_split(M.WIN)), key=lambda r: r.step)
    seen = [r.data if M.KL in r.data else train.get(r.step, {M.KL: 0.0}) for r in recs]
    return (np.array([d[M.KL] for d in seen]), np.array([r.data[M.WIN_RATE] for r in recs]),
            np.array([d.get(M.RESPONSE_LENGTH, np.nan) for d in seen]))


def at_kl(kl: np.ndarray, win: np.ndarray, target: float) -> float:
    """The best gold win-rate the run reached at a KL up to `target`: the upper frontier of its (KL, win)
    evals (each eval that wins more than every eval at a lower KL), linear between frontier points and flat
    after the last; NaN if no eval gets that far. Not "the curve where it first passes `target`": a DPO
    run's first eval often overshoots in KL (16 nats at step 10) and comes back, and a first crossing then
    reads the step-0 policy."""
    if not (kl >= target).any():
        return float("nan")
    front_kl, front_win = [], []
    for i in np.argsort(kl, kind="stable"):
        if not front_win or win[i] > front_win[-1]:
            front_kl.append(kl[i])
            front_win.append(win[i])
    return float(np.interp(target, front_kl, front_win))


def one(store: Path, seed: int, bias: float, targets: list[float]) -> list[dict]:
    tag = f"b{bias:g}-s{seed}"
    common = [f"seed={seed}", f"data.length_bias={bias}", f"eval.every={EVERY}"]
    runs = {"dpo": ensure(store, f"dr-dpo-{tag}", "demo-dpo", *common, 'dpo.type="sigmoid"')}
    pairs_file = runs["dpo"].dir / "reference_pairs.jsonl"
    for name, kind in DPO.items():
        if name != "dpo":
            runs[name] = ensure(store, f"dr-{name}-{tag}", "demo-dpo", *common, f'dpo.type="{kind}"')
    rm = ensure(store, f"dr-rm-{tag}", "demo-rm", f"seed={seed}", 'loss.type="bt"',
                f"data.train={json.dumps(str(pairs_file))}", "optim.max_steps=0", "optim.epochs=2", "eval.every=0")
    runs["rm+grpo"] = ensure(store, f"dr-grpo-{tag}", "demo-grpo", f"seed={seed}",
                             f'ppo.reward_model_run="{rm.id}"', f"ppo.bon_samples={BON}",
                             f"ppo.win_rate_every={EVERY}")
    rows = []
    for name in METHODS:
        if name == "rm+bon":
            (bon,) = [r.data for r in M.read_all(runs["rm+grpo"].metrics) if r.split == M.BON_SPLIT]
            kl, win, length = np.array(bon["kl"]), np.array(bon["win"]), np.full(len(bon["kl"]), np.nan)
        else:
            kl, win, length = curve(runs[name])
        row = {"method": name, "seed": seed, "bias": bias, "win_end": float(win[-1]), "kl_end": float(kl[-1]),
               "length_end": float(length[-1]), "curve": {"kl": kl.tolist(), "win": win.tolist()}}
        row |= {f"win@kl{t:g}": at_kl(kl, win, t) for t in targets}
        rows.append(row)
    rows.append({"method": "rm accuracy", "seed": seed, "bias": bias, "win_end": mf.read(rm)["summary"].get(
        M.metric_key(M.eval_split(M.HELDOUT), M.ACCURACY), float("nan"))})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--biases", type=float, nargs="+", default=[0.0, 0.5])
    ap.add_argument("--kl", type=float, nargs="+", default=[1.0, 2.0, 3.0])
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--store", type=Path, default=ROOT / "bench" / ".cache" / "dpo_vs_rl")
    args = ap.parse_args()
    args.store.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    jobs = [(seed, bias) for bias in args.biases for seed in args.seeds]
    with ThreadPoolExecutor(args.parallel) as pool:
        rows = [r for rs in pool.map(lambda job: one(args.store, *job, args.kl), jobs) for r in rs]
    wall = time.time() - t0
    print(f"{len(args.seeds)} seeds, wall {wall / 60:.1f} min; mean ± sd over seeds; (k/n): only k of n seeds reached that KL")
    fields = ("win_end", "kl_end", "length_end", *(f"win@kl{t:g}" for t in args.kl))
    for bias in args.biases:
        print(f"\n### data.length_bias = {bias:g}")
        here = [r for r in rows if r["bias"] == bias and r["method"] in METHODS]
        report(here, "method", list(METHODS), fields, ("win_end", *(f"win@kl{t:g}" for t in args.kl)), base="dpo")
        accs = [r["win_end"] for r in rows if r["bias"] == bias and r["method"] == "rm accuracy"]
        print(f"RM held-out accuracy on the same pairs: {np.mean(accs):.3f} ± {np.std(accs, ddof=1):.3f}")
    print(json.dumps({"wall_s": round(wall, 1), "rows": rows}))


if __name__ == "__main__":
    main()
