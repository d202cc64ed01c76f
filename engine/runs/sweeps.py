"""Sweeps: every run created up front (status `queued`), then started as slots free up by a
detached scheduler whose whole state is in the run store, `runs/sweeps/<id>/`.

    sweep.toml       id, name, source, max_parallel, the run ids in order, stop requests
    spec.toml        the sweep file as it was given
    scheduler.lock   held (flock, exclusive) by the one scheduler of this sweep while it lives
    scheduler.log    what it did

The scheduler is `python -m engine.runs.sweeps --runs-dir ROOT ID`, started in a session of its own (as
runs are started), so it outlives the terminal and the TUI. It never trains anything
itself and never imports torch: each poll it reads the runs' statuses, and while fewer than
`max_parallel` are alive it claims the next queued run (a compare-and-set on its manifest,
`engine.runs.store.claim`) and only then spawns it. Killed at any instant, it leaves each run either
queued, claimed-but-not-launched (which the next scheduler puts back in the queue: only one
scheduler holds the lock, so nothing else can be starting it), or launched (which is counted, never
started again). `aplot sweep stop` asks the scheduler to quit, then stops the running runs through
the ordinary stop path (checkpoint first) and marks them to be resumed by `aplot sweep resume`;
queued runs stay queued.

With `launch.scheduler = "slurm"` there is no scheduler process: every run is submitted at once as
its own job and Slurm's queue decides when each starts (`max_parallel` does not apply; use the
partition's limits). There `sweep stop` is every job's stop: running ones checkpoint, pending ones are
cancelled and end `stopped` with nothing to resume from (not yet handled: resubmitting them fresh).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from engine.config import ConfigError
from engine.runs import launch, lifecycle, liveness, sweep_spec
from engine.runs import status as S
from engine.runs import store as mf

SWEEPS = "sweeps"
STATE, SPEC, LOCK, LOG = "sweep.toml", "spec.toml", "scheduler.lock", "scheduler.log"
POLL_S = 0.5
# a sweep's own status, beside its runs' (engine.runs.status)
SWEEP_RUNNING, SWEEP_DONE, SWEEP_STOPPED = "running", "done", "stopped"


def sweeps_root(root: Path) -> Path:
    return Path(root) / SWEEPS


def sweep_dir(root: Path, sweep_id: str) -> Path:
    mf.check_run_id(sweep_id)  # the same shape as a run id: no separators, cannot leave the store
    return sweeps_root(root) / sweep_id


def read_state(root: Path, sweep_id: str) -> dict:
    path = sweep_dir(root, sweep_id) / STATE
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise mf.RunError(f"{sweep_id}: no such sweep in {sweeps_root(root)}") from None


@contextlib.contextmanager
def _state_lock(folder: Path):
    with open(folder / ".state.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def update_state(root: Path, sweep_id: str, **changes) -> dict:
    folder = sweep_dir(root, sweep_id)
    with _state_lock(folder):
        state = {**read_state(root, sweep_id), **changes}
        mf.write_atomic(folder / STATE, tomli_w.dumps({k: v for k, v in state.items() if v is not None}))
    return state


def find_sweep(root: Path, ref: str) -> str:
    """A sweep by full id, by name, or by a part of its id only it has."""
    ids = list_ids(root)
    if ref in ids:
        return ref
    matches = [i for i in ids if read_state(root, i).get("name") == ref] or [i for i in ids if ref in i]
    if not matches:
        raise mf.RunError(f"{ref}: no such sweep in {sweeps_root(root)}")
    if len(matches) > 1:
        raise mf.RunError(f"{ref}: ambiguous, matches {', '.join(matches[:4])}")
    return matches[0]


def list_ids(root: Path) -> list[str]:
    base = sweeps_root(root)
    if not base.is_dir():
        return []
    return sorted(d.name for d in base.iterdir() if d.is_dir() and mf.RUN_ID_RE.match(d.name) and (d / STATE).exists())


def run_paths(root: Path, state: dict) -> list[mf.RunPaths]:
    return [mf.run_paths(Path(root), r) for r in state.get("runs", [])]


# --------------------------------------------------------------------------- create


def create(sweep: sweep_spec.Sweep, root: Path) -> str:
    """Every run of the sweep, queued and tagged; nothing is started. All checks run first."""
    checked = []
    for point in sweep.points:  # a missing data file fails before any folder exists, not halfway
        try:
            checked.append(lifecycle.preflight(point.cfg, root))
        except ConfigError as e:
            raise ConfigError([f"{sweep.source}: run {point.index} ({point.cfg.name}): {e.problems[0]}"]) from None
    sweep_id = mf.new_run_id(sweep.name, "sweep")
    folder = sweep_dir(root, sweep_id)
    folder.mkdir(parents=True)
    (folder / SPEC).write_text(sweep.text, encoding="utf-8")
    mf.write_atomic(folder / STATE, tomli_w.dumps({
        "id": sweep_id, "name": sweep.name, "source": str(sweep.source.resolve()), "created_at": mf.now_iso(),
        "max_parallel": sweep.max_parallel, "scheduler": sweep.scheduler, "seeds": sweep.seeds,
        "axes": list(sweep.axes), "zip": list(sweep.zipped), "runs": []}))
    ids: list[str] = []
    for point, ok in zip(sweep.points, checked, strict=True):  # each run joins the state as it is made
        paths = lifecycle.create(ok, root)
        tags = [*point.cfg.tags, f"sweep:{sweep_id}", *(f"{k}={v}" for k, v in point.values.items())]
        mf.update(paths, status=S.QUEUED, tags=tags,
                  sweep={"id": sweep_id, "index": point.index, "seed": point.seed, "axes": point.values})
        ids.append(paths.id)
        update_state(root, sweep_id, runs=ids)
    return sweep_id


# --------------------------------------------------------------------------- status


@dataclass
class RunState:
    paths: mf.RunPaths
    manifest: dict
    status: str

    @property
    def pending(self) -> bool:
        """Waiting to be started: queued, or stopped by `sweep stop` and due to be resumed."""
        return self.status == S.QUEUED or (self.status == S.STOPPED and self.manifest.get("sweep", {}).get("resume"))


def run_states(root: Path, state: dict) -> list[RunState]:
    out = []
    for paths in run_paths(root, state):
        try:
            manifest = mf.read(paths)
        except mf.RunError:
            continue  # a run deleted by hand is no longer part of the sweep
        out.append(RunState(paths, manifest, S.effective(paths, manifest)))
    return out


def scheduler_alive(root: Path, sweep_id: str) -> bool:
    """Whether a scheduler holds this sweep's lock (the kernel drops it when that process ends)."""
    return liveness.lock_held(sweep_dir(root, sweep_id) / LOCK)


