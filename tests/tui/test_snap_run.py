"""Snapshots of the run screen: an APLOT reward-model run and a PPO run."""

from __future__ import annotations

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
