"""What the APLOT margin costs per training step over plain Bradley-Terry.

    .venv/bin/python bench/aplot_overhead.py [--steps 4] [--pairs 16] [--max-length 256] [--threads 2]

One MiniLM-L6 reward model and optimizer, the same HH batches, and the engine's step
(bench/_common.engine_step) with loss `bt`, `aplot` on the RM's pooled hidden state (`hidden`), and
`aplot` on sentence-encoder embeddings (`encoder`): once with the cache already holding the batch's
texts (the steady state: eval, later epochs) and once with it emptied before the step (the first
visit of each text, i.e. every step of a first epoch). Variants rotate their order every round.
Targets: hidden/bt ≤ 1.03, cached encoder/bt ≤ 1.05.
"""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

import _common as C
from accelerate import Accelerator

from engine.config import ModelSection
from engine.data.pairs import PairDataset
from engine.models import SentenceEncoder, build_reward_model, load_tokenizer

VARIANTS = ("bt", "aplot_hidden", "aplot_encoder_cached", "aplot_encoder_uncached")


def main() -> None:
    args = C.minilm_args(__doc__, "timed rounds (each runs every variant once)")

    mcfg = ModelSection(name=C.minilm_path(), max_length=args.max_length)
    tok = load_tokenizer(mcfg, None)
    n_batches = args.steps + 1
    pairs = C.hh_pairs()[:n_batches * args.pairs]
    batches = C.batches_of(PairDataset(pairs, tok, args.max_length).items, n_batches, args.pairs)
    texts = [([p.chosen for p in chunk], [p.rejected for p in chunk])
             for chunk in C.batches_of(pairs, n_batches, args.pairs)]

    acc = Accelerator(cpu=True)
    model = build_reward_model(mcfg, tok, seed=0).train()  # as reward.py does before its loop
    opt, sched = C.make_optimizer(model, 2e-5, total_steps=10 * n_batches * len(VARIANTS))
    model, opt, sched = acc.prepare(model, opt, sched)
    encoder = SentenceEncoder()
    cfgs = {"bt": C.loss_config("bt"), "aplot_hidden": C.loss_config("aplot", "hidden"),
            "aplot_encoder_cached": C.loss_config("aplot", "encoder"),
            "aplot_encoder_uncached": C.loss_config("aplot", "encoder")}

    def run(name: str, k: int) -> dict:
        if name == "aplot_encoder_uncached":
            encoder.cache.clear()
        elif name == "aplot_encoder_cached":
            encoder.encode(texts[k][0] + texts[k][1])  # no-op when already cached; not timed
        return C.engine_step(acc, model, opt, sched, cfgs[name], batches[k], tok.pad_token_id,
                             texts=texts[k], encoder=encoder)

    for name in VARIANTS:  # warm-up on batch 0
        run(name, 0)
    times: dict[str, dict[str, list[float]]] = {v: {"s": [], "cpu_s": []} for v in VARIANTS}
    for k in range(1, n_batches):
        shift = k % len(VARIANTS)
        for name in VARIANTS[shift:] + VARIANTS[:shift]:
            res = run(name, k)
            for clock in ("s", "cpu_s"):
                times[name][clock].append(res[clock])
            extra = f" margin/mean {res['margin/mean']:.3f} ot/iterations {res['ot/iterations']:.0f}" \
                if "margin/mean" in res else ""
            print(f"round {k} {name:24s} wall {res['s']:.3f} s cpu {res['cpu_s']:.3f} s{extra}", flush=True)

    out = {"bench": "aplot_overhead", "date": C.now(), "machine": C.machine(), "model": "all-MiniLM-L6-v2",
           "pairs": args.pairs, "max_length": args.max_length, "steps": args.steps}
    for name in VARIANTS:
        for clock in ("s", "cpu_s"):
            out[f"{name}_{clock}"] = [round(t, 3) for t in times[name][clock]]
            out[f"{name}_{clock}_median"] = C.median(times[name][clock])
    for name in VARIANTS[1:]:
        for clock in ("s", "cpu_s"):
            a, b = times[name][clock], times["bt"][clock]
            out[f"ratio_{name}_over_bt_{clock}"] = C.median(a) / C.median(b)
            out[f"paired_ratio_{name}_over_bt_{clock}"] = C.median([x / y for x, y in zip(a, b, strict=True)])
    out["machine"]["load_avg_1m_end"] = round(os.getloadavg()[0], 2)

    # The margin alone, many times: milliseconds that step-time noise on a shared machine would hide.
    from engine.rm.train import compute_margin

    n = args.pairs
    rewards, hidden = C.torch.randn(2 * n), C.torch.randn(2 * n, model.config.hidden_size)  # [2n], [2n, H]
    for name in VARIANTS[1:]:
        ctx = SimpleNamespace(cfg=cfgs[name], accelerator=acc)
        reps = 5 if name == "aplot_encoder_uncached" else 50
        wall, cpu = [], []
        for _ in range(reps):
            if name == "aplot_encoder_uncached":
                encoder.cache.clear()
            t0, c0 = time.perf_counter(), time.process_time()
            compute_margin(ctx, 1, rewards[:n], rewards[n:], hidden[:n], hidden[n:], texts[1], encoder)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        out[f"{name}_margin_ms"] = 1e3 * C.median(wall)
        out[f"{name}_margin_cpu_ms"] = 1e3 * C.median(cpu)
        out[f"implied_ratio_{name}_over_bt"] = 1 + C.median(cpu) / out["bt_cpu_s_median"]
    for name in VARIANTS:
        print(f"{name:24s} median wall {out[f'{name}_s_median']:.3f} s, cpu {out[f'{name}_cpu_s_median']:.3f} s", end="")
        print("" if name == "bt" else
              f"  vs bt: wall x{out[f'ratio_{name}_over_bt_s']:.3f} (paired x{out[f'paired_ratio_{name}_over_bt_s']:.3f}), "
              f"cpu x{out[f'ratio_{name}_over_bt_cpu_s']:.3f} (paired x{out[f'paired_ratio_{name}_over_bt_cpu_s']:.3f})")
    for name in VARIANTS[1:]:
        print(f"{name:24s} margin alone: {out[f'{name}_margin_ms']:.1f} ms wall, {out[f'{name}_margin_cpu_ms']:.1f} ms "
              f"cpu => implied step ratio x{out[f'implied_ratio_{name}_over_bt']:.4f}")
    print("targets: aplot_hidden <= 1.03, aplot_encoder_cached <= 1.05")
    C.emit(out)


if __name__ == "__main__":
    main()