def progress(root: Path, sweep_id: str, states: list[RunState] | None = None) -> dict[str, int]:
    """Runs per status, plus `total`: what `sweep ls` and the runs screen show."""
    states = run_states(root, read_state(root, sweep_id)) if states is None else states
    counts: dict[str, int] = {"total": len(states)}
    for s in states:
        counts[s.status] = counts.get(s.status, 0) + 1
    return counts


def sweep_status(root: Path, sweep_id: str, counts: dict[str, int] | None = None) -> str:
    """`running` (a scheduler lives or runs are alive), `done` (nothing left to start), `stopped`
    (work left, nothing running: `sweep resume` continues), `submitted` for a Slurm sweep."""
    counts = counts or progress(root, sweep_id)
    state = read_state(root, sweep_id)
    live = sum(counts.get(s, 0) for s in S.GOING)
    if state.get("scheduler") == "slurm":
        return SWEEP_RUNNING if live or counts.get(S.QUEUED) else SWEEP_DONE
    if scheduler_alive(root, sweep_id) or live:
        return SWEEP_RUNNING
    left = counts.get(S.QUEUED, 0) + sum(1 for s in run_states(root, state) if s.pending and s.status == S.STOPPED)
    return SWEEP_STOPPED if left else SWEEP_DONE


# --------------------------------------------------------------------------- the scheduler


def spawn_scheduler(root: Path, sweep_id: str) -> subprocess.Popen:
    """Start the detached scheduler: its own session, no terminal, output to scheduler.log."""
    folder = sweep_dir(root, sweep_id)
    argv = [sys.executable, "-m", "engine.runs.sweeps", "--runs-dir", str(Path(root).resolve()), sweep_id]
    env = launch.env_for_tree()  # the scheduler imports the same tree as its caller
    with open(folder / LOG, "ab") as log:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,  # noqa: S603 - our own module, an argument list
                                start_new_session=True, close_fds=True, cwd=os.getcwd())


def _say(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


def requeue_unlaunched(root: Path, state: dict) -> list[str]:
    """Put back in the queue the runs a scheduler claimed and died before launching; their ids.
    Alive means launched: a scheduler killed between the launcher's start and the manifest's note of it
    leaves no launched_at but the run's liveness lock held, by the launcher, and that run is left alone."""
    out = []
    for rs in run_states(root, state):
        if rs.manifest.get("status") == S.CREATED and not mf.launched(rs.manifest) and rs.manifest.get("sweep", {}).get(
                "claimed_at") and not liveness.held_here(rs.paths.dir):
            mf.update(rs.paths, status=S.QUEUED)
            out.append(rs.paths.id)
    return out


def schedule(root: Path, sweep_id: str, poll: float = POLL_S) -> int:
    """The scheduler's loop; returns when nothing is left to start and nothing runs, or on a stop."""
    folder = sweep_dir(root, sweep_id)
    lock = open(folder / LOCK, "a")  # noqa: SIM115 - held for the life of the process
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        _say(f"{sweep_id}: another scheduler runs this sweep; exiting")
        return 3
    quit_event = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: quit_event.set())
    state = update_state(root, sweep_id, scheduler_pid=os.getpid(), scheduler_started_at=mf.now_iso())
    parallel = int(state.get("max_parallel", 1))
    for run_id in requeue_unlaunched(root, state):
        _say(f"{run_id}: claimed but never launched; back in the queue")
    _say(f"{sweep_id}: scheduling {len(state.get('runs', []))} runs, {parallel} at a time")
    while not quit_event.is_set():
        if read_state(root, sweep_id).get("stop_requested_at"):
            break
        states = run_states(root, state)
        live = sum(s.status in S.GOING for s in states)
        pending = [s for s in states if s.pending]
        if not pending and not live:
            _say(f"{sweep_id}: nothing left to start; done ({progress(root, sweep_id, states)})")
            return 0
        for rs in pending[:max(0, parallel - live)]:
            if quit_event.is_set():
                break
            _start(rs)
        quit_event.wait(poll)
    _say(f"{sweep_id}: stop requested; no more runs start here (running ones are `sweep stop`'s to stop)")
    return 0


