"""loss.length: the reward–length correlation penalty and length-balanced pair weights, on
hand-computed numbers, on two simulated ranks, and in real runs (1 rank with resume, 2 gloo ranks)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from _cli import aplot
from conftest import TINY_RM

from engine import metrics as M
from engine.config import LengthSection, LossSection
from engine.rm.losses import (
    balance_counts,
    balance_weights,
    correlation_from_sums,
    group_weights,
    length_sums,
    length_terms,
    penalty_surrogate,
    rm_loss,
)
from engine.runs import store as mf


def t(*xs: float, grad: bool = False) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float64, requires_grad=grad)


def nll(x: float) -> float:
    """−log σ(x), written out by hand."""
    return math.log1p(math.exp(-x))


# The hand batch: r⁺ = (1, 3), r⁻ = (0, 0); chosen lengths (2, 4), rejected (4, 2).
# Pooled: r = (1, 3, 0, 0), mean 1, r − 1 = (0, 2, −1, −1); l = (2, 4, 4, 2), mean 3, l − 3 = (−1, 1, 1, −1).
# Σ(r−r̄)(l−l̄) = 0 + 2 − 1 + 1 = 2, Σ(r−r̄)² = 6, Σ(l−l̄)² = 4: ρ = 2/√24 = 1/√6, ρ² = 1/6.
RC, RR = (1.0, 3.0), (0.0, 0.0)
LENGTHS = (2, 4, 4, 2)
RHO = 1 / math.sqrt(6)


def lengths(*xs: int) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.long)


def rho_of(rewards: torch.Tensor, lens: torch.Tensor) -> float:
    return float(correlation_from_sums(length_sums(rewards, lens)))


# ---------------------------------------------------------------------------- the penalty by hand


def test_correlation_and_penalty_by_hand():
    sums = length_sums(t(*RC, *RR), lengths(*LENGTHS))
    assert sums.tolist() == [4.0, 4.0, 10.0, 12.0, 40.0, 14.0]  # n, Σr, Σr², Σl, Σl², Σrl
    assert float(correlation_from_sums(sums)) == pytest.approx(RHO, abs=1e-12)
    assert RHO == pytest.approx(0.4082483, abs=1e-7)
    surrogate, rho = penalty_surrogate(sums, sums.detach(), coef=0.3, world=1)
    assert float(surrogate) == pytest.approx(0.3 / 6)  # λρ² = 0.05
    assert float(rho) == pytest.approx(RHO)


@pytest.mark.parametrize("rewards,lens", [
    ((1.0, 3.0, 0.0, 0.0), (5, 5, 5, 5)),  # every response as long: no length to learn
    ((2.0, 2.0, 2.0, 2.0), (2, 4, 4, 2)),  # every reward equal: nothing correlates
    ((1e6, 1e6, 1e6, 1e6), (2, 4, 4, 2)),  # equal and large: cancellation noise is not spread
])
def test_zero_variance_gives_zero_and_no_nan(rewards, lens):
    r = t(*rewards, grad=True)
    local = length_sums(r, lengths(*lens))
    surrogate, rho = penalty_surrogate(local, local.detach(), coef=1.0, world=2)
    assert rho.item() == 0.0 and surrogate.item() == 0.0
    surrogate.backward()
    assert r.grad.tolist() == [0.0, 0.0, 0.0, 0.0]


def test_nan_rewards_give_a_nan_penalty_for_the_non_finite_path():
    local = length_sums(t(math.nan, 1.0, 0.0, 0.0), lengths(*LENGTHS))
    assert math.isnan(float(penalty_surrogate(local, local.detach(), coef=1.0, world=1)[0]))


def test_one_sgd_step_on_the_penalty_alone_shrinks_the_correlation():
    for sign in (1.0, -1.0):  # a positive and a negative correlation both move toward 0
        r = t(*(sign * x for x in (*RC, *RR)), grad=True)
        lens = lengths(*LENGTHS)
        before = rho_of(r.detach(), lens)
        local = length_sums(r, lens)
        penalty_surrogate(local, local.detach(), coef=1.0, world=1)[0].backward()
        after = rho_of(r.detach() - 0.1 * r.grad, lens)
        assert abs(after) < abs(before) == pytest.approx(RHO)


# ---------------------------------------------------------------------------- two simulated ranks


def test_two_ranks_give_the_single_rank_value_and_gradient():
    """A linear reward model r = Xθ; rank k holds half the pairs. Each rank's surrogate is built from
    the combined detached sums; DDP's gradient is the mean over ranks, which must equal the gradient
    of λρ² over the whole batch on one rank."""
    gen = torch.Generator().manual_seed(0)
    n, lam, world = 6, 0.7, 2
    x = torch.randn(2 * n, 3, generator=gen, dtype=torch.float64)  # [2n, 3]: chosen rows, then rejected
    lens = torch.randint(1, 40, (2 * n,), generator=gen)  # [2n]
    theta = torch.randn(3, generator=gen, dtype=torch.float64, requires_grad=True)

    full = length_sums(x @ theta, lens)
    single, rho = penalty_surrogate(full, full.detach(), lam, world=1)
    (grad_single,) = torch.autograd.grad(single, theta)
    assert 0.05 < abs(float(rho)) < 0.95  # a batch with something to remove

    halves = [torch.cat([torch.arange(k * 3, k * 3 + 3), n + torch.arange(k * 3, k * 3 + 3)]) for k in (0, 1)]
    locals_ = [length_sums(x[h] @ theta, lens[h]) for h in halves]
    total = sum(loc.detach() for loc in locals_)  # what the all-reduce returns on both ranks
    grads = []
    for loc in locals_:
        surrogate, rho_k = penalty_surrogate(loc, total, lam, world)
        assert surrogate.item() == pytest.approx(single.item(), abs=1e-12)  # the global λρ² on every rank
        assert float(rho_k) == pytest.approx(float(rho), abs=1e-12)
        grads.append(torch.autograd.grad(surrogate, theta)[0])
    ddp = sum(grads) / world  # DDP averages the ranks' gradients
    assert torch.allclose(ddp, grad_single, atol=1e-6, rtol=0)
    assert not torch.allclose(grads[0], grads[1], atol=1e-3)  # each rank really holds only its share


def test_length_terms_through_a_simulated_all_reduce_match_one_rank():
    """The whole `length_terms` path, rank by rank, with an all-reduce that adds the other rank's sums."""
    cfg = LengthSection(penalty=0.5, balance=True)
    rc, rr = t(1.0, 3.0, 0.5, 2.0), t(0.0, 0.0, 1.0, 1.5)
    lens = lengths(2, 4, 7, 3, 4, 2, 1, 3)  # chosen (2, 4, 7, 3), rejected (4, 2, 1, 3)
    one_pen, one_w, one_stats = length_terms(cfg, rc, rr, lens)
    halves = [[0, 1, 4, 5], [2, 3, 6, 7]]
    local = [torch.cat([length_sums(torch.cat([rc, rr])[h], lens[h]),
                        balance_counts(lens[h][:2], lens[h][2:])]) for h in halves]
    for k in (0, 1):
        pen, w, stats = length_terms(cfg, rc[2 * k : 2 * k + 2], rr[2 * k : 2 * k + 2], lens[halves[k]],
                                     reduce_sum=lambda mine, k=k: mine + local[1 - k], world=2)
        assert float(pen) == pytest.approx(float(one_pen), abs=1e-12)
        assert stats == pytest.approx(one_stats, abs=1e-12)
        assert w.tolist() == one_w[2 * k : 2 * k + 2].tolist()
    # 2 chosen longer (pairs 1, 2), 1 shorter (pair 0), 1 tie: w_longer = 1.5/2, w_shorter = 1.5/1
    assert one_w.tolist() == [1.5, 0.75, 0.75, 1.0]
    assert set(one_stats) == {M.LENGTH_CORR, M.LENGTH_PENALTY, M.LENGTH_LONGER_WEIGHT, M.LENGTH_LONGER_SHARE}
    assert one_stats[M.LENGTH_LONGER_WEIGHT] == 0.75 and one_stats[M.LENGTH_LONGER_SHARE] == 0.5


