"""Reward-model losses: the Bradley-Terry family as pure functions over reward tensors.

Every loss takes the chosen and rejected rewards of n pairs, each of shape [n], and returns the
per-pair loss [n]; `rm_loss` is the one dispatcher the trainer calls. The APLOT margin itself is
computed in `engine.rm.ot_margin` (without gradient) and enters here as a constant per-pair margin.

The length-debiasing terms (`loss.length`) are global over ranks like the APLOT margin: each rank
sums what it holds, one all-reduce of detached sums makes them global, and the terms are built
from those sums (`length_terms`), so two simulated ranks in a test need no torch.distributed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from engine import metrics as M
from engine.config import LengthSection, LossSection

# a variance below this share of (1 + mean²) is float64 cancellation noise, not spread: ρ is then 0
VAR_FLOOR = 1e-12


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
            aplot_margin: torch.Tensor | None = None,
            pair_weights: torch.Tensor | None = None,
            length_penalty: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The configured loss: (scalar loss, per-pair loss [n] before weights, centering and penalty).

    `dataset_margin` is the data's `margin` column (NaN where a row lacks it); `aplot_margin` is the
    detached output of `engine.rm.ot_margin` (during APLOT warm-up the trainer passes zeros).
    `pair_weights` [n] (mean 1, from `balance_weights`) turn the mean over pairs into a weighted
    mean; `length_penalty` is the scalar surrogate of `penalty_surrogate`, added as it is.
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
    if pair_weights is None:
        loss = per_pair.mean()
    else:
        _check_margin("pair weights", pair_weights, n)
        loss = (pair_weights.detach().to(per_pair.dtype) * per_pair).mean()
    if loss_cfg.center_rewards > 0:
        loss = loss + centering_term(r_chosen, r_rejected, loss_cfg.center_rewards)
    if length_penalty is not None:
        loss = loss + length_penalty.to(loss.dtype)
    return loss, per_pair


# ---------------------------------------------------------------------------- length debiasing


def length_sums(rewards: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(n, Σr, Σr², Σl, Σl², Σrl) in float64 [6], differentiable in the rewards: sums add over
    ranks, so one all-reduce makes them global, and float64 keeps n·Σr² − (Σr)² from cancelling."""
    r = rewards.double()  # [2n]
    ell = lengths.to(device=r.device, dtype=torch.float64)  # [2n]
    count = torch.tensor(float(r.shape[0]), dtype=torch.float64, device=r.device)
    return torch.stack([count, r.sum(), (r * r).sum(), ell.sum(), (ell * ell).sum(), (r * ell).sum()])  # [6]


def _degenerate(mean: torch.Tensor, var: torch.Tensor) -> bool:
    return bool(var <= VAR_FLOOR * (1.0 + mean * mean))


def correlation_from_sums(sums: torch.Tensor) -> torch.Tensor:
    """Pearson ρ of rewards and lengths from `length_sums` (a scalar, differentiable in them).

    With no spread in the lengths or in the rewards there is no correlation to remove: exactly 0
    (still attached to the graph, with zero gradient), never 0/0. NaN sums stay NaN, so a
    non-finite reward reaches the trainer's non-finite-loss path.
    """
    count, s_r, s_rr, s_l, s_ll, s_rl = sums.unbind()
    mean_r, mean_l = s_r / count, s_l / count
    var_r = s_rr / count - mean_r * mean_r  # population variances and covariance
    var_l = s_ll / count - mean_l * mean_l
    cov = s_rl / count - mean_r * mean_l
    if _degenerate(mean_r.detach(), var_r.detach()) or _degenerate(mean_l.detach(), var_l.detach()):
        return (sums * 0.0).sum()
    return cov / torch.sqrt(var_r * var_l)


def global_sums_with_grad(local: torch.Tensor, global_detached: torch.Tensor) -> torch.Tensor:
    """The global sums' value, with gradient flowing only into this rank's own share of them."""
    return global_detached - local.detach() + local


