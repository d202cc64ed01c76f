"""The launch plan's machine checks: threads follow the cores a process may use, not the machine's count;
bf16 autocast on a CPU without bf16 instructions is called out."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


X86 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx avx2 fma {extra}\n\nprocessor\t: 1\nflags\t\t: fpu avx2 {extra}\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd sve {extra}\nCPU implementer\t: 0x41\n"


@pytest.mark.parametrize(("cpuinfo", "slow"), [
    (X86.format(extra=""), True),                 # AVX2 only: emulated bf16
    (X86.format(extra="avx512f avx512bw"), True),  # AVX-512 without its BF16 extension
    (X86.format(extra="avx512f avx512_bf16"), False),
    (X86.format(extra="amx_bf16 amx_tile"), False),
    (ARM.format(extra=""), True),
    (ARM.format(extra="bf16 i8mm"), False),
    ("processor\t: 0\nmodel name\t: something else\n", False),  # cannot tell: say nothing
    ("", False),
])
def test_bf16_autocast_is_called_slow_only_on_a_cpu_without_bf16_instructions(cpuinfo, slow):
    from engine.runs import launch

    why = launch.slow_bf16(cpuinfo)
    assert bool(why) is slow
    if slow:
        assert why.endswith('set launch.mixed_precision = "no"') and "/proc/cpuinfo" in why


@pytest.mark.parametrize(("launch_cfg", "gpu", "warned"), [
    ({"cpu": True, "mixed_precision": "bf16"}, True, True),    # forced onto the CPU beside a GPU
    ({"mixed_precision": "bf16"}, False, True),                # no GPU here: accelerate runs it on the CPU
    ({"mixed_precision": "bf16"}, True, False),                # the GPU takes it
    ({"cpu": True, "mixed_precision": "no"}, False, False),
    ({"cpu": True, "mixed_precision": "bf16", "scheduler": "slurm"}, False, False),  # another node's CPU
])
def test_the_launch_warns_of_slow_bf16_only_where_the_run_lands_on_such_a_cpu(launch_cfg, gpu, warned):
    from engine import config as C
    from engine.runs import launch

    cfg = C.Config(kind="rm", name="t")
    cfg.launch = C.LaunchSection(**launch_cfg)
    slow = X86.format(extra="")
    assert launch.launch_warnings(cfg, slow, gpu=gpu) == ([launch.slow_bf16(slow)] if warned else [])
    assert launch.launch_warnings(cfg, X86.format(extra="avx512_bf16"), gpu=gpu) == []


def test_aplot_run_says_the_bf16_warning_before_the_run_where_this_cpu_would_emulate_it(runs_dir):
    """`aplot run --detach` never shows train.log, so the warning is the CLI's own line, said at launch
    (followed here, so the run has ended when the test does). On a CPU with bf16 instructions, or beside
    a GPU, the same run says nothing."""
    from _cli import aplot

    from engine.runs import launch

    proc = aplot("run", "--preset", "demo-rm", "optim.max_steps=1", "launch.mixed_precision=bf16", "--quiet",
                 runs_dir=runs_dir, timeout=240)
    assert proc.returncode == 0, proc.stderr
    why = "" if any(Path("/dev").glob("nvidia[0-9]*")) else launch.slow_bf16()
    warned = [line for line in proc.stderr.splitlines() if line.startswith("aplot: warning: ")]
    assert warned == ([f"aplot: warning: {why}"] if why else [])
