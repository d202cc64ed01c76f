"""A DPO config's cross-field checks say one line each, naming what set the value."""

from __future__ import annotations

import pytest

from engine import config as C


def test_demo_dpo_validates_and_its_gold_needs_the_synthetic_task():
    cfg = C.load(None, [], preset="demo-dpo")
    assert (cfg.kind, cfg.dpo.pairs, cfg.dpo.judge) == ("dpo", "reference", "gold")
    with pytest.raises(C.ConfigError) as err:
        C.load(None, ['data.train="pairs.jsonl"'], preset="demo-dpo")
    assert err.value.problems == [
        'data.train: dpo.judge = "gold", dpo.pairs = "reference" and dpo.sft_steps need the synthetic task, the only '
        'one with a gold rule, a rater and reference completions (command line: data.train="pairs.jsonl", over preset '
        'demo-dpo)']


def test_label_smoothing_is_for_the_sigmoid_loss_only():
    with pytest.raises(C.ConfigError) as err:
        C.load(None, ["kind=dpo", "dpo.type=ipo", "dpo.label_smoothing=0.1"])
    assert err.value.problems == ['dpo.label_smoothing: cDPO\'s smoothing applies to dpo.type = "sigmoid", got '
                                  "'ipo' (command line: dpo.label_smoothing=0.1; command line: dpo.type=ipo)"]
    assert C.load(None, ["kind=dpo", "dpo.label_smoothing=0.1"]).dpo.label_smoothing == 0.1


def test_the_offset_loss_needs_a_margin_column_the_synthetic_task_lacks():
    with pytest.raises(C.ConfigError) as err:
        C.load(None, ["kind=dpo", "dpo.type=offset"])
    assert err.value.problems == ["dpo.type: offset reads each pair's `margin` column, which the synthetic task's pairs "
                                  "do not have (command line: dpo.type=offset)"]
    assert C.load(None, ["kind=dpo", "dpo.type=offset", 'data.train="p.jsonl"']).dpo.type == "offset"