# ---------------------------------------------------------------------------- balance weights by hand


def test_balance_weights_by_hand():
    # pairs 0–2 chosen longer, pair 3 chosen shorter, pair 4 a tie
    len_c, len_r = lengths(9, 5, 3, 1, 4), lengths(2, 4, 1, 6, 4)
    counts = balance_counts(len_c, len_r)
    assert counts.tolist() == [3.0, 1.0, 1.0]
    # the untied 4 pairs carry weight 4, half per group: 3·w = 2 → w = 2/3; 1·w = 2 → w = 2; the tie keeps 1
    w = balance_weights(len_c, len_r, counts)
    assert w.tolist() == pytest.approx([2 / 3, 2 / 3, 2 / 3, 2.0, 1.0])
    assert float(w.mean()) == pytest.approx(1.0)
    assert float(w[:3].sum()) == pytest.approx(float(w[3]))


def test_balance_weights_with_an_empty_group_are_all_one():
    len_c, len_r = lengths(9, 5, 4), lengths(2, 4, 4)  # chosen longer twice, one tie, never shorter
    counts = balance_counts(len_c, len_r)
    assert counts.tolist() == [2.0, 0.0, 1.0]
    assert group_weights(counts) == (1.0, 1.0)
    assert balance_weights(len_c, len_r, counts).tolist() == [1.0, 1.0, 1.0]
    _, _, stats = length_terms(LengthSection(balance=True), t(1.0, 2.0, 3.0), t(0.0, 0.0, 0.0),
                               torch.cat([len_c, len_r]))
    assert stats[M.LENGTH_LONGER_WEIGHT] == 1.0 and stats[M.LENGTH_LONGER_SHARE] == pytest.approx(2 / 3)


