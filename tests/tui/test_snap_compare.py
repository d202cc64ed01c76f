"""Snapshots of the compare screen: the overlaid charts, and the config diff tab."""

from __future__ import annotations

from aplot_tui.screens.compare import CompareScreen
from aplot_tui.widgets.charts import MetricChart

from .helpers import APLOT, BT, EMD, SIZE, wait_for


def _compared(tab: str):
    async def run_before(pilot):
        await pilot.pause()
        pilot.app.compare([EMD, APLOT, BT])
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, CompareScreen))
        screen = pilot.app.screen
        await wait_for(pilot, lambda: bool(screen.runs) and screen.query(MetricChart))
        await pilot.press(tab)
        await pilot.pause()

    return run_before


def test_compare_charts(make_app, snap_compare):
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=_compared("1"))


def test_compare_config_diff(make_app, snap_compare):
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=_compared("3"))
