"""The run screen of a DPO run: loss, implicit-reward margin and accuracy, chosen and rejected log-probs, the
KL to the reference and the gold win-rate. The fixture is a real `demo-dpo` run's manifest, metrics and log."""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

from aplot_tui.app import AplotApp
from aplot_tui.screens.run import DPO_PANELS, panels_for

FIXTURES = Path(__file__).parent / "fixtures" / "runs"
DPO = "20261207-025215-dpo-sigmoid-demo-dpo-389c"
NOW = datetime(2026, 12, 7, 3, 0, tzinfo=UTC).timestamp()


def make_app(tmp_path, monkeypatch) -> AplotApp:
    monkeypatch.chdir(tmp_path)
    shutil.copytree(FIXTURES, tmp_path / "runs")
    return AplotApp(runs_dir=Path("runs"), clock=lambda: NOW, export_dir=Path("exports"), poll_s=0.1, follow_s=0.05)


async def opened(pilot) -> None:
    await pilot.pause()
    pilot.app.open_run(DPO)
    deadline = time.monotonic() + 10
    while not getattr(pilot.app.screen, "caught_up", False):
        assert time.monotonic() < deadline, "the run's metrics never loaded"
        await pilot.pause(0.02)
    await pilot.pause()


def test_a_dpo_run_gets_its_own_panels():
    assert panels_for({"kind": "dpo"}) == DPO_PANELS
    assert panels_for({"kind": "rm", "config": {"loss": {"type": "bt"}}}) != DPO_PANELS


def test_run_screen_dpo(tmp_path, monkeypatch, snap_compare):
    assert snap_compare(make_app(tmp_path, monkeypatch), terminal_size=(140, 40), run_before=opened)
