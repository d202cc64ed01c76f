"""`aplot tag | note | archive | rm`: what a user keeps on a run, and clearing runs out of the store.

Every change goes through `engine.runs.store` (under the manifest lock, atomic and fsynced), so the
trainer's own writes to a live run's manifest are never lost.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from aplot_tui.cli.common import RunsDir, UserError, app, runs_root
from engine.runs import liveness
from engine.runs import status as S
from engine.runs import store as mf

RunRefs = Annotated[list[str], typer.Argument(metavar="RUN...", help="run ids (or names, or unique parts of ids)")]


@app.command()
def tag(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="run id (or a unique part of it)")],
    changes: Annotated[list[str], typer.Argument(metavar="+TAG|-TAG...", help="+x adds tag x, -y removes y")],
    runs_dir: RunsDir = None,
) -> None:
    """Add (+x) and remove (-y) a run's tags; `aplot ls --tag x` finds them."""
    bad = [c for c in changes if len(c) < 2 or c[0] not in "+-"]
    if bad:
        raise UserError(f"tag {bad[0]!r}: write +TAG to add or -TAG to remove (use `--` before a -TAG: "
                        f"aplot tag RUN -- -old)")
    paths = mf.find_run(runs_root(runs_dir), run_id)
    tags = mf.retag(paths, [c[1:] for c in changes if c[0] == "+"], [c[1:] for c in changes if c[0] == "-"])
    typer.echo(f"{paths.id}: tags {', '.join(tags) or '(none)'}")


@app.command()
def note(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="run id (or a unique part of it)")],
    text: Annotated[str, typer.Argument(help="the note; \"\" clears it")],
    append: Annotated[bool, typer.Option("--append", "-a", help="add a line instead of replacing")] = False,
    runs_dir: RunsDir = None,
) -> None:
    """Keep a note on a run (shown by `aplot show` and `aplot ls`)."""
    paths = mf.find_run(runs_root(runs_dir), run_id)
    notes = mf.set_notes(paths, text, append=append)
    typer.echo(f"{paths.id}: notes {notes!r}" if notes else f"{paths.id}: notes cleared")


def _runs(refs: list[str], runs_dir) -> list[mf.RunPaths]:
    root = runs_root(runs_dir)
    return list({p.id: p for p in (mf.find_run(root, r) for r in refs)}.values())


@app.command()
def archive(
    run_ids: RunRefs,
    undo: Annotated[bool, typer.Option("--undo", help="bring the runs back into listings")] = False,
    runs_dir: RunsDir = None,
) -> None:
    """Hide runs from `aplot ls` and the runs table (`ls --all` still shows them); nothing is deleted."""
    for paths in _runs(run_ids, runs_dir):
        mf.set_archived(paths, not undo)
        typer.echo(f"{paths.id}: {'unarchived' if undo else 'archived'}")


def _alive(paths: mf.RunPaths) -> str:
    """Why the run cannot be deleted now, or "" when nothing of it is going."""
    manifest = mf.read(paths)
    status = S.effective(paths, manifest)
    if status in S.GOING or (status == S.QUEUED and mf.launched(manifest)):
        return f"is {status}; stop it first (aplot stop {paths.id})"
    sweep_id = manifest.get("sweep", {}).get("id")
    if status == S.QUEUED and sweep_id:
        from engine.runs import sweeps

        if sweeps.scheduler_alive(paths.dir.parent, sweep_id):  # it may claim the run any moment
            return f"is queued in sweep {sweep_id}, whose scheduler is running; stop it first (aplot sweep stop {sweep_id})"
    if liveness.held_here(paths.dir):
        return "still has a process on this host; wait for it to end"
    return ""


@app.command()
def rm(
    run_ids: RunRefs,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="delete without asking")] = False,
    runs_dir: RunsDir = None,
) -> None:
    """Delete runs (their folder: manifest, metrics, logs, checkpoints). A live run is refused; asks first
    unless --yes."""
    runs = _runs(run_ids, runs_dir)
    for paths in runs:  # all checked before any is deleted
        if why := _alive(paths):
            raise UserError(f"{paths.id}: {why}")
    if not yes:
        if not sys.stdin.isatty():
            raise UserError(f"rm: would delete {len(runs)} run(s); pass --yes to delete without a terminal to ask on")
        names = "\n".join(f"  {p.id}" for p in runs)
        if not typer.confirm(f"delete {len(runs)} run(s) and all their files?\n{names}\n", default=False):
            typer.echo("nothing deleted")
            raise typer.Exit(1)
    for paths in runs:
        mf.remove(paths)
        typer.echo(f"{paths.id}: deleted")
