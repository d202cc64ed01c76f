"""Data the way practitioners keep it: parquet, save_to_disk, the hub cache, TRL formats, their column names."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _cli import aplot, one_line_error

from engine.data.rows import DataError
from engine.data.sources import load_pairs

ROOT = Path(__file__).resolve().parents[2]
N = 50


def base_rows() -> list[dict]:
    """50 pairs in aplot's standard shape, with margins and subsets on some."""
    rows = []
    for i in range(N):
        row = {"prompt": f"\n\nHuman: question {i}?\n\nAssistant:", "chosen": f" answer {i}, a good one",
               "rejected": f" answer {i} is {'x' * (i % 7)} bad"}
        row["margin"] = float(i) / 10 if i % 3 == 0 else None  # every row has the column: one parquet schema
        row["subset"] = ["chat", "safety", "code"][i % 3]
        rows.append(row)
    return rows


def conversational_implicit(row: dict) -> dict:
    """TRL's conversational format with the prompt implicit: whole message lists, shared first turn."""
    question = row["prompt"].removeprefix("\n\nHuman: ").removesuffix("\n\nAssistant:")
    out = {side: [{"role": "user", "content": question}, {"role": "assistant", "content": row[side][1:]}]
           for side in ("chosen", "rejected")}
    return out | {k: row[k] for k in ("margin", "subset")}


RENAMED = {"prompt": "question", "chosen": "good", "rejected": "bad", "margin": "score", "subset": "category"}


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def write_parquet(path: Path, rows: list[dict]) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path)


def write_disk(path: Path, rows: list[dict]) -> str:
    from datasets import Dataset

    Dataset.from_list(rows).save_to_disk(str(path))
    return str(path)


def as_tuples(result) -> list[tuple]:
    return [(p.prompt, p.chosen, p.rejected, p.margin, p.subset) for p in result.pairs]


def source(kind: str, tmp_path: Path) -> tuple[str, dict | None]:
    rows = base_rows()
    if kind == "jsonl":
        return write_jsonl(tmp_path / "pairs.jsonl", rows), None
    if kind == "parquet":
        return write_parquet(tmp_path / "pairs.parquet", rows), None
    if kind == "parquet-glob":
        (tmp_path / "shards").mkdir()
        write_parquet(tmp_path / "shards" / "train-00000.parquet", rows[:20])
        write_parquet(tmp_path / "shards" / "train-00001.parquet", rows[20:])
        return str(tmp_path / "shards" / "train-*.parquet"), None
    if kind == "save_to_disk":
        return write_disk(tmp_path / "arrow", rows), None
    if kind == "conversational-implicit":
        return write_jsonl(tmp_path / "conv.jsonl", [conversational_implicit(r) for r in rows]), None
    if kind == "renamed-parquet":
        renamed = [{RENAMED[k]: v for k, v in r.items()} for r in rows]
        return write_parquet(tmp_path / "renamed.parquet", renamed), RENAMED
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["parquet", "parquet-glob", "save_to_disk", "conversational-implicit",
                                  "renamed-parquet"])
def test_the_same_pairs_from_every_source(tmp_path, kind):
    expected = as_tuples(load_pairs(write_jsonl(tmp_path / "base.jsonl", base_rows())))
    assert len(expected) == N and expected[0][4] == "chat" and expected[3][3] == 0.3
    spec, columns = source(kind, tmp_path)
    got = load_pairs(spec, columns)
    assert as_tuples(got) == expected
    assert len(got.sha256) == 64


def test_a_fingerprint_changes_with_the_data(tmp_path):
    rows = base_rows()
    a = load_pairs(write_parquet(tmp_path / "a.parquet", rows)).sha256
    rows[7]["chosen"] += "!"
    assert load_pairs(write_parquet(tmp_path / "b.parquet", rows)).sha256 != a


def test_a_bad_row_names_the_source_the_row_and_the_field(tmp_path):
    rows = base_rows()
    rows[11]["chosen"] = None  # a null cell
    with pytest.raises(DataError, match=r"bad\.parquet: row 12: chosen is null; expected text or a message list$"):
        load_pairs(write_parquet(tmp_path / "bad.parquet", rows))
    renamed = [{RENAMED[k]: v for k, v in r.items()} for r in base_rows()]
    with pytest.raises(DataError, match=r"row 1: no column 'better' \(data.columns.chosen\)"):
        load_pairs(write_parquet(tmp_path / "r.parquet", renamed), {**RENAMED, "chosen": "better"})
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(DataError, match=r"junk\.parquet: not a readable parquet file"):
        load_pairs(str(tmp_path / "junk.parquet"))


