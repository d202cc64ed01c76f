"""Reward-model losses: the Bradley-Terry family as pure functions over reward tensors.

Every loss takes the chosen and rejected rewards of n pairs, each of shape [n], and returns the
per-pair loss [n]; `rm_loss` is the one dispatcher the trainer calls. The APLOT margin itself is
computed in `engine.ot_margin` (without gradient) and enters here as a constant per-pair margin.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from engine import metrics as M
from engine.config import LossSection


def bt_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor,
            margin: torch.Tensor | None = None) -> torch.Tensor:
    """−log σ(r⁺ − r⁻ − m); logsigmoid keeps it finite for large negative gaps."""
    delta = r_chosen - r_rejected  # [n]
    if margin is not None:
        delta = delta - margin.to(delta.dtype)
    return -F.logsigmoid(delta)  # [n]


def label_smoothing_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor, eps: float) -> torch.Tensor:
    """−(1−ε) log σ(Δ) − ε log σ(−Δ): the label is trusted with probability 1−ε (conservative DPO/RM)."""
    delta = r_chosen - r_rejected  # [n]
    return -(1.0 - eps) * F.logsigmoid(delta) - eps * F.logsigmoid(-delta)  # [n]


def centering_term(r_chosen: torch.Tensor, r_rejected: torch.Tensor, coef: float) -> torch.Tensor:
    """c · mean((r⁺ + r⁻)²): BT only sees differences, so this pins the rewards' free offset near 0."""
    return coef * ((r_chosen + r_rejected) ** 2).mean()  # []


def _check_pair_shapes(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> int:
    if r_chosen.dim() != 1 or r_chosen.shape != r_rejected.shape:
        raise ValueError(f"rewards must both have shape [n]; got chosen {tuple(r_chosen.shape)} "
                         f"and rejected {tuple(r_rejected.shape)}")
    return r_chosen.shape[0]


def _check_margin(name: str, margin: torch.Tensor, n: int) -> None:
    if tuple(margin.shape) != (n,):
        raise ValueError(f"{name} must have shape [{n}] like the rewards, got {tuple(margin.shape)}")


def rm_loss(loss_cfg: LossSection, r_chosen: torch.Tensor, r_rejected: torch.Tensor, *,
            dataset_margin: torch.Tensor | None = None,
            aplot_margin: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The configured loss: (scalar loss including centering, per-pair loss [n] without it).

    `dataset_margin` is the data's `margin` column (NaN where a row lacks it); `aplot_margin` is the
    detached output of `engine.ot_margin` (during APLOT warm-up the trainer passes zeros).
    """
    n = _check_pair_shapes(r_chosen, r_rejected)
    kind = loss_cfg.type
    if kind == "bt":
        per_pair = bt_loss(r_chosen, r_rejected)
    elif kind == "bt_margin":
        if dataset_margin is None:
            raise ValueError("loss.type = bt_margin needs the data's per-pair `margin` column, "
                             "but the batch has none")
        _check_margin("dataset margin", dataset_margin, n)
        missing = int(torch.isnan(dataset_margin).sum())
        if missing:
            raise ValueError(f"loss.type = bt_margin: {missing} of {n} pairs in this batch lack a "
                             f"`margin` value; every row needs one")
        per_pair = bt_loss(r_chosen, r_rejected, dataset_margin)
    elif kind == "label_smoothing":
        per_pair = label_smoothing_loss(r_chosen, r_rejected, loss_cfg.label_smoothing)
    elif kind == "aplot":
        if aplot_margin is None:
            raise ValueError("loss.type = aplot needs aplot_margin (zeros during warm-up)")
        _check_margin("aplot margin", aplot_margin, n)
        if aplot_margin.requires_grad:
            raise ValueError("aplot margin must be detached: no gradient may flow through the OT margin")
        per_pair = bt_loss(r_chosen, r_rejected, aplot_margin)
    else:
        raise ValueError(f"unknown loss.type {kind!r}")
    loss = per_pair.mean()
    if loss_cfg.center_rewards > 0:
        loss = loss + centering_term(r_chosen, r_rejected, loss_cfg.center_rewards)
    return loss, per_pair


@torch.no_grad()
def pair_stats(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> dict[str, float]:
    """Per-batch logging stats; a tie counts as wrong (accuracy needs r⁺ > r⁻ strictly)."""
    rc, rr = r_chosen.detach().float(), r_rejected.detach().float()  # [n], [n]
    both = torch.cat([rc, rr])  # [2n]
    return {
        M.ACCURACY: (rc > rr).float().mean().item(),
        M.REWARD_GAP: (rc - rr).mean().item(),
        M.CHOSEN_REWARD: rc.mean().item(),
        M.REJECTED_REWARD: rr.mean().item(),
        M.MIN_REWARD: both.min().item(),
        M.MAX_REWARD: both.max().item(),
    }
