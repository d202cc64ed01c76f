"""RewardBench's scores worked out by hand on small sets in the datasets' own row shapes, ties included."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from engine import metrics as M
from engine.analysis import bias_checks as D
from engine.analysis import rewardbench as RB
from engine.data.rows import collect

# (subset, chosen reward, rejected reward): a tie is a loss in v1
V1_PAIRS = [
    ("alpacaeval-easy", 1.0, 0.0), ("alpacaeval-easy", 0.0, 0.0),  # 1/2
    ("mt-bench-easy", 2.0, 1.0),  # 1/1
    ("llmbar-natural", 0.0, 1.0), ("llmbar-natural", 3.0, 2.0),  # 1/2
    ("donotanswer", 1.0, 1.0),  # 0/1
    ("xstest-should-respond", 1.0, 0.5), ("xstest-should-respond", 0.2, 0.1),  # 2/2
    ("math-prm", 1.0, 0.0), ("math-prm", 0.0, 1.0),  # 1/2
    ("hep-python", 1.0, 0.0), ("hep-go", 0.5, 0.0),  # 1/1 each
]


def v1_rows() -> list[tuple[str, dict]]:
    """allenai/reward-bench `filtered` rows: prompt, chosen, chosen_model, rejected, rejected_model, subset, id."""
    return [(f"rb: row {i}", {"prompt": f"question {i}", "chosen": f"good answer {i}", "chosen_model": "gpt-4",
                              "rejected": f"bad answer {i}", "rejected_model": "llama", "subset": s, "id": 1000 + i})
            for i, (s, _, _) in enumerate(V1_PAIRS)]


def test_v1_sections_weight_by_upstream_counts_with_math_raised_to_the_code_subsets():
    pairs = collect(v1_rows(), "rb", "x").pairs
    assert [p.subset for p in pairs] == [s for s, _, _ in V1_PAIRS]
    r_c, r_r = np.array([c for _, c, _ in V1_PAIRS]), np.array([r for _, _, r in V1_PAIRS])
    found = D.subset_accuracy([p.subset for p in pairs], r_c, r_r)
    acc = {k.split("/")[1]: v for k, v in found.items() if k.endswith("/" + M.ACCURACY)}
    assert acc == {"alpacaeval-easy": 0.5, "mt-bench-easy": 1.0, "llmbar-natural": 0.5, "donotanswer": 0.0,
                   "xstest-should-respond": 1.0, "math-prm": 0.5, "hep-python": 1.0, "hep-go": 1.0}
    sections, overall = RB.v1_sections(acc)
    chat = (100 * 0.5 + 28 * 1.0) / (100 + 28)
    safety = (136 * 0.0 + 154 * 1.0) / (136 + 154)
    reasoning = (984 * 0.5 + 164 * 1.0 + 164 * 1.0) / (984 + 164 + 164)  # 447 would give 0.7116, pair counts 0.75
    assert sections == pytest.approx({"Chat": chat, "Chat Hard": 0.5, "Safety": safety, "Reasoning": reasoning},
                                     abs=1e-9)
    assert reasoning == pytest.approx(0.625, abs=1e-12)
    assert overall == pytest.approx((chat + 0.5 + safety + reasoning) / 4, abs=1e-9)


def test_v1_counts_are_upstreams_and_a_missing_section_is_an_error():
    assert RB.V1_COUNTS[RB.MATH_SUBSET] == 984 and sum(len(v) for v in RB.V1_SECTIONS.values()) == 23
    assert set(RB.V1_COUNTS) == {s for v in RB.V1_SECTIONS.values() for s in v}
    with pytest.raises(ValueError, match="section 'Safety' has none of its subsets"):
        RB.v1_sections({"alpacaeval-easy": 1.0, "mt-bench-hard": 1.0, "math-prm": 1.0})


def it(subset, correct, incorrect, item_id=None, index=0) -> RB.Item:
    return RB.Item(index, subset, item_id, np.array(correct, dtype=float), np.array(incorrect, dtype=float))


def test_v2_outcome_is_shared_among_completions_tied_at_the_top():
    assert RB.outcome(np.array([2.0]), np.array([1.0, 0.0, 1.5])) == 1.0
    assert RB.outcome(np.array([1.0]), np.array([1.0, 0.0, 0.0])) == 0.5
    assert RB.outcome(np.array([0.0]), np.array([0.0, 0.0, 0.0])) == 0.25
    assert RB.outcome(np.array([1.0]), np.array([2.0, 0.0, 0.0])) == 0.0
    assert RB.outcome(np.array([1.0, 3.0]), np.array([0.0])) == 0.0  # upstream: the first correct must top


# the Ties prompts: (id, correct, incorrect); ref:3 and tied:6 have no partner
TIES = [("ref:1", [2.0], [1.0, 0.5]), ("tied:1", [3.0, 2.5, 2.0], [1.5, 0.0]),
        ("ref:2", [1.0], [1.0]), ("tied:2", [2.0, 1.0], [-0.5]),
        ("ref:3", [0.0], [1.0]),
        ("ref:4", [2.0], [0.0]), ("tied:4", [1.0, 1.0], [0.0]),
        ("ref:5", [1.0], [1.0]), ("tied:5", [1.0, 1.0], [0.0]),
        ("tied:6", [1.0, 0.0], [0.5])]


def ties_expected() -> float:
    ref_acc = 2 / 5  # ref:1, ref:4 (ref:2 and ref:5 tie, a loss)
    tied_acc = 4 / 5  # tied:6 has a correct answer below an incorrect one
    # prompts 1, 2, 4, 5: spread of the correct [1, 1, 0, 0], tied gap [0.5, 1.5, 1, 1], ref gap [1, 0, 2, 0]
    preferred = 3 / 4  # 1.5 > 1, 1 > 0, 1 > 0
    preferred_hard = 1 / 4  # min gaps [0.5, 0, 1, 0]: only 1 > 0
    margin = (math.tanh(0.5 / 1 - 1) + math.tanh(0 / 1 - 1) + 1.0 + 0.0) / 4  # 1/0 → tanh(inf) = 1; 0/0 → 0
    return 0.3 * tied_acc + 0.3 * ref_acc + 0.2 * preferred + 0.2 * preferred_hard + 0.01 * margin


def test_v2_ties_score_by_hand():
    score = RB.ties_score([it("Ties", c, r, i) for i, c, r in TIES])
    assert score == pytest.approx(ties_expected(), abs=1e-9)
    with pytest.raises(ValueError, match="expected 'ref:N' or 'tied:N'"):
        RB.ties_score([it("Ties", [1.0], [0.0], "7")])
    with pytest.raises(ValueError, match="no prompt has both"):
        RB.ties_score([it("Ties", [1.0], [0.0], "ref:1")])


def test_v2_subsets_and_overall():
    items = [it("Factuality", [2.0], [1.0, 0.0, 1.5]), it("Factuality", [1.0], [1.0, 0.0, 0.0]),
             it("Factuality", [0.0], [0.0, 0.0, 0.0]), it("Math", [1.0], [2.0, 0.0, 0.0]),
             it("Math", [3.0], [1.0, 1.0, 1.0]), *[it("Ties", c, r, i) for i, c, r in TIES]]
    accuracy, scores, overall = RB.v2_scores(items)
    assert accuracy["Factuality"] == pytest.approx(1.75 / 3, abs=1e-9) and accuracy["Math"] == 0.5
    assert scores["Factuality"] == accuracy["Factuality"] and scores["Ties"] == pytest.approx(ties_expected(), abs=1e-9)
    assert overall == pytest.approx((1.75 / 3 + 0.5 + ties_expected()) / 3, abs=1e-9)


def test_items_come_back_from_expanded_pairs_with_each_completions_first_reward():
    # item 0: chosen vs three rejected (the chosen scored three times; the first reward stands);
    # item 1: two correct, one incorrect, expanded to two pairs
    got = RB.items(item=[0, 0, 0, 1, 1], chosen_slot=[0, 0, 0, 0, 1], rejected_slot=[0, 1, 2, 0, 0],
                   r_pos=[1.0, 1.0001, 0.9999, 2.0, 1.5], r_neg=[0.5, 1.0, 0.0, 0.0, 0.0],
                   subsets=["Focus"] * 3 + ["Ties"] * 2, item_ids=["a"] * 3 + ["tied:1"] * 2)
    assert [g.index for g in got] == [0, 1] and [g.subset for g in got] == ["Focus", "Ties"]
    assert got[0].correct.tolist() == [1.0] and got[0].incorrect.tolist() == [0.5, 1.0, 0.0]
    assert RB.outcome(got[0].correct, got[0].incorrect) == 0.5  # 1.0 tied with the second rejected
    assert got[1].correct.tolist() == [2.0, 1.5] and got[1].incorrect.tolist() == [0.0] and got[1].item_id == "tied:1"


# ---------------------------------------------------------------------------- N-way rows in the data layer


def v2_row(i: int, subset: str, correct: list[str], incorrect: list[str], item_id: str | None = None) -> dict:
    """An allenai/reward-bench-2 `test` row, every column it has."""
    return {"id": item_id or str(i), "prompt": f"question {i}", "chosen": correct, "rejected": incorrect,
            "num_correct": len(correct), "num_incorrect": len(incorrect),
            "total_completions": len(correct) + len(incorrect), "models": ["m"] * (len(correct) + len(incorrect)),
            "subset": subset, "additional_metadata": {"category": None, "correct": None, "index": None,
                                                      "instruction_id_list": [], "label": None, "method": None,
                                                      "models": [], "prompt_norm": None, "subcategory": None,
                                                      "valid": None}}


def test_nway_rows_become_pairs_that_hold_every_completion_and_read_back_from_the_row_cache(tmp_path):
    from engine.data import row_cache
    from engine.data.sets import whole_items

    rows = [v2_row(0, "Focus", ["right"], ["w1", "w2", "w3"]),
            v2_row(1, "Focus", ["ok"], ["", "w", "w"]),  # an empty completion: the whole item goes
            v2_row(2, "Ties", ["red", "blue", "green"], ["seven", "cat"], "tied:3"),
            {"prompt": "plain", "chosen": "yes", "rejected": "no", "subset": "Focus"}]  # a pair among items
    res = collect([(f"rb2: row {i}", r) for i, r in enumerate(rows, 1)], "rb2", "x")
    assert res.skipped_empty == 1 and res.format == "nway+standard"
    got = [(p.item, p.chosen, p.rejected, p.chosen_slot, p.rejected_slot, p.item_id) for p in res.pairs]
    assert got == [(0, "right", "w1", 0, 0, "0"), (0, "right", "w2", 0, 1, "0"), (0, "right", "w3", 0, 2, "0"),
                   (1, "red", "seven", 0, 0, "tied:3"), (1, "blue", "cat", 1, 1, "tied:3"),
                   (1, "green", "seven", 2, 0, "tied:3"), (2, "yes", "no", 0, 0, None)]
    assert row_cache.store(tmp_path, "k", res)
    back = row_cache.load(tmp_path, "k", "rb2")
    assert [(p.item, p.chosen, p.rejected, p.chosen_slot, p.rejected_slot, p.item_id, p.subset) for p in back.pairs] \
        == [(*g, p.subset) for g, p in zip(got, res.pairs, strict=True)]
    assert [p.item for p in whole_items(res.pairs, 4)] == [0, 0, 0]  # a cap never cuts an item in half
    assert [p.item for p in whole_items(res.pairs, 6)] == [0, 0, 0, 1, 1, 1]


def test_a_malformed_nway_row_is_one_line_naming_the_row():
    from engine.data.rows import DataError

    for row, why in [({"prompt": "p", "chosen": ["a"], "rejected": []}, "non-empty list of texts"),
                     ({"chosen": ["a"], "rejected": ["b"]}, "needs a text prompt"),
                     ({"prompt": "p", "chosen": ["a"], "rejected": ["b"], "margin": 1.0}, "cannot have one"),
                     ({"chosen": [""]}, r"got keys \['chosen'\]"),  # found by test_fuzz: was a KeyError
                     ({"prompt": "p", "rejected": ["b", "c"]}, r"got keys \['prompt', 'rejected'\]")]:
        with pytest.raises(DataError, match=f"rb2: row 1: .*{why}"):
            collect([("rb2: row 1", row)], "rb2", "x")


def test_nway_metrics_and_the_item_predictions_they_write(tmp_path):
    from engine.analysis import predictions as P

    rows = [v2_row(0, "Math", ["a"], ["b", "c", "d"]), v2_row(1, "Math", ["a"], ["b", "c", "d"]),
            *[v2_row(2 + j, "Ties", [f"c{k}" for k in range(len(c))], [f"w{k}" for k in range(len(r))], i)
              for j, (i, c, r) in enumerate(TIES)]]
    pairs = collect([(f"r{i}", r) for i, r in enumerate(rows)], "rb2", "x").pairs
    scores = {0: ([1.0], [0.0, 1.0, 0.5]), 1: ([2.0], [0.0, 1.0, 0.5]),
              **{2 + j: (c, r) for j, (_, c, r) in enumerate(TIES)}}
    r_pos = [scores[p.item][0][p.chosen_slot] for p in pairs]
    r_neg = [scores[p.item][1][p.rejected_slot] for p in pairs]
    out, found = RB.nway_metrics(pairs, r_pos, r_neg)
    assert out[M.N_ITEMS] == 12 and out[M.subset_key("Math", M.ACCURACY)] == 0.75  # ½ (a tie) and 1
    assert out[M.section_key("Ties")] == pytest.approx(ties_expected(), abs=1e-9)
    assert out[M.SECTIONS_MEAN] == pytest.approx((0.75 + ties_expected()) / 2, abs=1e-9)
    P.write_items(tmp_path, "rb2", 0, *RB.item_columns(found))
    back = P.read(tmp_path, "rb2")
    assert isinstance(back, P.Items) and back.index.tolist() == list(range(12))
    assert back.outcome[:2].tolist() == [0.5, 1.0] and back.best_rejected[:2].tolist() == [1.0, 1.0]


def test_paired_scores_give_each_subset_section_and_the_mean_its_difference_and_interval():
    labels = [s for s, _, _ in V1_PAIRS]
    a = np.array([c > r for _, c, r in V1_PAIRS], dtype=float)
    b = a.copy()
    b[[1, 5, 9]] = 1.0  # B also gets alpacaeval-easy's tie, donotanswer and math-prm's second pair right
    got = RB.paired_scores(a, b, labels, RB.v1_table(), n_resamples=2000)
    acc = lambda v: {s: float(np.mean([x for x, lab in zip(v, labels, strict=True) if lab == s])) for s in set(labels)}  # noqa: E731
    (sec_a, all_a), (sec_b, all_b) = RB.v1_sections(acc(a)), RB.v1_sections(acc(b))
    for name in RB.V1_SECTIONS:
        r = got[M.section_key(name)]
        assert (r.acc_a, r.acc_b) == pytest.approx((sec_a[name], sec_b[name]), abs=1e-12)
        assert r.diff == pytest.approx(sec_b[name] - sec_a[name], abs=1e-12) and r.low - 1e-12 <= r.diff <= r.high + 1e-12
    assert got[M.SECTIONS_MEAN].diff == pytest.approx(all_b - all_a, abs=1e-12)
    assert got[M.section_key("Chat Hard")].diff == 0 and got[M.section_key("Chat Hard")].high == 0  # nothing moved
    r = got[M.subset_key("math-prm", M.ACCURACY)]
    assert (r.n, r.acc_a, r.acc_b, r.only_a, r.only_b) == (2, 0.5, 1.0, 0, 1)
    assert r.p == 1.0  # a subset's p: the exact sign test, 2 · ½¹ capped at 1
    mean = got[M.SECTIONS_MEAN]
    assert mean.only_b == 3 and mean.only_a == 0 and 0 < mean.p < 1  # the bootstrap's: B never worse, ties kept
    assert list(got)[:5] == [M.SECTIONS_MEAN, *(M.section_key(n) for n in RB.V1_SECTIONS)]  # then the subsets
    assert M.section_key("Chat") not in RB.paired_scores(a, b, labels, None)  # subsets only, without a table


def test_the_preflight_refuses_ties_rows_it_could_not_score(tmp_path):
    from engine import config as C
    from engine.data import sets

    path = tmp_path / "rb2.jsonl"
    rows = [v2_row(0, "Focus", ["a"], ["b", "c", "d"]), v2_row(1, "Ties", ["red"], ["cat"], "ref:1"),
            v2_row(2, "Ties", ["red", "blue"], ["cat"], "tied:2")]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = C.load(None, ["kind=eval", "data.train=", f"data.eval.rb2={path}"])
    with pytest.raises(C.ConfigError) as e:
        sets.check(cfg)
    assert e.value.problems == [f"data.eval.rb2: {path}: RewardBench 2 Ties: no prompt has both a 'ref:N' and a "
                                "'tied:N' item"]
    rows[2]["id"] = "tied:1"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert sets.check(cfg)["rb2"]["pairs"] == 3 + 1 + 2
