"""The synthetic demo task: determinism, the gold rule on hand-counted responses, labelled pairs."""

from __future__ import annotations

import pytest

from engine.data import synthetic as S


def test_gold_reward_hand_counted():
    p = "fruit: dog red plum."
    assert S.gold_reward(p, " apple pear dog") == pytest.approx(2 / (3 + 2))
    assert S.gold_reward(p, " apple pear fig") == pytest.approx(3 / 5)
    assert S.gold_reward(p, " dog red") == 0.0
    assert S.gold_reward(p, "") == 0.0
    assert S.gold_reward(p, " appl ## pear") == pytest.approx(1 / 5)  # fragments are off topic
    # each on-topic word helps, each other word hurts, and saying nothing is the worst
    assert S.gold_reward(p, " apple pear fig plum") > S.gold_reward(p, " apple pear")
    assert S.gold_reward(p, " apple pear zz") < S.gold_reward(p, " apple pear")
    assert S.gold_reward(p, " zz qq") == S.gold_reward(p, "") == 0.0


def test_gold_judge_ties_half():
    p = "tool: cat owl saw."
    assert S.gold_judge(p, " saw axe", " saw cat") == 1.0
    assert S.gold_judge(p, " saw cat", " saw axe") == 0.0
    assert S.gold_judge(p, " saw axe", " nail rope") == 0.5


def test_unknown_topic_is_an_error():
    with pytest.raises(ValueError, match="unknown topic"):
        S.gold_reward("weather: sunny", " rain")


def test_generators_are_deterministic_and_seeded():
    assert S.make_prompts(20, 3) == S.make_prompts(20, 3)
    assert S.make_prompts(20, 3) != S.make_prompts(20, 4)
    assert S.make_pairs(30, 1, 0.1) == S.make_pairs(30, 1, 0.1)
    assert S.make_pairs(30, 1, 0.1) != S.make_pairs(30, 2, 0.1)
    prompts = S.make_prompts(10, 0)
    assert S.reference_completions(prompts, 5) == S.reference_completions(prompts, 5)
    assert S.corpus(0, n=50) == S.corpus(0, n=50)


def test_pairs_are_ordered_by_gold_with_the_asked_noise():
    clean = S.make_pairs(500, 0, 0.0)
    assert len(clean) == 500
    assert all(S.gold_reward(r["prompt"], r["chosen"]) > S.gold_reward(r["prompt"], r["rejected"])
               for r in clean)
    noisy = S.make_pairs(2000, 0, 0.2)
    flipped = sum(S.gold_reward(r["prompt"], r["chosen"]) < S.gold_reward(r["prompt"], r["rejected"])
                  for r in noisy) / len(noisy)
    assert 0.17 < flipped < 0.23  # binomial sd ≈ 0.009


def test_a_length_biased_rater_labels_its_share_longer_wins_and_nothing_else():
    def longer_chosen(rows):
        unequal = [r for r in rows if len(r["chosen"].split()) != len(r["rejected"].split())]
        return sum(len(r["chosen"].split()) > len(r["rejected"].split()) for r in unequal) / len(unequal)

    assert S.make_pairs(300, 0, 0.1, length_bias=0.0) == S.make_pairs(300, 0, 0.1)  # 0: the rows of before
    always = S.make_pairs(500, 0, 0.0, length_bias=1.0)
    assert longer_chosen(always) == 1.0
    gold = S.make_pairs(2000, 0, 0.0)
    half = S.make_pairs(2000, 0, 0.0, length_bias=0.5)
    # gold alone prefers the longer answer at some rate q; half the rows relabelled give q + (1 − q)/2
    q = longer_chosen(gold)
    assert abs(longer_chosen(half) - (q + (1 - q) / 2)) < 0.04  # binomial sd ≈ 0.011
    # what the rater changed it changed toward length only: every row against gold has chosen longer
    against_gold = [r for r in half if S.gold_reward(r["prompt"], r["chosen"]) < S.gold_reward(r["prompt"], r["rejected"])]
    assert against_gold and all(len(r["chosen"].split()) > len(r["rejected"].split()) for r in against_gold)


def test_reference_is_mediocre_and_leaves_room():
    prompts = S.make_prompts(400, 0)
    refs = S.reference_completions(prompts, 0)
    words = [(S.topic_of_prompt(p), w) for p, r in zip(prompts, refs, strict=True) for w in r.split()]
    on_topic = sum(S.TOPIC_OF[w] == t for t, w in words) / len(words)
    assert abs(on_topic - S.REFERENCE_ON_TOPIC) < 0.04
    golds = [S.gold_reward(p, r) for p, r in zip(prompts, refs, strict=True)]
    mean = sum(golds) / len(golds)
    assert 0.2 < mean < 0.4  # an all-on-topic answer of 8 words scores 0.8
    assert sum(g == 0.0 for g in golds) / len(golds) < 0.1  # an empty answer loses to nearly all of it
    assert all(4 <= len(r.split()) <= 10 for r in refs)


def test_corpus_covers_the_vocabulary():
    text = " ".join(S.corpus(0, n=100))
    for word in list(S.WORDS) + list(S.TOPICS):
        assert word in text
