"""How a run is launched, and what the launch must give it. Torch-free: the run service and the UI use it.

`[launch]` (or an accelerate config file named there) asks for a topology: a world size, a
distributed type, a mixed precision. `plan()` merges the file into `[launch]` (a setting the two
disagree on is a config error, before anything starts), `argv()` builds the `accelerate launch`
command that gives that topology, and the trainer compares what it got with `expected()` before its
first step: a run never trains on one process while its manifest says two.

The command's first process is `python -m engine.launch` (engine/launch.py), which hands stops to the
ranks before Accelerate starts them.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import sys
from pathlib import Path

from engine.config import Config, ConfigError

MODULES = {"rm": "engine.rm.train", "ppo": "engine.rl.train", "dpo": "engine.dpo.train", "eval": "engine.rm.evaluate"}
RUN_ACCELERATE_CONFIG = "accelerate_config.yaml"  # the run's own copy of the file, used on every launch
SHARDED = ("FSDP", "DEEPSPEED")  # distributed types Accelerate engages only on GPUs


RENDEZVOUS_PORTS = range(20000, 32768)  # below Linux's ephemeral range (32768-60999) that gloo's own sockets use


def free_port() -> int:
    """A port for a run's rendezvous that nothing listens on now. The kernel's pick (port 0) comes from
    the ephemeral range, where another run's gloo connections take ports at any moment, so two runs
    started side by side could meet on one; a random free port below that range cannot be taken that way."""
    for port in secrets.SystemRandom().sample(RENDEZVOUS_PORTS, 64):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # the whole sample busy: let the kernel pick
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_accelerate_file(path: str) -> dict:
    """The settings of an accelerate config file (YAML or JSON) that decide the topology."""
    import yaml  # a dependency of accelerate, and torch-free

    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh) if path.endswith(".json") else yaml.safe_load(fh)
    except OSError as e:
        raise ConfigError([f"launch.accelerate_config: cannot read {path!r}: {e.strerror}"]) from None
    except (ValueError, yaml.YAMLError) as e:
        raise ConfigError([f"launch.accelerate_config: {path}: not a valid config file: "
                           f"{str(e).splitlines()[0]}"]) from None
    if not isinstance(data, dict):
        raise ConfigError([f"launch.accelerate_config: {path}: expected a mapping of accelerate settings"])
    return data


def plan(cfg: Config, source: str | None = None) -> Config:
    """Fold the accelerate config file into `cfg.launch` (in place), or fail on a contradiction.

    `[launch]` fields left at their defaults take the file's values; a field set to something else
    must agree with the file. The merged `[launch]` is then what the manifest shows and what the
    trainer checks against. `source` reads another copy of the file (the run's own).
    """
    launch = cfg.launch
    if not launch.accelerate_config:
        return cfg
    path = source or launch.accelerate_config
    f = read_accelerate_file(path)
    dtype = str(f.get("distributed_type", "NO")).upper()
    n = int(f.get("num_processes") or 1)
    mp = str(f.get("mixed_precision") or "no").lower()
    file_cpu = bool(f.get("use_cpu")) or dtype == "MULTI_CPU"
    where = f"(launch.accelerate_config {path})"
    problems = []
    if launch.num_processes != 1 and launch.num_processes != n:
        problems.append(f"launch.num_processes: {launch.num_processes} contradicts num_processes: {n} {where}")
    if launch.mixed_precision != "no" and launch.mixed_precision != mp:
        problems.append(f"launch.mixed_precision: {launch.mixed_precision!r} contradicts mixed_precision: "
                        f"{mp!r} {where}")
    if (launch.cpu or file_cpu) and dtype in SHARDED:
        problems.append(f"launch.cpu: {dtype} runs only on GPUs; on CPU Accelerate would quietly run plain "
                        f"data parallelism instead {where}")
    if dtype in ("MULTI_GPU", "MULTI_CPU") and n < 2:
        problems.append(f"launch.accelerate_config: {dtype} with num_processes: {n} is one process {where}")
    if problems:
        raise ConfigError(problems)
    launch.num_processes, launch.mixed_precision, launch.cpu = n, mp, launch.cpu or file_cpu
    return cfg


def expected(cfg: Config, source: str | None = None) -> dict:
    """World size, distributed type and mixed precision the launch must give the trainer. `cfg` is a
    run's config as its manifest holds it: `[launch]` was planned before it was written (the preflight,
    or a resume's overrides), so only the file's distributed type is read here (`source`: the run's copy)."""
    launch = cfg.launch
    dtype = "NO"
    if launch.accelerate_config:
        dtype = str(read_accelerate_file(source or launch.accelerate_config).get("distributed_type", "NO")).upper()
    if dtype not in SHARDED:
        dtype = "NO" if launch.num_processes == 1 else "MULTI_CPU" if launch.cpu else "MULTI_GPU"
    return {"world_size": launch.num_processes, "distributed_type": dtype, "mixed_precision": launch.mixed_precision}


def keep_accelerate_file(cfg: Config, run_dir: Path) -> None:
    """Copy the accelerate config file into the run folder: resumes and provenance use that copy."""
    if cfg.launch.accelerate_config:
        shutil.copyfile(cfg.launch.accelerate_config, Path(run_dir) / RUN_ACCELERATE_CONFIG)


def run_accelerate_file(cfg: Config, run_dir: Path) -> str:
    """The accelerate config file a launch of this run uses: the run's copy once it has one."""
    copy = Path(run_dir) / RUN_ACCELERATE_CONFIG
    return str(copy) if copy.is_file() else cfg.launch.accelerate_config


def argv(cfg: Config, run_dir: Path, resume: bool = False, port: int | None = None) -> list[str]:
    """The exact command for a run (shown in the TUI's preview): this module, then accelerate's flags.

    For a Slurm run it is the command of one task of the job; `--slurm` makes this module add the
    machine's rank, the machine count and the rendezvous address from the job's environment.
    """
    launch = cfg.launch
    slurm = launch.scheduler == "slurm"
    out = [sys.executable, "-m", "engine.launch", *(["--slurm"] if slurm else [])]
    own_port = launch.num_processes > 1 and not slurm
    if launch.accelerate_config:  # DeepSpeed / FSDP / multi-node: the file decides the topology
        path = run_accelerate_file(cfg, run_dir)
        out += ["--config_file", path]
        f = read_accelerate_file(path)
        own_port = own_port and not f.get("main_process_port") and int(f.get("num_machines") or 1) == 1
    else:
        out += ["--num_machines", "1", "--dynamo_backend", "no"]
    out += ["--num_processes", str(launch.num_processes)]
    if launch.num_processes > 1 and (launch.cpu or not launch.accelerate_config):
        # On CPU, `--cpu --num_processes N` (or a MULTI_CPU file) starts one process; --multi_gpu with
        # CPU forced (ACCELERATE_USE_CPU, set in `env`) starts N gloo ranks.
        out += ["--multi_gpu"]
    elif launch.cpu and not launch.accelerate_config:
        out += ["--cpu"]
    if own_port:
        out += ["--main_process_port", str(port or free_port())]
    out += ["--mixed_precision", launch.mixed_precision]
    # Given always: left out, accelerate picks its own and says so in every train.log (even at threads=1)
    threads = launch.threads or default_threads(launch.num_processes)
    out += ["--num_cpu_threads_per_process", str(threads)]
    out += ["-m", MODULES[cfg.kind], "--run-dir", str(run_dir)]
    if resume:
        out.append("--resume")
    return out


def default_threads(processes_here: int) -> int:
    """CPU threads per process when `launch.threads` is 0: the cores this process may run on (its
    affinity: a Slurm job's allocation or a taskset, not the whole node's count), shared evenly."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(processes_here, 1))


def slow_bf16(cpuinfo: str | None = None) -> str:
    """Why bf16 autocast will be slow on this CPU, or "" when it has bf16 instructions or cannot tell.
    Without them every bf16 matmul is emulated: a SmolLM2 RM step took ~180 s against 12.5 s in fp32 on
    an AVX2-only EPYC, a slowdown no one would guess from a setting meant to speed things up.
    `cpuinfo` is /proc/cpuinfo's text (Linux; elsewhere nothing is said)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key, flags = key.strip(), set(value.split())
        if key == "flags":  # x86: AVX512-BF16 or AMX-BF16
            has = flags & {"avx512_bf16", "amx_bf16"}
        elif key == "Features":  # arm64: the BF16 extension
            has = flags & {"bf16"}
        else:
            continue
        if has:
            return ""
        return ("bf16 autocast on a CPU without bf16 instructions (no avx512_bf16 or amx_bf16 in /proc/cpuinfo"
                if key == "flags" else "bf16 autocast on a CPU without the BF16 extension (no bf16 in /proc/cpuinfo"
                ) + "): steps run many times slower than fp32; set launch.mixed_precision = \"no\""
    return ""


def launch_warnings(cfg: Config, cpuinfo: str | None = None, gpu: bool | None = None) -> list[str]:
    """What this launch will do that no one would guess from its config, said before it starts (the
    trainer says it again in train.log, which `--detach` never shows): bf16 autocast on a local CPU
    without bf16 instructions. A local run is on the CPU when `launch.cpu` says so or this machine has
    no NVIDIA device (`gpu`, read from /dev without importing torch); a Slurm run's node is not this one."""
    if cfg.launch.mixed_precision != "bf16" or cfg.launch.scheduler == "slurm":
        return []
    if gpu is None:
        gpu = any(Path("/dev").glob("nvidia[0-9]*"))
    why = slow_bf16(cpuinfo) if cfg.launch.cpu or not gpu else ""
    return [why] if why else []


def env_for_tree() -> dict[str, str]:
    """This environment, offline, with the tree this module is in first on the path: a process the
    run service starts imports the same engine as its parent, installed or not."""
    out = dict(os.environ)
    out.setdefault("HF_HUB_OFFLINE", "1")
    out.setdefault("TOKENIZERS_PARALLELISM", "false")
    root = str(Path(__file__).resolve().parents[2])
    out["PYTHONPATH"] = os.pathsep.join([root] + [p for p in out.get("PYTHONPATH", "").split(os.pathsep) if p])
    return out


def env(cfg: Config) -> dict[str, str]:
    """The training processes' environment."""
    out = env_for_tree()
    out["PYTHONUNBUFFERED"] = "1"
    if cfg.launch.cpu:
        out["ACCELERATE_USE_CPU"] = "1"
    return out
