"""engine.analysis.bias_checks on hand-built pairs: buckets, length rules, ECE, correlation, hard pairs."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pytest

from engine import metrics as M
from engine.analysis import bias_checks as D


def logit(p: float) -> float:
    return math.log(p / (1 - p))


# ---------------------------------------------------------------------------- length buckets


def test_buckets_at_the_threshold_boundaries():
    len_c = [10, 10, 10, 10, 10]
    len_r = [16, 15, 10, 5, 4]  # diff -6, -5, 0, +5, +6 with t = 5
    got = D.length_buckets(len_c, len_r, threshold=5)
    assert list(got) == ["chosen_shorter", "similar", "similar", "similar", "chosen_longer"]


def test_default_threshold_is_five_tokens_or_ten_percent_of_the_mean():
    assert D.length_threshold([20, 40], [30, 30]) == 5.0  # mean 30 -> 3 < 5
    assert D.length_threshold([100, 300], [200, 200]) == pytest.approx(20.0)  # mean 200 -> 20
    # with a mean of 200 the default band is ±20: a 20-token difference is "similar", 21 is not
    len_c, len_r = [100, 210, 190, 221, 179], [300, 190, 210, 200, 200]
    assert D.length_threshold(len_c, len_r) == pytest.approx(20.0)
    got = D.length_buckets(len_c, len_r)
    assert list(got) == ["chosen_shorter", "similar", "similar", "chosen_longer", "chosen_shorter"]


def test_length_rules_count_equal_lengths_half():
    len_c, len_r = [3, 5, 7, 7], [5, 3, 7, 9]  # shorter rule: right, wrong, tie, right
    assert D.length_rule_accuracy(len_c, len_r, "shorter") == pytest.approx(0.625)
    assert D.length_rule_accuracy(len_c, len_r, "longer") == pytest.approx(0.375)


# ---------------------------------------------------------------------------- calibration


def test_ece_by_hand():
    # confidences 0.95 (right), 0.95 (wrong), 0.75 x3 (right), 0.55 (wrong)
    gaps = [logit(0.95), -logit(0.95), logit(0.75), logit(0.75), logit(0.75), -logit(0.55)]
    # bin 9: |0.5 - 0.95| * 2/6 = 0.15; bin 7: |1 - 0.75| * 3/6 = 0.125; bin 5: 0.55 * 1/6
    assert D.expected_calibration_error(gaps) == pytest.approx(0.15 + 0.125 + 0.55 / 6)
    conf, acc, count = D.reliability(gaps)
    assert list(count) == [0, 0, 0, 0, 0, 1, 0, 3, 0, 2]
    assert conf[9] == pytest.approx(0.95) and acc[9] == pytest.approx(0.5)
    assert acc[7] == 1.0 and acc[5] == 0.0
    assert np.isnan(acc[0]) and np.isnan(conf[0])


def test_ece_is_symmetrised_on_the_predicted_winner():
    # confidence 0.75 and right 3 times in 4: perfectly calibrated. Scoring p = σ(gap) against
    # "chosen won" instead would see p = 0.25 on the wrong pair and report ECE 0.375.
    gaps = [logit(0.75)] * 3 + [-logit(0.75)]
    assert D.expected_calibration_error(gaps) == pytest.approx(0.0, abs=1e-12)


def test_a_reward_tie_has_confidence_one_half_and_counts_as_wrong():
    conf, acc, count = D.reliability([0.0])
    assert count[5] == 1 and conf[5] == 0.5 and acc[5] == 0.0
    assert D.expected_calibration_error([0.0]) == pytest.approx(0.5)


# ---------------------------------------------------------------------------- correlation


def test_reward_length_correlation_pools_chosen_and_rejected():
    # rewards [1, 2, 0, 3] against lengths [10, 20, 5, 30]: 42.5 / sqrt(5 · 368.75)
    got = D.reward_length_corr([1, 2], [0, 3], [10, 20], [5, 30])
    assert got == pytest.approx(42.5 / math.sqrt(5 * 368.75))
    assert got == pytest.approx(np.corrcoef([1, 2, 0, 3], [10, 20, 5, 30])[0, 1])
    assert math.isnan(D.reward_length_corr([1, 2], [0, 3], [7, 7], [7, 7]))  # constant lengths


# ---------------------------------------------------------------------------- hardest pairs


def test_hardest_pairs_most_negative_first_stable_on_ties():
    gap = [0.5, -1.0, -3.0, 2.0, -1.0]
    assert list(D.hardest_pairs(gap, 3)) == [2, 1, 4]
    assert list(D.hardest_pairs(gap, 10)) == [2, 1, 4, 0, 3]
    assert list(D.hardest_pairs(gap, 0)) == []


@dataclass
class P:
    prompt: str
    chosen: str
    rejected: str


def test_hard_pair_records_keep_the_prompt_end_and_the_response_start():
    pairs = [P("p0", "c0", "r0"), P("x" * 50 + "LAST TURN", "C" * 30, "short"), {"prompt": "p2", "chosen": "c2",
                                                                                "rejected": "r2"}]
    recs = D.hard_pair_records(pairs, r_c=[1.0, 0.0, 0.5], r_r=[0.0, 2.0, 1.0], margin=[0.1, 0.2, 0.3], k=2,
                               max_chars=20, len_c=[3, 30, 2], len_r=[4, 1, 2])
    assert [r["index"] for r in recs] == [1, 2]  # gaps +1, -2, -0.5
    hard = recs[0]
    assert hard["prompt"] == "…" + ("x" * 50 + "LAST TURN")[-19:] and hard["prompt"].endswith("LAST TURN")
    assert hard["chosen"] == "C" * 19 + "…" and hard["rejected"] == "short"
    assert len(hard["prompt"]) == 20 and hard["text_cut"] is True and hard["truncated"] is False
    assert hard["gap"] == -2.0 and hard["margin"] == 0.2
    assert (hard["chosen_len"], hard["rejected_len"]) == (30, 1)
    assert recs[1] == {"index": 2, "prompt": "p2", "chosen": "c2", "rejected": "r2", "chosen_reward": 0.5,
                       "rejected_reward": 1.0, "gap": -0.5, "margin": 0.3, "truncated": False, "text_cut": False,
                       "chosen_len": 2, "rejected_len": 2}
    no_margin = D.hard_pair_records(pairs, [1.0, 0.0, 0.5], [0.0, 2.0, 1.0], None, k=1)
    assert no_margin[0]["margin"] is None and "chosen_len" not in no_margin[0]


def test_hard_pairs_file_round_trip_survives_a_torn_line(tmp_path):
    path = tmp_path / "hard_pairs.jsonl"
    assert D.read_hard_pairs(path) == []
    D.append_hard_pairs(path, 10, "heldout", [{"index": 3, "gap": -1.0}])
    with open(path, "ab") as fh:
        fh.write(b'{"step": 20, "set": "heldout", "pai')  # a writer killed mid-line
    D.append_hard_pairs(path, 20, "ood", [{"index": 1, "gap": -2.0}])
    D.append_hard_pairs(path, 30, "heldout", [])
    entries = D.read_hard_pairs(path)
    assert [(e["step"], e["set"]) for e in entries] == [(10, "heldout"), (20, "ood"), (30, "heldout")]
    latest = D.latest_hard_pairs(entries)
    assert latest["heldout"]["step"] == 30 and latest["ood"]["pairs"] == [{"index": 1, "gap": -2.0}]


# ---------------------------------------------------------------------------- the eval dict


def shorter_wins_model():
    """Eight pairs scored by reward = -length: right exactly where chosen is the shorter one."""
    len_c = np.array([10, 12, 30, 40, 20, 21, 50, 8])
    len_r = np.array([40, 30, 10, 12, 21, 20, 8, 50])  # diffs -30 -18 +20 +28 -1 +1 +42 -42
    return -len_c.astype(float), -len_r.astype(float), len_c, len_r


def test_diagnostics_of_a_length_only_model():
    r_c, r_r, len_c, len_r = shorter_wins_model()
    out = D.diagnostics(r_c, r_r, len_c, len_r)
    assert out[D.LENGTH_THRESHOLD] == 5.0  # mean length 26.375 -> 2.6 < 5
    assert (out[D.N_CHOSEN_SHORTER], out[D.N_SIMILAR], out[D.N_CHOSEN_LONGER]) == (3, 2, 3)
    assert out[D.ACC_CHOSEN_SHORTER] == 1.0 and out[D.ACC_CHOSEN_LONGER] == 0.0
    assert out[D.ACC_SIMILAR] == 0.5  # the -1 pair right, the +1 pair wrong
    assert out[D.SHORTER_WINS_ACC] == 0.5 and out[D.LONGER_WINS_ACC] == 0.5
    assert out[D.REWARD_LENGTH_CORR] == pytest.approx(-1.0)
    assert sum(out[D.RELIABILITY_COUNT]) == 8
    assert set(D.SCALAR_KEYS) <= set(out) and all(k.startswith(M.DIAG_PREFIX) for k in out)
    json.dumps(out, allow_nan=False)  # JSON-ready: Python numbers, None for empty bins
    assert isinstance(out[D.N_SIMILAR], int) and out[D.RELIABILITY_CONF][0] is None
    warning = D.length_bias_warning(0.5, out)
    assert warning is not None and "correlation -1.00" in warning


def test_diagnostics_empty_bucket_is_none_and_bad_shapes_raise():
    out = D.diagnostics([1.0, 2.0], [0.0, 0.0], [5, 5], [5, 5])
    assert out[D.ACC_CHOSEN_SHORTER] is None and out[D.N_CHOSEN_SHORTER] == 0
    assert out[D.ACC_SIMILAR] == 1.0 and out[D.REWARD_LENGTH_CORR] is None
    assert D.diagnostics([], [], [], []) == {}
    with pytest.raises(ValueError, match="shapes differ"):
        D.diagnostics([1.0, 2.0], [0.0], [5, 5], [5, 5])


def test_length_bias_warning_rules():
    diag = {D.SHORTER_WINS_ACC: 0.62, D.LONGER_WINS_ACC: 0.38, D.REWARD_LENGTH_CORR: -0.2}
    w = D.length_bias_warning(0.61, diag)
    assert w is not None and "'shorter wins' rule (0.620)" in w and "correlation" not in w
    assert D.length_bias_warning(0.64, diag) is not None  # 2 points above still counts
    assert D.length_bias_warning(0.65, diag) is None
    assert D.length_bias_warning(0.70, {**diag, D.REWARD_LENGTH_CORR: 0.51}) is not None
    # a model matching the *worse* rule learned length just as much (a shorter-wins RM on OASST)
    w = D.length_bias_warning(0.31, {D.SHORTER_WINS_ACC: 0.30, D.LONGER_WINS_ACC: 0.70})
    assert w is not None and "'shorter wins' rule (0.300)" in w
    # a length rule near chance says nothing: a chance-level model matching it is not flagged
    assert D.length_bias_warning(0.53, {D.SHORTER_WINS_ACC: 0.54, D.LONGER_WINS_ACC: 0.46}) is None
    assert D.length_bias_warning(0.55, {D.SHORTER_WINS_ACC: 0.55, D.LONGER_WINS_ACC: 0.45}) is not None
    assert D.length_bias_warning(None, {}) is None
