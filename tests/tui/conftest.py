"""TUI test fixtures: the fixture runs copied into a temp store, an app with a fixed clock,
and fake training processes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from _procs import fake_trainer

from aplot_tui.app import AplotApp
from engine.runs import liveness
from engine.runs import store as mf

from .helpers import FIXTURES, NOW


@pytest.fixture
def store(tmp_path, monkeypatch) -> Path:
    """The fixture runs in a fresh store; the cwd is its parent, so the app shows `runs`."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(FIXTURES, tmp_path / "runs")
    return Path("runs")


@pytest.fixture
def make_app(store):
    def make(**kw) -> AplotApp:
        kw = {"clock": lambda: NOW, "export_dir": Path("exports"), "poll_s": 0.1, "follow_s": 0.05} | kw
        return AplotApp(runs_dir=store, **kw)
    return make


@pytest.fixture
def fake_training():
    """A long-running process in its own session that holds the run's liveness lock and names the
    run on its command line (as `accelerate launch … --run-dir runs/<id>` does), recorded as its pid."""
    procs: list[subprocess.Popen] = []

    def start(store: Path, run_id: str) -> subprocess.Popen:
        paths = mf.RunPaths(store / run_id)
        proc = fake_trainer(paths.dir, run_id)  # holds the run's liveness lock, as a real trainer does
        procs.append(proc)
        mf.update(paths, status="running", pid=proc.pid, host=liveness.this_host(), exit_code=-1, error="")
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
