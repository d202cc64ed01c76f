"""One rank of the eval-matrix test (tests/test_distributed.py launches it on 1, 2 and 3 CPU ranks).

usage: accelerate launch [--multi_gpu --num_processes N] tests/_eval_worker.py OUT.json

Every rank builds the same tiny reward model (fixed seed, DDP-wrapped like a run's) and evaluates it
with the trainer's own `evaluate` on held-out sets of several sizes and batch sizes; rank 0 writes the
results. The same model on any number of ranks must give the same numbers, every pair counted once.
"""

from __future__ import annotations

import sys
from types import SimpleNamespace

import torch
from _procs import write_results
from accelerate import Accelerator

from engine import config as C
from engine.data import synthetic
from engine.data.pairs import PairDataset
from engine.data.sources import synthetic_pairs
from engine.models import build_reward_model, train_tokenizer
from engine.rm.train import evaluate

SIZES = (1, 2, 7, 115)
BATCH_SIZES = (1, 3, 4)
MAX_LENGTH = 48


def main() -> None:
    out_path = sys.argv[1]
    acc = Accelerator(cpu=True)
    cfg = C.Config(kind="rm", name="eval-matrix")
    cfg.model.max_length = MAX_LENGTH
    cfg.model.tiny = C.TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, vocab_size=300)
    cfg.loss.type = "aplot"  # the eval margin too must not depend on the sharding
    cfg.eval.hard_pairs = 3
    tok = train_tokenizer(synthetic.corpus(0, n=300), 300, max_length=MAX_LENGTH)
    rm = build_reward_model(cfg.model, tok, seed=1)
    with torch.no_grad():  # rewards far apart, so float noise between batchings cannot flip a pair
        rm.hf_model.score.weight.mul_(1000.0)
    model = acc.prepare(rm)
    pairs = synthetic_pairs(max(SIZES), seed=5, noise=0.1).pairs
    ctx = SimpleNamespace(accelerator=acc, cfg=cfg, is_main=acc.is_main_process,
                          stop_between_eval_batches=lambda: None)  # an eval run: never stopped mid-eval
    results = {"world": acc.num_processes}
    for size in SIZES:
        ds = PairDataset(pairs[:size], tok, MAX_LENGTH)
        for bs in BATCH_SIZES:
            cfg.eval.batch_size = bs
            out, hard = evaluate(ctx, model, ds, pairs[:size], tok.pad_token_id, None)
            scalars = {k: v for k, v in out.items() if isinstance(v, (int, float))}
            results[f"{size}/{bs}"] = {"metrics": scalars, "hard": [h["prompt"] for h in hard]}
    write_results(acc, out_path, results)


if __name__ == "__main__":
    main()
