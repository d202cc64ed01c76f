"""The trainers' learning-rate schedules are transformers' own curves, step for step."""

import pytest
import torch
from transformers import get_scheduler

from engine.lr_schedule import lr_scheduler


def lrs(scheduler, steps: int) -> list[float]:
    out = []
    for _ in range(steps):
        out.append(scheduler.get_last_lr()[0])
        scheduler.optimizer.step()
        scheduler.step()
    return out


@pytest.mark.parametrize("name", ["linear", "cosine", "constant"])
@pytest.mark.parametrize("warmup,total", [(0, 6), (3, 10), (4, 4), (0, 1)])
def test_each_schedule_matches_transformers_get_scheduler(name, warmup, total):
    def optimizer():
        return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=1e-3)

    ours = lrs(lr_scheduler(name, optimizer(), warmup, total), total + 2)
    theirs = lrs(get_scheduler(name, optimizer(), num_warmup_steps=warmup, num_training_steps=total), total + 2)
    assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-15)
    assert ours[0] == (1e-3 if name == "constant" or warmup == 0 else 0.0)  # the premise: the curves differ by name


def test_a_resumed_schedule_continues_where_its_state_left_off():
    params = [torch.nn.Parameter(torch.zeros(2))]
    first = lr_scheduler("cosine", torch.optim.AdamW(params, lr=1e-3), 2, 10)
    lrs(first, 5)
    again = lr_scheduler("cosine", torch.optim.AdamW(params, lr=1e-3), 2, 10)
    again.load_state_dict(first.state_dict())
    assert lrs(again, 5) == lrs(first, 5)


def test_adamw_decays_matrices_only_and_leaves_frozen_weights_out():
    import torch

    from engine.lr_schedule import adamw

    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))
    model[2].requires_grad_(False)
    opt = adamw(model, weight_decay=0.1, lr=1e-3)
    decay, keep = opt.param_groups
    assert [p.shape for p in decay["params"]] == [(4, 3)] and decay["weight_decay"] == 0.1
    assert [p.shape for p in keep["params"]] == [(4,), (4,), (4,)] and keep["weight_decay"] == 0.0
    assert all(g["fused"] for g in opt.param_groups)
