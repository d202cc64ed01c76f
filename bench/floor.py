"""How close the engine's training step runs to a bare PyTorch loop, and to this machine's matmul rate.

    .venv/bin/python bench/floor.py [--steps 4] [--pairs 16] [--max-length 256] [--threads 2]

A: the engine's step (bench/_common.engine_step: collate + RewardModel + rm_loss(bt) + Accelerator
backward, clipping, AdamW, schedule, pair stats). B: a bare HF forward + BT loss + backward + AdamW on
the same pre-collated tensors. Same MiniLM-L6 weights, same HH batches; A and B alternate (ABBA...)
so load from other work on this shared machine hits both alike. Target: A/B ≤ 1.05.
"""

from __future__ import annotations

import os

import _common as C
from accelerate import Accelerator

from engine.config import ModelSection
from engine.data.pairs import PairDataset, collate_pairs
from engine.models import build_reward_model, load_tokenizer


def main() -> None:
    args = C.minilm_args(__doc__, "timed steps of each side (after one warm-up step)")

    mcfg = ModelSection(name=C.minilm_path(), max_length=args.max_length)
    tok = load_tokenizer(mcfg, None)
    n_batches = args.steps + 1
    items = PairDataset(C.hh_pairs()[:n_batches * args.pairs], tok, args.max_length).items
    batches = C.batches_of(items, n_batches, args.pairs)
    collated = [collate_pairs(b, tok.pad_token_id) for b in batches]

    cfg = C.loss_config("bt")
    acc = Accelerator(cpu=True)
    engine_model = build_reward_model(mcfg, tok, seed=0).train()  # as reward.py does before its loop
    opt, sched = C.make_optimizer(engine_model, cfg.optim.lr, total_steps=10 * n_batches)
    engine_model, opt, sched = acc.prepare(engine_model, opt, sched)
    bare_model = build_reward_model(mcfg, tok, seed=0).hf_model.train()
    bare_opt = C.torch.optim.AdamW(bare_model.parameters(), lr=cfg.optim.lr, weight_decay=0.0)

    def run_a(k: int) -> dict:
        return C.engine_step(acc, engine_model, opt, sched, cfg, batches[k], tok.pad_token_id)

    def run_b(k: int) -> dict:
        return C.bare_step(bare_model, bare_opt, collated[k]["input_ids"], collated[k]["attention_mask"])

    peak_before = C.matmul_rate()
    run_a(0), run_b(0)  # warm-up: allocator, kernels, optimizer state
    times: dict[str, dict[str, list[float]]] = {"engine": {"s": [], "cpu_s": []}, "bare": {"s": [], "cpu_s": []}}
    for k in range(1, n_batches):
        order = (("engine", run_a), ("bare", run_b)) if k % 2 else (("bare", run_b), ("engine", run_a))
        for name, fn in order:
            res = fn(k)
            for clock in ("s", "cpu_s"):
                times[name][clock].append(res[clock])
            print(f"step {k} {name:6s} wall {res['s']:.3f} s  cpu {res['cpu_s']:.3f} s", flush=True)
    peak_after = C.matmul_rate()
    peak, peak_cpu = (C.median([x, y]) for x, y in zip(peak_before, peak_after, strict=True))

    flops = [C.train_flops(bare_model, *c["input_ids"].shape) for c in collated[1:]]
    real = sum(int(c["n_tokens"]) for c in collated[1:]) / sum(c["input_ids"].numel() for c in collated[1:])
    out = {"bench": "floor", "date": C.now(), "machine": C.machine(), "model": "all-MiniLM-L6-v2",
           "pairs": args.pairs, "max_length": args.max_length, "steps": args.steps,
           "matmul_fp32_flops_per_s": peak, "matmul_fp32_flops_per_cpu_s": peak_cpu,
           "real_token_fraction": round(real, 3)}
    for name, t in times.items():
        out[f"{name}_s"] = [round(x, 3) for x in t["s"]]
        out[f"{name}_cpu_s"] = [round(x, 3) for x in t["cpu_s"]]
        out[f"{name}_s_median"] = C.median(t["s"])
        out[f"{name}_cpu_s_median"] = C.median(t["cpu_s"])
        out[f"{name}_pairs_per_s"] = args.pairs / out[f"{name}_s_median"]
        out[f"{name}_flops_per_s"] = C.median([f / x for f, x in zip(flops, t["s"], strict=True)])
        out[f"{name}_vs_matmul"] = out[f"{name}_flops_per_s"] / peak
        out[f"{name}_flops_per_cpu_s"] = C.median([f / x for f, x in zip(flops, t["cpu_s"], strict=True)])
        out[f"{name}_vs_matmul_cpu"] = out[f"{name}_flops_per_cpu_s"] / peak_cpu
    for clock in ("s", "cpu_s"):
        e, b = times["engine"][clock], times["bare"][clock]
        out[f"ratio_{clock}"] = C.median(e) / C.median(b)
        out[f"paired_ratio_{clock}"] = C.median([x / y for x, y in zip(e, b, strict=True)])
    out["machine"]["load_avg_1m_end"] = round(os.getloadavg()[0], 2)

    print(f"matmul fp32 ({args.threads} threads): {peak / 1e9:.1f} GFLOP/s wall, {peak_cpu / 1e9:.1f} GFLOP per "
          f"CPU-s; real tokens {real:.0%} of the padded batch")
    for name in times:
        print(f"{name:6s}: median wall {out[f'{name}_s_median']:.3f} s/step (cpu {out[f'{name}_cpu_s_median']:.3f} s), "
              f"{out[f'{name}_pairs_per_s']:.2f} pairs/s, {out[f'{name}_flops_per_s'] / 1e9:.1f} GFLOP/s "
              f"= {out[f'{name}_vs_matmul']:.0%} of matmul (per CPU-s: {out[f'{name}_vs_matmul_cpu']:.0%})")
    print(f"engine / bare (target <= 1.05): wall {out['ratio_s']:.3f} (paired {out['paired_ratio_s']:.3f}), "
          f"cpu {out['ratio_cpu_s']:.3f} (paired {out['paired_ratio_cpu_s']:.3f})")
    C.emit(out)


if __name__ == "__main__":
    main()
