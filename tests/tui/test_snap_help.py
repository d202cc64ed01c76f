"""Snapshot of the F1 help over the run screen."""

from __future__ import annotations

from .helpers import APLOT, SIZE, run_loaded


def test_help_over_run_screen(make_app, snap_compare):
    async def run_before(pilot):
        await pilot.pause()
        pilot.app.open_run(APLOT)
        await run_loaded(pilot)
        await pilot.press("f1")
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)
