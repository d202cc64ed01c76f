"""The runs screen: listing, live updates from other processes, filter, sort, open, stop."""

from __future__ import annotations

import os

from aplot_tui.screens.confirm import ConfirmScreen
from aplot_tui.screens.run import RunScreen
from aplot_tui.widgets.run_table import RunTable, parse_query
from engine.runs import status as S
from engine.runs import store as mf

from .helpers import ALL, APLOT, BT, EMD, LS, PPO, drive, runs_loaded, wait_for


def cell(table: RunTable, run_id: str, column: str) -> str:
    return str(table.get_cell(run_id, column))


def test_lists_every_run_newest_first_with_status_metric_and_age(make_app):
    async def script(pilot):
        await runs_loaded(pilot)
        table = pilot.app.screen.query_one(RunTable)
        assert table.shown_ids == ALL[::-1]
        assert [cell(table, r, "status") for r in ALL] == ["completed", "completed", "failed", "stopped",
                                                             "completed"]
        assert cell(table, LS, "step") == "80/200"
        assert cell(table, PPO, "loss") == "ppo"
        assert cell(table, EMD, "tags") == "aplot,ablation"
        # last lines of the fixture streams: bt-base train loss 0.409..., PPO win rate 0.8387
        assert cell(table, BT, "train").startswith("loss 0.409")
        assert cell(table, PPO, "eval") == "win 0.839"
        # fixed clock 2026-03-04 12:00 UTC; bt-base was created 2026-03-01 09:15 UTC
        assert cell(table, BT, "age") == "3d"

    drive(make_app(), script)


def test_filter_by_text_and_field_then_open(make_app):
    async def script(pilot):
        await runs_loaded(pilot)
        table = pilot.app.screen.query_one(RunTable)
        await pilot.press("slash", *"aplot")
        assert table.shown_ids == [EMD, APLOT]
        pilot.app.screen.query_one("#filter").value = "aplot status:stopped"
        await pilot.pause()
        assert table.shown_ids == [EMD]
        await pilot.press("enter")  # back to the table
        assert table.has_focus
        await pilot.press("enter")
        assert isinstance(pilot.app.screen, RunScreen) and pilot.app.screen.paths.id == EMD
        await pilot.press("q")
        await pilot.press("escape")  # clears the filter
        assert table.shown_ids == ALL[::-1]

    drive(make_app(), script)


def test_parse_query_splits_field_filters_from_text():
    assert parse_query("hh status:running kind:rm tag:x y") == {"text": "hh y", "status": "running",
                                                               "kind": "rm", "tag": "x", "sweep": ""}
    assert parse_query("loss:bt")["text"] == "loss:bt"  # not a field filter: plain text


def test_sort_cycles_and_header_click_reverses(make_app):
    async def script(pilot):
        await runs_loaded(pilot)
        table = pilot.app.screen.query_one(RunTable)
        await pilot.press("o")  # created -> name
        assert table.sort_by == "name"
        assert table.shown_ids == [EMD, APLOT, BT, PPO, LS][::-1]  # names descending
        columns = list(table.columns.values())  # mark, run, name, ...
        await pilot.click(RunTable, offset=(sum(c.get_render_width(table) for c in columns[:2]) + 2, 0))
        assert table.shown_ids == [EMD, APLOT, BT, PPO, LS]  # aplot-emd, aplot-hh, bt-base, demo, ls-…

    drive(make_app(), script)


def test_runs_written_by_another_process_appear_and_update(make_app, store):
    new_id = "20260304-110000-rm-bt-late-f00d"

    async def script(pilot):
        await runs_loaded(pilot)
        table = pilot.app.screen.query_one(RunTable)
        paths = mf.RunPaths(store / new_id)
        mf.create(paths, name="late", kind="rm", config={"loss": {"type": "bt"}})
        await wait_for(pilot, lambda: new_id in table.shown_ids, timeout=2.0, what="the new run")
        assert table.shown_ids[0] == new_id and cell(table, new_id, "status") == "created"
        table.move_cursor(row=2)
        mf.update(paths, status="completed", resolved={"total_steps": 10})
        await wait_for(pilot, lambda: cell(table, new_id, "status") == "completed", timeout=2.0)
        assert cell(table, new_id, "step") == "0/10"
        assert table.cursor_row == 2  # updated in place: the cursor did not jump

    drive(make_app(), script)


