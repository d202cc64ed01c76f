"""The first process of every run: `python -m engine.launch <accelerate launch arguments>`.

It takes SIGINT and SIGTERM back from whatever the parent set before Accelerate starts the ranks: a
parent that ignored SIGINT (`nohup`, a background job in a script) would otherwise hand that blindness
to the launcher and to every rank until the trainer installs its own handler. Then it is `accelerate
launch`. The command itself is built by `engine.runs.launch.argv`; this module is apart from the run
service because it is the one place that loads Accelerate (and with it torch) in the launcher process.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys

from engine import HOLD_STOPS_ENV, STOP_AT_START_ENV, STOP_SIGNALS


def _ranks_stop_themselves(_signum, _frame) -> None:
    """A stop reaches the whole process group (or the whole Slurm step) at once: the ranks checkpoint
    and exit, and this launcher goes on waiting for them, so it ends with their exit status instead of
    a traceback — and, under srun, stays alive while they save (a task that exits first has its step's
    remaining processes killed). A rank not started yet has not heard the signal: it finds the stop in
    its environment (`engine.STOP_AT_START_ENV`) and stops after its first step."""
    os.environ[STOP_AT_START_ENV] = "1"


def slurm_task_flags(args: list[str], env: dict[str, str]) -> list[str]:
    """`args` with this Slurm task's place in the job put before the training module: each task is one
    machine for accelerate (rank $SLURM_PROCID of $SLURM_NTASKS), meeting at the job's first node."""
    flags = ["--main_process_port", env["APLOT_MAIN_PROCESS_PORT"]]
    if int(env.get("SLURM_NTASKS", "1")) > 1:
        flags = ["--num_machines", env["SLURM_NTASKS"], "--machine_rank", env["SLURM_PROCID"],
                 "--main_process_ip", env["APLOT_MAIN_PROCESS_IP"], *flags]
    at = args.index("-m")  # the training module; accelerate's own flags come before it (the last one wins)
    return [*args[:at], *flags, *args[at:]]


def main() -> None:
    # A handler (not SIG_IGN) here means the default disposition for every process exec'd below.
    for signum in STOP_SIGNALS:
        signal.signal(signum, _ranks_stop_themselves)
    os.environ[HOLD_STOPS_ENV] = "1"  # each rank holds a stop until its handlers are in place (engine/__init__)
    gc.disable()  # as in a rank (engine/__init__): Accelerate's import, with torch, runs a fifth faster
    from accelerate.commands.launch import main as accelerate_launch

    gc.enable()

    args = sys.argv[1:]
    if args[:1] == ["--slurm"]:
        args = slurm_task_flags(args[1:], dict(os.environ))
    sys.argv = ["accelerate launch", *args]
    try:
        accelerate_launch()
    except subprocess.CalledProcessError as e:  # the rank has said why in the log; pass its exit status on
        sys.exit(e.returncode)


if __name__ == "__main__":
    main()
