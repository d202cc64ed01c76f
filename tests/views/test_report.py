"""The headless comparison (report.py) on hand-written runs: final/best, diff, tables, charts."""

from __future__ import annotations

import csv
import io
import json

import pytest

from aplot_tui.views import report, run_data
from engine import metrics as M
from engine.runs import store as mf


def write_run(root, run_id: str, config: dict, lines: list[tuple[int, str, dict]]):
    paths = mf.RunPaths(root / run_id)
    mf.create(paths, name=run_id.split("-")[3], kind="rm", config=config)
    paths.metrics.write_text("".join(json.dumps({"time": float(s), "step": s, "split": sp, "data": d}) + "\n"
                                     for s, sp, d in lines))
    return paths.dir


@pytest.fixture
def two_runs(tmp_path):
    a = write_run(tmp_path, "20260101-000000-rm-alpha-0001", {"loss": {"type": "bt"}, "optim": {"lr": 1e-5}}, [
        (1, "train", {"loss": 0.9, "accuracy": 0.5}), (2, "train", {"loss": 0.5, "accuracy": 0.8}),
        (3, "train", {"loss": 0.7, "accuracy": 0.6}), (3, "eval/heldout", {"accuracy": 0.75}),
    ])
    b = write_run(tmp_path, "20260101-000100-rm-beta-0002", {"loss": {"type": "aplot"}, "optim": {"lr": 1e-5}}, [
        (1, "train", {"loss": 0.6, "accuracy": 0.7}), (2, "train", {"loss": 0.65, "accuracy": 0.72}),
    ])
    return [a, b]


def test_compare_table_final_and_best_by_direction(two_runs):
    alpha, beta = run_data.table_rows([run_data.load_run(d) for d in two_runs])
    assert (alpha["name"], alpha["loss"], alpha["steps"]) == ("alpha", "bt", 3)
    # a train batch's value is no best: its 16 pairs may all be right by chance
    assert (alpha["loss final"], alpha["loss best"]) == (0.7, None)
    assert (alpha["accuracy final"], alpha["accuracy best"]) == (0.6, None)
    assert alpha["eval/heldout/accuracy final"] == 0.75
    assert beta["eval/heldout/accuracy final"] is None and beta["loss best"] is None


def test_best_follows_each_metrics_direction_and_baselines_get_none(tmp_path):
    evals = [{"accuracy": 0.7, "loss": 0.6, "diag/ece": 0.05, "diag/reward_length_corr": -0.1,
              "diag/shorter_wins_acc": 0.9},
             {"accuracy": 0.8, "loss": 0.4, "diag/ece": 0.09, "diag/reward_length_corr": 0.3,
              "diag/shorter_wins_acc": 0.5}]
    run = run_data.load_run(write_run(tmp_path, "20260101-000000-rm-alpha-0001", {}, [
        (1, "train", {"objective/kl": -0.027, "accuracy": 1.0}), (2, "train", {"objective/kl": 0.4, "accuracy": 0.6}),
        *((s, "eval/heldout", d) for s, d in zip((1, 2), evals, strict=True))]))
    best = {k: run_data.final_best(run, k)[1] for k in run.series}
    assert best["eval/heldout/accuracy"] == 0.8 and best["eval/heldout/loss"] == 0.4
    assert best["eval/heldout/diag/ece"] == 0.05  # calibration error: lower
    assert best["eval/heldout/diag/reward_length_corr"] == -0.1  # the weaker length tie, not the larger number
    assert best["eval/heldout/diag/shorter_wins_acc"] is None  # a baseline rule, not the model
    assert best["objective/kl"] is None and best["accuracy"] is None  # a cost, and one train batch
    assert run_data.best_across("eval/heldout/diag/reward_length_corr final", [0.3, -0.05, None]) == -0.05
    assert run_data.best_across("eval/heldout/diag/ece best", [0.2, 0.1]) == 0.1
    assert run_data.best_across("objective/kl final", [-0.027, 0.5]) is None


def test_tables_as_csv_markdown_and_text(two_runs):
    rows = run_data.table_rows([run_data.load_run(d) for d in two_runs])
    parsed = list(csv.DictReader(io.StringIO(report.format_table(rows, "csv"))))
    assert parsed[0]["loss final"] == "0.7" and parsed[1]["eval/heldout/accuracy final"] == ""
    md = report.format_table(rows, "md").splitlines()
    assert md[0].startswith("| id | name |") and md[3].split(" | ")[1] == "beta"
    text = report.format_table(rows, "text").splitlines()
    # text: a legend, then metrics as rows and runs as columns (A, B)
    assert text[0].split()[0] == "A" and text[1].split()[2] == "(beta)"
    assert text[3].split() == ["A", "B"]
    body = {line.rsplit(None, 2)[0]: line.split()[-2:] for line in text[4:]}
    assert body["loss final"] == ["0.7", "0.65"] and body["eval/heldout/accuracy final"] == ["0.75", "—"]
    assert "loss best" not in body  # no run has a best of a train batch's loss
    with pytest.raises(ValueError):
        report.format_table(rows, "xlsx")


def test_diff_fields_lists_only_differing_paths():
    a = {"loss": {"type": "bt", "aplot": {"epsilon": 0.1}}, "seed": 0, "tags": [], "data": {"eval": {}}}
    b = {"loss": {"type": "bt", "aplot": {"epsilon": 0.2}}, "seed": 0, "tags": [], "data": {"eval": {}}}
    c = {"loss": {"type": "aplot", "aplot": {"epsilon": 0.1}}, "seed": 0, "tags": [], "data": {"eval": {"ood": "x"}}}
    assert run_data.diff_fields([a, b, c]) == [("data.eval.ood", [None, None, "x"]),
                                             ("loss.aplot.epsilon", [0.1, 0.2, 0.1]),
                                             ("loss.type", ["bt", "bt", "aplot"])]
    assert run_data.diff_fields([a, a]) == []


def test_metric_keys_name_train_bare_and_eval_with_their_set():
    assert M.split_key("eval/heldout/accuracy") == ("eval/heldout", "accuracy")
    assert M.split_key("objective/kl") == ("train", "objective/kl")
    assert M.metric_key("eval/win", "win_rate") == "eval/win/win_rate"
    assert not M.higher_is_better("objective/kl") and not M.higher_is_better("loss/value_avg")
    assert M.higher_is_better("eval/win/win_rate")


def test_export_svg_png_csv_md(two_runs, tmp_path):
    svg = report.export_compare(two_runs, tmp_path / "c.svg").read_text()
    assert svg.count("<polyline") == 2 + 2  # loss, accuracy: both runs; heldout accuracy has one point
    assert svg.count("<circle") == 1  # ... drawn as a dot
    assert ">alpha <tspan" in svg and ">beta <tspan" in svg
    only = report.export_compare(two_runs, tmp_path / "l.svg", metrics=["loss"]).read_text()
    assert only.count("<polyline") == 2 and ">accuracy<" not in only
    assert report.export_compare(two_runs, tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    assert report.export_compare(two_runs, tmp_path / "c.md").read_text().count("\n") == 4
    with pytest.raises(ValueError):
        report.export_compare(two_runs, tmp_path / "c.pdf")
