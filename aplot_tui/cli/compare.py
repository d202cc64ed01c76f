"""`aplot compare`: runs side by side, whether their differences are real, and their config diff.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aplot_tui.cli.common import RunsDir, UserError, app, runs_root
from aplot_tui.views import run_data
from engine.runs import store as mf


@app.command()
def compare(
    run_ids: Annotated[list[str], typer.Argument(metavar="RUN...", help="two or more runs")],
    plot: Annotated[Path | None, typer.Option("--plot", help="write overlaid curves to a .png or .svg file")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table format: text | csv | md")] = "text",
    runs_dir: RunsDir = None,
) -> None:
    """Metrics (final and best) as rows, runs as columns; whether the differences are real (paired
    bootstrap interval and exact McNemar p per eval set, or groups over seeds); the config diff."""
    from aplot_tui.views import report, significance

    root = runs_root(runs_dir)
    runs = [mf.find_run(root, r) for r in run_ids]
    if len(runs) < 2:
        raise UserError("compare needs at least two runs")
    if fmt not in ("text", "csv", "md"):
        raise UserError(f"--format: must be text | csv | md, got {fmt!r}")
    data = [run_data.load_run(p) for p in runs]
    if fmt != "text":
        typer.echo(report.table_with_stats(data, fmt), nl=False)
    else:
        typer.echo(report.format_table(run_data.table_rows(data), "text"))
        letters = {r.id: significance.letter(i) for i, r in enumerate(data)}
        lines = significance.text_lines(significance.analyse(data), letters)
        typer.echo("statistics" + ("" if lines else ": none (no shared eval set with per-pair predictions)"))
        for line in lines:
            typer.echo(line)
        diffs = run_data.diff_fields([r.config for r in data])
        typer.echo("\nconfig diff" + ("" if diffs else ": identical"))
        for key, values in diffs:
            typer.echo(f"  {key}: " + "  |  ".join("—" if v is None else fmt(v) for v in values))
    if plot:
        report.export_compare([p.dir for p in runs], plot)
        typer.echo(f"wrote {plot}", err=True)
