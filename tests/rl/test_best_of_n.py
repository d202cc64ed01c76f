"""Best-of-n on hand-computed numbers: the pick probabilities, the unbiased curve, its KL axis."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.rl import best_of_n as B


def test_kl_of_best_of_n():
    assert B.kl_of_best_of(1) == 0.0
    assert abs(B.kl_of_best_of(2) - (math.log(2) - 0.5)) < 1e-12
    assert abs(B.kl_of_best_of(64) - (6 * math.log(2) - 63 / 64)) < 1e-12
    with pytest.raises(ValueError):
        B.kl_of_best_of(0)


def test_pick_weights_by_hand():
    # 4 samples, best of 2: the i-th lowest wins a pair with probability i / C(4, 2) = i / 6
    assert np.allclose(B.pick_weights(4, 2), [0, 1 / 6, 2 / 6, 3 / 6])
    assert np.allclose(B.pick_weights(4, 1), [0.25] * 4) and np.allclose(B.pick_weights(4, 4), [0, 0, 0, 1])
    for n in range(1, 17):
        assert abs(B.pick_weights(16, n).sum() - 1.0) < 1e-12


def test_expected_best_of_by_hand_and_against_drawn_subsets():
    proxy, gold = np.array([[0.1, 0.4, 0.3, 0.2]]), np.array([[1.0, 2.0, 3.0, 4.0]])
    # by proxy: 0.1 (gold 1), 0.2 (4), 0.3 (3), 0.4 (2); best of 2 weights 0, 1/6, 2/6, 3/6
    p, g = B.expected_best_of(proxy, gold, 2)
    assert abs(p - (0.2 + 0.6 + 1.2) / 6) < 1e-12 and abs(g - (4 + 6 + 6) / 6) < 1e-12
    assert B.expected_best_of(proxy, gold, 1) == pytest.approx((0.25, 2.5))
    assert B.expected_best_of(proxy, gold, 4) == pytest.approx((0.4, 2.0))  # the proxy's favourite, gold 2
    rng = np.random.default_rng(0)
    proxy, gold = rng.normal(size=(3, 8)), rng.normal(size=(3, 8))
    draws = [rng.choice(8, 3, replace=False) for _ in range(20000)]
    drawn = np.mean([[gold[i, d[np.argmax(proxy[i, d])]] for i in range(3)] for d in draws])
    assert abs(B.expected_best_of(proxy, gold, 3)[1] - drawn) < 0.02


def test_the_curve_needs_a_power_of_two_and_rises_in_the_proxy():
    rng = np.random.default_rng(1)
    proxy = rng.normal(size=(50, 16))
    out = B.curve(proxy, proxy + rng.normal(size=(50, 16)))
    assert out["n"] == [1.0, 2.0, 4.0, 8.0, 16.0] and out["kl"][0] == 0.0
    assert all(a < b for a, b in zip(out["proxy"], out["proxy"][1:], strict=False))  # best of more is better
    with pytest.raises(ValueError, match="power-of-two"):
        B.curve(proxy[:, :12], proxy[:, :12])


def test_win_rate_of_best_of_n_by_hand():
    proxy, gold = np.array([[0.1, 0.4, 0.3, 0.2]]), np.array([[1.0, 2.0, 3.0, 4.0]])
    # each sample against the other three: gold 1 beats none, 2 beats one, 3 two, 4 three → 0, 1/3, 2/3, 1
    assert B.win_rate_of_best_of(proxy, gold, 1) == pytest.approx(0.5)
    # best of 2 by proxy: sorted golds 1, 4, 3, 2 (beat 0, 1, 2/3, 1/3) with weights 0, 1/6, 2/6, 3/6
    assert B.win_rate_of_best_of(proxy, gold, 2) == pytest.approx((1 + 4 / 3 + 1) / 6)
    assert B.win_rate_of_best_of(proxy, gold, 4) == pytest.approx(1 / 3)  # the proxy's pick, gold 2
    ties = np.ones((2, 4))
    assert B.win_rate_of_best_of(ties, ties, 2) == pytest.approx(0.5)  # all tied: every game a half
    rng = np.random.default_rng(2)
    proxy = rng.normal(size=(40, 8))
    assert B.curve(proxy, proxy)["win"][-1] == pytest.approx(1.0)  # the judge agrees: the best beats all
