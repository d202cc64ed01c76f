"""The rater that labels a policy's own samples, and PPO's held-out prompts reused by DPO."""

from __future__ import annotations

from engine.config import Config
from engine.data import synthetic
from engine.dpo import sampling
from engine.rl import train as rl_train


def test_rate_pairs_labels_by_gold_and_leaves_out_ties_and_empty_answers():
    prompts = ["fruit: dog red plum."] * 4
    first = [" pear fig", " cat", " pear", "  "]
    second = [" cat dog", " dog", " pear", " fig"]
    rows = synthetic.rate_pairs(prompts, first, second, seed=0, label_noise=0.0)
    assert rows == [{"prompt": prompts[0], "chosen": " pear fig", "rejected": " cat dog"}]  # a tie, an empty one out
    longer = synthetic.rate_pairs(prompts[:1], [" pear"], [" pear cat dog saw"], seed=0, label_noise=0.0,
                                  length_bias=1.0)
    assert longer[0]["chosen"] == " pear cat dog saw"  # the length-biased rater: longer wins


def test_heldout_prompts_are_ppos():
    cfg = Config(kind="ppo")
    cfg.ppo.eval_prompts = 32
    _, held, _ = rl_train.load_prompts(cfg)
    assert sampling.heldout_prompts(32) == held
