"""The compare screen: marked runs, overlaid charts, final/best table, config diff, export."""

from __future__ import annotations

import csv
import json

from textual.widgets import DataTable

from aplot_tui.screens.compare import CompareScreen
from aplot_tui.widgets.charts import MetricChart, log_ticks
from aplot_tui.widgets.config_diff import ConfigDiff
from aplot_tui.widgets.run_table import RunTable

from .helpers import APLOT, BT, EMD, FIXTURES, drive, runs_loaded, wait_for


async def mark(pilot, *run_ids: str) -> None:
    table = pilot.app.screen.query_one(RunTable)
    for run_id in run_ids:
        table.move_cursor(row=table.shown_ids.index(run_id))
        await pilot.press("space")


async def open_compare(pilot) -> CompareScreen:
    await runs_loaded(pilot)
    await mark(pilot, BT, APLOT, EMD)
    await pilot.press("m")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, CompareScreen))
    screen = pilot.app.screen
    await wait_for(pilot, lambda: bool(screen.runs) and screen.query(MetricChart), what="compare data")
    await pilot.pause()
    return screen


def test_three_marked_runs_compare_with_a_diff_of_exactly_the_differing_fields(make_app):
    async def script(pilot):
        screen = await open_compare(pilot)
        assert [r.id for r in screen.runs] == [EMD, APLOT, BT]  # table order: newest first
        # the fixture configs differ only in these (see tests/fixtures/make_runs.py)
        diff = screen.query_one(ConfigDiff)
        assert diff.fields == ["data.eval.ood", "loss.aplot.margin_scale", "loss.aplot.solver", "loss.type",
                               "name", "tags"]
        assert dict(diff.diff)["loss.aplot.solver"] == ("emd", "sinkhorn", "sinkhorn")
        charts = {c.border_title: c for c in screen.query(MetricChart)}
        assert list(charts) == ["loss", "accuracy", "eval/heldout/accuracy", "eval/ood/accuracy", "reward_gap",
                                "margin/mean", "learning_rate"]
        assert [line.label for line in charts["loss"].lines] == ["aplot-emd", "aplot-hh", "bt-base"]
        assert [line.label for line in charts["eval/ood/accuracy"].lines] == ["aplot-hh"]
        assert [line.label for line in charts["margin/mean"].lines] == ["aplot-emd", "aplot-hh"]
        summary = screen.query_one("#summary-table", DataTable)
        assert summary.get_row("loss final")[0].plain == "loss final" and len(summary.columns) == 4
        # final train loss of each run (last train lines of the fixtures); the lowest in bold
        finals = [cell.plain for cell in summary.get_row("loss final")[1:]]
        assert finals == ["0.4333", "0.3808", "0.4092"]
        # a train batch's loss ranks nothing (engine.metrics.best); the held-out accuracy does, highest first
        assert not any(cell.style for cell in summary.get_row("loss final")[1:])
        heldout = summary.get_row("eval/heldout/accuracy final")[1:]
        top = max(range(3), key=lambda i: float(heldout[i].plain))
        assert [cell.style == "bold green" for cell in heldout] == [i == top for i in range(3)]
        await pilot.press("3")
        assert screen.query_one("TabbedContent").active == "diff"

    drive(make_app(), script)


def test_compare_needs_two_marked_runs(make_app):
    async def script(pilot):
        await runs_loaded(pilot)
        await mark(pilot, BT)
        await pilot.press("m")
        assert type(pilot.app.screen).__name__ == "RunsScreen"
        await mark(pilot, BT)  # unmark
        assert not pilot.app.screen.query_one(RunTable).marked

    drive(make_app(), script)


