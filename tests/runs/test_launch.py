"""The launch plan's machine checks: threads follow the cores a process may use, not the machine's count;
bf16 autocast on a CPU without bf16 instructions is called out."""

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