# ---------------------------------------------------------------------------- composed in rm_loss


def test_off_by_default_changes_nothing():
    assert length_terms(LengthSection(), t(*RC), t(*RR), lengths(*LENGTHS)) == (None, None, {})


def test_bt_with_penalty_and_balance_by_hand():
    """The hand batch (one chosen-longer, one chosen-shorter pair: weights 1 and 1), λ = 0.3:
    loss = (nll(1) + nll(3)) / 2 + 0.3/6."""
    cfg = LossSection(type="bt", length=LengthSection(penalty=0.3, balance=True))
    rc, rr = t(*RC, grad=True), t(*RR, grad=True)
    pen, w, stats = length_terms(cfg.length, rc, rr, lengths(*LENGTHS))
    loss, per = rm_loss(cfg, rc, rr, pair_weights=w, length_penalty=pen)
    assert w.tolist() == [1.0, 1.0]
    assert loss.item() == pytest.approx((nll(1.0) + nll(3.0)) / 2 + 0.05)
    assert loss.item() == pytest.approx(0.2309245, abs=1e-7)
    assert per.tolist() == pytest.approx([nll(1.0), nll(3.0)])  # per-pair loss before weights and penalty
    assert stats[M.LENGTH_CORR] == pytest.approx(RHO) and stats[M.LENGTH_PENALTY] == pytest.approx(0.05)


def test_bt_with_uneven_balance_weights_by_hand():
    # chosen longer in pairs 0 and 1, shorter in pair 2: w = 3/4, 3/4, 3/2; gaps 0, 0, 2
    cfg = LossSection(type="bt", length=LengthSection(balance=True))
    rc, rr = t(1.0, 0.0, 2.0), t(1.0, 0.0, 0.0)
    pen, w, _ = length_terms(cfg.length, rc, rr, lengths(5, 5, 1, 1, 1, 5))
    assert pen is None and w.tolist() == [0.75, 0.75, 1.5]
    loss, _ = rm_loss(cfg, rc, rr, pair_weights=w)
    assert float(loss) == pytest.approx((0.75 * math.log(2) * 2 + 1.5 * nll(2.0)) / 3)


@pytest.mark.parametrize("kind,extra", [("label_smoothing", {}), ("aplot", {"aplot_margin": t(0.5, -0.25)}),
                                        ("bt_margin", {"dataset_margin": t(1.0, 0.0)})])
