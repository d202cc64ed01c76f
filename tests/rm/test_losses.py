"""The Bradley-Terry family on hand-computed numbers."""

from __future__ import annotations

import math

import pytest
import torch

from engine import metrics as M
from engine.config import LossSection
from engine.rm.losses import bt_loss, centering_term, label_smoothing_loss, pair_stats, rm_loss


def nll(x: float) -> float:
    """−log σ(x), written out by hand."""
    return math.log1p(math.exp(-x))


def t(*xs: float) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float64)


def test_bt_loss_values():
    got = bt_loss(t(1.0, 0.0, -2.0), t(0.0, 0.0, 1.0))
    assert got.tolist() == pytest.approx([nll(1.0), math.log(2.0), nll(-3.0)])
    assert got[0].item() == pytest.approx(0.3132617, abs=1e-7)


def test_bt_loss_with_margin_subtracts_it():
    got = bt_loss(t(1.0, 1.0), t(0.0, 0.0), margin=t(0.5, -1.0))
    assert got.tolist() == pytest.approx([nll(0.5), nll(2.0)])
    assert got[0].item() == pytest.approx(0.4740770, abs=1e-7)


def test_bt_loss_is_finite_for_huge_gaps():
    got = bt_loss(t(-500.0, 500.0), t(500.0, -500.0))
    assert got.tolist() == pytest.approx([1000.0, 0.0])


def test_label_smoothing_values():
    got = label_smoothing_loss(t(2.0, 0.0), t(0.0, 0.0), eps=0.1)
    assert got[0].item() == pytest.approx(0.9 * nll(2.0) + 0.1 * nll(-2.0))
    assert got[0].item() == pytest.approx(0.3269280, abs=1e-7)
    assert got[1].item() == pytest.approx(math.log(2.0))  # Δ = 0: both terms log 2
    assert label_smoothing_loss(t(2.0), t(0.0), eps=0.0).item() == pytest.approx(nll(2.0))


def test_centering_term():
    assert centering_term(t(1.0, 2.0), t(-1.0, 0.0), coef=0.5).item() == pytest.approx(0.5 * (0 + 4) / 2)


def cfg(kind: str, **kw) -> LossSection:
    return LossSection(type=kind, **kw)


def test_rm_loss_dispatch_and_centering():
    rc, rr = t(1.0, 2.0), t(-1.0, 0.0)
    loss, per = rm_loss(cfg("bt"), rc, rr)
    assert per.tolist() == pytest.approx([nll(2.0), nll(2.0)])
    assert loss.item() == pytest.approx(nll(2.0))
    loss, _ = rm_loss(cfg("bt", center_rewards=0.5), rc, rr)
    assert loss.item() == pytest.approx(nll(2.0) + 1.0)
    loss, per = rm_loss(cfg("bt_margin"), rc, rr, dataset_margin=t(1.0, 3.0))
    assert per.tolist() == pytest.approx([nll(1.0), nll(-1.0)])
    loss, per = rm_loss(cfg("label_smoothing", label_smoothing=0.2), rc, rr)
    assert per[0].item() == pytest.approx(0.8 * nll(2.0) + 0.2 * nll(-2.0))
    loss, per = rm_loss(cfg("aplot"), rc, rr, aplot_margin=t(0.5, 0.0))
    assert per.tolist() == pytest.approx([nll(1.5), nll(2.0)])


def test_bt_margin_missing_values_raise():
    with pytest.raises(ValueError, match="1 of 2 pairs"):
        rm_loss(cfg("bt_margin"), t(1.0, 2.0), t(0.0, 0.0), dataset_margin=t(1.0, math.nan))
    with pytest.raises(ValueError, match="margin"):
        rm_loss(cfg("bt_margin"), t(1.0, 2.0), t(0.0, 0.0))


def test_shape_mismatches_raise():
    with pytest.raises(ValueError, match="shape"):
        rm_loss(cfg("bt"), t(1.0, 2.0), t(0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="shape"):
        rm_loss(cfg("bt"), torch.zeros(2, 1), torch.zeros(2, 1))
    with pytest.raises(ValueError, match="shape"):
        rm_loss(cfg("bt_margin"), t(1.0, 2.0), t(0.0, 0.0), dataset_margin=t(1.0))
    with pytest.raises(ValueError, match="shape"):
        rm_loss(cfg("aplot"), t(1.0, 2.0), t(0.0, 0.0), aplot_margin=t(1.0, 2.0, 3.0))


def test_aplot_needs_a_detached_margin():
    with pytest.raises(ValueError, match="detached"):
        rm_loss(cfg("aplot"), t(1.0), t(0.0), aplot_margin=t(0.5).requires_grad_())
    with pytest.raises(ValueError, match="aplot_margin"):
        rm_loss(cfg("aplot"), t(1.0), t(0.0))


def test_gradient_of_bt():
    rc = t(1.0, 0.0).requires_grad_()
    rr = t(0.0, 0.0).requires_grad_()
    loss, _ = rm_loss(cfg("bt"), rc, rr)
    loss.backward()
    # d/dr⁺ of mean −log σ(Δ) is −(1 − σ(Δ))/n
    sig1 = 1 / (1 + math.exp(-1.0))
    assert rc.grad.tolist() == pytest.approx([-(1 - sig1) / 2, -0.5 / 2])
    assert rr.grad.tolist() == pytest.approx([(1 - sig1) / 2, 0.5 / 2])


def test_pair_stats_counts_ties_as_wrong():
    stats = pair_stats(t(1.0, 0.0, 2.0), t(0.0, 0.0, 3.0))
    assert stats == pytest.approx({M.ACCURACY: 1 / 3, M.REWARD_GAP: 0.0, M.CHOSEN_REWARD: 1.0,
                                   M.REJECTED_REWARD: 1.0, M.MIN_REWARD: 0.0, M.MAX_REWARD: 3.0})
    assert all(isinstance(v, float) for v in stats.values())
