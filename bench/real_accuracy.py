"""Does APLOT beat Bradley-Terry on real data? The issue-7 study, now run as sweeps.

The grid, the seeds and the queue are `aplot sweep`'s (examples/study-a.toml, examples/study-b.toml);
this script only prepares the data splits the sweep files read, and reports a sweep (finished or
not) as the study's table, with the statistics `aplot compare` gives.

- a: HH-RLHF harmless-base (2,312 pairs) shuffled with seed 0 into 1,800 train / 512 test pairs
     (in distribution, `eval/id`); all 732 OpenAssistant pairs out of distribution (`eval/ood`).
- b: the OpenAssistant pairs split 80/20 by prompt (no prompt on both sides, engine.data.rows.split_eval,
     seed 0); the 512 HH test pairs of direction a out of distribution.

    .venv/bin/python bench/real_accuracy.py prepare                 # bench/.cache/data/{a,b}/*.jsonl
    nice -n 5 .venv/bin/python -m aplot_tui.cli --runs-dir bench/.cache/runs sweep examples/study-a.toml
    .venv/bin/python bench/real_accuracy.py report study-a          # the table, then one JSON line
    .venv/bin/python bench/real_accuracy.py convergence study-a     # steps to BT's final ID accuracy

The decoder study (issue 28, SmolLM2-135M, four methods) is examples/decoder-study.toml, reported by
the same two commands; its plan, timings and resume steps are in the file's header.

The report's rows are the sweep's methods (its axis values; "bt" is the convergence target), mean ±
sample sd over seeds, then per eval set the difference of the two methods paired by seed (t interval)
and, seed by seed, pair by pair (paired bootstrap interval, exact McNemar p). The learning-rate sweep
of the first study is a sweep file too (`data.eval_fraction = 0.1`, an `optim.lr` axis).
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aplot_tui.views import run_data  # noqa: E402
from bench import convergence as CV  # noqa: E402
from bench import study_report as R  # noqa: E402
from engine import metrics as M  # noqa: E402
from engine.analysis import bias_checks as D  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
HH = DATA / "hh-rlhf-harmless-base" / "test.jsonl.gz"
OASST = DATA / "oasst-en100" / "pairs.jsonl"
CACHE = ROOT / "bench" / ".cache"
KEPT = ROOT / "bench" / "results" / "runs"  # committed: a sweep's record outlives the machine that ran it
HH_TRAIN, HH_TEST, SPLIT_SEED, OASST_TEST_FRACTION = 1800, 512, 0, 0.2
CURVE_PAIRS = 256  # the first pairs of `id`: a decoder's learning curve, every ~10 % of an epoch, at a quarter of the cost

DIRECTIONS = {
    "a": "train HH harmless (1,800 pairs); ID = 512 HH test pairs; OOD = 732 OpenAssistant pairs",
    "b": "train OpenAssistant (80 % by prompt); ID = the other 20 %; OOD = the 512 HH test pairs",
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
    """About `fraction` of the pairs held out, whole prompts at a time: engine.data.rows.split_eval's
    grouping (the trainer's own `eval_fraction` split), applied to the file's rows."""
    from types import SimpleNamespace

    from engine.data.rows import split_eval

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
                    "id": write_jsonl(hh_test, root / "a" / "id.jsonl"),
                    "curve": write_jsonl(hh_test[:CURVE_PAIRS], root / "a" / "curve.jsonl"), "ood": OASST}
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


# ---------------------------------------------------------------------------- one run's results


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


def method_label(axes: dict) -> str:
    """A sweep point's method name: its axis values, "none" and false left out, a true switch named by
    its key's last part (`bt`, `aplot-minmax`, `bt-balance` for loss.length.balance = true)."""
    parts = [k.rsplit(".", 1)[-1] if v is True else str(v) for k, v in axes.items()
             if v is not False and str(v) != "none"]
    return "-".join(parts) or "base"


# ---------------------------------------------------------------------------- the report


def sweep_results(root: Path, ref: str) -> tuple[str, dict, list, list, list[dict], dict[str, list[str]]]:
    """(sweep id, its state, every run's state, the completed ones, their results, each method's
    overrides) of one sweep, finished or not."""
    from engine.runs import sweeps as sweep

    sweep_id = sweep.find_sweep(root, ref)
    state = sweep.read_state(root, sweep_id)
    states = sweep.run_states(root, state)
    done = [s for s in states if s.status == "completed"]
    results, overrides = [], {}
    for s in done:
        axes = s.manifest.get("sweep", {}).get("axes", {})
        method = method_label(axes)
        overrides[method] = [f"{k}={json.dumps(v)}" for k, v in axes.items()]
        results.append({"direction": state.get("name", sweep_id), "method": method,
                        "seed": s.manifest["sweep"]["seed"], "run": s.paths.id,
                        **run_result(M.read_all(s.paths.metrics))})
    return sweep_id, state, states, done, results, overrides


def model_label(model: dict) -> str:
    """The table's name for a run's base model: the GGUF file, or the model folder's last part."""
    name = model.get("gguf_file") or Path(str(model.get("name", "?"))).name
    return "MiniLM-L6" if "minilm" in name.lower() else name.removesuffix(".gguf")


def statistics_lines(runs: list) -> list[str]:
    """`aplot compare`'s statistics: the methods two at a time against BT over seeds (t interval), then
    seed by seed, pair by pair (bootstrap, McNemar). Two methods read as one comparison."""
    from aplot_tui.views import significance

    label = {run.id: method_label(run.manifest["sweep"]["axes"]) for run in runs}
    methods = list(dict.fromkeys(sorted(label.values(), key=lambda m: m != "bt")))
    ref, others = methods[0], methods[1:]
    lines: list[str] = []
    for other in others:
        group = [r for r in runs if label[r.id] in (ref, other)]
        if len(others) > 1:
            lines.append(f"{ref} vs {other}:")
        lines += significance.text_lines(significance.analyse(group), {})
    by_seed: dict[int, list] = {}
    for run in runs:
        by_seed.setdefault(run.config.get("seed"), []).append(run)
    for seed, group in sorted(by_seed.items()):
        base = [r for r in group if label[r.id] == ref]
        for run in (r for r in group if label[r.id] != ref):
            if not base:
                continue
            pair = [base[0], run]
            lines.append(f"seed {seed}:" if len(others) == 1 else f"seed {seed}, {ref} vs {label[run.id]}:")
            lines += [ln for ln in significance.text_lines(significance.analyse(pair),
                                                           {r.id: label[r.id] for r in pair})
                      if ln.startswith("  eval/")]
    return lines


def sweep_report(root: Path, ref: str) -> tuple[dict, list[str]]:
    """The study's report of one sweep's completed runs, and the statistics lines."""
    sweep_id, state, states, done, results, overrides = sweep_results(root, ref)
    methods = list(dict.fromkeys(r["method"] for r in sorted(results, key=lambda r: r["method"] != "bt")))
    cfg = done[0].manifest["config"] if done else {}
    settings = {"sweep": sweep_id, "max_length": cfg.get("model", {}).get("max_length"),
                "lr": cfg.get("optim", {}).get("lr", 0.0), "batch_size": cfg.get("optim", {}).get("batch_size"),
                "max_steps": cfg.get("optim", {}).get("max_steps"), "seeds": sorted({r["seed"] for r in results}),
                "completed": f"{len(done)}/{len(states)}", "model": model_label(cfg.get("model", {}))}
    out = R.build_report(results, methods, overrides, {state.get("name", ""): str(state.get("source"))}, settings)
    lines = statistics_lines([run_data.load_run(s.paths) for s in done]) if done else []
    out["statistics"] = lines
    return out, lines


def convergence_report(root: Path, ref: str, eval_set: str = "id") -> tuple[dict, str]:
    """Steps each method of one sweep needs to reach BT's final `eval_set` accuracy (bench/convergence.py)."""
    sweep_id, state, states, done, results, _ = sweep_results(root, ref)
    report = CV.convergence(results, eval_set)
    report["sweep"], report["completed"] = sweep_id, f"{len(done)}/{len(states)}"
    model = model_label(done[0].manifest["config"].get("model", {})) if done else "?"
    title = f"{state.get('name', sweep_id)} ({model}, {report['completed']} runs completed)"
    return report, CV.markdown(report, title)


# ---------------------------------------------------------------------------- keeping a sweep

def not_kept() -> tuple[str, ...]:
    """What a run's record is without: its weights (checkpoints, and the tokenizer copy a run rebuilds);
    the locks and heartbeat of the machine that held them; the hard pairs, the data's own text (the
    shared data is read where it lies, never copied into the repository)."""
    from engine.runs import liveness
    from engine.runs import store as mf
    from engine.runs import sweeps as sweep

    return (mf.CHECKPOINTS, "tokenizer", mf.HARD_PAIRS, mf.RunPaths(Path()).lock.name, liveness.ALIVE_LOCK,
            liveness.HEARTBEAT, sweep.LOCK)


def keep(root: Path, ref: str, dest: Path = KEPT) -> list[str]:
    """Copy one sweep's record into `dest` (a runs dir): its state and spec, and each run's manifest,
    metrics, log and per-pair predictions, without checkpoints. Sessions here start on a fresh machine,
    so a study longer than one session lives on through this folder: the report reads it, and copied
    back into a runs dir its queued runs start with `sweep resume`. Refused while a run is going or is
    stopped part-way, since its checkpoint would not travel. Returns the kept run ids."""
    import shutil

    from engine.runs import status as S
    from engine.runs import sweeps as sweep

    sweep_id = sweep.find_sweep(root, ref)
    states = sweep.run_states(root, sweep.read_state(root, sweep_id))
    for s in states:
        if s.status in S.GOING:
            raise SystemExit(f"{s.paths.id}: {s.status}; stop the queue with `aplot sweep stop {ref} --drain` "
                             "and keep the sweep once its running runs have finished")
        if s.status not in (S.QUEUED, S.COMPLETED, S.FAILED):
            raise SystemExit(f"{s.paths.id}: {s.status} part-way and its checkpoint would not be kept; "
                             f"`aplot sweep resume {ref}` it to the end first")
    ignore = shutil.ignore_patterns(*not_kept())
    for src, name in ((sweep.sweep_dir(root, sweep_id), Path("sweeps") / sweep_id),
                      *((s.paths.dir, Path(s.paths.id)) for s in states)):
        target = dest / name
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(src, target, ignore=ignore)
    return [s.paths.id for s in states]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="write the data splits the study's sweep files read")
    prep.add_argument("--directions", default="a,b")
    rep = sub.add_parser("report", help="the study's table of a sweep (its id or name)")
    rep.add_argument("sweep")
    rep.add_argument("--runs-dir", type=Path, default=CACHE / "runs")
    conv = sub.add_parser("convergence", help="steps to BT's final held-out accuracy, per method, of a sweep")
    conv.add_argument("sweep")
    conv.add_argument("--runs-dir", type=Path, default=CACHE / "runs")
    conv.add_argument("--set", default="id", help="the eval set whose curve is read (default: id)")
    kept = sub.add_parser("keep", help="copy a sweep's record, without checkpoints, into bench/results/runs")
    kept.add_argument("sweep")
    kept.add_argument("--runs-dir", type=Path, default=CACHE / "runs")
    kept.add_argument("--to", type=Path, default=KEPT)
    args = ap.parse_args()
    if args.command == "prepare":
        if not HH.exists() or not OASST.exists():
            raise SystemExit(f"the study needs {HH} and {OASST}")
        ensure_cache_dir()
        for d, files in write_splits([d for d in args.directions.split(",") if d]).items():
            print(f"direction {d}: " + "  ".join(f"{k} {v}" for k, v in files.items()))
        return
    if args.command == "keep":
        ids = keep(args.runs_dir, args.sweep, args.to)
        print(f"{args.sweep}: {len(ids)} runs kept in {args.to}")
        return
    if args.command == "convergence":
        report, text = convergence_report(args.runs_dir, args.sweep, args.set)
        print(text)
        R.emit(report)
        return
    result, lines = sweep_report(args.runs_dir, args.sweep)
    print(R.markdown(result))
    print("\n".join(lines))
    R.emit(result)


if __name__ == "__main__":
    main()