def test_running_run_whose_process_died_shows_crashed(make_app, store):
    paths = mf.RunPaths(store / BT)
    mf.update(paths, status="running", pid=4_000_000)  # above Linux's pid_max: no such process

    async def script(pilot):
        await runs_loaded(pilot)
        assert cell(pilot.app.screen.query_one(RunTable), BT, "status") == "crashed"

    drive(make_app(), script)


def test_stop_from_runs_screen_signals_the_process_and_records_stopped(make_app, store, fake_training):
    proc = fake_training(store, EMD)

    async def script(pilot):
        await runs_loaded(pilot)
        table = pilot.app.screen.query_one(RunTable)
        await wait_for(pilot, lambda: cell(table, EMD, "status") == "running")
        table.move_cursor(row=table.shown_ids.index(EMD))
        await pilot.press("s")
        assert type(pilot.app.screen).__name__ == "ConfirmScreen"
        await pilot.press("y")
        await wait_for(pilot, lambda: proc.poll() is not None, timeout=15, what="the process to exit")
        await wait_for(pilot, lambda: cell(table, EMD, "status") == "stopped", timeout=5)

    drive(make_app(), script)
    assert mf.read(mf.RunPaths(store / EMD))["status"] == "stopped"


def test_quitting_the_tui_leaves_training_running(make_app, store, fake_training):
    proc = fake_training(store, EMD)

    async def script(pilot):
        await runs_loaded(pilot)
        await pilot.press("q")  # asks first: elsewhere q means back
        assert isinstance(pilot.app.screen, ConfirmScreen) and pilot.app.is_running
        await pilot.press("escape")
        assert type(pilot.app.screen).__name__ == "RunsScreen"
        await pilot.press("q", "y")

    drive(make_app(), script)
    assert proc.poll() is None
    os.kill(proc.pid, 0)  # still there after the app exited
    assert S.effective(mf.RunPaths(store / EMD)) == "running"


def test_the_table_fits_80_columns_with_a_short_id_and_keeps_rows_still_under_the_cursor(make_app, store):
    """A short id (not the name again), status, step and the key eval inside 80 columns, `w` in the
    footer; sorted by eval, a run whose eval changes keeps its row until the sort or the runs change."""
    async def script(pilot):
        await runs_loaded(pilot)
        table = pilot.app.screen.query_one(RunTable)
        assert cell(table, APLOT, "id") == "b2c4"
        right = 0
        for key in ("mark", "id", "name", "status", "step", "eval"):
            right += table.columns[key].get_render_width(table)
        assert right <= 80, right
        assert pilot.app.screen.active_bindings["w"].binding.show  # in the footer
        table.sort_by = "eval"
        await runs_loaded(pilot)
        order = table.shown_ids
        table.move_cursor(row=order.index(BT))
        # BT's eval jumps to the top; the next refresh must not move it under the cursor
        with open(store / BT / "metrics.jsonl", "a") as fh:
            fh.write('{"time": 1772360999.0, "step": 200, "split": "eval/heldout", "data": {"accuracy": 0.99}}\n')
        await wait_for(pilot, lambda: cell(table, BT, "eval") == "acc 0.990", what="BT's new eval")
        assert table.shown_ids == order and table.current_id == BT
        await pilot.press("space")
        assert BT in table.marked
        table.sort_reverse = not table.sort_reverse  # an explicit sort re-sorts
        table.sort_reverse = not table.sort_reverse
        await runs_loaded(pilot)
        assert table.shown_ids[0] == BT

    drive(make_app(), script, size=(80, 24))
