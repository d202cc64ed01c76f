"""The runs table's and `aplot ls`'s eval column: the newest eval record of each run, however many train
lines follow it, and after a resume the eval the run's metrics have now, not the manifest's old one."""

from __future__ import annotations

import json

from _cli import aplot

from aplot_tui.views import listing
from engine import metrics as M
from engine.runs import status as S
from engine.runs import store as mf

HELDOUT_ACC = M.metric_key(M.eval_split(M.HELDOUT), M.ACCURACY)


def _eval(step: int, acc: float) -> dict:
    # an RM eval record is ~10 KB: per-subset and diagnostic numbers beside the accuracy
    return {M.ACCURACY: acc, **{f"subset/s{i}/{M.ACCURACY}": 0.5 for i in range(300)}}


def _run(runs_dir, name="long"):
    paths = mf.run_paths(runs_dir, mf.new_run_id(name, "rm"))
    mf.create(paths, name=name, kind="rm", config={"kind": "rm", "loss": {"type": "bt"}})
    return paths


def _ls(runs_dir) -> dict:
    (row,) = [json.loads(line) for line in aplot("ls", "--json", runs_dir=runs_dir).stdout.splitlines()]
    return row["metrics"]


def test_the_newest_eval_is_found_behind_more_than_64_kb_of_train_lines(runs_dir):
    paths = _run(runs_dir)
    w = M.MetricsWriter(paths.metrics)
    w.write(100, M.eval_split(M.HELDOUT), _eval(100, 0.61))
    for step in range(101, 1300):
        w.write(step, M.TRAIN, {M.LOSS: 0.5, M.ACCURACY: 0.7})
    w.close()
    assert paths.metrics.stat().st_size > 65536 + 10000
    mf.update(paths, status=S.STOPPED, summary={HELDOUT_ACC: 0.632})
    assert _ls(runs_dir)[HELDOUT_ACC] == 0.61  # was: the manifest's 0.632, the last 64 KB holding no eval


def test_a_refresh_reads_what_was_appended_and_a_resume_rewrites(runs_dir):
    paths = _run(runs_dir, "refresh")
    w = M.MetricsWriter(paths.metrics)
    w.write(10, M.eval_split(M.HELDOUT), _eval(10, 0.6))
    w.write(20, M.eval_split(M.HELDOUT), _eval(20, 0.7))
    w.close()
    assert listing.latest_metrics(paths.metrics)[1][HELDOUT_ACC] == 0.7
    w = M.MetricsWriter(paths.metrics)
    w.write(30, M.eval_split(M.HELDOUT), _eval(30, 0.8))
    w.close()
    assert listing.latest_metrics(paths.metrics) == (30, listing.latest_metrics(paths.metrics)[1])
    assert listing.latest_metrics(paths.metrics)[1][HELDOUT_ACC] == 0.8
    # a resume from step 10 moves the lines past it out: the file is written anew, shorter
    lines = paths.metrics.read_bytes().split(b"\n")
    tmp = paths.metrics.with_name("rewritten")
    tmp.write_bytes(lines[0] + b"\n")
    tmp.replace(paths.metrics)
    step, values = listing.latest_metrics(paths.metrics)
    assert step == 10 and values[HELDOUT_ACC] == 0.6
