"""PPO maths as pure functions over tensors: GAE, the KL-penalised reward, the clipped losses, KL control.

The conventions are TRL's PPO trainer (v0.11+), so the logged numbers read the same:
every per-token tensor is [B, T] over the *response* tokens, with `mask` 1 on real tokens (up to
and including EOS) and 0 on the padded tail; masked positions never contribute to a mean.
"""

from __future__ import annotations

import math

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1.0)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    if unbiased:
        n = mask.sum()
        var = var * n / (n - 1).clamp(min=1.0)  # Bessel's correction, as TRL
    return var


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """(x − mean) / std over the real tokens; `shift_mean=False` keeps the mean (TRL, for rewards)."""
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        out = out + mean
    return out * mask.to(x.dtype)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Exact entropy of each softmax distribution: logsumexp(z) − Σ p·z.  [..., V] → [...]"""
    p = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (p * logits).sum(-1)


def logprobs_from_logits(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log p(token) under each position's distribution.  [B, T, V], [B, T] → [B, T]"""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def per_token_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """The k1 estimator of KL(π‖π_ref) per sampled token: log π − log π_ref (TRL's `kl`).  [B, T]

    Unbiased for the sequence KL when the tokens were sampled from π; single tokens may be negative.
    """
    return logprobs - ref_logprobs


def kl_penalised_rewards(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor,
                         beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards −β·kl, with the sequence score added at the last real token (Ziegler et al.
    2019, eq. 2).  scores [B], kl [B, T], mask [B, T] → (rewards [B, T], non_score_reward [B, T])."""
    mask = mask.to(kl.dtype)
    non_score = -beta * kl * mask  # [B, T]
    last = (mask.sum(1).long() - 1).clamp(min=0)  # [B] index of the last real token
    rewards = non_score.clone()
    rows = torch.arange(kl.shape[0], device=kl.device)
    rewards[rows, last] += scores.to(kl.dtype) * (mask.sum(1) > 0).to(kl.dtype)
    return rewards, non_score


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016, eq. 16) over the response tokens.

    δ_t = r_t + γ·V_{t+1} − V_t and A_t = δ_t + γλ·A_{t+1}. Rewards and values of the padded tail
    are zeroed first, so the value after the last real token is 0 (the episode ends at EOS or at
    the token limit) and the tail adds nothing. Returns are A + V, the value target.
    rewards, values, mask [B, T] → (advantages [B, T], returns [B, T]), both 0 on the tail.
    """
    mask = mask.to(values.dtype)
    rewards, values = rewards * mask, values * mask
    T = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])  # [B]
    for t in reversed(range(T)):
        next_value = values[:, t + 1] if t + 1 < T else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * last
        advantages[:, t] = last
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


# --- critic-free advantages: k samples of each prompt are a group, and the group is the baseline ---------
# The rollout holds G prompts × k samples, a prompt's k samples consecutive: scores [G·k] view as [G, k].


def _groups(scores: torch.Tensor, k: int) -> torch.Tensor:
    if scores.dim() != 1 or k < 2 or scores.shape[0] % k:
        raise ValueError(f"group advantages need scores of shape [G·k] with k ≥ 2; got {tuple(scores.shape)}, k={k}")
    return scores.view(-1, k)  # [G, k]


def grpo_advantages(scores: torch.Tensor, k: int, eps: float = 1e-4) -> torch.Tensor:
    """GRPO (Shao et al. 2024, §4.1.2): A_i = (s_i − mean(group)) / (std(group) + eps), one number per
    sample, the same for each of its tokens. std is the sample standard deviation (k − 1), as TRL's
    GRPO trainer computes it; a group whose samples all score the same teaches nothing: A = 0.
    scores [G·k] → advantages [G·k]"""
    g = _groups(scores, k)
    return ((g - g.mean(1, keepdim=True)) / (g.std(1, keepdim=True) + eps)).reshape(-1)


