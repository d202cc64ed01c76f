"""Starts, stops and resumes training subprocesses. Never imports torch, and never textual.

A run is spawned as `python -m engine.runs.launch <accelerate launch flags> -m engine.<kind> --run-dir
runs/<id>` from an argument list (never a shell string), in a new session so it outlives the
terminal, the TUI and an SSH drop; its stdout and stderr go to `train.log`. The manifest's `pid` is
that session's leader and every rank is in its process group, which is what `stop` signals; whether
the run is alive is the liveness lock's answer (`engine.runs.liveness`), never the pid's.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from engine import config as config_mod
from engine.runs import liveness, slurm
from engine.runs import store as mf
from engine.runs.launch import argv as launch_argv
from engine.runs.launch import env as launch_env
from engine.runs.launch import keep_accelerate_file, plan

POLL_S = 0.1
SLURM_POLL_S = 1.0


def create_run(cfg: config_mod.Config, root: Path, *, links: dict | None = None) -> mf.RunPaths:
    """A new run folder with its manifest (status `created`); `[launch]` as the launch will give it."""
    plan(cfg)  # an accelerate config file that contradicts [launch] fails here, before any folder exists
    slurm.preflight(cfg)  # so does a cluster setting Slurm would refuse
    loss = cfg.loss.type if cfg.kind == "rm" else None
    run_id = mf.new_run_id(cfg.name, cfg.kind, loss)
    paths = mf.run_paths(Path(root), run_id)
    mf.create(paths, name=cfg.name, kind=cfg.kind, config=config_mod.to_dict(cfg), tags=cfg.tags,
              notes=cfg.notes, links=links)
    keep_accelerate_file(cfg, paths.dir)
    return paths


class SlurmJob:
    """What a caller follows for a Slurm run in place of a `Popen`: `poll()` is None while the run's
    newest job is queued or running (a resubmitted job included), then the run's exit code."""

    def __init__(self, paths: mf.RunPaths):
        self.paths = paths

    def poll(self) -> int | None:
        manifest = mf.read(self.paths)
        job = slurm.job_of(manifest)
        state = slurm.job_states([job]).get(job, ("", ""))[0]
        if state in slurm.ACTIVE:
            return None
        if manifest.get("status") in mf.FINAL:
            return int(manifest.get("exit_code", 1))
        return None if state == "" and liveness.alive(self.paths.dir, manifest) else 1

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired("slurm job", timeout)
            time.sleep(SLURM_POLL_S)
        return code


def spawn(paths: mf.RunPaths, resume: bool = False) -> subprocess.Popen | SlurmJob:
    """Start the training subprocess (or submit the Slurm job) for an existing run folder; returns at once."""
    manifest = mf.read(paths)
    cfg = config_mod.from_dict(manifest["config"], str(paths.manifest))
    if cfg.launch.scheduler == "slurm":  # the job script is written anew: a resume may change [launch]
        slurm.write_job_script(cfg, paths.dir, launch_argv(cfg, paths.dir.resolve()))
        job = slurm.submit(paths, resume=resume)  # the script's `resume` argument adds --resume
        with open(paths.log, "ab") as log:
            log.write(f"\n[aplot] {'resume' if resume else 'launch'}: slurm job {job} ({slurm.JOB_SCRIPT})\n".encode())
        return SlurmJob(paths)
    argv = launch_argv(cfg, paths.dir.resolve(), resume=resume)
    # The liveness lock is taken here and its open file handed to the launcher, so the run counts as
    # alive from this instant on, through the launcher's start-up, until its last process is gone.
    alive = liveness.hold(paths.dir, inheritable=True)
    try:
        with open(paths.log, "ab") as log:
            log.write(f"\n[aplot] {'resume' if resume else 'launch'}: {' '.join(argv)}\n".encode())
            log.flush()
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,  # noqa: S603 - argv is a list built by launch_argv, never a shell string
                                    env=launch_env(cfg), start_new_session=True, close_fds=True, pass_fds=(alive,))
    finally:
        os.close(alive)
    mf.update(paths, pid=proc.pid, host=liveness.this_host(), launch_argv=argv, launched_at=mf.now_iso())
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


