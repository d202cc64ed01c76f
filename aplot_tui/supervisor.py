"""Starts, stops and resumes training subprocesses. Never imports torch, and never textual.

A run is spawned as `accelerate launch … -m engine.<kind> --run-dir runs/<id>` from an argument
list (never a shell string), in a new session so it outlives the terminal, the TUI and an SSH
drop; its stdout and stderr go to `train.log`. The manifest's `pid` is that session's leader;
every rank is in its process group, which is what `stop` signals.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from engine import config as config_mod
from engine import manifest as mf

MODULES = {"rm": "engine.reward", "ppo": "engine.ppo"}
POLL_S = 0.1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_argv(cfg: config_mod.Config, run_dir: Path, resume: bool = False, port: int | None = None) -> list[str]:
    """The exact `accelerate launch` command for a run (shown in the TUI's preview)."""
    launch = cfg.launch
    argv = [sys.executable, "-m", "accelerate.commands.launch"]
    if launch.accelerate_config:  # DeepSpeed / FSDP / multi-node: the file decides the topology
        argv += ["--config_file", launch.accelerate_config]
    else:
        argv += ["--num_machines", "1", "--num_processes", str(launch.num_processes),
                 "--dynamo_backend", "no"]
        if launch.num_processes > 1:
            # On CPU, `--cpu --num_processes N` starts one process; --multi_gpu with CPU forced
            # (ACCELERATE_USE_CPU, set in `launch_env`) starts N gloo ranks.
            argv += ["--multi_gpu", "--main_process_port", str(port or _free_port())]
        elif launch.cpu:
            argv += ["--cpu"]
    argv += ["--mixed_precision", launch.mixed_precision]
    argv += ["-m", MODULES[cfg.kind], "--run-dir", str(run_dir)]
    if resume:
        argv.append("--resume")
    return argv


def launch_env(cfg: config_mod.Config) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["PYTHONUNBUFFERED"] = "1"
    if cfg.launch.cpu:
        env["ACCELERATE_USE_CPU"] = "1"
    # the engine must import from the same tree as this supervisor, installed or not
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def create_run(cfg: config_mod.Config, root: Path, *, links: dict | None = None) -> mf.RunPaths:
    """A new run folder with its manifest (status `created`)."""
    loss = cfg.loss.type if cfg.kind == "rm" else None
    run_id = mf.new_run_id(cfg.name, cfg.kind, loss)
    paths = mf.run_paths(Path(root), run_id)
    mf.create(paths, name=cfg.name, kind=cfg.kind, config=config_mod.to_dict(cfg), tags=cfg.tags,
              notes=cfg.notes, links=links)
    return paths


def spawn(paths: mf.RunPaths, resume: bool = False) -> subprocess.Popen:
    """Start the training subprocess for an existing run folder; returns at once."""
    manifest = mf.read(paths)
    cfg = config_mod.from_dict(manifest["config"], str(paths.manifest))
    argv = launch_argv(cfg, paths.dir.resolve(), resume=resume)
    with open(paths.log, "ab") as log:
        log.write(f"\n[aplot] {'resume' if resume else 'launch'}: {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=launch_env(cfg), start_new_session=True, close_fds=True)
    mf.update(paths, pid=proc.pid, launch_argv=argv, launched_at=mf.now_iso())
    return proc


def start(cfg: config_mod.Config, root: Path, *, links: dict | None = None) -> mf.RunPaths:
    """Create and launch a run for a long-lived caller (the TUI); a reaper thread waits on it."""
    paths = create_run(cfg, root, links=links)
    watch(paths, spawn(paths))
    return paths


def watch(paths: mf.RunPaths, proc: subprocess.Popen) -> threading.Thread:
    """Reap `proc` in the background: no zombie lingers, and a death the trainer could not record
    (an import error, an OOM kill) is still written to the manifest."""
    def run() -> None:
        try:
            reap(paths, proc)
        except (mf.RunError, OSError):
            proc.wait()  # the run folder was removed meanwhile: nothing left to record

    thread = threading.Thread(target=run, name=f"reap-{paths.id}", daemon=True)
    thread.start()
    return thread


def resume(paths: mf.RunPaths) -> subprocess.Popen:
    """Continue a stopped, failed or crashed run from its newest complete checkpoint.

    Check and spawn happen under a lock on the run folder: two resumes pressed at once (a double
    key press, the TUI and a script) must not both see the run as crashed and start two trainers.
    """
    with open(paths.dir / ".resume.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the loser waits, then finds the winner's live process
        manifest = mf.read(paths)
        status = mf.effective_status(manifest)
        if status in ("running", "created") and manifest.get("pid"):
            raise mf.RunError(f"{paths.id}: is {status}; stop it before resuming")
        if status == "completed":
            raise mf.RunError(f"{paths.id}: already completed; nothing to resume")
        steps = mf.checkpoint_steps(paths)
        if not steps:
            raise mf.RunError(f"{paths.id}: has no complete checkpoint to resume from")
        mf.update(paths, status="created", resumed_at=mf.now_iso(),
                  resume_count=manifest.get("resume_count", 0) + 1)
        return spawn(paths, resume=True)


def wait_exit(paths: mf.RunPaths, pid: int, timeout: float, proc: subprocess.Popen | None = None) -> bool:
    """Wait until the run's process group has no live member; False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None:
            proc.poll()  # reap our own child so it does not linger as a zombie
        if not mf.pid_alive(pid, paths.id):
            return True
        time.sleep(POLL_S)
    return not mf.pid_alive(pid, paths.id)


def stop(paths: mf.RunPaths, grace: float = 30.0, proc: subprocess.Popen | None = None) -> str:
    """SIGINT (the trainer checkpoints and exits), then SIGTERM, then SIGKILL; the final status.

    Each signal goes to the whole process group, so every rank hears it at once.
    """
    manifest = mf.read(paths)
    pid = manifest.get("pid")
    if mf.effective_status(manifest) not in ("running", "created") or not pid:
        raise mf.RunError(f"{paths.id}: is {mf.effective_status(manifest)}, not running")
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        if wait_exit(paths, pid, wait, proc):
            break
    manifest = mf.read(paths)
    if manifest.get("status") in ("running", "created"):  # the trainer could not record it itself
        mf.update(paths, status="stopped", exit_code=-int(signal.SIGKILL), finished_at=mf.now_iso(),
                  error="stopped by signal before the trainer could record it")
    return mf.read(paths)["status"]


def reap(paths: mf.RunPaths, proc: subprocess.Popen) -> str:
    """After our own child exits: record a failure the trainer could not (import error, OOM kill)."""
    code = proc.wait()
    wait_exit(paths, proc.pid, 30.0)
    manifest = mf.read(paths)
    if manifest.get("status") in ("running", "created"):
        tail = last_log_line(paths)
        mf.update(paths, status="failed", exit_code=code, finished_at=mf.now_iso(),
                  error=f"training process exited with code {code}" + (f": {tail}" if tail else ""))
    return mf.read(paths)["status"]


def last_log_line(paths: mf.RunPaths) -> str:
    """The last meaningful line of train.log (an exception's message, usually)."""
    try:
        with open(paths.log, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 8192))
            lines = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        line = line.strip()
        if line and not line.startswith(("[aplot] launch", "[aplot] resume", "W", "  ")):
            return line[:300]
    return ""
