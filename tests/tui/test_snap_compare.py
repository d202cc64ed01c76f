"""Snapshots of the compare screen: the overlaid charts, the verdict line, and the config diff tab."""

from __future__ import annotations

import pytest

from aplot_tui.screens.compare import CompareScreen
from aplot_tui.widgets.charts import MetricChart

from .helpers import APLOT, BT, EMD, SIZE, wait_for


def _compared(tab: str, runs=(EMD, APLOT, BT)):
    async def run_before(pilot):
        await pilot.pause()
        pilot.app.compare(list(runs))
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


def test_compare_verdict_line(make_app, snap_compare):
    """BT against APLOT, pair by pair on their 400 held-out pairs: the verdict under the legend."""
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=_compared("1", (BT, APLOT)))


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_compare_with_its_step_warning(make_app, snap_compare, size):
    """EMD stopped at step 120 against two completed runs: the warning under the verdict says so."""
    assert snap_compare(make_app(), terminal_size=size, run_before=_compared("1"))
