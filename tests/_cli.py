"""Running the real `aplot` CLI in a subprocess, as a user would, for the tests that need it."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from engine import metrics as M
from engine.runs import store as mf

ROOT = Path(__file__).resolve().parents[1]
_BACKGROUND = ThreadPoolExecutor(4, thread_name_prefix="aplot")


def aplot(*args, runs_dir=None, cwd=None, timeout=300, env=None) -> subprocess.CompletedProcess:
    env = dict(os.environ if env is None else env)
    if runs_dir is not None:
        env["APLOT_RUNS_DIR"] = str(runs_dir)
    return subprocess.run([sys.executable, "-m", "aplot_tui.cli", *map(str, args)], cwd=cwd or ROOT,
                          capture_output=True, text=True, env=env, timeout=timeout, stdin=subprocess.DEVNULL)


def aplot_in_background(*args, **kwargs) -> Future:
    """`aplot(*args, **kwargs)` started in a thread; `.result()` is its CompletedProcess. Independent
    runs started this way train side by side, a core each, instead of one after the other."""
    return _BACKGROUND.submit(aplot, *args, **kwargs)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The one `aplot:` line a failed command must print, with no traceback anywhere."""
    assert proc.returncode != 0 and "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("aplot:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def eval_records(paths: mf.RunPaths) -> dict[str, dict]:
    """Each eval set's newest record, by set name."""
    return {r.split.removeprefix(M.EVAL_PREFIX): r.data for r in M.read_all(paths.metrics)
            if r.split.startswith(M.EVAL_PREFIX)}


def launch_eval(runs: Path, *args) -> mf.RunPaths:
    """`aplot eval …` in the store `runs`: the completed eval run it made."""
    before = {p.id for p, _ in mf.list_runs(runs)}
    proc = aplot("eval", *map(str, args), "-q", runs_dir=runs, timeout=600)
    assert proc.returncode == 0, proc.stderr
    (paths,) = [p for p, _ in mf.list_runs(runs) if p.id not in before]
    manifest = mf.read(paths)
    assert manifest["kind"] == "eval" and manifest["status"] == "completed"
    return paths