def resume(paths: mf.RunPaths, overrides: list[str] | None = None) -> subprocess.Popen | SlurmJob:
    """Continue a stopped, failed or crashed run from its newest complete checkpoint.

    `overrides` may change `[launch]` only (e.g. `launch.num_processes=3` after a node was lost): the
    trainer then keeps the effective batch and says in the manifest that the run is no longer
    bit-exact, or refuses in one line. Check and spawn happen under a lock on the run folder: two
    resumes pressed at once (a double key press, the TUI and a script) must not both see the run as
    crashed and start two trainers.
    """
    bad = [o for o in overrides or [] if not o.startswith("launch.")]
    if bad:
        raise config_mod.ConfigError([f"{bad[0].split('=')[0]}: a resume keeps the run's config; only launch.* "
                                      "settings can change"])
    with open(paths.dir / ".resume.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the loser waits, then finds the winner's live process
        manifest = mf.read(paths)
        status = mf.effective_status(paths, manifest)
        if status in ("running", "created", "queued") and mf.launched(manifest):
            raise mf.RunError(f"{paths.id}: is {status}; stop it before resuming")
        if status == "completed":
            raise mf.RunError(f"{paths.id}: already completed; nothing to resume")
        steps = mf.checkpoint_steps(paths)
        if not steps:
            raise mf.RunError(f"{paths.id}: has no complete checkpoint to resume from")
        changes: dict = {}
        if overrides:
            data = config_mod.apply_overrides(manifest["config"], overrides)
            cfg = plan(config_mod.from_dict(data, "resume overrides"))
            changes["config"] = {"launch": config_mod.to_dict(cfg)["launch"]}
        mf.update(paths, status="created", resumed_at=mf.now_iso(), stop_requested_at="",
                  resume_count=manifest.get("resume_count", 0) + 1, **changes)
        return spawn(paths, resume=True)


def wait_exit(paths: mf.RunPaths, timeout: float, proc: subprocess.Popen | None = None) -> bool:
    """Wait until no process of the run is left on this host (its liveness lock is free); False on
    timeout."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None:
            proc.poll()  # reap our own child so it does not linger as a zombie
        if not liveness.lock_held(paths.dir):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)


def stop(paths: mf.RunPaths, grace: float = 30.0, proc: subprocess.Popen | None = None) -> str:
    """SIGINT (the trainer checkpoints and exits), then SIGTERM, then SIGKILL; the final status.

    Each signal goes to the whole process group, so every rank hears it at once. The trainer's own
    handlers make the stop work whatever dispositions the process that launched it had.
    """
    manifest = mf.read(paths)
    status, pid, host = mf.effective_status(paths, manifest), manifest.get("pid"), manifest.get("host")
    if slurm.job_of(manifest) and status in ("queued", "running", "created"):
        return stop_job(paths, grace)
    if status not in ("running", "created") or not pid:
        raise mf.RunError(f"{paths.id}: is {status}, not running")
    if host and host != liveness.this_host():
        raise mf.RunError(f"{paths.id}: runs on {host}; stop it from there")
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        if wait_exit(paths, wait, proc):
            break
    manifest = mf.read(paths)
    if manifest.get("status") in ("running", "created"):  # the trainer could not record it itself
        mf.update(paths, status="stopped", exit_code=-int(signal.SIGKILL), finished_at=mf.now_iso(),
                  error="stopped by signal before the trainer could record it")
    return mf.read(paths)["status"]


def stop_job(paths: mf.RunPaths, grace: float = 30.0) -> str:
    """A Slurm run: SIGINT to every task of the job (the trainer checkpoints), then the job cancelled
    after `grace`; a queued job is just cancelled. Marked as asked for, so the job's auto-resume
    leaves it stopped."""
    manifest = mf.update(paths, stop_requested_at=mf.now_iso())
    job = slurm.job_of(manifest)
    status = mf.effective_status(paths, manifest)
    if status == "queued":
        slurm.cancel(job)
        mf.update(paths, status="stopped", exit_code=130, finished_at=mf.now_iso(),
                  error=f"slurm job {job} cancelled before it started")
        return "stopped"
    handle = SlurmJob(paths)
    slurm.cancel(job, signal="INT")
    try:
        handle.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        slurm.cancel(job)
        with contextlib.suppress(subprocess.TimeoutExpired):
            handle.wait(timeout=30)
    if mf.read(paths).get("status") in ("running", "created"):  # the trainer could not record it itself
        mf.update(paths, status="stopped", exit_code=-int(signal.SIGKILL), finished_at=mf.now_iso(),
                  error=f"slurm job {job} cancelled before the trainer could record the stop")
    return mf.read(paths)["status"]


def reap(paths: mf.RunPaths, proc: subprocess.Popen | SlurmJob) -> str:
    """After our own child exits: record a failure the trainer could not (import error, OOM kill).
    A Slurm job's end is the scheduler's word (`effective_status`), not recorded here."""
    code = proc.wait()
    if isinstance(proc, SlurmJob):
        return mf.effective_status(paths)
    wait_exit(paths, 30.0)
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
