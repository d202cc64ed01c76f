"""DPO's losses on a two-pair batch computed by hand, the log 2 limit, and the APLOT margin's provenance."""

from __future__ import annotations

import math

import pytest
import torch

from engine import metrics as M
from engine.config import AplotSection, DPOSection
from engine.dpo.losses import dpo_loss, dpo_stats, implicit_rewards, ot_margin, weighted_mean
from engine.rm.ot_margin import aplot_margin


def nll(x: float) -> float:
    """−log σ(x), written out by hand."""
    return math.log1p(math.exp(-x))


def t(*xs: float) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float64)


# two pairs: policy and reference log-probs of each response, β = 0.5
LOGP_C, LOGP_R = t(-2.0, -5.0), t(-3.0, -4.0)
REF_C, REF_R = t(-2.5, -4.0), t(-2.5, -4.5)
# r⁺ = 0.5·(0.5, −1.0) = (0.25, −0.5); r⁻ = 0.5·(−0.5, 0.5) = (−0.25, 0.25); r⁺ − r⁻ = (0.5, −0.75)


def rewards(cfg: DPOSection):
    return implicit_rewards(cfg, LOGP_C, LOGP_R, REF_C, REF_R)


def test_implicit_rewards_are_beta_times_the_log_ratio():
    r_c, r_r = rewards(DPOSection(beta=0.5))
    assert r_c.tolist() == pytest.approx([0.25, -0.5]) and r_r.tolist() == pytest.approx([-0.25, 0.25])


def test_sigmoid_is_dpo():
    cfg = DPOSection(type="sigmoid", beta=0.5)
    assert dpo_loss(cfg, *rewards(cfg)).tolist() == pytest.approx([nll(0.5), nll(-0.75)])
    assert nll(0.5) == pytest.approx(0.4740770, abs=1e-7)


def test_label_smoothing_is_cdpo():
    cfg = DPOSection(type="sigmoid", beta=0.5, label_smoothing=0.2)
    want = [0.8 * nll(0.5) + 0.2 * nll(-0.5), 0.8 * nll(-0.75) + 0.2 * nll(0.75)]
    assert dpo_loss(cfg, *rewards(cfg)).tolist() == pytest.approx(want)


def test_ipo_regresses_the_log_ratio_gap_onto_one_over_two_beta():
    cfg = DPOSection(type="ipo", beta=0.5)
    # log-ratio gaps h = (1.0, −1.5), target 1/(2·0.5) = 1: (1 − 1)², (−1.5 − 1)²
    assert dpo_loss(cfg, *rewards(cfg)).tolist() == pytest.approx([0.0, 6.25])


def test_offset_subtracts_the_data_margin():
    cfg = DPOSection(type="offset", beta=0.5)
    got = dpo_loss(cfg, *rewards(cfg), offset=t(0.25, -0.25))
    assert got.tolist() == pytest.approx([nll(0.25), nll(-0.5)])
    with pytest.raises(ValueError, match="margin"):
        dpo_loss(cfg, *rewards(cfg), offset=t(0.25, math.nan))


def test_aplot_subtracts_a_detached_margin():
    cfg = DPOSection(type="aplot", beta=0.5)
    got = dpo_loss(cfg, *rewards(cfg), aplot_margin=t(0.1, 0.3))
    assert got.tolist() == pytest.approx([nll(0.4), nll(-1.05)])
    with pytest.raises(ValueError, match="detached"):
        dpo_loss(cfg, *rewards(cfg), aplot_margin=t(0.1, 0.3).requires_grad_())


def test_simpo_is_length_normalised_and_reference_free():
    cfg = DPOSection(type="simpo", beta=0.5, simpo_gamma=0.5)
    len_c, len_r = torch.tensor([4, 5]), torch.tensor([2, 8])
    # mean log-probs: chosen (−0.5, −1.0), rejected (−1.5, −0.5); r = 0.5 × them; gaps (0.5, −0.25), minus γ
    r_c, r_r = implicit_rewards(cfg, LOGP_C, LOGP_R, None, None, len_c, len_r)
    assert r_c.tolist() == pytest.approx([-0.25, -0.5]) and r_r.tolist() == pytest.approx([-0.75, -0.25])
    assert dpo_loss(cfg, r_c, r_r).tolist() == pytest.approx([math.log(2.0), nll(-0.75)])


@pytest.mark.parametrize("cfg", [DPOSection(type="sigmoid"), DPOSection(type="sigmoid", label_smoothing=0.3),
                                 DPOSection(type="offset"), DPOSection(type="aplot"),
                                 DPOSection(type="simpo", simpo_gamma=0.0)], ids=lambda c: c.type)
def test_beta_to_zero_with_equal_logps_gives_log_two(cfg):
    cfg.beta = 1e-8
    logp = t(-3.0, -7.0)
    r_c, r_r = implicit_rewards(cfg, logp, logp.clone(), t(-1.0, -9.0), t(-1.0, -9.0), torch.tensor([3, 2]),
                                torch.tensor([3, 2]))
    got = dpo_loss(cfg, r_c, r_r, offset=t(0.0, 0.0), aplot_margin=t(0.0, 0.0))
    assert got.tolist() == pytest.approx([math.log(2.0)] * 2, abs=1e-7)


def test_the_aplot_margin_is_the_engines_ot_margin_detached():
    logp_c = LOGP_C.clone().requires_grad_()
    r_c, r_r = implicit_rewards(DPOSection(beta=0.5), logp_c, LOGP_R, REF_C, REF_R)
    e_c, e_r = t(1.0, 0.0, 0.5, 2.0).view(2, 2), t(0.0, 1.0, 1.0, 1.0).view(2, 2)
    cfg = AplotSection(semantic_weight=0.3, epsilon=0.05)
    margin, stats = ot_margin(cfg, 1, r_c, r_r, e_c, e_r)
    want, want_stats = aplot_margin(r_c.detach(), r_r.detach(), e_c, e_r, cfg)
    assert not margin.requires_grad and r_c.requires_grad
    assert torch.equal(margin, want) and stats == want_stats and float(margin.abs().sum()) > 0
    loss = dpo_loss(DPOSection(type="aplot", beta=0.5), r_c, r_r, aplot_margin=margin).mean()
    loss.backward()  # the gradient reaches the policy's log-probs through r⁺ only, never through m
    delta = (r_c - r_r - margin).detach()
    assert logp_c.grad.tolist() == pytest.approx((-0.5 * torch.sigmoid(-delta) / 2).tolist())
    warm, _ = ot_margin(AplotSection(warmup_steps=3), 3, r_c, r_r, e_c, e_r)
    assert warm.tolist() == [0.0, 0.0]


def test_weights_and_penalty_and_stats():
    per_pair = t(1.0, 3.0)
    assert float(weighted_mean(per_pair)) == 2.0
    assert float(weighted_mean(per_pair, t(1.5, 0.5), torch.tensor(0.25))) == pytest.approx((1.5 + 1.5) / 2 + 0.25)
    stats = dpo_stats(*rewards(DPOSection(beta=0.5)), LOGP_C, LOGP_R)
    assert stats[M.REWARDS_ACCURACIES] == 0.5 and stats[M.REWARDS_MARGINS] == pytest.approx((0.5 - 0.75) / 2)
    assert stats[M.LOGPS_CHOSEN] == -3.5 and stats[M.LOGPS_REJECTED] == -3.5
    assert stats[M.REWARDS_CHOSEN] == pytest.approx(-0.125) and stats[M.REWARDS_REJECTED] == 0.0
