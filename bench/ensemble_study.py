"""Do reward-model ensembles keep GRPO and best-of-n from over-optimising, and does their disagreement warn
before gold falls? The measurements of issue 26, on the synthetic task with the length temptation.

Gold is known on the synthetic task; the raters of `data.length_bias = 0.5` prefer the longer response in
half the pairs, a habit a reward model learns and gold never pays. Steps:

1. the members: five BT RMs, seeds 0-4, by one sweep (`examples/ensemble-members.toml`: each seed draws
   its weights, pairs and tokenizer), and five that share their start (`examples/ensemble-members-
   shared-init.toml`: `model.init_seed = 0`, one pairs file and so one tokenizer; only the order of the
   pairs differs), its pairs written here into the store;
2. per seed, GRPO (`--preset demo-grpo`, β = --kl-coef) against each objective: member s0 alone, the five members'
   mean, worst and uwo at two λ, and the shared-start members' mean; a gold win-rate eval every
   `--every` steps; in the runs of `--bon-seeds`, also the reference's best-of-n curve up to n = `--bon`
   picked by the same objective (`ppo.bon_samples`: drawn at the start of the run, the same samples for
   every objective of a seed, in a forked RNG that leaves the GRPO run's own stream where it was; a seed
   added to --bon-seeds after its GRPO runs exist gets one-step runs `es-bon-…` that draw only the curve);
3. the ensemble's cost: K = 1 and K = 3 GRPO runs side by side (two processes at once, so both see the
   same machine load), median samples/s over their rollouts after the first.

Per objective (mean ± sd over seeds, then paired by seed against member s0 alone, t interval): gold
win-rate at the end, its peak, the KL at the peak (where it starts to fall), the KL and response length at
the end, best-of-n's win-rate at n = --bon and at its best n. The warning is the trainer's own
(`engine.analysis.overopt.first_alarm` under the run's `rule_of` its manifest, the rule its train.log line
came from); its lead time is gold's peak step minus the step it fired, over runs where gold fell
(end ≤ peak − --fall), and its false alarms are runs where gold did not fall and it fired anyway.

    .venv/bin/python bench/ensemble_study.py [--seeds 0 1 2 3 4] [--steps 150] [--kl-coef 0.01] [--every 10] [--bon 256]
        [--bon-seeds 0] [--lambdas 0.5 2] [--parallel 2] [--store bench/.cache/ensemble_study]

Runs already completed in the store are reused (it can be interrupted and run again). Prints the tables,
then one JSON line.

Best-of-n over many seeds is `bench/ensemble_bon.py`'s: it draws each seed's samples once for every objective.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import tomli_w
from downstream import ensure, report
from dpo_vs_rl import curve

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine import metrics as M  # noqa: E402
from engine.analysis import overopt, stats  # noqa: E402
from engine.data import synthetic  # noqa: E402
from engine.runs import status as S  # noqa: E402
from engine.runs import store as mf  # noqa: E402
from engine.runs import sweeps  # noqa: E402

EXAMPLES = ROOT / "examples"
MEMBERS, SHARED = "ensemble-members", "shared-init-members"  # the two sweeps' names
SINGLE = "member s0 alone"
POLL_S = 10.0
SPEED_STEPS = 25


def aplot(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "aplot_tui.cli", *args], cwd=ROOT,  # noqa: S603 - a list
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"aplot {' '.join(args)}: {proc.stderr.strip()[-2000:]}")


def sweep_members(store: Path, name: str, file: Path) -> tuple[str, list[mf.RunPaths]]:
    """The sweep called `name` in the store, started from `file` if there is none, waited on until it
    has no run left going; its id and its runs in seed order, every one completed."""
    def find() -> str | None:
        return next((i for i in sweeps.list_ids(store) if sweeps.read_state(store, i).get("name") == name), None)

    if (sweep_id := find()) is None:
        aplot("sweep", "start", str(file), "--runs-dir", str(store))  # follows the sweep to its end
        sweep_id = find()
    while sweeps.sweep_status(store, sweep_id) == sweeps.SWEEP_RUNNING:  # one started before this invocation
        time.sleep(POLL_S)
    runs = sorted(sweeps.run_states(store, sweeps.read_state(store, sweep_id)), key=lambda s: s.manifest["config"]["seed"])
    if not runs or any(s.manifest.get("status") != "completed" for s in runs):
        raise RuntimeError(f"sweep {sweep_id}: not every member completed; `aplot sweep resume {sweep_id}`")
    return sweep_id, [s.paths for s in runs]


def both_sweeps(store: Path) -> tuple[tuple[str, list[mf.RunPaths]], tuple[str, list[mf.RunPaths]]]:
    """The diverse members' sweep and the shared-start members' sweep: (id, runs) each, every run completed."""
    return (sweep_members(store, MEMBERS, EXAMPLES / "ensemble-members.toml"),
            sweep_members(store, SHARED, shared_init_file(store)))


def settle(store: Path, name: str) -> None:
    """Wait while a run called `name` is still going (one an interrupted invocation left running), so the
    `ensure` after this reuses it instead of starting a twin."""
    def going() -> bool:
        return any(manifest.get("name") == name and S.effective(paths, manifest) in S.GOING
                   for paths, manifest in mf.list_runs(store))

    while going():
        time.sleep(POLL_S)


def shared_init_file(store: Path) -> Path:
    """examples/ensemble-members-shared-init.toml pointed at the synthetic pairs it names, written here: the
    pairs the seed-0 member of ensemble-members.toml draws (same size, noise and bias), plus held-out pairs
    of another seed, so all five members train on one file and build one tokenizer from it."""
    spec = tomllib.loads((EXAMPLES / "ensemble-members-shared-init.toml").read_text(encoding="utf-8"))
    base = tomllib.loads((EXAMPLES / "ensemble-members.toml").read_text(encoding="utf-8"))["config"]["data"]
    n_train = round(base["synthetic_pairs"] * (1 - base["eval_fraction"]))
    folder = store / "shared-init"
    folder.mkdir(exist_ok=True)
    files = {"train": (folder / "pairs.jsonl", n_train, 0),
             "heldout": (folder / "heldout.jsonl", base["synthetic_pairs"] - n_train, 1000)}
    for path, n, seed in files.values():
        if path.exists():  # completed members name this file: it stays as they read it
            continue
        rows = synthetic.make_pairs(n, seed, base["label_noise"], base["length_bias"])
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    data = spec["config"]["data"]
    data["train"], data["eval"] = str(files["train"][0]), {"heldout": str(files["heldout"][0])}
    out = folder / "sweep.toml"
    out.write_text(tomli_w.dumps(spec), encoding="utf-8")
    return out


def specs(lambdas: list[float]) -> dict[str, tuple[str, str, float | None]]:
    """Each objective: (its members: "single" (member s0), "diverse" or "shared", aggregate, uwo's λ)."""
    return {SINGLE: ("single", "mean", None), "mean": ("diverse", "mean", None), "worst": ("diverse", "worst", None),
            **{f"uwo λ={lam:g}": ("diverse", "uwo", lam) for lam in lambdas}, "mean, shared init": ("shared", "mean", None)}


def objectives(members: str, shared: str, single: str, lambdas: list[float]) -> dict[str, list[str]]:
    """Each objective's overrides of the GRPO run."""
    def overrides(who: str, how: str, lam: float | None) -> list[str]:
        if who == "single":
            return [f'ppo.reward_model_run="{single}"']
        return [f'ppo.ensemble.members=["sweep:{members if who == "diverse" else shared}"]',
                f'ppo.ensemble.aggregate="{how}"', *([f"ppo.ensemble.uwo_lambda={lam}"] if lam is not None else [])]

    return {name: overrides(*spec) for name, spec in specs(lambdas).items()}


def run_tag(name: str) -> str:
    """An objective's part of its runs' names: `es-<tag>-s<seed>`, and `es-bon-<tag>-s<seed>`."""
    return name.replace(" ", "").replace("λ=", "").replace(",", "-")


def figures(paths: mf.RunPaths, fall: float) -> dict:
    """One GRPO run's gold curve, its warning and its best-of-n curve."""
    manifest = mf.read(paths)
    records = M.read_all(paths.metrics)
    kl, win, _ = curve(paths)
    steps = np.array(sorted(r.step for r in records if r.split == M.eval_split(M.WIN)))
    train = sorted((r for r in records if r.split == M.TRAIN), key=lambda r: r.step)
    peak = int(np.argmax(win))
    fell = bool(win[-1] <= win[peak] - fall)
    spread = [r for r in train if M.ENSEMBLE_STD in r.data]
    alarm = overopt.first_alarm([r.step for r in spread], [r.data[M.SCORES] for r in spread],
                                [r.data[M.ENSEMBLE_STD] for r in spread], overopt.rule_of(manifest["config"])) \
        if spread else None
    spread_of = [r.data[M.ENSEMBLE_STD] for r in spread] or [float("nan")]
    logged = "over-optimisation warning at step" in paths.log.read_text(encoding="utf-8", errors="replace")
    return {"win_end": float(win[-1]), "win_peak": float(win[peak]), "peak_step": int(steps[peak]),
            "kl_at_peak": float(kl[peak]), "kl_end": float(train[-1].data[M.KL]),
            "length_end": float(train[-1].data[M.RESPONSE_LENGTH]), "fell": fell,
            "alarm_step": alarm.step if alarm else None, "alarm_in_log": logged,
            "lead_steps": float(steps[peak] - alarm.step) if alarm and fell else float("nan"),
            "disagreement_first": float(np.mean(spread_of[:5])), "disagreement_last": float(np.mean(spread_of[-5:])),
            "curve": {"step": steps.tolist(), "kl": kl.tolist(), "win": win.tolist()}, **bon_figures(records)}


BON_FIELDS = (M.BON_N, M.BON_KL, M.BON_PROXY, M.BON_GOLD, M.BON_WIN)


def bon_figures(records: list[M.Record]) -> dict:
    """A run's best-of-n curve (NaN where it drew none): the win-rate at the largest n and at its best n."""
    bons = [r.data for r in records if r.split == M.BON_SPLIT]
    bon = bons[0] if bons else {k: [float("nan")] for k in BON_FIELDS}
    best = int(np.nanargmax(bon[M.BON_WIN])) if bons else 0
    return {"bon_win_max_n": float(bon[M.BON_WIN][-1]), "bon_win_best": float(bon[M.BON_WIN][best]),
            "bon_best_n": float(bon[M.BON_N][best]), "bon_fall": float(bon[M.BON_WIN][best] - bon[M.BON_WIN][-1]),
            "bon": {k: bon[k] for k in BON_FIELDS}, "has_bon": bool(bons)}


def speed(store: Path, members: list[mf.RunPaths]) -> dict:
    """K = 1 against K = 3 (the mean of members s0-s2), GRPO on the tiny policy, both at once."""
    common = ["seed=0", f"optim.max_steps={SPEED_STEPS}", f"ppo.win_rate_every={SPEED_STEPS + 1}"]
    ks = {1: members[:1], 3: members[:3]}

    def one(k: int) -> float:
        ids = json.dumps([p.id for p in ks[k]])
        settle(store, f"es-speed-k{k}")
        run = ensure(store, f"es-speed-k{k}", "demo-grpo", *common, f"ppo.ensemble.members={ids}")
        rates = [r.data[M.SAMPLES_PER_S] for r in M.read_all(run.metrics) if r.split == M.TRAIN and r.step > 1]
        return float(np.median(rates))

    with ThreadPoolExecutor(2) as pool:
        k1, k3 = pool.map(one, (1, 3))
    return {"samples_per_s_k1": k1, "samples_per_s_k3": k3, "rollouts": SPEED_STEPS - 1, "slowdown": k1 / k3}


def study_arguments(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The arguments that name the study's runs (their config) and its store: ensemble_bon's too."""
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--kl-coef", type=float, default=0.01, help="GRPO's β (the preset's 0.1 held gold level: no fall)")
    ap.add_argument("--every", type=int, default=10, help="steps between gold win-rate evals")
    ap.add_argument("--bon", type=int, default=256, help="best-of-n up to this n (a power of two)")
    ap.add_argument("--lambdas", type=float, nargs=2, default=[0.5, 2.0], help="uwo's two λ")
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--store", type=Path, default=ROOT / "bench" / ".cache" / "ensemble_study")
    return ap


def main() -> None:
    ap = study_arguments(argparse.ArgumentParser())
    ap.add_argument("--bon-seeds", type=int, nargs="+", default=[0],
                    help="seeds whose runs draw the best-of-n curve (256 samples × 256 prompts is most of a run)")
    ap.add_argument("--fall", type=float, default=0.05, help="gold 'fell' where its end is this far below its peak")
    args = ap.parse_args()
    args.store.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    (members_id, members), (shared_id, shared) = both_sweeps(args.store)
    accuracy = {name: [mf.read(p)["summary"].get(M.metric_key(M.eval_split(M.HELDOUT), M.ACCURACY)) for p in runs]
                for name, runs in ((MEMBERS, members), (SHARED, shared))}
    objs = objectives(members_id, shared_id, members[0].id, args.lambdas)
    common = [f"optim.max_steps={args.steps}", f"ppo.kl_coef={args.kl_coef}", f"ppo.win_rate_every={args.every}"]
    tag = {name: run_tag(name) for name in objs}
    jobs = [(name, seed) for seed in args.seeds for name in objs]

    def one(job: tuple[str, int]) -> dict:
        name, seed = job
        settle(args.store, f"es-{tag[name]}-s{seed}")
        run = ensure(args.store, f"es-{tag[name]}-s{seed}", "demo-grpo", f"seed={seed}", *common, *objs[name],
                     f"ppo.bon_samples={args.bon if seed in args.bon_seeds else 0}")
        row = {"objective": name, "seed": seed, "run": run.id, **figures(run, args.fall)}
        if seed in args.bon_seeds and not row["has_bon"]:
            # a GRPO run of this seed exists without the curve (--bon-seeds grew since): a one-step run draws
            # it, from the same forked RNG and so the same samples a full run of this seed would have drawn
            settle(args.store, f"es-bon-{tag[name]}-s{seed}")
            bon_run = ensure(args.store, f"es-bon-{tag[name]}-s{seed}", "demo-grpo", f"seed={seed}", *common,
                             *objs[name], "optim.max_steps=1", f"ppo.bon_samples={args.bon}")
            row |= bon_figures(M.read_all(bon_run.metrics)) | {"bon_run": bon_run.id}
        return row

    with ThreadPoolExecutor(args.parallel) as pool:
        rows = list(pool.map(one, jobs))
    cost = speed(args.store, members)
    wall = time.time() - t0
    tables(rows, list(objs), accuracy, cost, args, wall)
    print(json.dumps({"wall_s": round(wall, 1), "accuracy": accuracy, "speed": cost, "rows": rows}))


def tables(rows: list[dict], names: list[str], accuracy: dict, cost: dict, args: argparse.Namespace,
           wall: float) -> None:
    print(f"{len(args.seeds)} seeds × {len(names)} objectives, {args.steps} GRPO steps, wall {wall / 60:.1f} min; "
          f"mean ± sd over seeds")
    for name, accs in accuracy.items():
        print(f"{name} held-out accuracy: " + " ".join(f"{a:.3f}" for a in accs))
    fields = ("win_end", "win_peak", "kl_at_peak", "kl_end", "length_end", "bon_win_max_n", "bon_win_best", "bon_best_n")
    report(rows, "objective", names, fields, ("win_end", "win_peak", "length_end", "bon_win_max_n", "bon_win_best"),
           base=SINGLE,
           lower_is_better=("length_end",))
    print("\nthe diversity question: members of one start against members whose starts differ too")
    diverse = ("win_end", "win_peak", "length_end")
    report(rows, "objective", ["mean", "mean, shared init"], diverse, diverse, base="mean", lower_is_better=("length_end",))
    shown = [x for x in rows[0]["curve"]["step"] if x <= 40 or x % 30 == 0]
    print("\ngold win-rate by step, mean over seeds\n| objective | " + " | ".join(map(str, shown)) + " |")
    print("|---" * (len(shown) + 1) + "|")
    for name in names:
        curves = np.array([[dict(zip(r["curve"]["step"], r["curve"]["win"], strict=True))[x] for x in shown]
                           for r in rows if r["objective"] == name])
        print(f"| {name} | " + " | ".join(f"{w:.3f}" for w in curves.mean(0)) + " |")
    with_bon = [r for r in rows if r["has_bon"]]
    seeds = sorted({r["seed"] for r in with_bon})
    if with_bon:
        ns = next(r for r in with_bon if r["objective"] == SINGLE)["bon"][M.BON_N]
        kl = np.mean([r["bon"][M.BON_KL][-1] for r in with_bon if r["objective"] == SINGLE])
        print(f"\nbest-of-n of the reference, mean over seeds {seeds}: gold win-rate of the pick against a "
              f"reference sample (KL at n = {ns[-1]:g}: {kl:.2f} nats)\n| objective | "
              + " | ".join(f"n={n:g}" for n in ns) + " |")
        print("|---" * (len(ns) + 1) + "|")
        for name in names:
            curves = np.array([r["bon"][M.BON_WIN] for r in with_bon if r["objective"] == name])
            if len(curves):
                print(f"| {name} | " + " | ".join(f"{w:.3f}" for w in curves.mean(0)) + " |")
    print(f"\nthe warning (gold fell: end ≤ peak − {args.fall:g}); lead = gold's peak step − the warning's step")
    print("| objective | gold fell | warning fired | lead, steps (runs where gold fell and it fired) | false alarms | "
          "disagreement, first 5 / last 5 rollouts |")
    print("|---|---|---|---|---|---|")
    for name in names[1:]:
        here = [r for r in rows if r["objective"] == name]
        fired = [r for r in here if r["alarm_step"] is not None]
        leads = [r["lead_steps"] for r in fired if r["fell"]]
        false = [r for r in fired if not r["fell"]]
        lead = " ".join(f"{x:+.0f}" for x in leads) or "—"
        first, last = (stats.mean_sd(np.array([r[f"disagreement_{x}"] for r in here])) for x in ("first", "last"))
        print(f"| {name} | {sum(r['fell'] for r in here)}/{len(here)} | {len(fired)}/{len(here)} | {lead} | "
              f"{len(false)}/{sum(not r['fell'] for r in here)} | {first[0]:.3f} ± {first[1]:.3f} / "
              f"{last[0]:.3f} ± {last[1]:.3f} |")
        if any((r["alarm_step"] is not None) != r["alarm_in_log"] for r in here):
            print(f"  ! {name}: the recomputed warning and train.log's line disagree on some run")
    print(f"\nK = 3 against K = 1, side by side: {cost['samples_per_s_k1']:.1f} / {cost['samples_per_s_k3']:.1f} "
          f"samples/s (median of {cost['rollouts']} rollouts), {cost['slowdown']:.2f}× per rollout")


if __name__ == "__main__":
    main()
