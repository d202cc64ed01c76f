"""Running the real `aplot` CLI in a subprocess, as a user would, for the tests that need it."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

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
