"""Does a length-debiased reward model keep RL from buying length? The synthetic task with a length temptation.

The demo task's gold rule pays for on-topic words and never for length itself. Here a share of the
training pairs (`data.length_bias`, 0.5 by default) is labelled by a length-biased rater, "the longer
response wins", so a plain BT reward model learns to pay for any word, and a policy can game it by
saying more. For each seed and each reward model:

1. `--preset demo-rm`, loss BT, on the biased pairs: plain, with `loss.length.balance`, with
   `loss.length.penalty = 0.1`, with both; and plain BT on unbiased pairs (the no-temptation row);
2. `--preset demo-grpo` against it (gold judge, same seed).

Reported per reward model (mean ± sd over seeds): the GRPO policy's mean response length (words+eos
tokens) at its first and last step, its gold win-rate against the reference at the end and at its best
eval, and its KL; then each debiased RM against plain BT on the biased pairs, paired by seed (t interval).

    .venv/bin/python bench/length_temptation.py [--seeds 0 1 2] [--bias 0.5] [--parallel 2]
        [--store bench/.cache/length_temptation]

Runs already completed in the store are reused. Prints the table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from downstream import ROOT, ensure, report

from engine import metrics as M

RMS = {
    "bt, unbiased pairs": ["data.length_bias=0"],
    "bt": [],
    "bt + balance": ["loss.length.balance=true"],
    "bt + penalty 0.1": ["loss.length.penalty=0.1"],
    "bt + penalty 0.1 + balance": ["loss.length.penalty=0.1", "loss.length.balance=true"],
}


def one(store: Path, rm_name: str, seed: int, bias: float) -> dict:
    tag = f"lt-{rm_name.replace(' + ', '-').replace(', ', '-').replace(' ', '')}-b{bias}-s{seed}"
    rm = ensure(store, f"{tag}-rm", "demo-rm", f"seed={seed}", "loss.type=bt", f"data.length_bias={bias}", *RMS[rm_name])
    rl = ensure(store, f"{tag}-grpo", "demo-grpo", f"seed={seed}", f"ppo.reward_model_run=\"{rm.id}\"")
    records = M.read_all(rl.metrics)
    train = [r.data for r in records if r.split == M.TRAIN]
    wins = [r.data[M.WIN_RATE] for r in records if r.split == M.eval_split("win") and r.step > 0]
    return {"rm": rm_name, "seed": seed, "length_first": train[0][M.RESPONSE_LENGTH],
            "length_last": train[-1][M.RESPONSE_LENGTH], "gold_win": wins[-1], "gold_win_best": max(wins),
            "kl": train[-1][M.KL]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--bias", type=float, default=0.5, help="data.length_bias of the biased reward models")
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--store", type=Path, default=ROOT / "bench" / ".cache" / "length_temptation")
    args = ap.parse_args()
    args.store.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    jobs = [(rm, seed) for seed in args.seeds for rm in RMS]
    with ThreadPoolExecutor(args.parallel) as pool:
        rows = list(pool.map(lambda job: one(args.store, *job, args.bias), jobs))
    wall = time.time() - t0
    fields = ("length_first", "length_last", "gold_win", "gold_win_best", "kl")
    print(f"{len(args.seeds)} seeds, length bias {args.bias}, wall {wall / 60:.1f} min; mean ± sd over seeds")
    report(rows, "rm", list(RMS), fields, ("length_last", "gold_win", "gold_win_best"), lower_is_better=("length_last",))
    print(json.dumps({"wall_s": round(wall, 1), "bias": args.bias, "rows": rows}))


if __name__ == "__main__":
    main()
