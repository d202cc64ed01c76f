"""A config's sets read together: what only the whole config can tell (a mapping no set has)."""

import json
from pathlib import Path

import pytest

from engine import config as C
from engine.data import sets


def jsonl(path: Path, rows: list) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_a_mapped_margin_column_no_set_has_is_one_line_and_one_set_having_it_is_enough(tmp_path):
    plain = [{"prompt": f"p{i}", "chosen": "a", "rejected": "b"} for i in range(10)]
    train = jsonl(tmp_path / "t.jsonl", [r | {"score": 1.0} for r in plain])
    ood = jsonl(tmp_path / "o.jsonl", plain)
    cfg = C.from_dict({"data": {"train": train, "eval": {"ood": ood}, "columns": {"margin": "score"}}})
    assert sets.check(cfg)["ood"]["pairs"] == 10  # the eval set has no margins: fine
    cfg = C.from_dict({"data": {"train": train, "eval": {"ood": ood}, "columns": {"margin": "scroe"}}})
    with pytest.raises(C.ConfigError) as err:
        sets.check(cfg, tmp_path / "runs")
    assert err.value.problems == [f"data.columns.margin: no column 'scroe' in any row of {train}, {ood}; "
                                  "columns found: chosen, prompt, rejected, score"]
    assert not (tmp_path / "runs").exists()


def test_a_set_that_failed_is_not_also_blamed_for_a_mapped_column_it_may_have(tmp_path):
    bad = tmp_path / "t.jsonl"
    bad.write_text('{"prompt": "p", "chosen": "a", "rejected": "b", "score": 1}\n{\n')
    ood = jsonl(tmp_path / "o.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "b"}])
    cfg = C.from_dict({"data": {"train": str(bad), "eval": {"ood": ood}, "columns": {"margin": "score"}}})
    with pytest.raises(C.ConfigError) as err:
        sets.check(cfg)
    assert err.value.problems == [f"data.train: {bad}:2: invalid JSON (Expecting property name enclosed in double "
                                  "quotes: column 2)"]
