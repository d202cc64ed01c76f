"""Best-of-n: sample n responses, keep the one the reward model likes best — RL's simplest rival.

Its curve is the reference point for over-optimisation (Gao et al. 2022): as n grows the proxy (the
RM that picks) keeps rising, while the gold score (the judge that knows) rises, then may fall. The
x axis is the KL of best-of-n from its base policy, log n − (n − 1)/n nats, the same unit as an RL
run's sequence KL (`objective/kl`), so both go on one chart.

From n_max samples of each prompt, the best-of-n score for every n ≤ n_max is estimated without
bias over all n-subsets at once (not from the first n samples only): with the samples sorted by
proxy, the i-th lowest (0-based) is the best of a uniformly drawn n-subset with probability
C(i, n − 1) / C(n_max, n). numpy only: the UI reads the curve, the trainer computes it.
"""

from __future__ import annotations

import math

import numpy as np

from engine import metrics as M


def is_power_of_two(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def kl_of_best_of(n: int) -> float:
    """KL(best-of-n ‖ base) = log n − (n − 1)/n nats (Stiennon et al. 2020, appendix G.3)."""
    if n < 1:
        raise ValueError(f"best-of-n needs n ≥ 1, got {n}")
    return math.log(n) - (n - 1) / n


def pick_weights(n_max: int, n: int) -> np.ndarray:
    """P(the i-th lowest of n_max samples is the best of a random n-subset), i = 0 … n_max − 1. [n_max]"""
    if not 1 <= n <= n_max:
        raise ValueError(f"best-of-{n} needs 1 ≤ n ≤ {n_max} samples")
    return np.array([math.comb(i, n - 1) for i in range(n_max)], dtype=np.float64) / math.comb(n_max, n)


def _by_proxy(proxy: np.ndarray, judge: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both score tables [prompts, n_max] with each prompt's samples sorted by proxy, lowest first.
    Ties in the proxy keep sample order (stable sort), as a picker that takes the first maximum would."""
    proxy, judge = np.asarray(proxy, dtype=np.float64), np.asarray(judge, dtype=np.float64)
    order = np.argsort(proxy, axis=1, kind="stable")
    return np.take_along_axis(proxy, order, 1), np.take_along_axis(judge, order, 1)


def expected_best_of(proxy: np.ndarray, judge: np.ndarray, n: int) -> tuple[float, float]:
    """(mean proxy, mean judge score) of the sample the proxy picks among n, averaged over prompts.
    proxy, judge [prompts, n_max]: every sample's RM score and judge score."""
    sorted_proxy, sorted_judge = _by_proxy(proxy, judge)
    w = pick_weights(sorted_proxy.shape[1], n)  # [n_max]
    return float((sorted_proxy @ w).mean()), float((sorted_judge @ w).mean())


def win_rate_of_best_of(proxy: np.ndarray, judge: np.ndarray, n: int) -> float:
    """How often the judge prefers the proxy's pick among n to one plain sample of the same prompt (a
    tie counts half): the win-rate against the reference that RL runs report, for best-of-n. Each
    sample's chance to beat a plain sample is counted against the prompt's other samples; n = 1 gives
    exactly 0.5."""
    _, g = _by_proxy(proxy, judge)  # [P, n_max]
    n_max = g.shape[1]
    beats = ((g[:, :, None] > g[:, None, :]) + 0.5 * (g[:, :, None] == g[:, None, :])).sum(2) - 0.5  # [P, n_max]
    # (each sample against every one of its prompt's samples, minus the tie with itself)
    return float((beats / (n_max - 1) @ pick_weights(n_max, n)).mean())


def curve(proxy: np.ndarray, judge: np.ndarray) -> dict[str, list[float]]:
    """The best-of-n curve for n = 1, 2, 4, … n_max (a power of two): n, its KL, the proxy and judge
    means of the pick, and the judge's win-rate of the pick against a plain sample."""
    n_max = np.asarray(proxy).shape[1]
    if not is_power_of_two(n_max) or n_max < 2:
        raise ValueError(f"the best-of-n curve needs a power-of-two number of samples (≥ 2), got {n_max}")
    ns = [2 ** j for j in range(int(math.log2(n_max)) + 1)]
    points = [expected_best_of(proxy, judge, n) for n in ns]
    return {M.BON_N: [float(n) for n in ns], M.BON_KL: [kl_of_best_of(n) for n in ns],
            M.BON_PROXY: [p for p, _ in points], M.BON_GOLD: [g for _, g in points],
            M.BON_WIN: [win_rate_of_best_of(proxy, judge, n) for n in ns]}
