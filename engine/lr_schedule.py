"""The learning-rate schedules `optim.scheduler` names, as torch `LambdaLR`s, and the AdamW the
pair trainers (RM, DPO) step under them.

The curves are transformers' `get_scheduler` ones (linear and cosine decay to 0 after a linear
warm-up; `constant` ignores the warm-up, as `get_constant_schedule` does), tested equal to it in
tests/test_lr_schedule.py. They are built here because `transformers.optimization` imports the
Trainer's utilities and, through them, peft: about 0.5 s at every trainer start, for three lines.
"""

from __future__ import annotations

import math
from functools import partial

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def _constant(_step: int) -> float:
    return 1.0


def _linear(step: int, *, warmup: int, total: int) -> float:
    if step < warmup:
        return float(step) / float(max(1, warmup))
    return max(0.0, float(total - step) / float(max(1, total - warmup)))


def _cosine(step: int, *, warmup: int, total: int) -> float:
    if step < warmup:
        return float(step) / float(max(1, warmup))
    progress = float(step - warmup) / float(max(1, total - warmup))
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))  # half a cosine wave, 1 → 0


def lr_scheduler(name: str, optimizer: Optimizer, warmup_steps: int, total_steps: int) -> LambdaLR:
    """The schedule `name` ("linear", "cosine" or "constant") over `total_steps` optimizer steps."""
    if name == "constant":
        return LambdaLR(optimizer, _constant)
    curve = {"linear": _linear, "cosine": _cosine}[name]
    return LambdaLR(optimizer, partial(curve, warmup=warmup_steps, total=total_steps))


def adamw(model: torch.nn.Module, weight_decay: float, lr: float) -> Optimizer:
    """AdamW over the trainable weights, with decay on matrices only (norms and biases keep theirs), as
    transformers' Trainer groups them; fused, one kernel for every tensor, as the Trainer defaults to."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW([{"params": [p for p in trainable if p.ndim >= 2], "weight_decay": weight_decay},
                              {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0}], lr=lr, fused=True)
