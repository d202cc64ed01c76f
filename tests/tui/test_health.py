"""The health line: best eval, flags, and time summed across resumes (views.health, then the run screen)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

from aplot_tui.views import health
from aplot_tui.widgets.health_strip import HealthStrip
from aplot_tui.widgets.run_header import RunHeader
from engine import metrics as M
from engine.runs import status as S
from engine.runs import store as mf

from .helpers import APLOT, LS, drive, run_loaded

HELDOUT_LOSS = M.metric_key(M.eval_split(M.HELDOUT), M.LOSS)
HELDOUT_ACC = M.metric_key(M.eval_split(M.HELDOUT), M.ACCURACY)


def test_best_eval_follows_the_metrics_direction_and_names_its_checkpoint():
    assert health.best_eval(HELDOUT_ACC, [10, 20, 30], [0.6, 0.8, 0.7], ["step-20", "final"]) == \
        health.Best(HELDOUT_ACC, 0.8, 20, "checkpoints/step-20")
    assert health.best_eval(HELDOUT_LOSS, [10, 20, 30], [0.6, 0.4, 0.5], ["best"]).step == 20
    assert health.best_eval(HELDOUT_LOSS, [10, 20], [0.6, 0.4], []).checkpoint == ""
    assert health.best_eval(M.metric_key(M.TRAIN, M.ACCURACY), [1], [1.0]) is None  # a batch's value ranks nothing


def test_the_flags_each_fire_on_their_case_and_stay_quiet_otherwise():
    assert health.loss_flags([0.7, math.nan, 0.6])[0].startswith("loss is nan")
    assert health.loss_flags([1.0 - i / 100 for i in range(40)]) == []
    assert health.loss_flags([0.5] * 20 + [0.5 + i for i in range(20)])[0].startswith("loss diverging")
    assert health.kl_flags([1.0, 12.0]) == ["KL 12 past 10"] and health.kl_flags([1.0, 3.0]) == []
    steps = [10, 20, 30]
    assert health.hacking_flags("gold", steps, [0.8, 0.7, 0.6], steps, [0.1, 0.5, 0.9])[0].startswith("gold falling")
    assert health.hacking_flags("gold", steps, [0.6, 0.7, 0.8], steps, [0.1, 0.5, 0.9]) == []
    assert health.hacking_flags("gold", steps, [0.8, 0.7, 0.6], steps, [0.9, 0.5, 0.1]) == []


def test_wall_time_sums_the_attempts_and_the_rate_never_spans_a_resume():
    first = [(1000.0 + i, i) for i in range(1, 61)]  # 60 steps at 1 step/s, then stopped
    second = [(5000.0 + i / 10, 60 + i) for i in range(1, 41)]  # resumed an hour later at 10 steps/s
    points = first + second
    assert health.wall_time_s(points, started_at=4998.0) == (1060 - 1001) + (5004 - 4998)
    rate = health.rate_points(points, started_at=4998.0)
    assert rate == second
    assert health.rate_points(points, started_at=9000.0) == []  # a new attempt, nothing logged yet
    assert health.wall_time_s(points) == (1060 - 1001) + (5004 - 5000.1)  # the pause alone cuts it too


def test_the_run_screen_shows_the_best_eval_and_a_resumed_runs_whole_wall_time(make_app, store):
    """APLOT's fixture, resumed an hour after step 100: `took` sums both attempts, the header
    shows no rate from a window that spans the pause, and the strip names the best eval."""
    paths = mf.RunPaths(store / APLOT)
    records = [json.loads(line) for line in paths.metrics.read_text().splitlines()]
    times = [r["time"] for r in records if r["split"] == M.TRAIN]
    t_first = times[0]
    for r in records:
        if r["step"] > 100:
            r["time"] += 3600
    paths.metrics.write_text("".join(json.dumps(r) + "\n" for r in records))
    resumed_at = min(r["time"] for r in records if r["step"] > 100) - 2
    last = max(r["time"] for r in records if r["split"] == M.TRAIN)
    mf.update(paths, started_at=datetime.fromtimestamp(resumed_at, tz=UTC).isoformat())

    async def script(pilot):
        pilot.app.open_run(APLOT)
        await run_loaded(pilot)
        screen = pilot.app.screen
        header, strip = screen.query_one(RunHeader), screen.query_one(HealthStrip)
        before_pause = max(r["time"] for r in records if r["split"] == M.TRAIN and r["step"] <= 100)
        assert abs(header.elapsed_s - ((before_pause - t_first) + (last - resumed_at))) < 1e-6
        best_acc = max(r["data"][M.ACCURACY] for r in records if r["split"] == M.eval_split(M.HELDOUT))
        assert strip.best is not None and strip.best.value == best_acc and strip.best.key == HELDOUT_ACC
        assert "best heldout acc" in str(strip.render())

    drive(make_app(), script)


def test_a_run_that_failed_before_any_metric_shows_its_error_not_empty_panels(make_app, store):
    paths = mf.RunPaths(store / LS)
    paths.metrics.write_text("")
    error = mf.read(paths)["error"]

    async def script(pilot):
        pilot.app.open_run(LS)
        await run_loaded(pilot)
        screen = pilot.app.screen
        assert screen.query_one(HealthStrip).error == error
        assert screen.has_class("log-only")  # the panels give way to the log

    drive(make_app(), script)


def test_a_resume_starting_up_says_starting_not_took():
    header = RunHeader()
    header.status, header.elapsed_s = S.CREATED, 166.0
    assert "starting" in str(header.render()) and "took" not in str(header.render())
    header.status = S.COMPLETED
    assert "took 2m 46s" in str(header.render())