def test_weights_and_penalty_compose_with_every_loss(kind, extra):
    cfg = LossSection(type=kind, label_smoothing=0.2, center_rewards=0.1)
    rc, rr = t(*RC, grad=True), t(*RR, grad=True)
    w, pen = t(0.5, 1.5), t(0.05)
    plain, per = rm_loss(cfg, rc, rr, **extra)
    both, per2 = rm_loss(cfg, rc, rr, **extra, pair_weights=w, length_penalty=pen)
    centering = 0.1 * (1 + 9) / 2  # c·mean((r⁺ + r⁻)²)
    assert plain.item() == pytest.approx(per.mean().item() + centering)
    assert both.item() == pytest.approx((0.5 * per[0].item() + 1.5 * per[1].item()) / 2 + centering + 0.05)
    assert per2.tolist() == per.tolist()
    if kind == "label_smoothing":
        assert per[0].item() == pytest.approx(0.8 * nll(1.0) + 0.2 * nll(-1.0))
    both.backward()
    assert torch.isfinite(rc.grad).all()


def test_bad_lengths_shape_raises():
    with pytest.raises(ValueError, match="lengths"):
        length_terms(LengthSection(penalty=1.0), t(*RC), t(*RR), lengths(1, 2, 3))


# ---------------------------------------------------------------------------- real runs

LENGTH_ON = ["loss.length.penalty=1.0", "loss.length.balance=true", "loss.type=bt", "optim.scheduler=constant",
             "eval.every=0", "checkpoint.every=0", "-q"]
LENGTH_KEYS = (M.LENGTH_CORR, M.LENGTH_PENALTY, M.LENGTH_LONGER_WEIGHT, M.LENGTH_LONGER_SHARE)


def train_records(runs_dir) -> tuple[object, dict[int, dict]]:
    ((paths, _),) = mf.list_runs(runs_dir)
    return paths, {r.step: r.data for r in M.read_all(paths.metrics) if r.split == M.TRAIN}


def run_in(store: Path, *args) -> tuple[object, dict[int, dict]]:
    store.mkdir()
    proc = aplot("run", *args, runs_dir=store)
    assert proc.returncode == 0, proc.stderr
    return train_records(store)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "tiny.toml"
    path.write_text(TINY_RM)
    return path


@pytest.fixture(scope="module")
def one_rank(tiny, tmp_path_factory) -> dict[int, dict]:
    """The reference: 3 steps of 8 pairs on one rank, both switches on."""
    return run_in(tmp_path_factory.mktemp("one") / "runs", tiny, *LENGTH_ON, "optim.batch_size=8",
                  "optim.max_steps=3")[1]


def test_a_tiny_run_with_both_switches_logs_them_every_step(one_rank):
    assert sorted(one_rank) == [1, 2, 3]
    for data in one_rank.values():
        assert all(isinstance(data[k], float) and math.isfinite(data[k]) for k in LENGTH_KEYS), data
        assert data[M.LENGTH_PENALTY] == pytest.approx(data[M.LENGTH_CORR] ** 2)  # λ = 1
        assert 0 <= data[M.LENGTH_LONGER_SHARE] <= 1 and data[M.LENGTH_LONGER_WEIGHT] > 0


def test_two_gloo_ranks_resumed_see_the_global_batch_like_one_rank(tiny, one_rank, tmp_path):
    """2 ranks × 4 pairs hold the same 8 pairs a step as 1 rank × 8, so the global ρ and balance equal the
    one-rank run's, and so do the later steps' losses, through the W-scaled gradient. Stopped after step 2
    and resumed (stateless terms: nothing to restore), step 3 still matches."""
    store = tmp_path / "runs"
    paths, _ = run_in(store, tiny, *LENGTH_ON, "optim.batch_size=4", "optim.max_steps=2", "launch.num_processes=2")
    assert mf.read(paths)["provenance"]["world_size"] == 2
    cfg = mf.read(paths)["config"]
    cfg["optim"]["max_steps"] = 3  # as if it had been stopped at step 2 of 3
    mf.update(paths, status="stopped", config=cfg)
    done = aplot("resume", paths.id, "-q", runs_dir=store)
    assert done.returncode == 0, done.stderr
    assert "resumed from step-2" in paths.log.read_text()
    two = train_records(store)[1]
    assert sorted(two) == [1, 2, 3]
    for step in (1, 2, 3):
        for key in (M.LOSS, *LENGTH_KEYS):
            assert two[step][key] == pytest.approx(one_rank[step][key], rel=1e-4, abs=1e-5), (step, key)
