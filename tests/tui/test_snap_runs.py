"""Snapshot of the runs screen over the fixture runs (fixed clock and size)."""

from __future__ import annotations

import pytest

from aplot_tui.widgets.run_table import RunTable

from .helpers import APLOT, SIZE, runs_loaded


def test_runs_screen_filtered_and_marked(make_app, snap_compare):
    async def run_before(pilot):
        await runs_loaded(pilot)
        table = pilot.app.screen.query_one(RunTable)
        table.move_cursor(row=table.shown_ids.index(APLOT))
        await pilot.press("space")
        pilot.app.screen.action_filter()
        pilot.app.screen.query_one("#filter").value = "tag:aplot"
        table.focus()
        await runs_loaded(pilot)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_runs_screen_at_the_small_and_large_sizes(make_app, snap_compare, size):
    """At 80 columns the short id, name, status, step and key eval are on screen; at 160 every column."""
    assert snap_compare(make_app(), terminal_size=size, run_before=runs_loaded)
