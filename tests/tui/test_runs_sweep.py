"""The runs screen and `aplot ls` filter by sweep and show the sweep's progress."""

from __future__ import annotations

import json
import shutil

from _cli import aplot
from textual.widgets import Static

from aplot_tui.widgets.run_table import RunTable
from engine.runs import store as mf

from .helpers import APLOT, BT, drive, runs_loaded, wait_for

SWEEP = "20260301-090000-sweep-losses-0a0b"
QUEUED = "20260301-091501-rm-bt-base-a1f9"


def make_sweep(store_dir) -> None:
    """BT and APLOT (completed) and a queued copy of BT, as one sweep's three runs."""
    shutil.copytree(store_dir / BT, store_dir / QUEUED)
    for run_id in (BT, APLOT, QUEUED):
        mf.update(mf.RunPaths(store_dir / run_id), sweep={"id": SWEEP, "index": 0, "seed": 0, "axes": {}})
    mf.update(mf.RunPaths(store_dir / QUEUED), status="queued", summary={})


def test_w_filters_to_the_selected_runs_sweep_and_shows_its_progress(make_app, store):
    make_sweep(store)

    async def script(pilot):
        await runs_loaded(pilot)
        screen = pilot.app.screen
        table = screen.query_one(RunTable)
        line = screen.query_one("#status-line", Static)
        # unfiltered: the unfinished sweep's progress is in the status line already
        assert "sweep losses 2/3 done, 1 queued" in str(line.render())
        table.move_cursor(row=table.shown_ids.index(APLOT))
        await pilot.press("w")
        await wait_for(pilot, lambda: set(table.shown_ids) == {BT, APLOT, QUEUED}, what="the sweep's runs")
        assert "3 of 6 runs" in str(line.render()) and "sweep losses 2/3 done, 1 queued" in str(line.render())
        await pilot.press("w")  # again: every run
        await wait_for(pilot, lambda: len(table.shown_ids) == 6, what="every run")

    drive(make_app(), script)


def test_ls_sweep_option(store):
    make_sweep(store)
    rows = [json.loads(line) for line in aplot("ls", "--sweep", "losses", "--json", runs_dir=store.resolve()).stdout.splitlines()]
    assert sorted(r["id"] for r in rows) == sorted([BT, APLOT, QUEUED])
    assert {r["id"]: r["status"] for r in rows}[QUEUED] == "queued"  # never launched: not "crashed"
