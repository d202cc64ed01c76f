"""The APLOT margin on hand-computed cases, the solvers, the switches and the 2-rank scope."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import ot
import pytest
import torch

from engine import metrics as M
from engine.config import AplotSection, LossSection
from engine.rm.losses import bt_loss, rm_loss
from engine.rm.ot_margin import aplot_margin, normalize_cost, reward_cost, transport_plan
from engine.runs.launch import free_port

REPO = Path(__file__).resolve().parents[2]


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def t(*xs: float) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float64)


def random_batch(n: int, d: int = 8, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, generator=g, dtype=torch.float64), torch.randn(n, generator=g, dtype=torch.float64),
            torch.randn(n, d, generator=g, dtype=torch.float64),
            torch.randn(n, d, generator=g, dtype=torch.float64)]


@pytest.mark.parametrize("solver", ["sinkhorn", "emd"])
def test_equal_rewards_identical_representations(solver):
    # S = (1 + 1)/2 = 1, D = 1 − σ(0) = ½ everywhere, so any plan gives mᵢ = γ(λ + (1−λ)/2)
    n = 5
    e = torch.ones(n, 3)
    cfg = AplotSection(semantic_weight=0.1, margin_scale=2.0, solver=solver)
    margin, stats = aplot_margin(torch.full((n,), 0.7), torch.full((n,), 0.7), e, e.clone(), cfg)
    assert margin.tolist() == pytest.approx([2.0 * (0.1 + 0.9 / 2)] * n)  # 1.1
    assert stats[M.OT_COST] == pytest.approx(0.55)
    assert stats[M.MARGIN_STD] == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(stats[M.MARGIN_GAP_CORR])  # constant margin and gap: undefined, written as null


def test_reward_cost_only_rows_are_hand_computable():
    # λ = 0 and each chosen reward is equidistant from all rejected ones: every row of C is
    # constant, so mᵢ = γ·n·(1/n)·Cᵢ· whatever the plan.
    rc, rr = t(2.0, 0.0), t(0.0, 0.0)
    e = torch.eye(2, dtype=torch.float64)
    cfg = AplotSection(semantic_weight=0.0, margin_scale=1.0, solver="emd")
    margin, stats = aplot_margin(rc, rr, e, e, cfg)
    assert margin.tolist() == pytest.approx([1 - sig(2.0), 0.5])  # [0.1192, 0.5]
    assert stats[M.OT_COST] == pytest.approx((1 - sig(2.0) + 0.5) / 2)
    assert stats[M.MARGIN_MAX] == pytest.approx(0.5)
    assert stats[M.MARGIN_GAP_CORR] == pytest.approx(-1.0)  # the better-separated pair gets less margin
    assert stats[M.OT_ITERATIONS] == 0.0  # emd reports none


def test_semantic_cost_picks_the_cheap_matching():
    # λ = 1: S = [[1, ½], [½, 1]] for orthogonal embeddings; EMD sends each chosen to the other
    # rejected (cost ½), so m = γ·2·(½·½) = ½γ — not the diagonal's 1.
    e = torch.eye(2, dtype=torch.float64)
    margin, _ = aplot_margin(t(0.0, 0.0), t(0.0, 0.0), e, e, AplotSection(semantic_weight=1.0,
                                                                       margin_scale=3.0, solver="emd"))
    assert margin.tolist() == pytest.approx([1.5, 1.5])


@pytest.mark.parametrize("solver", ["sinkhorn", "emd"])
def test_single_pair(solver):
    # n = 1: P = [[1]], m = γ·C₁₁; cos = 0 ⇒ S = ½, D = 1 − σ(1)
    cfg = AplotSection(semantic_weight=0.1, margin_scale=1.5, solver=solver)
    margin, stats = aplot_margin(t(1.0), t(0.0), t(1.0, 0.0)[None], t(0.0, 1.0)[None], cfg)
    c11 = 0.1 * 0.5 + 0.9 * (1 - sig(1.0))
    assert margin.tolist() == pytest.approx([1.5 * c11])  # 0.43807
    assert stats[M.MARGIN_STD] == 0.0 and math.isnan(stats[M.MARGIN_GAP_CORR])  # one pair: no correlation
    assert stats[M.OT_ITERATIONS] == (1.0 if solver == "sinkhorn" else 0.0)


def test_no_gradient_flows_through_the_margin():
    rc, rr, ec, er = random_batch(6)
    rc.requires_grad_()
    rr.requires_grad_()
    ec.requires_grad_()
    margin, _ = aplot_margin(rc, rr, ec, er, AplotSection())
    assert not margin.requires_grad
    loss, _ = rm_loss(LossSection(type="aplot"), rc, rr, aplot_margin=margin)
    loss.backward()
    got = (rc.grad.clone(), rr.grad.clone())
    assert ec.grad is None

    rc2, rr2 = rc.detach().clone().requires_grad_(), rr.detach().clone().requires_grad_()
    bt_loss(rc2, rr2, margin.detach().clone()).mean().backward()
    assert torch.allclose(got[0], rc2.grad) and torch.allclose(got[1], rr2.grad)
    assert margin.abs().sum() > 0  # the margin really was part of the loss


def test_margin_follows_reward_dtype():
    rc, rr, ec, er = random_batch(4)
    margin, _ = aplot_margin(rc.bfloat16(), rr.bfloat16(), ec.float(), er.float(), AplotSection())
    assert margin.dtype == torch.bfloat16 and margin.shape == (4,)


def test_sinkhorn_approaches_emd_as_epsilon_shrinks():
    batch = random_batch(6, seed=1)
    exact, exact_stats = aplot_margin(*batch, AplotSection(solver="emd"))
    errors = []
    for eps in (1e-1, 1e-2, 1e-3):
        approx, stats = aplot_margin(*batch, AplotSection(epsilon=eps, max_iter=3000))
        errors.append((approx - exact).abs().max().item())
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 5e-3
    assert stats[M.OT_COST] == pytest.approx(exact_stats[M.OT_COST], abs=1e-3)


def test_log_domain_sinkhorn_survives_tiny_epsilon():
    # The trap this module avoids: plain Sinkhorn forms exp(−C/ε), which underflows to 0 for
    # C ≥ ~0.75 at ε = 1e-3, and returns a plan that is not a transport plan at all.
    n = 6
    rng = np.random.default_rng(0)
    cost = 0.75 + 0.25 * rng.random((n, n))
    a = np.full(n, 1 / n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = ot.sinkhorn(a, a, cost, reg=1e-3, method="sinkhorn", numItermax=1000)
    assert not np.allclose(np.nan_to_num(plain).sum(axis=1), 1 / n)
    plan, iterations = transport_plan(cost, "sinkhorn", 1e-3, 1000)
    assert np.allclose(plan.sum(axis=1), 1 / n)  # exact: the last update fits the rows
    assert np.allclose(plan.sum(axis=0), 1 / n, atol=1e-3)  # converging slowly at this ε, but a plan
    assert 1 <= iterations <= 1000


def test_iterations_are_capped_by_max_iter():
    batch = random_batch(6, seed=2)
    _, stats = aplot_margin(*batch, AplotSection(epsilon=1e-3, max_iter=3))
    assert stats[M.OT_ITERATIONS] == 3.0
    _, stats = aplot_margin(*batch, AplotSection(epsilon=1.0, max_iter=500))
    assert 1 <= stats[M.OT_ITERATIONS] < 500  # converges early at a large ε


def test_signed_and_abs_differ_exactly_where_misordered():
    rc, rr = t(1.0, -1.0, 0.5), t(0.0, 2.0, 0.5)
    d_abs = reward_cost(rc, rr, "abs", 1.0)
    d_signed = reward_cost(rc, rr, "signed", 1.0)
    misordered = rc[:, None] < rr[None, :]
    assert torch.allclose(d_abs[~misordered], d_signed[~misordered])
    assert (d_signed[misordered] > 0.5).all() and (d_abs[misordered] < 0.5).all()
    assert d_signed[1, 1].item() == pytest.approx(1 - sig(-3.0))
    assert d_abs[1, 1].item() == pytest.approx(1 - sig(3.0))
    assert d_abs[2, 2].item() == pytest.approx(0.5)  # a tie is ½ under both readings


def test_signed_equals_abs_margin_when_nothing_is_misordered():
    rc, rr = t(3.0, 4.0, 5.0), t(0.0, 1.0, 2.0)
    e = torch.eye(3, dtype=torch.float64)
    m_abs, _ = aplot_margin(rc, rr, e, e, AplotSection(reward_cost="abs", solver="emd"))
    m_signed, _ = aplot_margin(rc, rr, e, e, AplotSection(reward_cost="signed", solver="emd"))
    assert torch.allclose(m_abs, m_signed)
    rr_bad = t(0.0, 1.0, 6.0)  # now every chosen is below rejected 2
    m_abs, _ = aplot_margin(rc, rr_bad, e, e, AplotSection(reward_cost="abs", solver="emd"))
    m_signed, _ = aplot_margin(rc, rr_bad, e, e, AplotSection(reward_cost="signed", solver="emd"))
    assert not torch.allclose(m_abs, m_signed)


def test_temperature_scales_the_reward_gap():
    d = reward_cost(t(2.0), t(0.0), "abs", 2.0)
    assert d.item() == pytest.approx(1 - sig(1.0))  # 0.2689
    cold = reward_cost(t(2.0), t(0.0), "abs", 0.5).item()
    assert cold == pytest.approx(1 - sig(4.0))
    assert cold < reward_cost(t(2.0), t(0.0), "abs", 1.0).item() < d.item() < 0.5


def test_minmax_and_rank_normalisation():
    x = t(0.1, 0.5, 0.3, 0.3).reshape(2, 2)
    assert normalize_cost(x, "minmax").flatten().tolist() == pytest.approx([0.0, 1.0, 0.5, 0.5])
    # average ranks 0, 3, 1.5, 1.5 over n² − 1 = 3
    assert normalize_cost(x, "rank").flatten().tolist() == pytest.approx([0.0, 1.0, 0.5, 0.5])
    const = torch.full((3, 3), 0.4, dtype=torch.float64)
    assert normalize_cost(const, "minmax").tolist() == [[0.0] * 3] * 3  # no 0/0
    assert normalize_cost(const, "rank").flatten().tolist() == pytest.approx([0.5] * 9)
    assert normalize_cost(x, "none") is x


@pytest.mark.parametrize("mode", ["minmax", "rank"])
def test_normalised_costs_bound_the_margin(mode):
    batch = random_batch(7, seed=3)
    batch[0] = batch[0] * 50  # a wild reward scale must not leak through
    margin, stats = aplot_margin(*batch, AplotSection(normalize_costs=mode, margin_scale=1.0,
                                                      solver="emd"))
    assert torch.isfinite(margin).all()
    assert (margin >= 0).all() and (margin <= 1).all()  # γ·n·Σⱼ Pᵢⱼ Cᵢⱼ with C ∈ [0, 1], Σⱼ Pᵢⱼ = 1/n
    e = torch.ones(3, 2)
    flat, _ = aplot_margin(torch.zeros(3), torch.zeros(3), e, e, AplotSection(normalize_costs=mode))
    assert torch.isfinite(flat).all()


def test_relative_margin_keeps_only_the_spread():
    batch = random_batch(8, seed=4)
    plain, _ = aplot_margin(*batch, AplotSection())
    rel, stats = aplot_margin(*batch, AplotSection(relative_margin=True))
    assert stats[M.MARGIN_MEAN] == pytest.approx(0.0, abs=1e-12)
    assert rel.mean().item() == pytest.approx(0.0, abs=1e-12)
    assert torch.allclose(rel, plain - plain.mean())
    assert plain.std() > 0


def test_nonfinite_rewards_give_a_nan_margin_not_a_crash():
    rc, rr, ec, er = random_batch(3)
    rc[1] = float("nan")
    margin, stats = aplot_margin(rc, rr, ec, er, AplotSection())
    assert torch.isnan(margin).all() and math.isnan(stats[M.MARGIN_MEAN])


def test_bad_shapes_raise():
    rc, rr, ec, er = random_batch(3)
    with pytest.raises(ValueError, match="shape"):
        aplot_margin(rc, rr[:2], ec, er, AplotSection())
    with pytest.raises(ValueError, match="shape"):
        aplot_margin(rc, rr, ec[:2], er, AplotSection())


# --------------------------------------------------------------------------- ot_scope = "global"


def _load_worker():
    spec = importlib.util.spec_from_file_location("_ot_global_worker", REPO / "tests" / "_ot_global_worker.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_global_scope_over_two_ranks_matches_one_big_batch(tmp_path):
    worker = _load_worker()
    out, seed = tmp_path / "global.json", 7
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    argv = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(free_port()), str(REPO / "tests" / "_ot_global_worker.py"),
            str(out), str(seed)]
    proc = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["world"] == 2

    cfg = AplotSection(semantic_weight=0.3, margin_scale=1.5)
    for case, sizes in worker.SIZES.items():
        parts = [worker.rank_batch(seed, rank, n) for rank, n in enumerate(sizes)]
        full = [torch.cat([p[i] for p in parts]) for i in range(4)]
        expected, expected_stats = aplot_margin(*full, cfg)
        ranks = sorted(results[case], key=lambda r: r["rank"])
        assert [len(r["margin"]) for r in ranks] == list(sizes)
        got = [m for r in ranks for m in r["margin"]]
        assert got == pytest.approx(expected.tolist(), abs=1e-6)
        for r in ranks:  # every rank logs the same global stats
            assert r["stats"] == pytest.approx(expected_stats, abs=1e-6)
        # and the global problem is not just the per-rank problems side by side
        local = torch.cat([aplot_margin(*p, cfg)[0] for p in parts])
        assert not torch.allclose(local, expected, atol=1e-4)
