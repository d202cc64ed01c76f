"""Runs as Slurm jobs: the job script, submission, the scheduler's word on a job, and resubmission.

A Slurm run is a run folder like any other: the trainer writes the manifest, metrics and log into the
shared run store, and its ranks hold the liveness lock and beat the heartbeat as they do locally. What
only the scheduler knows — queued and why, or ended without the trainer having a say (killed, out of
memory, node failure, time limit) — comes from `squeue` (and `sacct` where the cluster keeps
accounting), one call for every job of a listing, cached for a few seconds. Torch-free: the UI uses it.

`runs/<id>/job.sbatch` is readable and reruns as it is: `sbatch job.sbatch` starts the run, `sbatch
job.sbatch resume` continues it from its newest checkpoint. After the launch it calls this module
(`python -m engine.runs.slurm after-job RUN_DIR`), which resubmits a run that its time limit or a
preemption stopped, up to `launch.slurm.auto_resume` times.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from engine.config import Config, ConfigError
from engine.runs import store as mf

JOB_SCRIPT = "job.sbatch"
CACHE_S = 2.0  # one squeue answer serves every question asked within this many seconds
ACTIVE_STATES = ("PENDING", "CONFIGURING", "REQUEUED", "RESIZING", "RUNNING", "COMPLETING", "STAGE_OUT", "SUSPENDED",
          "SIGNALING", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SPECIAL_EXIT")
QUEUED_STATES = ("PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SPECIAL_EXIT")
# why a job ended, in words, when the trainer could not record it itself
ENDINGS = {"CANCELLED": "cancelled", "TIMEOUT": "hit its time limit", "NODE_FAIL": "a node failed",
           "PREEMPTED": "preempted", "OUT_OF_MEMORY": "out of memory", "FAILED": "the job failed",
           "BOOT_FAIL": "a node failed to boot", "DEADLINE": "missed its deadline", "COMPLETED": "the job ended"}


class SlurmError(mf.RunError):
    """Slurm refused or is not there; the message is one line for the user."""


def _run(argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)  # noqa: S603 - argv is a list of sbatch/squeue/scancel arguments, never a shell string
    except FileNotFoundError:
        raise SlurmError(f"{argv[0]}: not found; launch.scheduler = \"slurm\" needs Slurm's commands on PATH") from None
    except subprocess.TimeoutExpired:
        raise SlurmError(f"{argv[0]}: no answer from Slurm within {timeout:.0f} s") from None


# ---------------------------------------------------------------------------- before a submission


def preflight(cfg: Config) -> None:
    """What Slurm would refuse, checked before anything is created: its commands, the partition."""
    if cfg.launch.scheduler != "slurm":
        return
    if shutil.which("sbatch") is None:
        raise ConfigError(["launch.scheduler: \"slurm\" needs sbatch on PATH, and there is none"])
    part = cfg.launch.slurm.partition
    if part:
        out = _run(["sinfo", "-h", "-o", "%R"])
        known = sorted({p.strip() for p in out.stdout.split() if p.strip()})
        if out.returncode == 0 and part not in known:
            raise ConfigError([f"launch.slurm.partition: no partition {part!r} on this cluster "
                               f"(known: {', '.join(known) or 'none'})"])


def machines(cfg: Config) -> int:
    return cfg.launch.slurm.nodes * cfg.launch.slurm.tasks_per_node


def job_script(cfg: Config, run_dir: Path, launch_argv: list[str]) -> str:
    """The batch script for a run; `launch_argv` is the `python -m engine.launch …` command of one task."""
    s, run_dir = cfg.launch.slurm, Path(run_dir).resolve()
    root = Path(__file__).resolve().parents[2]
    opts = [f"--job-name=aplot-{run_dir.name}", f"--output={run_dir / mf.LOG}", "--open-mode=append",
            f"--nodes={s.nodes}", f"--ntasks-per-node={s.tasks_per_node}"]
    opts += [f"--{k.replace('_', '-')}={v}" for k, v in (("partition", s.partition), ("cpus_per_task", s.cpus_per_task),
                                                           ("gpus_per_node", s.gpus_per_node), ("mem", s.mem),
                                                           ("time", s.time), ("account", s.account), ("qos", s.qos))
             if v]
    if s.signal_before_end:  # every task of the job (not only this script) gets SIGINT that long before the end
        opts.append(f"--signal=INT@{s.signal_before_end}")
    opts += list(s.extra)
    env = {"PYTHONPATH": f"{root}:${{PYTHONPATH:-}}", "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "${HF_HUB_OFFLINE:-1}",
           "TOKENIZERS_PARALLELISM": "false"}
    if cfg.launch.cpu:
        env["ACCELERATE_USE_CPU"] = "1"
    py = shlex.quote(sys.executable)
    lines = ["#!/bin/bash",
             f"# aplot run {run_dir.name}, written by aplot. `sbatch {JOB_SCRIPT}` starts it again;",
             f"# `sbatch {JOB_SCRIPT} resume` continues it from its newest complete checkpoint.",
             *[f"#SBATCH {o}" for o in opts],
             "set -u",
             *s.setup,
             *[f"export {k}={v}" for k, v in env.items()],
             "# every task is one machine for accelerate: engine.launch --slurm adds --num_machines $SLURM_NTASKS",
             "# --machine_rank $SLURM_PROCID --main_process_ip $APLOT_MAIN_PROCESS_IP --main_process_port ...",
             'export APLOT_MAIN_PROCESS_IP=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
             "export APLOT_MAIN_PROCESS_PORT=$((20000 + SLURM_JOB_ID % 20000))",
             'RESUME=(); [ "${1:-}" = resume ] && RESUME=(--resume)',
             "trap 'echo \"[aplot] job $SLURM_JOB_ID signalled: the trainer checkpoints and stops\"' INT TERM",
             'echo "[aplot] slurm job $SLURM_JOB_ID on $SLURM_JOB_NODELIST (${1:-launch})"',
             "srun --kill-on-bad-exit=1 " + shlex.join(launch_argv) + ' "${RESUME[@]}"',
             "code=$?",
             f"{py} -m engine.runs.lifecycle after-job {shlex.quote(str(run_dir))}",
             "exit $code", ""]
    return "\n".join(lines)


def write_job_script(cfg: Config, run_dir: Path, launch_argv: list[str]) -> Path:
    path = Path(run_dir) / JOB_SCRIPT
    mf.write_atomic(path, job_script(cfg, run_dir, launch_argv))
    path.chmod(0o755)
    return path


# ---------------------------------------------------------------------------- submission and control


def submit(paths: mf.RunPaths, resume: bool = False, hold: bool = False) -> str:
    """`sbatch --parsable job.sbatch [resume]`; records the job in the manifest; the job id."""
    argv = ["sbatch", "--parsable", *(["--hold"] if hold else []), str(paths.dir / JOB_SCRIPT)]
    argv += ["resume"] if resume else []
    out = _run(argv)
    if out.returncode != 0:
        raise SlurmError(f"sbatch refused the job: {_first_line(out.stderr)}")
    job_id = out.stdout.strip().split(";")[0]
    manifest = mf.read(paths)
    jobs = [*manifest.get("slurm", {}).get("jobs", []), job_id]
    mf.update(paths, slurm={"job_id": job_id, "jobs": jobs, "submit": shlex.join(argv), "submitted_at": mf.now_iso()},
              launched_at=mf.now_iso())
    _cache.clear()
    return job_id


def cancel(job_id: str, signal: str | None = None) -> None:
    """scancel: with `signal`, that signal to every task of every step (the trainer's processes); else
    the job. Not `--full`: srun, in the batch step, takes a SIGINT as an interactive interrupt, and two
    within a second (its own and its shell's) abort the step with SIGTERM before the trainer can save."""
    argv = ["scancel", *([f"--signal={signal}"] if signal else []), job_id]
    out = _run(argv)
    if out.returncode != 0:
        raise SlurmError(f"scancel {job_id}: {_first_line(out.stderr)}")
    _cache.clear()


def _first_line(text: str) -> str:
    lines = [x.strip() for x in text.strip().splitlines() if x.strip()]
    return lines[-1] if lines else "no reason given"


# ---------------------------------------------------------------------------- the scheduler's word

_cache: dict[str, tuple[float, dict[str, tuple[str, str]]]] = {}


def job_states(job_ids: list[str]) -> dict[str, tuple[str, str]]:
    """job id → (Slurm state, reason) for the jobs Slurm still knows; one `squeue` call for all of them
    (plus one `sacct` for those it forgot, where accounting is kept), cached for CACHE_S seconds."""
    wanted = sorted({str(j) for j in job_ids if j})
    if not wanted or shutil.which("squeue") is None:
        return {}
    key = os.environ.get("SLURM_CONF", "")
    hit = _cache.get(key)
    if hit and time.monotonic() - hit[0] < CACHE_S and all(j in hit[1] for j in wanted):
        return {j: hit[1][j] for j in wanted if hit[1][j]}
    states: dict[str, tuple[str, str]] = {}
    out = _run(["squeue", "-h", "--states=all", "-o", "%i|%T|%r", "-j", ",".join(wanted)])
    if out.returncode != 0 and len(wanted) > 1:  # an id Slurm forgot can fail the whole call: ask the queue
        out = _run(["squeue", "-h", "--states=all", "-o", "%i|%T|%r"])
    for line in out.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3 and parts[0] in wanted:
            states[parts[0]] = (parts[1], "" if parts[2] in ("None", "(null)") else parts[2])
    missing = [j for j in wanted if j not in states]
    if missing and shutil.which("sacct"):
        acct = _run(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(missing)])
        for line in acct.stdout.splitlines() if acct.returncode == 0 else []:
            job, _, state = line.partition("|")
            if job in missing and state:
                states[job] = (state.split()[0], "")
    cached = {j: states.get(j, ("", "")) for j in wanted}
    if hit and time.monotonic() - hit[0] < CACHE_S:
        cached = hit[1] | cached
    _cache[key] = (time.monotonic(), cached)
    return {j: s for j, s in cached.items() if s[0]}


def job_of(manifest: dict) -> str:
    return str(manifest.get("slurm", {}).get("job_id", ""))