def penalty_surrogate(local: torch.Tensor, global_detached: torch.Tensor, coef: float,
                      world: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(surrogate [], ρ [] detached): the surrogate's value is the global λρ², its gradient W times
    this rank's share of ∂(λρ²)/∂r, because DDP averages the W ranks' gradients; their mean is
    then exactly the gradient of the global λρ²."""
    rho = correlation_from_sums(global_sums_with_grad(local, global_detached))  # []
    penalty = coef * rho * rho  # []
    surrogate = penalty.detach() + world * (penalty - penalty.detach())  # value λρ², gradient W·∂
    return surrogate, rho.detach()


def balance_counts(len_chosen: torch.Tensor, len_rejected: torch.Tensor) -> torch.Tensor:
    """(#chosen longer, #chosen shorter, #tied) in float64 [3]: counts add over ranks."""
    diff = len_chosen - len_rejected  # [n]
    return torch.stack([(diff > 0).sum(), (diff < 0).sum(), (diff == 0).sum()]).to(torch.float64)  # [3]


def group_weights(counts: torch.Tensor) -> tuple[float, float]:
    """(w_longer, w_shorter): each group carries half the untied pairs' weight, ties keep 1, so the
    mean weight over the batch is 1. With one group empty there is nothing to balance: 1 and 1."""
    longer, shorter, _ = (float(c) for c in counts)
    if longer == 0 or shorter == 0:
        return 1.0, 1.0
    half = (longer + shorter) / 2.0
    return half / longer, half / shorter


def balance_weights(len_chosen: torch.Tensor, len_rejected: torch.Tensor,
                    counts: torch.Tensor) -> torch.Tensor:
    """Per-pair weights [n] from the (global) group counts: chosen longer, chosen shorter, tied."""
    w_longer, w_shorter = group_weights(counts)
    diff = len_chosen - len_rejected  # [n]
    weights = torch.ones(diff.shape, dtype=torch.float64, device=diff.device)  # ties keep weight 1
    weights[diff > 0] = w_longer
    weights[diff < 0] = w_shorter
    return weights  # [n]


def length_terms(cfg: LengthSection, r_chosen: torch.Tensor, r_rejected: torch.Tensor,
                 lengths: torch.Tensor, reduce_sum=None, world: int = 1
                 ) -> tuple[torch.Tensor | None, torch.Tensor | None, dict[str, float]]:
    """(penalty surrogate or None, pair weights [n] or None, logging stats) for one micro-batch.

    `lengths` [2n] are the response token counts, chosen then rejected (the batch's `lengths`).
    `reduce_sum` sums a detached tensor over the ranks (None: this rank alone, world 1); every
    global quantity goes through one call of it, so each micro-batch costs one all-reduce.
    """
    if cfg.penalty == 0 and not cfg.balance:
        return None, None, {}
    n = _check_pair_shapes(r_chosen, r_rejected)
    if tuple(lengths.shape) != (2 * n,):
        raise ValueError(f"lengths must have shape [{2 * n}] (chosen then rejected), got {tuple(lengths.shape)}")
    lengths = lengths.to(r_chosen.device)
    len_c, len_r = lengths[:n], lengths[n:]  # [n], [n]
    local_sums = length_sums(torch.cat([r_chosen, r_rejected]), lengths)  # [6]
    local_counts = balance_counts(len_c, len_r)  # [3]
    local = torch.cat([local_sums.detach(), local_counts])  # [9]
    total = local if reduce_sum is None else reduce_sum(local)  # [9], the same on every rank
    global_sums, global_counts = total[:6], total[6:]

    surrogate, rho = penalty_surrogate(local_sums, global_sums, cfg.penalty, world)
    stats = {M.LENGTH_CORR: float(rho)}
    if cfg.penalty > 0:
        stats[M.LENGTH_PENALTY] = float(surrogate.detach())
    weights = None
    if cfg.balance:
        weights = balance_weights(len_c, len_r, global_counts)  # [n]
        stats[M.LENGTH_LONGER_WEIGHT] = group_weights(global_counts)[0]
        stats[M.LENGTH_LONGER_SHARE] = float(global_counts[0] / global_counts.sum())
    return (surrogate if cfg.penalty > 0 else None), weights, stats


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
