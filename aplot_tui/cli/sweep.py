"""`aplot sweep FILE | ls | show | stop | resume`: grids of runs over config axes and seeds.

`aplot sweep FILE` is `aplot sweep start FILE` (a group that takes a file where a command name
would be). The work is in `engine.runs.sweeps`; this module only parses and prints.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from engine import metrics as M
from engine.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from engine.runs import status as S
from engine.runs import store as mf


class _DefaultStart(TyperGroup):
    """`aplot sweep FILE ...` means `aplot sweep start FILE ...`."""

    def resolve_command(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["start", *args]
        return super().resolve_command(ctx, args)


sweep_app = typer.Typer(cls=_DefaultStart, add_completion=False, rich_markup_mode=None, no_args_is_help=True,
                        help="Sweeps: every run of a grid (axes × seeds) queued up front, started N at a time by a "
                             "detached scheduler that outlives the terminal.")

RunsDir = Annotated[Path | None, typer.Option("--runs-dir", help="run store (default: $APLOT_RUNS_DIR or ./runs)")]
SweepRef = Annotated[str, typer.Argument(metavar="SWEEP", help="sweep id (or its name, or a unique part of the id)")]


def _root(ctx: typer.Context, runs_dir: Path | None) -> Path:
    """This command's --runs-dir, else the one given before `sweep` (`aplot --runs-dir X sweep ...`)."""
    return mf.runs_root(runs_dir or ctx.find_root().params.get("runs_dir"))


def _line(counts: dict[str, int]) -> str:
    order = (S.COMPLETED, S.RUNNING, S.CREATED, S.QUEUED, S.STOPPED, S.FAILED, S.CRASHED)
    parts = [f"{counts[k]} {k}" for k in order if counts.get(k)]
    return f"{counts.get(S.COMPLETED, 0)}/{counts['total']} done" + (f"  ({', '.join(parts)})" if parts else "")


@sweep_app.command("start")
def start(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="a sweep file (TOML): [sweep] seeds, [sweep.axes], [sweep.zip], [config]")],
    max_parallel: Annotated[int | None, typer.Option("--max-parallel", "-j", help="runs at once (default: the "
                                                     "file's max_parallel, else 1)")] = None,
    detach: Annotated[bool, typer.Option("--detach", help="queue, start the scheduler and return")] = False,
    runs_dir: RunsDir = None,
) -> None:
    """Create every run of the sweep (queued), then start them as slots free up; follow to the end."""
    from engine.runs import sweep_spec
    from engine.runs import sweeps as sweep

    root = _root(ctx, runs_dir)
    spec = sweep_spec.load(file, max_parallel)
    sweep_id = sweep.create(spec, root)
    sweep.start(root, sweep_id)
    typer.echo(f"sweep {sweep_id}: {len(spec.points)} runs queued, {spec.max_parallel} at a time "
               f"({sweep.sweep_dir(root, sweep_id)})", err=True)
    if detach:
        typer.echo(sweep_id)
        return
    raise typer.Exit(_follow(root, sweep_id))


def _follow(root: Path, sweep_id: str) -> int:
    """Print each run's status changes until the sweep is done; Ctrl-C leaves it running."""
    from engine.runs import sweeps as sweep

    seen: dict[str, str] = {}
    try:
        while True:
            states = sweep.run_states(root, sweep.read_state(root, sweep_id))
            for s in states:
                if seen.get(s.paths.id) != s.status:
                    seen[s.paths.id] = s.status
                    if s.status != S.QUEUED:
                        typer.echo(f"  {s.paths.id}: {s.status}", err=True)
            counts = sweep.progress(root, sweep_id, states)
            status = sweep.sweep_status(root, sweep_id, counts)
            if status != sweep.SWEEP_RUNNING:
                typer.echo(f"sweep {sweep_id}: {status}, {_line(counts)}")
                return EXIT_OK if counts.get(S.COMPLETED) == counts["total"] else EXIT_FAILED
            time.sleep(1.0)
    except KeyboardInterrupt:
        typer.echo(f"\nsweep {sweep_id} goes on in the background (`aplot sweep stop {sweep_id}` to stop it)", err=True)
        return EXIT_INTERRUPTED


AsJson = Annotated[bool, typer.Option("--json", help="JSON lines for scripts")]


