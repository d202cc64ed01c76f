"""The one launch path: the TUI's new-run screen runs the same preflight as `aplot run`."""

from __future__ import annotations

import pytest

from aplot_tui.screens.new_run import NewRunScreen
from engine import config as config_mod
from engine.runs import lifecycle

from .helpers import drive, runs_loaded, wait_for


def test_the_tui_launch_fails_fast_in_one_line_on_a_missing_data_file(make_app, store, monkeypatch):
    started = []
    monkeypatch.setattr(lifecycle.subprocess, "Popen", lambda *a, **k: started.append(a) or pytest.fail("spawned"))
    before = sorted(p.name for p in store.iterdir())
    said: list[str] = []

    async def script(pilot):
        await runs_loaded(pilot)
        app = pilot.app
        real_notify = app.notify
        app.notify = lambda message, **kw: said.append(str(message)) or real_notify(message, **kw)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, NewRunScreen))
        screen = app.screen
        screen.form.control("launch.cpu").value = True
        screen.form.control("data.train").value = "missing.jsonl"
        await wait_for(pilot, lambda: screen.cfg is not None and screen.cfg.data.train == "missing.jsonl")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: any(m.startswith("launch failed") for m in said), what="the failure")
        assert isinstance(app.screen, NewRunScreen)

    drive(make_app(), script)
    (line,) = [m for m in said if m.startswith("launch failed")]
    assert line == "launch failed: data.train: no such data file 'missing.jsonl'"
    assert started == [] and sorted(p.name for p in store.iterdir()) == before  # no folder, no process


def test_launcher_checks_before_it_creates_anything(tmp_path):
    cfg = config_mod.load(None, ['data.train="nope.jsonl"'])
    with pytest.raises(config_mod.ConfigError) as err:
        lifecycle.create(cfg, tmp_path)
    assert err.value.problems == ["data.train: no such data file 'nope.jsonl'"]
    assert list(tmp_path.iterdir()) == []
