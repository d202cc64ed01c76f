"""Every word a run's status can be, and the one rule that decides which a reader shows.

The manifest's `status` is the trainer's own record; what `aplot ls`, `show`, the TUI, `stop`, `resume`
and the sweep scheduler show is that record checked against the world: a run whose record says it is
going but whose processes are gone is `crashed`, and a Slurm run's scheduler has the last word on what
its trainer could not say itself. Torch-free: the UI reads it.
"""

from __future__ import annotations

from engine.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from engine.runs import liveness
from engine.runs import store as mf

CREATED = "created"  # a folder and a manifest; launched (a process spawned, the trainer not up yet) or not
QUEUED = "queued"  # waits for a sweep's scheduler, or in Slurm's queue
RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"
STOPPED = "stopped"  # asked to stop (or a time limit), checkpointed first: resumable
CRASHED = "crashed"  # never written: its processes died without recording it

FINAL = (COMPLETED, FAILED, STOPPED)  # written by the trainer (or on its behalf) once, at the end
GOING = (CREATED, RUNNING)  # launched and alive: what `aplot stop` stops and a sweep counts as busy
UNFINISHED = (CREATED, QUEUED, RUNNING)  # may still start or go on
RESUMABLE = (STOPPED, FAILED, CRASHED)  # ended short of its last step: `resume` continues it from a checkpoint
ALL = (CREATED, QUEUED, RUNNING, COMPLETED, FAILED, STOPPED, CRASHED)

EXIT = {COMPLETED: EXIT_OK, STOPPED: EXIT_INTERRUPTED}  # a final status as the exit status of what waited on it


def exit_code(status: str) -> int:
    """The exit status of a trainer, or of `aplot run`/`resume`/`follow`, for a run that ended `status`."""
    return EXIT.get(status, EXIT_FAILED)


def effective(paths: mf.RunPaths, manifest: dict | None = None) -> str:
    """The status to show: `running` (or launched, not yet started) with nothing alive is `crashed`."""
    return with_reason(paths, manifest)[0]


def with_reason(paths: mf.RunPaths, manifest: dict | None = None) -> tuple[str, str]:
    """(status, why) as every reader sees it.

    A final status is the trainer's own record. Otherwise: a Slurm run asks its scheduler (queued and
    why, running, or ended without a word), a local one asks `engine.runs.liveness` (a lock on this host,
    a heartbeat from another), never a pid. `manifest` saves a read when the caller has it already.
    """
    manifest = mf.read(paths) if manifest is None else manifest
    status = manifest.get("status", CREATED)
    if status in FINAL or (status in (CREATED, QUEUED) and not mf.launched(manifest)):
        return status, ""  # nothing was started yet (a sweep's queued run): nothing to ask
    alive = liveness.alive(paths.dir, manifest)
    if manifest.get("slurm", {}).get("job_id"):
        return scheduled(manifest, alive)
    return (status, "") if alive else (CRASHED, "")


def scheduled(manifest: dict, alive: bool) -> tuple[str, str]:
    """(status, reason) of a Slurm run whose manifest is not final, from its job's state.

    The trainer's own record wins whenever it has one (stopped, completed, failed); this decides only
    what the trainer could not say: queued and why, running, or ended without a word (crashed, with
    the scheduler's reason) — `alive` (lock or heartbeat) speaks only when Slurm has forgotten the job.
    """
    from engine.runs import slurm  # only runs that have a job pay for the scheduler

    status = manifest.get("status", CREATED)
    job = slurm.job_of(manifest)
    state, reason = slurm.job_states([job]).get(job, ("", "")) if job else ("", "")
    if state in slurm.QUEUED_STATES:
        return QUEUED, reason  # Slurm gives its reason (Resources, Priority, JobHeldUser…) within a moment
    if state in slurm.ACTIVE_STATES:
        return RUNNING, ""
    if state:  # ended, and the trainer did not record how
        why = slurm.ENDINGS.get(state, state.lower())
        if state == "CANCELLED" and status == CREATED and not manifest.get("started_at"):
            return STOPPED, f"slurm job {job} {why} before it started"
        return CRASHED, f"slurm job {job}: {why}" + (f" ({reason})" if reason else "")
    return (status if alive else CRASHED), ""