@sweep_app.command("ls")
def ls(ctx: typer.Context, as_json: AsJson = False, runs_dir: RunsDir = None) -> None:
    """Every sweep with its status and progress (--json: one object per sweep: id, status, runs per status)."""
    from engine.runs import sweeps as sweep

    root = _root(ctx, runs_dir)
    ids = sweep.list_ids(root)
    if not ids and not as_json:
        typer.echo(f"no sweeps in {sweep.sweeps_root(root)}")
        return
    for sweep_id in ids:
        counts = sweep.progress(root, sweep_id)
        status = sweep.sweep_status(root, sweep_id, counts)
        if as_json:
            typer.echo(json.dumps({"id": sweep_id, "status": status, "counts": counts}))
        else:
            typer.echo(f"{sweep_id:<44} {status:<8} {_line(counts)}")


@sweep_app.command("show")
def show(ctx: typer.Context, ref: SweepRef, as_json: AsJson = False, runs_dir: RunsDir = None) -> None:
    """One sweep: its axes and every run with its axis values, seed, status and final accuracy (--json: one
    object, its runs a list)."""
    from engine.runs import sweeps as sweep

    root = _root(ctx, runs_dir)
    sweep_id = sweep.find_sweep(root, ref)
    state = sweep.read_state(root, sweep_id)
    states = sweep.run_states(root, state)
    counts = sweep.progress(root, sweep_id, states)
    if as_json:
        runs = [{"id": s.paths.id, "status": s.status, "axes": s.manifest.get("sweep", {}).get("axes", {}),
                 "seed": s.manifest.get("sweep", {}).get("seed"),
                 "summary": {k: v for k, v in s.manifest.get("summary", {}).items() if isinstance(v, (int, float))}}
                for s in states]
        typer.echo(json.dumps({"id": sweep_id, "status": sweep.sweep_status(root, sweep_id, counts),
                               "name": state.get("name"), "source": state.get("source"),
                               "max_parallel": state.get("max_parallel"), "counts": counts, "runs": runs}))
        return
    typer.echo(f"{sweep_id}  [{sweep.sweep_status(root, sweep_id, counts)}]  {state.get('name')}  {_line(counts)}")
    typer.echo(f"source: {state.get('source')}  max_parallel: {state.get('max_parallel')}  "
               f"scheduler: {state.get('scheduler')}")
    for s in states:
        info = s.manifest.get("sweep", {})
        axes = " ".join(f"{k}={v}" for k, v in info.get("axes", {}).items())
        acc = {k: v for k, v in s.manifest.get("summary", {}).items() if k.startswith(M.EVAL_PREFIX) and k.endswith(M.ACCURACY)}
        shown = "  ".join(f"{k.split('/')[1]}={v:.4f}" for k, v in acc.items())
        typer.echo(f"  {s.paths.id:<44} {s.status:<10} {axes} seed={info.get('seed')}  {shown}".rstrip())


@sweep_app.command("stop")
def stop(
    ctx: typer.Context,
    ref: SweepRef,
    grace: Annotated[float, typer.Option(help="seconds each run gets to checkpoint")] = 30.0,
    drain: Annotated[bool, typer.Option("--drain", help="let running runs finish; only start no more")] = False,
    runs_dir: RunsDir = None,
) -> None:
    """Stop the scheduler; running runs stop with a checkpoint (or, with --drain, finish), queued runs
    stay queued."""
    from engine.runs import sweeps as sweep

    root = _root(ctx, runs_dir)
    sweep_id = sweep.find_sweep(root, ref)
    stopped = sweep.stop(root, sweep_id, grace, drain=drain)
    for run_id, status in stopped.items():
        typer.echo(f"  {run_id}: {status}" + (" (left to finish)" if drain else ""))
    typer.echo(f"sweep {sweep_id}: {'draining' if drain else 'stopped'}, {_line(sweep.progress(root, sweep_id))}")


@sweep_app.command("resume")
def resume(
    ctx: typer.Context,
    ref: SweepRef,
    detach: Annotated[bool, typer.Option("--detach", help="start the scheduler and return")] = False,
    runs_dir: RunsDir = None,
) -> None:
    """Start the scheduler again: queued runs start, runs stopped by `sweep stop` resume from their checkpoint."""
    from engine.runs import sweeps as sweep

    root = _root(ctx, runs_dir)
    sweep_id = sweep.find_sweep(root, ref)
    sweep.start(root, sweep_id)
    typer.echo(f"sweep {sweep_id}: resumed, {_line(sweep.progress(root, sweep_id))}", err=True)
    if detach:
        return
    raise typer.Exit(_follow(root, sweep_id))


