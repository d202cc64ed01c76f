"""`aplot eval RUN --suite rewardbench --suite rewardbench2`, end to end through the CLI, on a faked
local hub cache in each dataset's shape (the parquet files, the README's split table, refs/main), on
one rank and on two gloo ranks; the per-item outcomes of two models compared with a paired bootstrap;
and a missing cache refused in one line, with nothing created."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from _cli import aplot, eval_records, one_line_error
from analysis.test_rewardbench import v2_row
from conftest import TINY_RM

from engine import metrics as M
from engine.analysis import predictions as P
from engine.analysis import rewardbench as RB
from engine.runs import store as mf

V1_SUBSETS = ["alpacaeval-easy", "mt-bench-med", "llmbar-natural", "mt-bench-hard", "donotanswer",
              "xstest-should-refuse", "math-prm", "hep-python"]  # two of each section's subsets
V2_SUBSETS = ["Factuality", "Precise IF", "Math", "Safety", "Focus"]


def _snapshot(hf_home: Path, repo: str, splits: list[str], tables: dict) -> None:
    """A hub-cache snapshot as huggingface_hub leaves it: refs/main naming the snapshot, the README's
    YAML split table, and data/<split>-00000-of-00001.parquet."""
    import pyarrow.parquet as pq

    root = hf_home / "hub" / f"datasets--{repo.replace('/', '--')}"
    snap = root / "snapshots" / ("0" * 40)
    (snap / "data").mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text("0" * 40)
    files = "".join(f"  - split: {s}\n    path: data/{s}-*\n" for s in splits)
    (snap / "README.md").write_text(f"---\nconfigs:\n- config_name: default\n  data_files:\n{files}---\n")
    for split, table in tables.items():
        pq.write_table(table, snap / "data" / f"{split}-00000-of-00001.parquet")


def _v1_table():
    import pyarrow as pa

    rows = [{"prompt": f"Question {i} about {s}?", "chosen": f"A careful answer {i}.", "chosen_model": "gpt-4",
             "rejected": f"no {i}", "rejected_model": "llama-2", "subset": s, "id": i}
            for i, s in enumerate(s for s in V1_SUBSETS for _ in range(2))]
    return pa.Table.from_pylist(rows, schema=pa.schema([("prompt", pa.string()), ("chosen", pa.string()),
                                                         ("chosen_model", pa.string()), ("rejected", pa.string()),
                                                         ("rejected_model", pa.string()), ("subset", pa.string()),
                                                         ("id", pa.int64())]))


def _v2_table():
    import pyarrow as pa

    meta = pa.struct([("category", pa.string()), ("correct", pa.string()), ("index", pa.float64()),
                      ("instruction_id_list", pa.list_(pa.string())), ("label", pa.string()),
                      ("method", pa.string()), ("models", pa.list_(pa.string())), ("prompt_norm", pa.string()),
                      ("subcategory", pa.string()), ("valid", pa.float64())])

    rows = [v2_row(i, s, [f"A right answer {i}."], [f"wrong {i}", f"bad {i} answer", f"no {i}"])
            for i, s in enumerate(s for s in V2_SUBSETS for _ in range(2))]
    rows += [v2_row(20, "Ties", ["Red."], ["Seven.", "A cat.", "Loud."], "ref:1"),
             v2_row(21, "Ties", ["Red.", "Blue.", "Green."], ["Seven.", "A cat."], "tied:1")]
    return pa.Table.from_pylist(rows, schema=pa.schema([
        ("id", pa.string()), ("prompt", pa.string()), ("chosen", pa.list_(pa.string())),
        ("rejected", pa.list_(pa.string())), ("num_correct", pa.int64()), ("num_incorrect", pa.int64()),
        ("total_completions", pa.int64()), ("models", pa.list_(pa.string())), ("subset", pa.string()),
        ("additional_metadata", meta)]))


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """(store, a tiny RM run trained with the RewardBench 2 rows as one of its eval sets, env with HF_HOME
    at the faked hub cache)."""
    import pyarrow.parquet as pq

    base = tmp_path_factory.mktemp("suite")
    runs, hf_home = base / "runs", base / "hf"
    v1, v2 = _v1_table(), _v2_table()
    _snapshot(hf_home, "allenai/reward-bench", ["raw", "filtered"], {"filtered": v1, "raw": v1})
    _snapshot(hf_home, "allenai/reward-bench-2", ["test"], {"test": v2})
    pq.write_table(v2, base / "rb2.parquet")
    (base / "tiny.toml").write_text(TINY_RM)
    proc = aplot("run", base / "tiny.toml", "optim.max_steps=2", "eval.every=0", "checkpoint.every=0",
                 "data.synthetic_pairs=60", f"data.eval.rb2={base / 'rb2.parquet'}", "-q", runs_dir=runs)
    assert proc.returncode == 0, proc.stderr
    ((paths, _),) = mf.list_runs(runs)
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)
    env.pop("HF_DATASETS_CACHE", None)
    return runs, paths.id, env


def test_an_rm_run_scores_an_nway_eval_set_per_item(bench):
    runs, run_id, _ = bench
    paths = mf.find_run(runs, run_id)
    rec = eval_records(paths)["rb2"]
    items = P.read(paths.dir, "rb2")
    assert isinstance(items, P.Items) and rec[M.N_ITEMS] == len(items.index) == 12 and rec[M.N_PAIRS] == 36
    assert rec[M.ACCURACY] == pytest.approx(float(items.outcome.mean()), abs=1e-6) and M.PAIR_ACCURACY in rec
    assert P.read_labels(paths.dir, "rb2") == [s for s in V2_SUBSETS for _ in range(2)] + ["Ties", "Ties"]


def _eval(runs: Path, env: dict, model: str, *extra: str):
    return aplot("eval", model, "--which", "final", "--suite", "rewardbench", "--suite", "rewardbench2", "-q",
                 *extra, runs_dir=runs, env=env, timeout=600)


def _new_run(runs: Path, before: set[str]) -> mf.RunPaths:
    (paths,) = [p for p, _ in mf.list_runs(runs) if p.id not in before]
    assert mf.read(paths)["status"] == "completed"
    return paths


def test_a_missing_hub_cache_is_one_line_saying_what_to_download(bench, tmp_path):
    runs, model, env = bench
    before = {p.id for p, _ in mf.list_runs(runs)}
    proc = aplot("eval", model, "--which", "final", "--suite", "rewardbench2", runs_dir=runs,
                 env={**env, "HF_HOME": str(tmp_path / "none")})
    line = one_line_error(proc)
    assert proc.returncode == 2
    assert "data.eval.rewardbench2: hf:allenai/reward-bench-2: not in the local cache" in line
    assert "huggingface-cli download --repo-type dataset allenai/reward-bench-2" in line
    assert {p.id for p, _ in mf.list_runs(runs)} == before  # nothing created
    proc = aplot("eval", model, "--suite", "rewardbench3", runs_dir=runs, env=env)
    assert "--suite rewardbench3: expected rewardbench | rewardbench2" in one_line_error(proc)


def test_both_suites_score_by_their_rules_on_one_and_two_ranks(bench):
    runs, model, env = bench
    with ThreadPoolExecutor(2) as pool:  # the one- and two-rank launches side by side
        one_f, two_f = pool.submit(_eval, runs, env, model), pool.submit(_eval, runs, env, model,
                                                                         "launch.num_processes=2")
        one, two = one_f.result(), two_f.result()
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    a, a2 = sorted((p for p, m in mf.list_runs(runs) if m["kind"] == "eval"),
                   key=lambda p: mf.read(p)["resolved"]["world_size"])
    assert [mf.read(p)["resolved"]["world_size"] for p in (a, a2)] == [1, 2]

    rec = eval_records(a)
    v1, v2 = rec["rewardbench"], rec["rewardbench2"]
    # v1: 16 pairs, each section from its subsets' accuracies with upstream's weights, the overall their mean
    assert v1[M.N_PAIRS] == 16 and M.N_ITEMS not in v1
    acc = {s: v1[M.subset_key(s, M.ACCURACY)] for s in V1_SUBSETS}
    sections, overall = RB.v1_sections(acc)
    for name, score in sections.items():
        assert v1[M.section_key(name)] == pytest.approx(score, abs=1e-9)
    assert v1[M.SECTIONS_MEAN] == pytest.approx(overall, abs=1e-9)
    pred = P.read(a.dir, "rewardbench")
    assert isinstance(pred, P.Predictions) and len(pred.index) == 16
    right = pred.r_pos > pred.r_neg
    assert acc["math-prm"] == right[12:14].mean() and acc["alpacaeval-easy"] == right[0:2].mean()
    # v2: 12 items (3 pairs each, Ties' two rows 3 pairs each), accuracy per item, one outcome an item written
    assert v2[M.N_ITEMS] == 12 and v2[M.N_PAIRS] == 36
    items = P.read(a.dir, "rewardbench2")
    assert isinstance(items, P.Items) and items.index.tolist() == list(range(12))
    assert v2[M.ACCURACY] == pytest.approx(float(items.outcome.mean()), abs=1e-6)
    for k, s in enumerate(V2_SUBSETS):
        assert v2[M.subset_key(s, M.ACCURACY)] == pytest.approx(float(items.outcome[2 * k:2 * k + 2].mean()), abs=1e-6)
        assert v2[M.section_key(s)] == v2[M.subset_key(s, M.ACCURACY)]
    assert -0.01 <= v2[M.section_key("Ties")] <= 1.01  # 1 % is a tanh term in [-1, 1]
    assert v2[M.SECTIONS_MEAN] == pytest.approx(np.mean([v2[M.section_key(s)] for s in [*V2_SUBSETS, "Ties"]]),
                                                abs=1e-9)
    # two ranks: the same numbers
    rec2 = eval_records(a2)
    for set_name in ("rewardbench", "rewardbench2"):
        for key, value in rec[set_name].items():
            if isinstance(value, float):
                assert rec2[set_name][key] == pytest.approx(value, abs=1e-5), (set_name, key)
    assert np.allclose(P.read(a2.dir, "rewardbench2").outcome, items.outcome)

    # show: the overall, each section and each subset (with its count)
    shown = aplot("show", a.id, runs_dir=runs, env=env).stdout
    assert "[eval/rewardbench @ step 0: sections and subsets]" in shown
    assert f"overall (mean of the 4 sections)  {v1[M.SECTIONS_MEAN]:.4f}" in shown
    w1, w2 = len("xstest-should-refuse"), len("Factuality")  # each block's longest name sets its column
    assert f"    {'Chat Hard':<{w1}}  {v1[M.section_key('Chat Hard')]:.4f}\n" in shown
    assert f"    {'math-prm':<{w1}}  {acc['math-prm']:.4f}  (2)\n" in shown
    assert f"    {'Ties':<{w2}}  {v2[M.section_key('Ties')]:.4f}\n" in shown and "subsets: accuracy (items)" in shown

    # compare: the v1 set pair by pair, the v2 set item by item (the same model: no difference)
    proc = aplot("compare", a.id, a2.id, "--json", runs_dir=runs, env=env)
    assert proc.returncode == 0, proc.stderr
    lines = {p["set"]: p for p in json.loads(proc.stdout)["pairs"] if p["measure"] == M.ACCURACY}
    assert lines["rewardbench"]["n"] == 16 and lines["rewardbench2"]["n"] == 12
    assert lines["rewardbench2"]["measure"] == M.ACCURACY and lines["rewardbench2"]["diff"] == 0
    measures = {(p["set"], p["measure"]) for p in json.loads(proc.stdout)["pairs"]}
    assert {("rewardbench", M.section_key(n)) for n in RB.V1_SECTIONS} | {("rewardbench", M.SECTIONS_MEAN)} <= measures
    assert {("rewardbench", M.subset_key(s, M.ACCURACY)) for s in V1_SUBSETS} <= measures
    assert {("rewardbench2", M.subset_key(s, M.ACCURACY)) for s in V2_SUBSETS} <= measures


def test_the_tui_table_adds_two_lines_a_set_with_sections_and_one_for_rewardbench_2():
    from aplot_tui.views.sections_text import compact_lines

    v1 = {M.section_key("Chat"): 0.5, M.section_key("Safety"): 0.25, M.SECTIONS_MEAN: 0.375,
          M.subset_key("donotanswer", M.ACCURACY): 0.25, M.subset_key("alpacaeval-easy", M.ACCURACY): 0.5}
    assert compact_lines("rb", v1) == ["rb: overall 0.375 · Chat 0.500 · Safety 0.250",
                                       "rb subsets: alpacaeval-easy 0.500 · donotanswer 0.250"]
    v2 = {M.section_key("Math"): 0.5, M.subset_key("Math", M.ACCURACY): 0.5, M.SECTIONS_MEAN: 0.5}
    assert compact_lines("rb2", v2) == ["rb2: overall 0.500 · Math 0.500"]
    assert compact_lines("plain", {M.ACCURACY: 0.9}) == []


def test_two_models_items_are_compared_with_a_paired_bootstrap(tmp_path):
    """Two eval runs' per-item outcomes (1, a tie's ½ or ⅓, 0) on one N-way set: the difference and its
    interval are over items, paired by item number."""
    from aplot_tui.views import run_data, significance

    dirs = []
    for name, outcome in (("a", [1, 0, 0.5, 1, 0, 1, 1, 0]), ("b", [1, 1, 1, 1, 1 / 3, 1, 1, 0])):
        paths = mf.run_paths(tmp_path, mf.new_run_id(name, "eval"))
        mf.create(paths, name=name, kind="eval", config={"kind": "eval", "model": {"name": name}})
        n = len(outcome)
        P.write_items(paths.dir, "rewardbench2", 0, outcome, np.zeros(n), np.zeros(n), np.arange(n))
        P.write_labels(paths.dir, "rewardbench2", ["Math"] * 4 + ["Focus"] * 4)
        dirs.append(paths.dir)
    line, *by_subset = significance.analyse([run_data.load_run(d) for d in dirs]).pairs
    focus, math_ = (r.result for r in by_subset)
    assert [r.measure for r in by_subset] == [M.subset_key(s, M.ACCURACY) for s in ("Focus", "Math")]
    assert (math_.n, math_.diff, focus.diff) == (4, pytest.approx(1.5 / 4), pytest.approx((1 / 3) / 4))
    assert line.set_name == "rewardbench2" and line.measure == M.ACCURACY and line.result.n == 8
    assert line.result.diff == pytest.approx((1 + 0.5 + 1 / 3) / 8, abs=1e-7)
    assert (line.result.only_a, line.result.only_b) == (0, 3)  # items where one model's outcome is the higher
    assert line.result.low <= line.result.diff <= line.result.high and line.result.low >= 0


def test_a_suite_reads_a_parquet_in_its_shape_instead_of_the_hub_cache(bench, tmp_path):
    import pyarrow.parquet as pq

    from aplot_tui.cli.common import UserError
    from aplot_tui.cli.runs import eval_config
    from engine.data import sets

    runs, model, _ = bench
    pq.write_table(_v1_table(), tmp_path / "filtered.parquet")
    cfg, _ = eval_config(runs, model, [], None, "final", "", [], [f"rewardbench={tmp_path / 'filtered.parquet'}",
                                                                     "rewardbench2=hf:someone/rb2-copy@test"])
    assert cfg.data.eval == {"rewardbench": str(tmp_path / "filtered.parquet"), "rewardbench2": "hf:someone/rb2-copy@test"}
    assert cfg.eval.sections == RB.SUITE_V1
    cfg.data.eval.pop("rewardbench2")
    assert sets.check(cfg)["rewardbench"]["pairs"] == 16
    with pytest.raises(UserError, match="brings RewardBench's own sections"):
        eval_config(runs, model, [], tmp_path / "s.toml", "final", "", [], ["rewardbench"])
