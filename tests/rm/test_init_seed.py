"""`model.init_seed`: members of an ensemble that share their starting weights and differ in data order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine import config as config_mod
from engine.models import build_reward_model, train_tokenizer
from engine.rm.train import micro_batch_indices

TINY = ["model.tiny.hidden_size=32", "model.tiny.num_layers=1", "model.tiny.num_heads=4", "model.tiny.vocab_size=300"]


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer([f"Human: question {i}? Assistant: answer {i % 5}." for i in range(200)], 300, 64)


def start(tok, *overrides: str) -> tuple[dict, np.ndarray]:
    """A run's initial weights and its first micro-batch, as engine/rm/train.py draws them."""
    cfg = config_mod.load(None, ["kind=\"rm\"", *TINY, *overrides])
    resolved = config_mod.resolve(cfg, 400, 1)
    model = build_reward_model(cfg.model, tok, seed=cfg.seed)
    first = micro_batch_indices(1, 0, resolved, cfg.seed, 0, resolved["pairs_per_micro_batch"])
    return model.state_dict(), first


def test_one_init_seed_starts_runs_of_two_seeds_from_the_same_weights_in_different_orders(tok):
    w0, order0 = start(tok, "seed=0", "model.init_seed=11")
    w1, order1 = start(tok, "seed=1", "model.init_seed=11")
    assert w0.keys() == w1.keys() and all(torch.equal(w0[k], w1[k]) for k in w0)
    assert not np.array_equal(order0, order1)


def test_without_init_seed_the_run_seed_draws_the_weights(tok):
    w0, _ = start(tok, "seed=0")
    w1, _ = start(tok, "seed=1")
    w0_again, _ = start(tok, "seed=0", "model.init_seed=0")
    assert not torch.equal(w0["hf_model.score.weight"], w1["hf_model.score.weight"])
    assert all(torch.equal(w0[k], w0_again[k]) for k in w0)


def test_init_seed_below_minus_one_is_refused_in_one_line():
    with pytest.raises(config_mod.AplotError, match="model.init_seed"):
        config_mod.load(None, ["kind=\"rm\"", "model.init_seed=-2"])
