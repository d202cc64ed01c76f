"""engine.analysis.stats against numbers worked by hand, and the bootstrap's coverage over many draws."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.analysis import stats


def test_mcnemar_exact_matches_hand_computed_binomial_tails():
    # 1 vs 5 discordant: 2 * (C(6,0) + C(6,1)) / 2^6 = 2 * 7 / 64
    assert stats.mcnemar_exact(1, 5) == pytest.approx(14 / 64)
    assert stats.mcnemar_exact(5, 1) == pytest.approx(14 / 64)
    # 0 vs 6: 2 / 64; 0 vs 1: 2 * 1/2 = 1
    assert stats.mcnemar_exact(0, 6) == pytest.approx(2 / 64)
    assert stats.mcnemar_exact(0, 1) == 1.0
    # 3 vs 3 is as balanced as it gets: the doubled tail passes 1 and is capped
    assert stats.mcnemar_exact(3, 3) == 1.0
    # 2 vs 10: 2 * (1 + 12 + 66) / 4096
    assert stats.mcnemar_exact(2, 10) == pytest.approx(2 * 79 / 4096)
    assert stats.mcnemar_exact(0, 0) == 1.0


def test_identical_runs_give_zero_difference_and_p_one():
    correct = np.random.default_rng(3).random(500) < 0.6
    res = stats.paired(correct, correct)
    assert (res.diff, res.low, res.high, res.p) == (0.0, 0.0, 0.0, 1.0)
    assert res.only_a == res.only_b == 0
    assert res.verdict() .startswith("difference within noise")


def test_paired_counts_and_verdict_on_a_hand_made_case():
    # 10 pairs: both right on 5, only A on 1, only B on 4 (B − A = 3/10), neither on 0
    a = np.array([1, 1, 1, 1, 1, 1, 0, 0, 0, 0], bool)
    b = np.array([1, 1, 1, 1, 1, 0, 1, 1, 1, 1], bool)
    res = stats.paired(a, b)
    assert (res.n, res.only_a, res.only_b) == (10, 1, 4)
    assert res.acc_a == 0.6 and res.acc_b == 0.9
    assert res.diff == pytest.approx(0.3)
    assert res.p == pytest.approx(2 * (1 + 5) / 32)  # 0.375: 5 discordant pairs cannot show much
    assert res.low <= 0.3 <= res.high
    assert res.verdict("bt", "aplot").startswith("difference within noise")


def test_a_clear_difference_is_called_with_its_p():
    rng = np.random.default_rng(0)
    a = rng.random(2000) < 0.60
    b = a | (rng.random(2000) < 0.15)  # B right wherever A is, and on ~15 % more
    res = stats.paired(a, b)
    assert res.p < 1e-10 and res.low > 0
    assert res.verdict("bt", "aplot") == f"aplot better, p = {res.p:.2g}"


def test_multinomial_bootstrap_is_the_index_bootstrap():
    """Drawing category counts is the same distribution as resampling pair indices."""
    rng = np.random.default_rng(1)
    a = rng.random(300) < 0.6
    b = rng.random(300) < 0.65
    counts = np.array([np.sum(a & b), np.sum(a & ~b), np.sum(~a & b), np.sum(~a & ~b)])
    fast = stats.bootstrap_counts(counts, 20_000, seed=2)
    fast_d = (fast[:, 2] - fast[:, 1]) / 300
    idx = np.random.default_rng(3).integers(0, 300, size=(20_000, 300))
    slow_d = (b[idx].sum(1) - a[idx].sum(1)) / 300
    assert fast_d.mean() == pytest.approx(slow_d.mean(), abs=0.002)
    assert fast_d.std() == pytest.approx(slow_d.std(), rel=0.03)
    assert np.quantile(fast_d, [0.025, 0.975]) == pytest.approx(np.quantile(slow_d, [0.025, 0.975]), abs=0.005)


def test_bootstrap_interval_covers_the_true_difference_at_the_stated_rate():
    """400 synthetic eval sets with a known B − A of +0.03: the 95 % interval holds it in 95 % of
    them (binomial sd over 400 draws ≈ 1.1 points, so 92–98 % is the acceptance band)."""
    rng = np.random.default_rng(7)
    n, truth, hits, draws = 800, 0.03, 0, 400
    # categories: both, only A, only B, neither; B − A = p(only B) − p(only A)
    p = np.array([0.50, 0.10, 0.13, 0.27])
    assert p[2] - p[1] == pytest.approx(truth)
    for i in range(draws):
        cat = rng.choice(4, size=n, p=p)
        a, b = np.isin(cat, (0, 1)), np.isin(cat, (0, 2))
        res = stats.paired(a, b, n_resamples=2000, seed=i)
        hits += res.low <= truth <= res.high
    assert 0.92 <= hits / draws <= 0.98, hits / draws


def test_grouped_difference_is_paired_by_seed_with_a_t_interval():
    bt = {0: 0.60, 1: 0.64, 2: 0.62}
    ap = {0: 0.61, 1: 0.66, 2: 0.62, 3: 0.70}  # seed 3 has no partner: in the mean, not the pairing
    res = stats.grouped(bt, ap)
    assert res.seeds == [0, 1, 2]
    assert res.diffs == pytest.approx([0.01, 0.02, 0.0])
    assert res.diff == pytest.approx(0.01)
    half = 4.302652729911275 * 0.01 / math.sqrt(3)  # t(0.975, 2) · sd / √n, sd of (1, 2, 0) points = 1 point
    assert (res.low, res.high) == pytest.approx((0.01 - half, 0.01 + half))
    assert res.mean_a == pytest.approx(0.62) and res.sd_a == pytest.approx(0.02)
    assert res.n_b == 4
    assert res.verdict().startswith("difference within noise")
    same = stats.grouped(bt, dict(bt))
    assert (same.diff, same.low, same.high) == (0.0, 0.0, 0.0)


def test_a_nan_seed_is_left_out_of_the_pairing_not_read_as_significant():
    base = {0: 0.50, 1: 0.52, 2: 0.51}
    res = stats.grouped(base, {0: float("nan"), 1: float("nan"), 2: 0.60})  # two seeds never got there
    assert res.seeds == [2] and res.n_b == 1 and res.mean_b == pytest.approx(0.60)
    assert not res.significant and res.verdict().startswith("too few shared seeds")
    none = stats.grouped(base, {s: float("nan") for s in base})
    assert none.seeds == [] and math.isnan(none.mean_b) and not none.significant


def test_mcnemar_for_many_discordant_pairs_agrees_with_the_exact_sum_at_the_switch():
    d = stats.EXACT_UP_TO
    below = stats.mcnemar_exact(d // 2 - 40, d // 2 + 40)  # integer sum
    above = stats.mcnemar_exact(d // 2 - 40, d // 2 + 41)  # scipy's cdf, one pair more
    assert below == pytest.approx(above, rel=0.1)
    assert stats.mcnemar_exact(24_000, 24_050) == pytest.approx(0.82, abs=0.01)  # 48,050 discordant: fast


def test_holm_scales_the_ith_smallest_by_m_minus_i_and_keeps_the_order():
    # m = 3, sorted 0.01, 0.03, 0.04: 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 → max(0.06, 0.04) = 0.06
    assert stats.holm([0.04, 0.01, 0.03]) == pytest.approx([0.06, 0.03, 0.06])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert stats.holm([0.032]) == [0.032]  # one comparison: unchanged
    res = stats.paired(np.array([1] * 20 + [0] * 10, bool), np.array([1] * 20 + [1] * 10, bool))
    assert res.p < 0.05 and res.verdict("A", "B").startswith("B better")
    assert res.verdict("A", "B", p_adjusted=0.12).startswith("difference within noise")
    assert "Holm 0.12" in res.verdict("A", "B", p_adjusted=0.12)


def test_paired_values_is_the_sign_test_and_a_bootstrap_of_per_prompt_differences():
    a = np.array([1.0, 0.5, 0.0, 1.0, 0.0, 0.5])
    b = np.array([1.0, 1.0, 1.0, 0.0, 1.0, 0.5])  # B higher on 3, A on 1, equal on 2
    res = stats.paired_values(a, b)
    assert (res.n, res.only_a, res.only_b) == (6, 1, 3)
    assert res.diff == pytest.approx(1.5 / 6) and res.acc_b == pytest.approx(4.5 / 6)  # (.5 + 1 − 1 + 1) / 6
    assert res.p == stats.mcnemar_exact(1, 3) and res.low <= res.diff <= res.high
    binary = np.random.default_rng(0).random(200) < 0.5
    other = np.random.default_rng(1).random(200) < 0.6
    assert stats.paired_values(binary, other).p == stats.paired(binary, other).p  # McNemar on 0/1 values
    same = stats.paired_values(a, a)
    assert (same.diff, same.low, same.high, same.p) == (0.0, 0.0, 0.0, 1.0)
