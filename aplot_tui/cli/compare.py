"""`aplot compare`: runs side by side, where each stands, whether their differences are real, and
their config diff.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from aplot_tui.cli.common import RunsDir, UserError, app, fmt, runs_root
from aplot_tui.views import run_data
from engine.runs import store as mf
from engine.runs import sweeps

SWEEP_REF = "sweep:"


def resolve(root: Path, refs: list[str]) -> list[mf.RunPaths]:
    """Run references in order, `sweep:ID` standing for every run of that sweep; each run once."""
    out: dict[str, mf.RunPaths] = {}
    for ref in refs:
        if ref.startswith(SWEEP_REF):
            sweep_id = sweeps.find_sweep(root, ref.removeprefix(SWEEP_REF))
            found = [p for p in sweeps.run_paths(root, sweeps.read_state(root, sweep_id)) if p.manifest.exists()]
            if not found:
                raise UserError(f"{ref}: the sweep has no runs yet")
        else:
            found = [mf.find_run(root, ref)]
        out.update((p.id, p) for p in found)
    return list(out.values())


@app.command()
def compare(
    run_ids: Annotated[list[str], typer.Argument(metavar="RUN...", help="two or more runs; sweep:ID is every run of a sweep")],
    plot: Annotated[Path | None, typer.Option("--plot", help="write overlaid curves to a .png or .svg file")] = None,
    fmt_: Annotated[str, typer.Option("--format", help="table format: text | csv | md")] = "text",
    as_json: Annotated[bool, typer.Option("--json", help="everything as one JSON object")] = False,
    runs_dir: RunsDir = None,
) -> None:
    """Metrics (final and best) as rows, runs as columns; the step each run is at (with a warning when
    they differ or a run is unfinished); whether the differences are real (paired bootstrap interval
    and exact McNemar p per eval set, Holm-adjusted when several runs meet A, or groups over seeds);
    the config diff."""
    from aplot_tui.views import report, significance

    root = runs_root(runs_dir)
    runs = resolve(root, run_ids)
    if len(runs) < 2:
        raise UserError("compare needs at least two runs")
    if fmt_ not in ("text", "csv", "md"):
        raise UserError(f"--format: must be text | csv | md, got {fmt_!r}")
    data = [run_data.load_run(p) for p in runs]
    letters = {r.id: significance.letter(i) for i, r in enumerate(data)}
    if as_json:
        typer.echo(json.dumps(significance.as_dict(data, letters), indent=1, allow_nan=False))
    elif fmt_ != "text":
        typer.echo(report.table_with_stats(data, fmt_), nl=False)
    else:
        typer.echo(report.format_table(run_data.table_rows(data), "text"))
        typer.echo("where each run stands")
        for line in significance.step_lines(data, letters):
            typer.echo(line)
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
