"""Snapshots of the run screen: an APLOT reward-model run and a PPO run."""

from __future__ import annotations

import pytest

from .helpers import APLOT, PPO, SIZE, run_loaded


def _opened(run_id: str):
    async def run_before(pilot):
        await pilot.pause()
        pilot.app.open_run(run_id)
        await run_loaded(pilot)

    return run_before


def test_run_screen_aplot(make_app, snap_compare):
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=_opened(APLOT))


def test_run_screen_ppo(make_app, snap_compare):
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=_opened(PPO))


@pytest.mark.parametrize("size", [(80, 24), (250, 70), (160, 48)])
def test_run_screen_aplot_at_the_size_limits(make_app, snap_compare, size):
    """From the smallest terminal to a large one, the panels and the log share the screen without scrolling."""
    assert snap_compare(make_app(), terminal_size=size, run_before=_opened(APLOT))