def test_export_writes_table_and_charts(make_app, store):
    async def script(pilot):
        await open_compare(pilot)
        await pilot.press("e")
        await wait_for(pilot, lambda: any("exported" in n.message for n in pilot.app._notifications),
                       timeout=10, what="the export")

    drive(make_app(), script)
    (out,) = store.parent.glob("exports/compare-*")
    assert out.name.startswith("compare-2026030")  # named by the app's clock (local time)
    rows = list(csv.DictReader((out / "table.csv").open()))
    assert [r["id"] for r in rows] == [EMD, APLOT, BT]
    last = json.loads((FIXTURES / BT / "metrics.jsonl").read_text().splitlines()[-2])  # step 200 train
    assert last["step"] == 200 and last["split"] == "train"
    assert float(rows[2]["loss final"]) == last["data"]["loss"]
    assert rows[2]["eval/ood/accuracy final"] == ""  # bt-base has no ood set
    assert (out / "table.md").read_text().startswith("| id | name | kind | loss | status | steps |")
    svg = (out / "charts.svg").read_text()
    assert svg.count("<polyline") == 3 * 5 + 1 + 2  # 3 runs × 5 shared metrics, ood: 1, margin: 2
    assert (out / "charts.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_warns_of_unequal_steps_and_refreshes_its_verdict_while_a_run_is_live(make_app, store,
                                                                                       fake_training):
    """EMD is running (a fake trainer holds it) at step 120 of 200: the screen says so under the
    verdict; a new eval it logs is in the warnings within a few polls, with no key pressed."""
    from textual.widgets import Static

    fake_training(store, EMD)

    async def script(pilot):
        await pilot.pause()
        pilot.app.compare([EMD, APLOT])
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, CompareScreen))
        screen = pilot.app.screen
        await wait_for(pilot, lambda: bool(screen.runs), what="compare data")
        await pilot.pause()
        box = screen.query_one("#warnings", Static)
        text = str(box.render())
        assert "is still running at step 120 of 200" in text and "last evals at different steps" in text
        lines = (store / EMD / "metrics.jsonl").read_text().splitlines()
        last_eval = next(json.loads(line) for line in reversed(lines) if json.loads(line)["split"] == "eval/heldout")
        with open(store / EMD / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps({**last_eval, "step": 200, "time": last_eval["time"] + 60}) + "\n")
        await wait_for(pilot, lambda: "at step 200" in str(screen.query_one("#warnings", Static).render()),
                       what="the refreshed warnings")

    drive(make_app(), script)


def test_the_learning_rate_chart_has_a_log_scale(make_app):
    async def script(pilot):
        screen = await open_compare(pilot)
        charts = {c.border_title: c for c in screen.query(MetricChart)}
        lr = charts["learning_rate"]
        assert lr.log_y and not charts["loss"].log_y
        lr.scroll_visible()
        await pilot.pause()
        assert log_ticks(3e-7, 2e-5) == [1e-6, 1e-5] and log_ticks(2e-5, 6e-5) == [2e-5, 5e-5]
        str(lr.render())  # draws on a log axis (the schedule's zeros left out)

    drive(make_app(), script)


def test_two_heldout_sets_from_different_data_are_two_charts_not_one(make_app, store):
    """BT's held-out set drawn from other data (hh.jsonl): its heldout curve is not overlaid on
    the others' (pairs.jsonl), each chart names its source."""
    from engine.runs import store as mf

    paths = mf.RunPaths(store / BT)
    config = mf.read(paths)["config"]
    config["data"]["train"] = "data/hh.jsonl"
    mf.update(paths, config=config)

    async def script(pilot):
        screen = await open_compare(pilot)
        titles = [c.border_title for c in screen.query(MetricChart)]
        assert "eval/heldout/accuracy · hh.jsonl held out" in titles
        assert "eval/heldout/accuracy · pairs.jsonl held out" in titles
        charts = {c.border_title: c for c in screen.query(MetricChart)}
        assert [line.label for line in charts["eval/heldout/accuracy · hh.jsonl held out"].lines] == ["bt-base"]
        assert "loss" in titles  # a train metric stays one chart

    drive(make_app(), script)
