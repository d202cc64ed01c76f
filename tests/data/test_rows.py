"""The row layer's refusals: column mappings that point nowhere, prompts that are missing rather
than implicit, empty sets. Each is one DataError naming the file and its line or row."""

import json
from pathlib import Path

import pytest

from engine.data.rows import DataError
from engine.data.sources import load_pairs

ROW = {"question": "\n\nHuman: hi?\n\nAssistant:", "chosen": " 1. hello", "rejected": " 1. go away"}


def jsonl(path: Path, rows: list) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_a_mapped_prompt_column_that_a_row_lacks_is_an_error_not_an_implicit_prompt(tmp_path):
    """Before, `prompt = "nope"` fell back to the responses' common prefix (here "1."), silently."""
    path = jsonl(tmp_path / "p.jsonl", [ROW] * 3)
    with pytest.raises(DataError) as err:
        load_pairs(path, {"prompt": "nope"})
    assert str(err.value) == f"{path}:1: no column 'nope' (data.columns.prompt); columns found: chosen, question, rejected"
    assert [p.prompt for p in load_pairs(path, {"prompt": "question"}).pairs] == [ROW["question"]] * 3
    path = jsonl(tmp_path / "q.jsonl", [ROW, ROW, {k: v for k, v in ROW.items() if k != "question"}])
    with pytest.raises(DataError, match=r"q\.jsonl:3: no column 'question' \(data\.columns\.prompt\)"):
        load_pairs(path, {"prompt": "question"})


def test_a_mapped_margin_or_subset_a_set_lacks_is_noted_not_an_error(tmp_path):
    """One [data.columns] serves every set and a set may have no margins: `engine.data.sets` refuses a
    mapping only when no set has the column."""
    rows = [{"prompt": "p", "chosen": "a", "rejected": "b"}] * 2 + [{"prompt": "p", "chosen": "a", "rejected": "b",
                                                                    "score": 2}]
    path = jsonl(tmp_path / "p.jsonl", rows)
    res = load_pairs(path, {"margin": "scroe", "subset": "kind"})
    assert (res.absent, res.columns) == ({"margin": "scroe", "subset": "kind"}, ["chosen", "prompt", "rejected", "score"])
    res = load_pairs(path, {"margin": "score"})
    assert [p.margin for p in res.pairs] == [None, None, 2.0] and (res.absent, res.columns) == ({}, [])


def test_a_null_prompt_is_a_missing_value_and_no_prompt_column_is_the_implicit_format(tmp_path):
    from data.test_sources import write_parquet

    rows = [{"prompt": "Q:", "chosen": " yes", "rejected": " no"}, {"prompt": None, "chosen": "Q: a", "rejected": "Q: b"}]
    with pytest.raises(DataError) as err:
        load_pairs(write_parquet(tmp_path / "p.parquet", rows))
    assert str(err.value) == (f"{tmp_path / 'p.parquet'}: row 2: prompt is null; expected text or a message list "
                              "(leave the column out for an implicit prompt)")
    implicit = load_pairs(jsonl(tmp_path / "i.jsonl", [{"chosen": "Q: a", "rejected": "Q: b"}]))
    assert (implicit.pairs[0].prompt, implicit.format) == ("Q:", "implicit")


@pytest.mark.parametrize("name, text", [("e.jsonl", ""), ("blank.jsonl", "\n  \n"), ("e.json", "[]")])
def test_an_empty_set_says_it_is_empty(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    with pytest.raises(DataError) as err:
        load_pairs(str(tmp_path / name))
    assert str(err.value) == f"{tmp_path / name}: no rows (the data set is empty)"


def test_the_preflight_reads_every_kind_of_set_without_torch(tmp_path):
    """The parent checks data torch-free: the row layer, the sources and the preflight never load the
    trainer's stack (the old `data.pairs` <-> `sources` circle pulled torch into a parquet check)."""
    import subprocess
    import sys

    from data.test_sources import write_parquet

    rows = [{"prompt": "p", "chosen": "a", "rejected": "b"}]
    train, ood = jsonl(tmp_path / "t.jsonl", rows), write_parquet(tmp_path / "o.parquet", rows)
    code = ("import sys; from engine import config as C; from engine.data import sets\n"
            f"print(sets.check(C.from_dict({{'data': {{'train': {train!r}, 'eval_fraction': 0.0, "
            f"'eval': {{'ood': {ood!r}}}}}}}), {str(tmp_path / 'runs')!r}))\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'accelerate'}))\n"
            "print('engine.data.pairs' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.splitlines() == ["{'train': {'pairs': 1, 'skipped_empty': 0}, 'ood': {'pairs': 1, "
                                       "'skipped_empty': 0}}", "[]", "False"]
