"""`aplot follow | logs`: watch a run this shell did not start (detached, from the TUI, a sweep, Slurm).

`follow` is the live view `aplot run` shows, fed by the run's liveness (lock, heartbeat, Slurm's word)
instead of a child process; Ctrl-C stops watching and leaves the run going.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Annotated

import typer

from aplot_tui.cli.common import RunsDir, app, runs_root
from aplot_tui.cli.runs import follow as follow_run
from aplot_tui.cli.runs import report_end
from engine.errors import EXIT_INTERRUPTED
from engine.runs import status as S
from engine.runs import store as mf

RunRef = Annotated[str, typer.Argument(metavar="RUN", help="run id (or its name, or a unique part of the id)")]
LOG_POLL_S = 0.25


@app.command()
def follow(
    run_id: RunRef,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
    runs_dir: RunsDir = None,
) -> None:
    """Reattach to a run from any shell: the live view of `aplot run` until it ends, then its exit status
    (0 completed, 130 stopped, 1 otherwise). Ctrl-C stops watching; the run goes on."""
    paths = mf.find_run(runs_root(runs_dir), run_id)
    try:
        status = follow_run(paths, None, quiet=quiet)
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None
    raise typer.Exit(report_end(paths, status))


@app.command()
def logs(
    run_id: RunRef,
    follow_log: Annotated[bool, typer.Option("--follow", "-f", help="keep printing until the run ends")] = False,
    runs_dir: RunsDir = None,
) -> None:
    """Print the run's train.log (launcher, trainer and every rank's output); -f follows it to the run's end."""
    paths = mf.find_run(runs_root(runs_dir), run_id)
    out = sys.stdout.buffer
    try:
        with open(paths.log, "rb") as fh:
            while True:
                ended = not follow_log or S.effective(paths) not in S.UNFINISHED  # before the read: no last lines lost
                while chunk := fh.read(1 << 16):
                    out.write(chunk)
                out.flush()
                if ended:
                    return
                time.sleep(LOG_POLL_S)
    except FileNotFoundError:
        if follow_log and S.effective(paths) in S.UNFINISHED:
            typer.echo(f"{paths.id}: no train.log yet", err=True)
            return
        typer.echo(f"{paths.id}: no train.log (never launched)", err=True)
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except BrokenPipeError:  # `aplot logs RUN | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