def fake_hub_cache(home: Path, repo: str, rows: list[dict]) -> Path:
    """huggingface_hub's cache layout for a dataset repo with one parquet shard, as a download leaves it."""
    root = home / "hub" / f"datasets--{repo.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snap = root / "snapshots" / commit / "data"
    snap.mkdir(parents=True)
    write_parquet(snap / "test-00000-of-00001.parquet", rows)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(commit)
    return root


def hub_env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    return env | {"HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"), "HF_DATASETS_CACHE": str(home / "ds"),
                  "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}


LOAD = ("import sys, json; from engine.data.rows import DataError; from engine.data.sources import load_pairs\n"
        "try:\n    r = load_pairs(sys.argv[1])\n"
        "except DataError as e:\n    print('ERR', e); sys.exit(3)\n"
        "print(json.dumps([[p.prompt, p.chosen, p.rejected, p.margin, p.subset] for p in r.pairs]))\n")


def test_hf_source_loads_from_a_faked_offline_hub_cache(tmp_path):
    home = tmp_path / "hf"
    fake_hub_cache(home, "someone/prefs", base_rows())
    out = subprocess.run([sys.executable, "-c", LOAD, "hf:someone/prefs@test"], env=hub_env(home),
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    expected = as_tuples(load_pairs(write_jsonl(tmp_path / "base.jsonl", base_rows())))
    assert [tuple(p) for p in json.loads(out.stdout)] == expected


def test_a_missing_hub_dataset_fails_in_one_line_within_a_second(tmp_path):
    env = hub_env(tmp_path / "empty")
    code = ("import time, sys; from engine.data.rows import DataError; from engine.data.sources import load_pairs\nt = time.perf_counter()\n"
            "try:\n    load_pairs('hf:nobody/nothing:main@test')\nexcept DataError as e:\n"
            "    print(time.perf_counter() - t); print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
                         cwd=ROOT)
    elapsed, message = out.stdout.splitlines()
    assert float(elapsed) < 1.0
    assert message.startswith("hf:nobody/nothing: not in the local cache") and "\n" not in message
    assert "huggingface-cli download --repo-type dataset nobody/nothing" in message
    assert str(tmp_path / "empty" / "hub") in message


@pytest.mark.parametrize("override, expected", [
    ('data.train="hf:nobody/nothing"', "data.train: hf:nobody/nothing: not in the local cache"),
    ('data.eval.x="pairs.csv"', "data.eval.x: "),
    ('log.trackers=["tensorbord"]', "log.trackers: unknown tracker 'tensorbord'"),
    ('log.trackers=["comet_ml"]', "log.trackers: 'comet_ml' needs the comet-ml package"),
])
def test_fail_before_launch_in_one_line_and_leave_no_run_folder(tiny_config, tmp_path, runs_dir, override,
                                                                expected):
    (tmp_path / "pairs.csv").write_text("prompt,chosen,rejected\n")
    t0 = time.perf_counter()
    proc = aplot("run", tiny_config, override, "-q", runs_dir=runs_dir, env=hub_env(tmp_path / "nohf"))
    line = one_line_error(proc)
    assert expected in line, line
    if "csv" in override:
        assert "unsupported file type" in line
    assert time.perf_counter() - t0 < 30
    assert not [p for p in runs_dir.iterdir() if not p.name.startswith(".")]


def test_columns_and_eval_runs_are_checked_with_the_config():
    from engine import config as C

    with pytest.raises(C.ConfigError) as err:
        C.from_dict({"data": {"columns": {"answer": "x", "chosen": ""}}})
    assert err.value.problems == [
        "data.columns.answer: not one of aplot's columns (prompt, chosen, rejected, margin, subset) (config)",
        "data.columns.chosen: expected your column's name, got '' (config)"]
    with pytest.raises(C.ConfigError, match="data.eval: an eval run needs at least one eval set"):
        C.from_dict({"kind": "eval", "data": {"train": ""}})
    C.from_dict({"kind": "eval", "data": {"train": "", "eval": {"heldout": "h.jsonl"}}})  # no split: name is free
