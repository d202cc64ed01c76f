"""DPO and its variants as pure functions over the implicit rewards of n pairs.

DPO is a Bradley-Terry objective on the implicit reward r = β·log(π(y|x)/π_ref(y|x)) (Rafailov et al.
2023, eq. 7), so every variant here is the RM's loss (`engine.rm.losses`) applied to that reward, with
one change each:

- `sigmoid`: −log σ(r⁺ − r⁻); with `label_smoothing` ε the conservative form (cDPO, Mitchell 2023);
- `ipo`: (h − 1/(2β))², h = log-ratio gap = (r⁺ − r⁻)/β (Azar et al. 2023, eq. 17), summed log-probs;
- `offset`: −log σ(r⁺ − r⁻ − Δ), Δ the data's per-pair `margin` column (ODPO, Amini et al. 2024);
- `aplot`: −log σ(r⁺ − r⁻ − m), m the OT margin of `engine.rm.ot_margin` over these rewards,
  detached (computed by the trainer, which knows the ranks);
- `simpo`: no reference; r = β·log π(y|x)/|y| and −log σ(r⁺ − r⁻ − γ) (Meng et al. 2024, eq. 6).

Shapes: every per-pair tensor is [n]; the log-probs are summed over each response's tokens.
"""

from __future__ import annotations

import torch

from engine import metrics as M
from engine.config import AplotSection, DPOSection
from engine.rm.losses import bt_loss, label_smoothing_loss
from engine.rm.ot_margin import aplot_margin, global_margin


def implicit_rewards(cfg: DPOSection, logp_c: torch.Tensor, logp_r: torch.Tensor, ref_c: torch.Tensor | None,
                     ref_r: torch.Tensor | None, len_c: torch.Tensor | None = None,
                     len_r: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(r⁺, r⁻) [n] each: β·(log π − log π_ref), or for SimPO β·log π / tokens (no reference)."""
    if cfg.type == "simpo":
        if len_c is None or len_r is None:
            raise ValueError("dpo.type = simpo needs each response's token count")
        return cfg.beta * logp_c / len_c.clamp(min=1).to(logp_c), cfg.beta * logp_r / len_r.clamp(min=1).to(logp_r)
    if ref_c is None or ref_r is None:
        raise ValueError(f"dpo.type = {cfg.type} needs the reference's log-probs")
    return cfg.beta * (logp_c - ref_c), cfg.beta * (logp_r - ref_r)


def dpo_loss(cfg: DPOSection, r_c: torch.Tensor, r_r: torch.Tensor, *, offset: torch.Tensor | None = None,
             aplot_margin: torch.Tensor | None = None) -> torch.Tensor:
    """The per-pair loss [n] of `cfg.type` on the implicit rewards r⁺, r⁻ [n] (from `implicit_rewards`).

    `offset` is the data's `margin` column (NaN where a row lacks it); `aplot_margin` the detached OT
    margin (zeros during `loss.aplot.warmup_steps`).
    """
    if r_c.dim() != 1 or r_c.shape != r_r.shape:
        raise ValueError(f"rewards must both have shape [n]; got {tuple(r_c.shape)} and {tuple(r_r.shape)}")
    kind = cfg.type
    if kind == "sigmoid":
        return label_smoothing_loss(r_c, r_r, cfg.label_smoothing)
    if kind == "ipo":
        gap = (r_c - r_r) / cfg.beta  # the log-ratio gap h; IPO regresses it onto 1/(2β)
        return (gap - 1.0 / (2.0 * cfg.beta)) ** 2
    if kind == "offset":
        if offset is None or bool(torch.isnan(offset).any()):
            raise ValueError("dpo.type = offset needs the data's `margin` column on every pair")
        return bt_loss(r_c, r_r, offset)
    if kind == "aplot":
        if aplot_margin is None:
            raise ValueError("dpo.type = aplot needs the OT margin (zeros during warm-up)")
        if aplot_margin.requires_grad:
            raise ValueError("the aplot margin must be detached: no gradient may flow through the OT margin")
        return bt_loss(r_c, r_r, aplot_margin)
    if kind == "simpo":
        return bt_loss(r_c, r_r, torch.full_like(r_c, cfg.simpo_gamma))
    raise ValueError(f"unknown dpo.type {kind!r}")


def ot_margin(cfg: AplotSection, step: int, r_c: torch.Tensor, r_r: torch.Tensor, e_c: torch.Tensor,
              e_r: torch.Tensor, accelerator=None) -> tuple[torch.Tensor, dict[str, float]]:
    """(APLOT margin [n], its stats) over the implicit rewards and the representations [n, d], with the
    RM's `[loss.aplot]` settings: the engine's OT margin itself, on detached rewards, over the batch of
    every rank when `ot_scope = "global"` (`accelerator` given, several ranks). Zeros before the warm-up
    ends: the implicit rewards start at 0 and say nothing about a pair's difficulty yet."""
    if step <= cfg.warmup_steps:
        return torch.zeros_like(r_c.detach()), {}
    args = (r_c.detach(), r_r.detach(), e_c.detach(), e_r.detach(), cfg)
    if cfg.ot_scope == "global" and accelerator is not None and accelerator.num_processes > 1:
        return global_margin(accelerator, *args)
    return aplot_margin(*args)


def weighted_mean(per_pair: torch.Tensor, weights: torch.Tensor | None = None,
                  penalty: torch.Tensor | None = None) -> torch.Tensor:
    """The scalar loss: the mean over pairs (weighted by `loss.length.balance`'s weights [n], mean 1),
    plus `loss.length.penalty`'s surrogate []."""
    loss = per_pair.mean() if weights is None else (weights.detach().to(per_pair.dtype) * per_pair).mean()
    return loss if penalty is None else loss + penalty.to(loss.dtype)


@torch.no_grad()
def dpo_stats(r_c: torch.Tensor, r_r: torch.Tensor, logp_c: torch.Tensor, logp_r: torch.Tensor) -> dict[str, float]:
    """TRL's DPO metrics of a batch: the implicit rewards, their accuracy (a tie is wrong) and margin,
    and the summed log-probs of each side (both falling together is DPO's known failure)."""
    return {M.REWARDS_CHOSEN: r_c.float().mean().item(), M.REWARDS_REJECTED: r_r.float().mean().item(),
            M.REWARDS_ACCURACIES: (r_c > r_r).float().mean().item(),
            M.REWARDS_MARGINS: (r_c - r_r).float().mean().item(),
            M.LOGPS_CHOSEN: logp_c.float().mean().item(), M.LOGPS_REJECTED: logp_r.float().mean().item()}
