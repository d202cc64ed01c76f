"""GPU reward-model step benchmark: a ~1B decoder in bf16 at 1,024 tokens, BT and APLOT, plain and
shared-prompt forward. Run by bench/gpu.sh through `accelerate launch`:

    python3 -m accelerate.commands.launch --num_processes 1 --mixed_precision bf16 \
        bench/gpu_rm.py --out "$OUT" [--steps 8] [--pairs 8] [--max-length 1024]

The model is a 1.03B Llama built from config with TinyLlama-1.1B's shape (22 layers, hidden 2048, 32 heads,
4 KV heads, MLP 5632, vocabulary 32000), fp32 master weights under bf16 autocast, AdamW. The data are
synthetic token ids with HH-RLHF's proportions scaled to 1,024 tokens: prompts of 300–700 tokens,
responses of 32–224, so the prompt is ~80 % of each plain sequence (HH at 256: 86.7 of 130). Each
variant takes one step per round on the same batch (engine_step, the engine's step). Reported per
variant: pair tokens/s (the real tokens of both plain sequences, the same numerator for plain and
shared), computed tokens/s (padding included), peak GPU memory, and MFU = executed FLOPs (6N + 12·L·T·H
per computed token) / time / the bf16 matmul rate measured on this card.

`--e2e DIR` instead runs the real trainer (`accelerate launch -m engine.rm.train`, the argv and env
the run service builds for `aplot run`) for a few steps on synthetic HH-shaped text, and reports its
logged tokens/s.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import _common as C

torch = C.torch

VARIANTS = ("bt_plain", "bt_shared", "aplot_plain", "aplot_shared")


def synthetic_items(n: int, max_length: int, vocab: int, eos: int, seed: int) -> list[dict]:
    """encode_pairs-shaped items of random ids; lengths scaled from HH-RLHF (prompt ≈ 4/5 of a sequence)."""
    rng = random.Random(seed)  # noqa: S311 - a seeded order for a benchmark, not a secret
    scale = max_length / 1024
    items = []
    for _ in range(n):
        p = rng.randint(int(300 * scale), int(700 * scale))
        c, r = (min(rng.randint(int(32 * scale), int(224 * scale)), max_length - p - 1) for _ in range(2))
        prompt = [rng.randrange(3, vocab) for _ in range(p)]
        chosen = [rng.randrange(3, vocab) for _ in range(c)] + [eos]
        rejected = [rng.randrange(3, vocab) for _ in range(r)] + [eos]
        items.append({"chosen_ids": prompt + chosen, "rejected_ids": prompt + rejected, "prompt_len": p,
                      "chosen_len": c, "rejected_len": r, "margin": None})
    return items


def build_model(args, device):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from engine.models import RewardModel

    config = LlamaConfig(vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.intermediate,
                         num_hidden_layers=args.layers, num_attention_heads=args.heads,
                         num_key_value_heads=args.kv_heads, max_position_embeddings=args.max_length,
                         num_labels=1, pad_token_id=0, bos_token_id=1, eos_token_id=2, use_cache=False,
                         tie_word_embeddings=False)
    torch.manual_seed(0)
    with torch.device(device):
        hf = LlamaForSequenceClassification(config)
    return RewardModel(hf, is_decoder=True).train()


def bench(args) -> dict:
    from accelerate import Accelerator

    from engine.data.pairs import collate_pairs
    from engine.rm.shared_prompt import pack_pairs, shared_prompt_supported

    acc = Accelerator(mixed_precision=args.mixed_precision)
    dev = acc.device
    peak = C.matmul_rate(8192, torch.bfloat16, str(dev), reps=10)[0] if dev.type == "cuda" else \
        C.matmul_rate(1024, torch.float32, "cpu", reps=3)[0]
    print(f"[gpu_rm] {torch.cuda.get_device_name() if dev.type == 'cuda' else 'cpu'}: matmul "
          f"{peak / 1e12:.1f} TFLOP/s ({'bf16 8192³' if dev.type == 'cuda' else 'fp32'})", flush=True)

    model = build_model(args, dev)
    n_params = sum(p.numel() for p in model.parameters())
    ok, why = shared_prompt_supported(model, args.max_length)
    print(f"[gpu_rm] model {n_params / 1e9:.3f} B params; shared prompt: {ok} {why}", flush=True)
    opt, sched = C.make_optimizer(model, 1e-5, total_steps=10 * (args.steps + args.warmup) * len(VARIANTS))
    model, opt, sched = acc.prepare(model, opt, sched)

    n_batches = args.steps + args.warmup
    items = synthetic_items(n_batches * args.pairs, args.max_length, args.vocab, eos=2, seed=0)
    batches = C.batches_of(items, n_batches, args.pairs)
    try:
        import ot  # noqa: F401  (POT: the APLOT margin's solver)
        variants = list(VARIANTS)
    except ImportError:
        variants = [v for v in VARIANTS if v.startswith("bt")]
        print("[gpu_rm] POT is not installed: APLOT variants skipped (carry its wheel, see bench/gpu.sh)")
    cfgs = {"bt": C.loss_config("bt"), "aplot": C.loss_config("aplot", "hidden")}

    times: dict[str, list[float]] = {v: [] for v in variants}
    peak_mem: dict[str, int] = dict.fromkeys(variants, 0)
    failed: dict[str, str] = {}
    for k, batch in enumerate(batches):
        for name in variants[k % len(variants):] + variants[:k % len(variants)]:
            if name in failed:
                continue
            loss, layout = name.split("_")
            if dev.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            try:
                res = C.engine_step(acc, model, opt, sched, cfgs[loss], batch, 0, step=k + 1,
                                    shared=layout == "shared", pad_to_multiple_of=16)
            except torch.cuda.OutOfMemoryError as e:
                failed[name] = f"out of memory: {str(e).splitlines()[0]}"
                opt.zero_grad(set_to_none=True)
                torch.cuda.empty_cache()
                continue
            if dev.type == "cuda":
                torch.cuda.synchronize()
                peak_mem[name] = max(peak_mem[name], torch.cuda.max_memory_allocated())
            if k >= args.warmup:
                times[name].append(res["s"])
            print(f"[gpu_rm] step {k + 1} {name:13s} {res['s']:.3f} s loss {res['loss']:.4f}", flush=True)

    plain = [collate_pairs(b, 0) for b in batches[args.warmup:]]
    packed = [pack_pairs(b, 0, pad_to_multiple_of=16) for b in batches[args.warmup:]]
    pair_tokens = sum(int(p["n_tokens"]) for p in plain)
    shapes = {"plain": [tuple(p["input_ids"].shape) for p in plain],
              "shared": [tuple(p["input_ids"].shape) for p in packed]}
    out = {"bench": "gpu_rm", "date": C.now(), "device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu",
           "torch": torch.__version__, "mixed_precision": args.mixed_precision,
           "matmul_peak_flops_per_s": peak, "n_params": n_params, "pairs": args.pairs,
           "max_length": args.max_length, "steps": args.steps, "warmup": args.warmup,
           "shape": {k: getattr(args, k) for k in ("layers", "hidden", "heads", "kv_heads", "intermediate", "vocab")},
           "pair_tokens_per_step": pair_tokens / len(plain), "failed": failed, "variants": {}}
    for name in variants:
        if name in failed or not times[name]:
            continue
        layout = name.split("_")[1]
        flops = [C.train_flops(model, *s) for s in shapes[layout]]  # per measured step, same batches
        step_s = C.median(times[name])
        computed = sum(r * w for r, w in shapes[layout]) / len(shapes[layout])
        out["variants"][name] = {
            "step_s_median": step_s, "step_s": [round(t, 4) for t in times[name]],
            "pairs_per_s": args.pairs / step_s, "pair_tokens_per_s": pair_tokens / len(plain) / step_s,
            "computed_tokens_per_s": computed / step_s, "peak_mem_gib": peak_mem[name] / 2**30,
            "mfu": C.median([f / t / peak for f, t in zip(flops, times[name], strict=True)]),
        }
    v = out["variants"]
    for loss in ("bt", "aplot"):
        if f"{loss}_plain" in v and f"{loss}_shared" in v:
            out[f"speedup_shared_{loss}"] = v[f"{loss}_plain"]["step_s_median"] / v[f"{loss}_shared"]["step_s_median"]
    if "bt_plain" in v and "aplot_plain" in v:
        out["aplot_over_bt_plain"] = v["aplot_plain"]["step_s_median"] / v["bt_plain"]["step_s_median"]
    return out


# --- the real trainer's run folder ---------------------------------------------------------------------

WORDS = [f"{a}{b}" for a in ("ka", "lo", "mi", "nu", "pe", "ra", "so", "ti", "vu", "ze", "bo", "di", "fa", "gu")
         for b in ("n", "r", "s", "t", "l", "m", "k", "p", "x", "ve", "do", "ri", "sa", "to")]


def e2e(root: Path, args) -> dict:
    """The real trainer, started as `aplot run` starts it (the run service's run folder, launch argv and
    env): a 1.09B `tiny` Llama (hidden 2048, 16 layers, 16 heads, MLP 8192), APLOT, bf16, 1,024
    tokens, on synthetic HH-shaped transcripts written next to the run."""
    import shutil
    import subprocess

    from engine import config as config_mod
    from engine.runs import launch, lifecycle

    rng = random.Random(0)  # noqa: S311 - a seeded order for a benchmark, not a secret

    def text(lo: int, hi: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))

    root.mkdir(parents=True, exist_ok=True)
    data = root / "pairs.jsonl"
    with data.open("w") as f:
        for _ in range(args.pairs * (args.e2e_steps + 1)):
            prompt = f"\n\nHuman: {text(150, 350)}\n\nAssistant:"
            f.write(json.dumps({"prompt": prompt, "chosen": " " + text(16, 110),
                                "rejected": " " + text(16, 110)}) + "\n")
    cfg = config_mod.from_dict({
        "kind": "rm", "name": "gpu-e2e", "seed": 0,
        "model": {"name": "tiny", "max_length": args.max_length,
                  "tiny": {"hidden_size": args.e2e_hidden, "num_layers": args.e2e_layers,
                           "num_heads": args.e2e_heads, "vocab_size": 8192}},
        "data": {"train": str(data), "eval_fraction": 0.0},
        "loss": {"type": "aplot"},
        "optim": {"lr": 1e-5, "batch_size": args.pairs, "max_steps": args.e2e_steps},
        "eval": {"every": 0}, "checkpoint": {"every": 0, "keep": 1},
        "launch": {"mixed_precision": args.mixed_precision}, "log": {"every": 1},
    }, "gpu_rm --e2e")
    paths = lifecycle.create(cfg, root / "runs")
    argv = launch.argv(cfg, paths.dir)
    print("[gpu_rm] e2e: " + " ".join(argv), flush=True)
    log = Path(args.out or root) / "e2e.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as f:
        rc = subprocess.call(argv, stdout=f, stderr=subprocess.STDOUT, env=launch.env(cfg), cwd=C.ROOT)
    train = [json.loads(x) for x in paths.metrics.read_text().splitlines() if x.strip()] \
        if paths.metrics.exists() else []
    train = [x["data"] for x in train if x.get("split") == "train"]
    if args.out:
        for src, name in ((paths.metrics, "e2e_metrics.jsonl"), (paths.manifest, "e2e_manifest.toml")):
            if src.exists():
                shutil.copy(src, Path(args.out) / name)
    steady = train[1:] or train
    return {"bench": "gpu_e2e", "exit_code": rc, "argv": argv, "steps_logged": len(train),
            "tokens_per_s_median": C.median([x["tokens_per_s"] for x in steady]) if steady else None,
            "samples_per_s_median": C.median([x["samples_per_s"] for x in steady]) if steady else None,
            "shape": {"hidden": args.e2e_hidden, "layers": args.e2e_layers, "heads": args.e2e_heads}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="", help="folder for gpu_rm.json")
    ap.add_argument("--steps", type=int, default=8, help="timed steps per variant")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per variant first")
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=1024)
    ap.add_argument("--mixed-precision", default="bf16")
    ap.add_argument("--layers", type=int, default=22)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--intermediate", type=int, default=5632)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--e2e", default="", help="instead: run the real trainer in a run store made here")
    ap.add_argument("--e2e-steps", type=int, default=6)
    ap.add_argument("--e2e-hidden", type=int, default=2048)
    ap.add_argument("--e2e-layers", type=int, default=16)
    ap.add_argument("--e2e-heads", type=int, default=16)
    args = ap.parse_args()

    if args.e2e:
        result = e2e(Path(args.e2e), args)
        if args.out:
            (Path(args.out) / "e2e.json").write_text(json.dumps(result, indent=2))
        C.emit(result)
        return
    out = bench(args)
    for name, v in out["variants"].items():
        print(f"{name:13s} {v['step_s_median']:.3f} s/step  {v['pairs_per_s']:.1f} pairs/s  "
              f"{v['pair_tokens_per_s']:,.0f} pair tok/s  {v['computed_tokens_per_s']:,.0f} computed tok/s  "
              f"peak {v['peak_mem_gib']:.1f} GiB  MFU {v['mfu']:.1%}")
    for key in ("speedup_shared_bt", "speedup_shared_aplot", "aplot_over_bt_plain"):
        if key in out:
            print(f"{key}: {out[key]:.3f}")
    if out["failed"]:
        print(f"failed: {out['failed']}", file=sys.stderr)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "gpu_rm.json").write_text(json.dumps(out, indent=2, sort_keys=True))
    C.emit(out)


if __name__ == "__main__":
    main()
