"""Best-of-n under every objective of ensemble_study, over seeds, from one draw of samples per seed.

ensemble_study's GRPO runs draw the reference's best-of-n curve at their start (`ppo.bon_samples`): six
objectives a seed draw the same 256 prompts × 256 samples six times and score them six times, most of a run
each, which is why that study drew the curve at seed 0 only. Here each seed's samples are drawn once and
each of the ten members scores them once; every objective's curve is an aggregate of those scores
(`engine.rl.ensemble.aggregate`, the trainer's own).

The samples are the trainer's: per seed, one run of the single member (`es-bon-members0alone-s<seed>`, the
one-step run ensemble_study itself starts when a seed joins --bon-seeds late) holds the reference (its SFT
warm start, saved in the run folder) and the curve the trainer drew for that objective; at the first seed a
run of the five members' mean (`es-bon-mean-s<seed>`) checks the aggregation too. The curves computed here
for those objectives must equal the trainers'; the bench prints the largest difference and stops if it is
not 0.

    .venv/bin/python bench/ensemble_bon.py [--seeds 0 1 2 3 4] [--bon 256] [--lambdas 0.5 2] [--parallel 2]
        [--store bench/.cache/ensemble_study]

Same store, members and objectives as ensemble_study (its defaults: 150 steps, β 0.01, an eval every 10).
Each seed's member scores are kept in the store (`bon-scores-n<n>-s<seed>.npz`), so a second invocation
only reports. Prints the tables, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from downstream import ensure, report
from ensemble_study import SINGLE, both_sweeps, objectives, run_tag, settle, specs, study_arguments

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine import metrics as M  # noqa: E402
from engine.runs import store as mf  # noqa: E402


def aggregations(members: list[mf.RunPaths], shared: list[mf.RunPaths], lambdas: list[float]) -> dict:
    """Each objective of ensemble_study as (member indices into members + shared, aggregate, λ)."""
    who = {"single": [0], "diverse": list(range(len(members))),
           "shared": list(range(len(members), len(members) + len(shared)))}
    return {name: (who[w], how, lam or 0.0) for name, (w, how, lam) in specs(lambdas).items()}


def draw(run: mf.RunPaths, folders: list[Path], out: Path) -> dict:
    """The reference's samples of `run` (as its trainer drew them), every member's score of each, the gold
    score of each: arrays [K, P·n], [P·n], kept in `out`."""
    if out.exists():
        return dict(np.load(out))
    import torch

    from engine import config
    from engine.data import synthetic
    from engine.models import load_tokenizer
    from engine.rl import ensemble as E
    from engine.rl import policy as P
    from engine.rl import train as T

    cfg = config.from_dict(mf.read(run)["config"])
    torch.set_num_threads(cfg.launch.threads or 1)  # the trainer's threads: the same sums, the same tokens
    tok = load_tokenizer(cfg.model, None, run.dir / "tokenizer")
    ref = P.frozen_copy(P.load_causal_lm(run.checkpoints / T.REFERENCE))
    _, prompts, _ = T.load_prompts(cfg)
    repeated = [q for q in prompts for _ in range(cfg.ppo.bon_samples)]
    texts = T.sample_texts(ref, tok, repeated, cfg, seed=cfg.seed + T.BON_SEED_OFFSET)
    scores = np.stack([E.Ensemble.load([f], torch.device("cpu")).member_scores(repeated, texts)[0].numpy()
                       for f in folders])  # float32, as the trainer aggregates them
    gold = np.array([synthetic.gold_reward(p, t) for p, t in zip(repeated, texts, strict=True)], dtype=np.float64)
    drawn = {"scores": scores, "gold": gold, "prompts": np.array(len(prompts))}
    np.savez(out, **drawn)
    return drawn


def one(job: tuple) -> tuple[int, dict[str, str], dict]:
    """One seed: the trainer's one-step runs of the objectives it checks against (reused if they exist;
    the first holds the reference), then the first one's samples scored by every member."""
    store, seed, checked, n, folders = job
    runs = {}
    for name, overrides in checked.items():
        run_name = f"es-bon-{run_tag(name)}-s{seed}"  # ensemble_study's own name and overrides for this run
        settle(store, run_name)
        runs[name] = ensure(store, run_name, "demo-grpo", f"seed={seed}", *overrides, "optim.max_steps=1",
                            f"ppo.bon_samples={n}")
    first = next(iter(runs.values()))
    return seed, {name: run.id for name, run in runs.items()}, draw(first, folders, store / f"bon-scores-n{n}-s{seed}.npz")