def rloo_advantages(scores: torch.Tensor, k: int) -> torch.Tensor:
    """RLOO (Ahmadian et al. 2024, eq. 6): A_i = s_i − mean of the other k − 1 samples of its prompt,
    an unbiased baseline (it does not depend on s_i). Not normalised. scores [G·k] → [G·k]"""
    g = _groups(scores, k)
    baseline = (g.sum(1, keepdim=True) - g) / (k - 1)  # [G, k] leave-one-out mean
    return (g - baseline).reshape(-1)


def k3_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Schulman's k3 estimator of KL(π‖π_ref) per sampled token: e^(log π_ref − log π) − (log π_ref − log π) − 1.
    Unbiased, never negative, and differentiable in log π: GRPO's KL *loss term* (β times its masked
    mean is added to the policy loss), where PPO and RLOO put the KL into the reward instead.  [B, T]"""
    d = ref_logprobs - logprobs
    return torch.exp(d) - d - 1.0


def policy_loss(new_logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor,
                clip: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate (Schulman et al. 2017, eq. 7), as a loss to minimise.

    Returns (loss, clipfrac, approxkl): clipfrac is the share of tokens where the clipped term is
    the active one; approxkl = 0.5·mean((log π_new − log π_old)²) as TRL logs it.
    """
    diff = new_logp - old_logp  # [B, T]
    ratio = torch.exp(diff)
    loss_unclipped = -adv * ratio
    loss_clipped = -adv * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    loss = masked_mean(torch.max(loss_unclipped, loss_clipped), mask)
    clipfrac = masked_mean((loss_clipped > loss_unclipped).to(diff.dtype), mask)
    approxkl = 0.5 * masked_mean(diff.detach() ** 2, mask)
    return loss, clipfrac.detach(), approxkl


def value_loss(new_v: torch.Tensor, old_v: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped value loss: 0.5·mean(max((V − R)², (clip(V, V_old ± c) − R)²)), and its clip fraction."""
    v_clipped = old_v + torch.clamp(new_v - old_v, -clip, clip)
    loss_unclipped = (new_v - returns) ** 2
    loss_clipped = (v_clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.max(loss_unclipped, loss_clipped), mask)
    clipfrac = masked_mean((loss_clipped > loss_unclipped).to(new_v.dtype), mask)
    return loss, clipfrac.detach()


class FixedKLController:
    """β stays at its initial value."""

    def __init__(self, kl_coef: float):
        self.value = kl_coef

    def update(self, current_kl: float, n_steps: int) -> None:
        pass

    def state_dict(self) -> dict:
        return {"value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.value = float(state["value"])


class AdaptiveKLController(FixedKLController):
    """Ziegler et al. 2019, §2.2: β ← β·(1 + K·e), e = clip(KL/KL_target − 1, ±0.2), K = n_steps/horizon.

    `current_kl` is the mean sequence KL of the last rollout; `n_steps` the samples it held.
    """

    def __init__(self, kl_coef: float, target: float, horizon: int):
        super().__init__(kl_coef)
        self.target, self.horizon = target, horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon


def kl_controller(kl_coef: float, kl_target: float, kl_horizon: int) -> FixedKLController:
    """Adaptive when a target is set (`ppo.kl_target > 0`), else fixed."""
    if kl_target > 0:
        return AdaptiveKLController(kl_coef, kl_target, kl_horizon)
    return FixedKLController(kl_coef)


def win_rate(outcomes: list[float]) -> tuple[float, float, int]:
    """(rate, standard error, n) of outcomes in {1, 0.5, 0} (a tie counts half).

    The standard error is the sample standard deviation (n − 1 denominator) over √n; it is NaN
    when n < 2 (undefined), and NaN is written as null in the metrics stream.
    """
    n = len(outcomes)
    if n == 0:
        return math.nan, math.nan, 0
    rate = sum(outcomes) / n
    if n < 2:
        return rate, math.nan, n
    var = sum((o - rate) ** 2 for o in outcomes) / (n - 1)
    return rate, math.sqrt(var / n), n
