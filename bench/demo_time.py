"""Times the embedded demo end to end through the CLI and reports how well it worked.

    .venv/bin/python bench/demo_time.py [--runs-dir DIR]

Runs `aplot run --preset demo` (a tiny APLOT reward model on the synthetic task, then PPO
against it), then prints: wall time, the RM's held-out accuracy (noisy labels), its agreement
with the gold rule on 1,000 fresh noise-free pairs, the gold-judged win-rate curve of the policy
against the reference, and the final win-rate. Targets: < 300 s on a 2-core CPU, win-rate ≥ 0.65.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine import metrics as M  # noqa: E402
from engine.runs import store as mf  # noqa: E402


def aplot_argv() -> list[str]:
    exe = Path(sys.executable).with_name("aplot")
    return [str(exe)] if exe.exists() else [sys.executable, "-c", "from aplot_tui.cli import main; main()"]


def gold_agreement(rm_dir: Path, n: int = 1000) -> float:
    """Share of noise-free synthetic pairs (a seed the RM never saw) that the RM orders as gold does."""
    import torch

    from engine.data import synthetic
    from engine.models import load_reward_model
    from engine.rl.policy import score

    torch.set_num_threads(1)
    rm, tok = load_reward_model(rm_dir)
    rows = synthetic.make_pairs(n, seed=12345, label_noise=0.0)
    prompts = [r["prompt"] for r in rows]
    chosen = score(rm, tok, prompts, [r["chosen"] for r in rows], tok.model_max_length, "cpu")
    rejected = score(rm, tok, prompts, [r["rejected"] for r in rows], tok.model_max_length, "cpu")
    return float((chosen > rejected).float().mean())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs-dir", type=Path, help="run store to use (default: a temporary one, removed)")
    args = ap.parse_args()
    root = args.runs_dir or Path(tempfile.mkdtemp(prefix="aplot-demo-"))
    t0 = time.time()
    proc = subprocess.run([*aplot_argv(), "run", "--preset", "demo", "--quiet", "--runs-dir", str(root)], cwd=ROOT)
    wall = time.time() - t0
    runs = {m["kind"]: (p, m) for p, m in mf.list_runs(root)}
    print(f"\ndemo exit code {proc.returncode}; wall {wall:.1f} s (target < 300 s)")
    if proc.returncode or set(runs) != {"rm", "ppo"}:
        print(f"demo did not complete; runs in {root}")
        return 1

    rm_paths, rm_man = runs["rm"]
    ppo_paths, ppo_man = runs["ppo"]
    print(f"RM  {rm_paths.id}: {rm_man['summary'].get('wall_s')} s in the trainer, "
          f"held-out accuracy {rm_man['summary']['eval/heldout/accuracy']:.3f} "
          f"(labels {rm_man['config']['data']['label_noise']:.0%} noisy), "
          f"gold agreement {gold_agreement(rm_paths.dir / 'checkpoints' / 'final'):.3f}")
    records = M.read_all(ppo_paths.metrics)
    train = [r for r in records if r.split == M.TRAIN]
    print(f"PPO {ppo_paths.id}: {ppo_man['summary'].get('wall_s')} s in the trainer, {len(train)} steps, "
          f"gold score {train[0].data[M.GOLD_SCORE]:.3f} → {train[-1].data[M.GOLD_SCORE]:.3f}")
    print("win-rate curve (gold judge, policy vs reference):")
    win = [r for r in records if r.split == M.eval_split("win")]
    for r in win:
        print(f"  step {r.step:4d}  {r.data[M.WIN_RATE]:.3f} ± {r.data[M.WIN_RATE_SE]:.3f}  (n={r.data[M.WIN_RATE_N]})")
    final = win[-1].data
    ok = wall < 300 and final[M.WIN_RATE] >= 0.65 and final[M.WIN_RATE_N] >= 200
    print(f"final win-rate {final[M.WIN_RATE]:.3f} ± {final[M.WIN_RATE_SE]:.3f} over {final[M.WIN_RATE_N]} "
          f"held-out prompts (target ≥ 0.65): {'PASS' if ok else 'MISS'}")
    if args.runs_dir is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
