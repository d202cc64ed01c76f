"""Several reward models as one proxy, and how much they disagree (`[ppo.ensemble]`).

Coste et al. (ICLR 2024, "Reward Model Ensembles Help Mitigate Overoptimization") optimise one of three
objectives over K members' rewards r_k (their eq. 1–3): the mean, the worst case (WCO: min_k r_k) or the
uncertainty-weighted one (UWO: mean − λ·Var_k r_k). The variance here is the population variance over
members (divided by K, not K − 1), so one member has none and K = 1 is the single RM exactly, under every
aggregation. Members disagree in distribution little and more once the policy moves into their error
regions (Eisenstein et al. 2023), so their spread is logged as a gold-free signal beside the proxy.

Every member is loaded once per rank and scores its own tokenisation of the texts (`policy.score` goes
through text), all of them in one batched pass per member (64 texts a forward, so a best-of-256 curve
does not hold every sample's activations at once); nothing is reloaded per step.
"""

from __future__ import annotations

from pathlib import Path

import torch

from engine import metrics as M
from engine.models import load_reward_model
from engine.rl import policy as P

AGGREGATES = ("mean", "worst", "uwo")


def aggregate(scores: torch.Tensor, how: str, uwo_lambda: float = 0.0) -> torch.Tensor:
    """The proxy reward of each sample from its members' rewards.  scores [K, B] → [B]"""
    if scores.shape[1] == 0:  # a rank that holds no prompt (uneven eval shares): min over nothing would raise
        return scores.sum(0)
    if how == "mean":
        return scores.mean(0)
    if how == "worst":
        return scores.min(0).values  # ties: the tied value, whichever member holds it
    if how == "uwo":
        return scores.mean(0) - uwo_lambda * scores.var(0, correction=0)
    raise ValueError(f"ensemble aggregate: one of {', '.join(AGGREGATES)}, got {how!r}")


def sign_disagreement(scores: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per sample, whether the members disagree on which side of the reference's sample it lies: the signs
    of r_k(sample) − r_k(reference) are not all the same (a tie, sign 0, is a side of its own).
    scores, reference [K, B] → [B] bool"""
    signs = torch.sign(scores - reference)  # [K, B]
    return (signs != signs[:1]).any(0)


def disagreement(scores: torch.Tensor, lengths: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    """The members' mean reward, their spread (population std over members, averaged over samples), that
    spread per token of the response, and the share of samples whose side of the reference's sample the
    members dispute.  scores, reference [K, B], lengths [B] (tokens; 0 counts as 1)"""
    std = scores.std(0, correction=0)  # [B]
    return {M.ENSEMBLE_MEAN: scores.mean().item(), M.ENSEMBLE_STD: std.mean().item(),
            M.ENSEMBLE_STD_PER_LENGTH: (std / lengths.float().clamp(min=1)).mean().item(),
            M.ENSEMBLE_SIGN_DISAGREE: sign_disagreement(scores, reference).float().mean().item()}


def rm_max_length(tok) -> int:
    return int(min(tok.model_max_length, 4096))


class Ensemble:
    """K reward models (with their own tokenizers) scoring (prompt, response) texts as one proxy."""

    def __init__(self, members: list[tuple[torch.nn.Module, object]], how: str = "mean", uwo_lambda: float = 0.0,
                 device=None):
        if not members:
            raise ValueError("an ensemble needs at least one reward model")
        self.members, self.how, self.uwo_lambda, self.device = members, how, uwo_lambda, device

    @classmethod
    def load(cls, folders: list[Path], device, how: str = "mean", uwo_lambda: float = 0.0) -> Ensemble:
        return cls([load_reward_model(folder, device) for folder in folders], how, uwo_lambda, device)

    def __len__(self) -> int:
        return len(self.members)

    def member_scores(self, prompts: list[str], texts: list[str]) -> torch.Tensor:
        """Every member's reward of every text, one batched pass per member.  → [K, B]"""
        return torch.stack([P.score(rm, tok, prompts, texts, rm_max_length(tok), self.device).to(self.device)
                            for rm, tok in self.members])

    def score(self, prompts: list[str], texts: list[str]) -> torch.Tensor:
        """The aggregated proxy reward of each text.  → [B]"""
        return aggregate(self.member_scores(prompts, texts), self.how, self.uwo_lambda)
