"""The APLOT adaptive margin: an optimal-transport view of how hard each pair is.

For n pairs, chosen response i is transported to the rejected responses j under the cost
C = λ·S + (1−λ)·D, with S the semantic similarity of e⁺ᵢ and e⁻ⱼ and D how little the reward model
separates r⁺ᵢ from r⁻ⱼ. The margin mᵢ = γ·n·Σⱼ Pᵢⱼ Cᵢⱼ is chosen response i's expected transport
cost: pairs that sit among look-alike, barely-separated rejections get a larger margin in
−log σ(r⁺ − r⁻ − m). Everything here is computed without gradient; the margin is a constant target.

The plan is solved in float64 numpy on the CPU: batches are small (n ≤ a few hundred), and the
log-domain Sinkhorn stays a valid plan at tiny ε where POT's plain `sinkhorn` underflows
exp(−C/ε) to zero and silently returns an all-zero plan.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F

from engine import metrics as M
from engine.analysis.bias_checks import pearson
from engine.config import AplotSection


def semantic_cost(e_chosen: torch.Tensor, e_rejected: torch.Tensor) -> torch.Tensor:
    """Sᵢⱼ = (1 + cos(e⁺ᵢ, e⁻ⱼ)) / 2 ∈ [0, 1]: look-alike responses are hard to tell apart."""
    ec = F.normalize(e_chosen, dim=-1)  # [n, d]
    er = F.normalize(e_rejected, dim=-1)  # [n, d]
    return (1.0 + ec @ er.T) / 2.0  # [n, n]


def reward_cost(r_chosen: torch.Tensor, r_rejected: torch.Tensor, kind: str,
                temperature: float) -> torch.Tensor:
    """Dᵢⱼ = 1 − σ(|r⁺ᵢ − r⁻ⱼ|/τ) (abs, ≤ ½) or 1 − σ((r⁺ᵢ − r⁻ⱼ)/τ) (signed, > ½ when mis-ordered)."""
    delta = r_chosen[:, None] - r_rejected[None, :]  # [n, n]
    if kind == "abs":
        delta = delta.abs()
    elif kind != "signed":
        raise ValueError(f"unknown reward_cost {kind!r}; expected abs or signed")
    return torch.sigmoid(-delta / temperature)  # 1 − σ(x) = σ(−x), exact in the tail  [n, n]


def normalize_cost(x: torch.Tensor, mode: str) -> torch.Tensor:
    """Rescale one cost matrix to [0, 1] per batch so λ weighs terms of comparable spread.

    minmax: (x − min)/(max − min); a constant matrix carries no ranking information and becomes 0.
    rank: average ranks (ties share one) / (n² − 1); a constant matrix becomes ½ everywhere.
    """
    if mode == "none":
        return x
    if mode == "minmax":
        lo, hi = x.min(), x.max()
        span = hi - lo
        return (x - lo) / span if span > 0 else torch.zeros_like(x)
    if mode == "rank":
        if x.numel() < 2:
            return torch.zeros_like(x)
        from scipy.stats import rankdata  # like POT: only for an APLOT loss

        ranks = rankdata(x.cpu().numpy().ravel(), method="average") - 1.0  # 0 … n²−1
        return torch.from_numpy(ranks / (x.numel() - 1)).reshape(x.shape).to(x)
    raise ValueError(f"unknown normalize_costs {mode!r}; expected none, minmax or rank")


def transport_plan(cost: np.ndarray, solver: str, epsilon: float, max_iter: int) -> tuple[np.ndarray, int]:
    """P between uniform marginals (1/n each) for a float64 cost [n, n]; returns (P, iterations).

    Sinkhorn runs log-domain (`sinkhorn_log`); POT's log["niter"] is the last loop index, so the
    updates done are niter + 1. EMD (network simplex) reports no iteration count: 0.
    """
    import ot  # POT (and scipy.stats under it, ~0.5 s) loads only for an APLOT loss

    n = cost.shape[0]
    a = np.full(n, 1.0 / n)
    if solver == "emd":
        return ot.emd(a, a, cost), 0
    if solver != "sinkhorn":
        raise ValueError(f"unknown solver {solver!r}; expected sinkhorn or emd")
    with np.errstate(over="ignore"):  # POT also fills log["u"] = exp(log u), which may overflow; unused
        plan, log = ot.sinkhorn(a, a, cost, reg=epsilon, method="sinkhorn_log", numItermax=max_iter,
                                log=True, warn=False)  # hitting max_iter shows in ot/iterations instead
    return plan, int(log["niter"]) + 1


@torch.no_grad()
def aplot_margin(r_chosen: torch.Tensor, r_rejected: torch.Tensor, e_chosen: torch.Tensor,
                 e_rejected: torch.Tensor, cfg: AplotSection) -> tuple[torch.Tensor, dict[str, float]]:
    """The per-pair margin [n] (detached, on the rewards' device and dtype) and its logging stats.

    Shapes: rewards [n], representations [n, d]. Non-finite rewards or representations give a NaN
    margin (and NaN stats) rather than an exception, so the trainer's non-finite-loss path handles them.
    """
    n = r_chosen.shape[0]
    if r_chosen.dim() != 1 or r_rejected.shape != r_chosen.shape:
        raise ValueError(f"rewards must both have shape [n]; got {tuple(r_chosen.shape)} "
                         f"and {tuple(r_rejected.shape)}")
    if e_chosen.dim() != 2 or e_chosen.shape[0] != n or e_rejected.shape != e_chosen.shape:
        raise ValueError(f"representations must both have shape [{n}, d]; got {tuple(e_chosen.shape)} "
                         f"and {tuple(e_rejected.shape)}")
    if n == 0:
        raise ValueError("APLOT margin needs at least one pair")
    cpu = dict(device="cpu", dtype=torch.float64)
    rc, rr = r_chosen.detach().to(**cpu), r_rejected.detach().to(**cpu)  # [n], [n]
    ec, er = e_chosen.detach().to(**cpu), e_rejected.detach().to(**cpu)  # [n, d], [n, d]

    lam = cfg.semantic_weight
    sem = normalize_cost(semantic_cost(ec, er), cfg.normalize_costs)  # [n, n]
    rew = normalize_cost(reward_cost(rc, rr, cfg.reward_cost, cfg.reward_temperature),
                         cfg.normalize_costs)  # [n, n]
    cost = (lam * sem + (1.0 - lam) * rew).numpy()  # [n, n]

    if np.isfinite(cost).all():
        plan, iterations = transport_plan(cost, cfg.solver, cfg.epsilon, cfg.max_iter)  # [n, n]
    else:
        plan, iterations = np.full_like(cost, np.nan), 0
    row_cost = (plan * cost).sum(axis=1)  # Σⱼ Pᵢⱼ Cᵢⱼ  [n]
    margin = cfg.margin_scale * n * row_cost  # [n]
    if cfg.relative_margin:
        margin = margin - margin.mean()

    gap = (rc - rr).numpy()  # [n]
    with warnings.catch_warnings():  # NaN inputs would warn in the reductions; NaN is the answer
        warnings.simplefilter("ignore", RuntimeWarning)
        stats = {
            M.MARGIN_MEAN: float(margin.mean()),
            M.MARGIN_STD: float(margin.std()),
            M.MARGIN_MAX: float(margin.max()),
            M.OT_COST: float(row_cost.sum()),
            M.OT_ITERATIONS: float(iterations),
            M.MARGIN_GAP_CORR: pearson(margin, gap),
        }
    out = torch.from_numpy(margin).to(device=r_chosen.device, dtype=r_chosen.dtype)  # [n]
    return out, stats


def _pad_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    """Zero-pad dim 0 to `rows` so ranks with a short last batch can join the all-gather."""
    if x.shape[0] == rows:
        return x
    pad = x.new_zeros((rows - x.shape[0], *x.shape[1:]))
    return torch.cat([x, pad])


@torch.no_grad()
def global_margin(accelerator, r_chosen: torch.Tensor, r_rejected: torch.Tensor, e_chosen: torch.Tensor,
                  e_rejected: torch.Tensor, cfg: AplotSection) -> tuple[torch.Tensor, dict[str, float]]:
    """`ot_scope = "global"`: one OT problem over the pairs of all ranks; returns this rank's rows.

    Every rank gathers the same data and solves the same float64 CPU problem, so all ranks agree
    without a broadcast; the stats are those of the global batch (identical on every rank). Ranks
    may hold different numbers of pairs (a short last batch): sizes are gathered first, rows are
    zero-padded for the collective and the padding is dropped before solving. Rank k's slice starts
    after the pairs of ranks 0 … k−1.
    """
    if accelerator.num_processes == 1:
        return aplot_margin(r_chosen, r_rejected, e_chosen, e_rejected, cfg)
    n = r_chosen.shape[0]
    sizes = accelerator.gather(torch.tensor([n], device=r_chosen.device)).tolist()  # [world]
    width = max(sizes)
    keep = torch.cat([torch.arange(k * width, k * width + s) for k, s in enumerate(sizes)])  # [N]
    gathered = []
    for x in (r_chosen, r_rejected, e_chosen, e_rejected):
        full = accelerator.gather(_pad_rows(x.detach().contiguous(), width))  # [world·width, …]
        gathered.append(full[keep.to(full.device)])  # [N, …]
    margin, stats = aplot_margin(*gathered, cfg)  # [N]
    start = sum(sizes[: accelerator.process_index])
    return margin[start : start + n], stats  # [n]