def curves(drawn: dict, aggs: dict) -> dict[str, dict]:
    """Every objective's best-of-n curve from one seed's member scores."""
    import torch

    from engine.rl import best_of_n as bon
    from engine.rl import ensemble as E

    n_prompts = int(drawn["prompts"])
    gold = drawn["gold"].reshape(n_prompts, -1)
    out = {}
    for name, (idx, how, lam) in aggs.items():
        proxy = E.aggregate(torch.from_numpy(drawn["scores"][idx]), how, lam).double().numpy().reshape(n_prompts, -1)
        out[name] = bon.curve(proxy, gold)
    return out


def figures(curve: dict) -> dict:
    win = np.array(curve[M.BON_WIN])
    best = int(np.argmax(win))
    return {"bon_win_max_n": float(win[-1]), "bon_win_best": float(win[best]), "bon_best_n": float(curve[M.BON_N][best]),
            "bon_fall": float(win[best] - win[-1]), "bon_gold_max_n": float(curve[M.BON_GOLD][-1])}


def main() -> None:
    ap = study_arguments(argparse.ArgumentParser())
    args = ap.parse_args()
    args.store.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    (members_id, members), (shared_id, shared) = both_sweeps(args.store)
    folders = [mf.exported_model(args.store, p.id) for p in members + shared]
    objs = objectives(members_id, shared_id, members[0].id, args.lambdas)
    common = [f"optim.max_steps={args.steps}", f"ppo.kl_coef={args.kl_coef}", f"ppo.win_rate_every={args.every}"]
    aggs = aggregations(members, shared, args.lambdas)

    # every seed checks the single member's curve against its trainer's, the first seed the five members' mean too
    checks = [[SINGLE, "mean"] if i == 0 else [SINGLE] for i in range(len(args.seeds))]
    jobs = [(args.store, seed, {name: [*common, *objs[name]] for name in names}, args.bon, folders)
            for seed, names in zip(args.seeds, checks, strict=True)]
    # one process a seed: sample_texts seeds torch's global generator, which threads would share
    with ProcessPoolExecutor(args.parallel, mp_context=multiprocessing.get_context("spawn")) as pool:
        drawn = list(pool.map(one, jobs))
    rows, worst_gap = [], 0.0
    for seed, run_ids, d in drawn:
        here = curves(d, aggs)
        for name, run_id in run_ids.items():
            records = M.read_all(mf.run_paths(args.store, run_id).metrics)
            (trainer,) = [r.data for r in records if r.split == M.BON_SPLIT]
            for field in (M.BON_PROXY, M.BON_GOLD, M.BON_WIN):
                worst_gap = max(worst_gap, float(np.max(np.abs(np.array(trainer[field]) - here[name][field]))))
        rows += [{"objective": name, "seed": seed, "curve": c, **figures(c)} for name, c in here.items()]
    print(f"the curves here against their trainers' ({sum(map(len, checks))} runs: the single member at every seed, "
          f"the mean at seed {args.seeds[0]}), largest difference: {worst_gap:.3g}")
    if worst_gap > 1e-9:
        raise SystemExit("the samples here are not the trainer's: the curves above would not be comparable")
    names = list(aggs)
    wall = time.time() - t0
    print(f"\nbest-of-n of the reference, {len(args.seeds)} seeds × {len(names)} objectives, n ≤ {args.bon}, "
          f"wall {wall / 60:.1f} min; mean ± sd over seeds")
    fields = ("bon_win_max_n", "bon_win_best", "bon_best_n", "bon_fall", "bon_gold_max_n")
    report(rows, "objective", names, fields, ("bon_win_max_n", "bon_win_best", "bon_fall"), base=SINGLE,
           lower_is_better=("bon_fall",))
    ns = rows[0]["curve"][M.BON_N]
    kl = rows[0]["curve"][M.BON_KL][-1]
    print(f"\ngold win-rate of the pick against a reference sample, mean over seeds {args.seeds} "
          f"(KL at n = {ns[-1]:g}: {kl:.2f} nats)\n| objective | " + " | ".join(f"n={n:g}" for n in ns) + " |")
    print("|---" * (len(ns) + 1) + "|")
    for name in names:
        mean = np.mean([r["curve"][M.BON_WIN] for r in rows if r["objective"] == name], axis=0)
        print(f"| {name} | " + " | ".join(f"{w:.3f}" for w in mean) + " |")
    print(json.dumps({"wall_s": round(wall, 1), "trainer_gap": worst_gap,
                      "rows": [{k: v for k, v in r.items() if k != "curve"} | {"win": r["curve"][M.BON_WIN]}
                               for r in rows]}))


if __name__ == "__main__":
    main()
