"""The launch's thread count follows the cores a process may use, not the machine's count."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CODE = """
import os, sys
from engine import config as C
from engine.runs import launch
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # as a Slurm job or a taskset given one core
cfg = C.Config(kind="rm", name="t")
cfg.launch = C.LaunchSection(cpu=True, threads=0)
argv = launch.argv(cfg, sys.argv[1])
print(launch.default_threads(1), argv[argv.index("--num_cpu_threads_per_process") + 1])
"""


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this platform")
def test_default_threads_are_the_allowed_cores_shared_by_the_processes(tmp_path):
    from engine.runs import launch

    cores = len(os.sched_getaffinity(0))
    assert launch.default_threads(1) == cores and launch.default_threads(cores * 4) == 1
    out = subprocess.run([sys.executable, "-c", CODE, str(tmp_path / "run")], capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.split() == ["1", "1"]  # one allowed core: one thread, whatever os.cpu_count() says
