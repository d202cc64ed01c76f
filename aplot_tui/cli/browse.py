"""`aplot ls | show`: the store as a table, and one run in full.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Annotated

import typer

from aplot_tui.cli.common import RunsDir, UserError, app, fmt, runs_root
from engine import metrics as M
from engine.runs import status as S
from engine.runs import store as mf


@app.command("ls")
def ls(
    filter_text: Annotated[str, typer.Option("--filter", "-f", help="substring of id, name, loss or tag")] = "",
    status: Annotated[str, typer.Option(help="only runs with this status")] = "",
    kind: Annotated[str, typer.Option(help="only rm or ppo runs")] = "",
    tag: Annotated[str, typer.Option(help="only runs with this tag")] = "",
    sweep: Annotated[str, typer.Option(help="only runs of this sweep (its id or a part of it)")] = "",
    sort: Annotated[str, typer.Option(help="created | name | status | kind | loss | step | metric")] = "created",
    reverse: Annotated[bool, typer.Option("--reverse", "-r", help="reverse the order")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines for scripts")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV for spreadsheets")] = False,
    runs_dir: RunsDir = None,
) -> None:
    """List runs with status (running with a dead process shows `crashed`) and key metrics."""
    from aplot_tui.views import listing as store

    if sort not in store.SORT_KEYS:
        raise UserError(f"--sort: must be one of {' | '.join(store.SORT_KEYS)}, got {sort!r}")
    rows = store.sort_rows(store.filter_rows(store.list_rows(runs_root(runs_dir)), filter_text, status, kind, tag, sweep),
                           sort, reverse)
    if as_json:
        typer.echo(json.dumps([r.as_dict() for r in rows], indent=1))
        return
    if as_csv:
        buf = io.StringIO()
        w = csv.writer(buf)
        metric_keys = sorted({k for r in rows for k in r.metrics})
        w.writerow(["id", "name", "kind", "loss", "status", "step", "total_steps", "age_s", "tags", "job", "reason",
                    *metric_keys])
        for r in rows:
            w.writerow([r.id, r.name, r.kind, r.loss, r.status, r.step, r.total_steps, round(r.age_s),
                        ";".join(r.tags), r.job, r.reason, *[r.metrics.get(k, "") for k in metric_keys]])
        typer.echo(buf.getvalue(), nl=False)
        return
    if not rows:
        typer.echo(f"no runs in {runs_root(runs_dir)}")
        return
    header = f"{'ID':<44} {'KIND':<4} {'LOSS':<16} {'STATUS':<10} {'STEP':>11}  {'AGE':>5}  METRICS"
    typer.echo(header)
    for r in rows:
        metrics = "  ".join(f"{k.removeprefix(M.EVAL_PREFIX)}={fmt(v)}" for k, v in r.metrics.items())
        step = f"{r.step}/{r.total_steps}" if r.total_steps else str(r.step)
        typer.echo(f"{r.id:<44} {r.kind:<4} {r.loss:<16} {r.status:<10} {step:>11}  "
                   f"{store.format_age(r.age_s):>5}  {metrics}" + (f"  job {r.job}" if r.job else "")
                   + (f" ({r.reason})" if r.reason else ""))


@app.command()
def show(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="run id (or a unique part of it)")],
    as_json: Annotated[bool, typer.Option("--json", help="the manifest as JSON")] = False,
    diagnostics: Annotated[bool, typer.Option("--diagnostics", help="reward-model diagnostics of the last eval")] = False,
    runs_dir: RunsDir = None,
) -> None:
    """Everything about one run: status, config, provenance, summary, last metrics."""
    from aplot_tui.views import listing as store

    paths = mf.find_run(runs_root(runs_dir), run_id)
    manifest = mf.read(paths)
    manifest["effective_status"], reason = S.with_reason(paths, manifest)
    if as_json:
        typer.echo(json.dumps(manifest, indent=1, default=str))
        return
    if diagnostics:
        from aplot_tui.views.bias_text import render_diagnostics

        typer.echo(render_diagnostics(paths))
        return
    typer.echo(f"{paths.id}  [{manifest['effective_status']}]  {manifest.get('kind')}  {manifest.get('name')}")
    if reason:
        typer.echo(f"why: {reason}")
    if manifest.get("slurm"):
        typer.echo(f"slurm job: {manifest['slurm'].get('job_id')}  (all: {', '.join(manifest['slurm'].get('jobs', []))}; "
                   f"script: {paths.dir / 'job.sbatch'})")
    if manifest.get("error"):
        typer.echo(f"error: {manifest['error']}")
    for table in ("resolved", "summary", "provenance", "links"):
        if manifest.get(table):
            typer.echo(f"\n[{table}]")
            for k, v in manifest[table].items():
                typer.echo(f"  {k} = {fmt(v)}")
    step, values = store.latest_values(store.last_records(paths.metrics))
    if values:
        typer.echo(f"\n[latest metrics @ step {step}]")
        for k, v in sorted(values.items()):
            typer.echo(f"  {k} = {fmt(v)}")
    ckpts = mf.checkpoint_steps(paths)
    typer.echo(f"\ncheckpoints: {', '.join(f'step-{s}' for s in ckpts) or 'none'}"
               + ("  best" if (paths.checkpoints / 'best').exists() else ""))