def _start(rs: RunState) -> None:
    paths = rs.paths
    try:
        if rs.status == S.QUEUED:
            if not mf.claim(paths, S.QUEUED, status=S.CREATED, sweep={"claimed_at": mf.now_iso()}):
                return  # someone else's now (a hand-started run): not ours to start
            proc = lifecycle.spawn(paths)
            _say(f"{paths.id}: started (pid {proc.pid})")
        else:
            proc = lifecycle.resume(paths)
            mf.update(paths, sweep={"resume": False})
            _say(f"{paths.id}: resumed from step {mf.checkpoint_steps(paths)[-1]}")
        lifecycle.watch(paths, proc)
    except (mf.RunError, ConfigError, OSError) as e:
        _say(f"{paths.id}: could not start: {e}")
        with contextlib.suppress(mf.RunError, OSError):
            mf.update(paths, status=S.FAILED, finished_at=mf.now_iso(), error=f"sweep could not start it: {e}")


# --------------------------------------------------------------------------- start / stop / resume


def submit_slurm(root: Path, sweep_id: str) -> None:
    """A Slurm sweep: every run submitted now as its own job; Slurm's queue does the rest."""
    for rs in run_states(root, read_state(root, sweep_id)):
        if rs.status == S.QUEUED and mf.claim(rs.paths, S.QUEUED, status=S.CREATED, sweep={"claimed_at": mf.now_iso()}):
            lifecycle.spawn(rs.paths)


def start(root: Path, sweep_id: str) -> subprocess.Popen | None:
    """Begin (or continue) a sweep: the detached scheduler, or the Slurm submissions."""
    state = read_state(root, sweep_id)
    if state.get("scheduler") == "slurm":
        submit_slurm(root, sweep_id)
        return None
    if scheduler_alive(root, sweep_id):
        raise mf.RunError(f"{sweep_id}: its scheduler is already running (pid {state.get('scheduler_pid')})")
    update_state(root, sweep_id, stop_requested_at="")
    proc = spawn_scheduler(root, sweep_id)
    # return once it holds the lock, so a status asked right after never reads "stopped"
    deadline = time.monotonic() + 30
    while not scheduler_alive(root, sweep_id) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    return proc


def stop(root: Path, sweep_id: str, grace: float = 30.0, drain: bool = False) -> dict[str, str]:
    """Quit the scheduler, then stop every running run with a checkpoint (all at once); queued runs
    stay queued. The runs stopped here are marked so `resume` continues them. Run id → status.
    With `drain`, running runs are left to finish: only the queue stops."""
    state = update_state(root, sweep_id, stop_requested_at=mf.now_iso())
    pid = state.get("scheduler_pid")
    if pid and scheduler_alive(root, sweep_id):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGTERM)
        deadline = time.monotonic() + 30
        while scheduler_alive(root, sweep_id) and time.monotonic() < deadline:
            time.sleep(0.05)
    if drain:
        return {s.paths.id: s.status for s in run_states(root, state) if s.status in S.GOING}
    if state.get("scheduler") == "slurm":
        live = [s for s in run_states(root, state) if s.status in (*S.GOING, S.QUEUED)]
    else:
        live = [s for s in run_states(root, state) if s.status in S.GOING]

    def one(rs: RunState) -> tuple[str, str]:
        mf.update(rs.paths, sweep={"resume": True})
        try:
            return rs.paths.id, lifecycle.stop(rs.paths, grace=grace)
        except mf.RunError:  # it ended meanwhile
            return rs.paths.id, S.effective(rs.paths)

    with ThreadPoolExecutor(max_workers=max(1, len(live))) as pool:
        return dict(pool.map(one, live))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="the detached scheduler of one sweep (started by `aplot sweep`)")
    ap.add_argument("--runs-dir", required=True)
    ap.add_argument("sweep_id")
    args = ap.parse_args(argv)
    return schedule(Path(args.runs_dir), args.sweep_id)


if __name__ == "__main__":
    sys.exit(main())
