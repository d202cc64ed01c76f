"""Constants and waiting helpers shared by the TUI tests (fixtures are in conftest.py)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "runs"
BT = "20260301-091500-rm-bt-base-a1f3"
APLOT = "20260301-101500-rm-aplot-hh-b2c4"
LS = "20260302-083000-rm-label-smoothing-c3d5"
EMD = "20260302-120000-rm-aplot-emd-d4e6"
PPO = "20260303-100000-ppo-demo-e5f7"
ALL = [BT, APLOT, LS, EMD, PPO]  # oldest first
NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC).timestamp()
SIZE = (140, 40)


async def wait_for(pilot, condition, timeout: float = 10.0, what: str = "condition") -> None:
    """Let the app run until `condition()` holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await pilot.pause(0.02)


async def runs_loaded(pilot) -> None:
    """The runs screen has its rows, and the table has measured them (it does so when idle)."""
    await wait_for(pilot, lambda: getattr(pilot.app.screen, "loaded", False), what="the runs table")
    table = pilot.app.screen.query_one("RunTable")
    await wait_for(pilot, lambda: not table._require_update_dimensions and not table._updated_cells)
    await pilot.pause()


async def run_loaded(pilot) -> None:
    await wait_for(pilot, lambda: getattr(pilot.app.screen, "caught_up", False), what="the run's metrics")
    await pilot.pause()


def drive(app, script, size=SIZE) -> None:
    """Run `script(pilot)` against the app headless (pytest-asyncio is not a dependency)."""
    import asyncio

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await script(pilot)

    asyncio.run(main())
