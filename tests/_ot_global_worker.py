"""One rank of the 2-process `ot_scope = "global"` test (tests/test_ot_margin.py launches it).

usage: accelerate launch --multi_gpu --num_processes 2 tests/_ot_global_worker.py OUT.json SEED

Each rank builds its own batch from SEED and its rank (equal sizes, then a short last batch on
rank 1), calls `global_margin`, and rank 0 writes every rank's inputs, margin slice and stats.
"""

from __future__ import annotations

import sys

import torch
from _procs import write_results
from accelerate import Accelerator
from accelerate.utils import gather_object

from engine.config import AplotSection
from engine.rm.ot_margin import global_margin

SIZES = {"equal": (4, 4), "uneven": (4, 2)}
DIM = 5


def rank_batch(seed: int, rank: int, n: int) -> list[torch.Tensor]:
    """The batch rank `rank` holds; the test rebuilds it the same way."""
    g = torch.Generator().manual_seed(seed * 100 + rank)
    return [torch.randn(n, generator=g), torch.randn(n, generator=g),
            torch.randn(n, DIM, generator=g), torch.randn(n, DIM, generator=g)]


def main() -> None:
    out_path, seed = sys.argv[1], int(sys.argv[2])
    acc = Accelerator(cpu=True)
    cfg = AplotSection(semantic_weight=0.3, margin_scale=1.5)
    results = {"world": acc.num_processes}
    for case, sizes in SIZES.items():
        batch = rank_batch(seed, acc.process_index, sizes[acc.process_index])
        margin, stats = global_margin(acc, *batch, cfg)
        results[case] = gather_object([{"rank": acc.process_index, "margin": margin.tolist(),
                                        "stats": stats}])
    write_results(acc, out_path, results)


if __name__ == "__main__":
    main()
