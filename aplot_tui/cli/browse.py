"""`aplot ls | show`: the store as a table, and one run in full.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Annotated

import tomli_w
import typer

from aplot_tui.cli.common import RunsDir, UserError, app, fmt, runs_root
from engine import config as config_mod
from engine import metrics as M
from engine.runs import status as S
from engine.runs import store as mf

KINDS = config_mod.Config.__dataclass_fields__["kind"].metadata["choices"]


def _one_of(option: str, value: str, allowed: tuple[str, ...]) -> str:
    if value and value not in allowed:
        raise UserError(f"{option}: must be one of {' | '.join(allowed)}, got {value!r}")
    return value


@app.command("ls")
def ls(
    filter_text: Annotated[str, typer.Option("--filter", "-f", help="substring of id, name, loss or tag")] = "",
    status: Annotated[str, typer.Option(help="only runs with this status: " + " | ".join(S.ALL))] = "",
    kind: Annotated[str, typer.Option(help="only runs of this kind: " + " | ".join(KINDS))] = "",
    tag: Annotated[str, typer.Option(help="only runs with this tag")] = "",
    sweep: Annotated[str, typer.Option(help="only runs of this sweep (its id or a part of it)")] = "",
    sort: Annotated[str, typer.Option(help="created | name | status | kind | loss | step | metric (the first key "
                                      "metric), or a metric's name, e.g. eval/heldout/accuracy")] = "created",
    reverse: Annotated[bool, typer.Option("--reverse", "-r", help="reverse the order")] = False,
    show_all: Annotated[bool, typer.Option("--all", "-a", help="archived runs too")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines for scripts: one object per run")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV for spreadsheets: a column per metric, and the "
                                         "error")] = False,
    runs_dir: RunsDir = None,
) -> None:
    """List runs with status (running with a dead process shows `crashed`), key metrics, tags and notes."""
    from aplot_tui.views import listing as store

    _one_of("--status", status, S.ALL)
    _one_of("--kind", kind, KINDS)
    listed = store.list_rows(runs_root(runs_dir), archived=show_all)
    if sort not in store.SORT_KEYS and not any(sort in r.metrics for r in listed):
        known = sorted({k for r in listed for k in r.metrics})
        raise UserError(f"--sort: must be one of {' | '.join(store.SORT_KEYS)} or a metric a run has"
                        + (f" ({', '.join(known)})" if known else "") + f", got {sort!r}")
    rows = store.sort_rows(store.filter_rows(listed, filter_text, status, kind, tag, sweep), sort, reverse)
    if as_json:
        for r in rows:
            typer.echo(json.dumps(r.as_dict()))
        return
    if as_csv:
        buf = io.StringIO()
        w = csv.writer(buf)
        metric_keys = sorted({k for r in rows for k in r.metrics})
        w.writerow(["id", "name", "kind", "loss", "status", "step", "total_steps", "age_s", "tags", "job", "reason",
                    "error", "notes", "archived", *metric_keys])
        for r in rows:
            w.writerow([r.id, r.name, r.kind, r.loss, r.status, r.step, r.total_steps, round(r.age_s),
                        ";".join(r.tags), r.job, r.reason, r.error, r.notes, int(r.archived),
                        *[r.metrics.get(k, "") for k in metric_keys]])
        typer.echo(buf.getvalue(), nl=False)
        return
    if not rows:
        hidden = len(store.list_rows(runs_root(runs_dir), archived=True)) - len(listed) if not show_all else 0
        typer.echo(f"no runs in {runs_root(runs_dir)}" + (f" ({hidden} archived: ls --all)" if hidden else ""))
        return
    header = f"{'ID':<44} {'KIND':<4} {'LOSS':<16} {'STATUS':<10} {'STEP':>11}  {'AGE':>5}  METRICS"
    typer.echo(header)
    for r in rows:
        metrics = "  ".join(f"{k.removeprefix(M.EVAL_PREFIX)}={fmt(v)}" for k, v in r.metrics.items())
        step = f"{r.step}/{r.total_steps}" if r.total_steps else str(r.step)
        typer.echo(f"{r.id:<44} {r.kind:<4} {r.loss:<16} {r.status:<10} {step:>11}  "
                   f"{store.format_age(r.age_s):>5}  {metrics}" + (f"  job {r.job}" if r.job else "")
                   + (f" ({r.reason})" if r.reason else "") + (f"  [{', '.join(r.tags)}]" if r.tags else "")
                   + ("  archived" if r.archived else "")
                   + (f"  # {r.notes.splitlines()[0]}" if r.notes else ""))


@app.command()
def show(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="run id (or a unique part of it)")],
    as_json: Annotated[bool, typer.Option("--json", help="the manifest as JSON")] = False,
    diagnostics: Annotated[bool, typer.Option("--diagnostics", help="reward-model diagnostics of the last eval")] = False,
    runs_dir: RunsDir = None,
) -> None:
    """Everything about one run: status, tags, notes, resumes, data sources, config, provenance,
    summary, last metrics, the best-of-n curve (PPO), checkpoints."""
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
    typer.echo(f"{paths.id}  [{manifest['effective_status']}]  {manifest.get('kind')}  {manifest.get('name')}"
               + ("  (archived)" if manifest.get("archived") else ""))
    if reason:
        typer.echo(f"why: {reason}")
    typer.echo(f"tags: {', '.join(manifest.get('tags', [])) or '(none)'}")
    if manifest.get("notes"):
        typer.echo("notes: " + "\n       ".join(str(manifest["notes"]).splitlines()))
    if manifest.get("slurm"):
        typer.echo(f"slurm job: {manifest['slurm'].get('job_id')}  (all: {', '.join(manifest['slurm'].get('jobs', []))}; "
                   f"script: {paths.dir / 'job.sbatch'})")
    if manifest.get("error"):
        typer.echo(f"error: {manifest['error']}")
    for line in _resumes(manifest):
        typer.echo(line)
    for line in _data_sources(manifest):
        typer.echo(line)
    for table in ("links", "resolved", "summary", "provenance"):
        if manifest.get(table):
            typer.echo(f"\n[{table}]")
            for k, v in manifest[table].items():
                typer.echo(f"  {k} = {fmt(v)}")
    if manifest.get("config"):
        typer.echo("\n[config]  (as launched; `aplot run --from RUN k=v` runs it again)")
        typer.echo("  " + tomli_w.dumps(manifest["config"]).rstrip().replace("\n", "\n  "))
    step, values = store.latest_values(store.last_records(paths.metrics))
    if values:
        typer.echo(f"\n[latest metrics @ step {step}]")
        for k, v in sorted(values.items()):
            typer.echo(f"  {k} = {fmt(v)}")
    for line in _best_of_n(paths):
        typer.echo(line)
    from aplot_tui.views.sections_text import score_lines

    for split, record in {r.split: r for r in store.last_records(paths.metrics)
                          if r.split.startswith(M.EVAL_PREFIX)}.items():  # per set, its newest eval
        if lines := score_lines(record.data):
            typer.echo(f"\n[{split} @ step {record.step}: sections and subsets]")
            typer.echo("\n".join(lines))
    if manifest.get("kind") == "ppo":  # the gold-free warning of an RM ensemble (views.health)
        from aplot_tui.views import health, run_data

        for flag in health.series_flags(run_data.load_run(paths).series, manifest.get("config", {})):
            typer.echo(f"\nhealth: {flag}")
    ckpts = mf.checkpoint_steps(paths)
    typer.echo(f"\ncheckpoints: {', '.join(f'step-{s}' for s in ckpts) or 'none'}"
               + ("  best" if (paths.checkpoints / 'best').exists() else ""))


def _resumes(manifest: dict) -> list[str]:
    out = []
    if manifest.get("resume_count"):
        out.append(f"resumed {manifest['resume_count']} time(s), last at {manifest.get('resumed_at', '?')}"
                   + (f" ({manifest['auto_resumes']} by the scheduler)" if manifest.get("auto_resumes") else ""))
    out += [f"resume note: {n}" for n in manifest.get("world_size_changes", [])]
    return out


def _data_sources(manifest: dict) -> list[str]:
    cfg = manifest.get("config", {})
    data, ppo = cfg.get("data", {}), cfg.get("ppo", {})
    sha = manifest.get("provenance", {}).get("data_sha256", {})
    sources = {"train": data.get("train")} if data.get("train") else {}
    if manifest.get("kind") == "ppo":
        sources = {"prompts": ppo.get("prompts")}
    sources.update({f"eval {k}": v for k, v in data.get("eval", {}).items()})
    if data.get("train") and data.get("eval_fraction") and manifest.get("kind") != "ppo":
        sources["eval heldout"] = f"{data.get('eval_fraction')} of train"
    return [f"data {k}: {v}" + (f"  (sha256 {str(sha[k.split()[-1]])[:12]})" if sha.get(k.split()[-1]) and
                                 sha[k.split()[-1]] != v else "") for k, v in sources.items()]


def _best_of_n(paths: mf.RunPaths) -> list[str]:
    """The reference's best-of-n curve a PPO run records once (engine.rl.best_of_n), as a small table."""
    curve = next((r.data for r in M.read_all(paths.metrics) if r.split == M.BON_SPLIT), None) \
        if mf.read(paths).get("kind") == "ppo" and paths.metrics.exists() else None
    if not curve:
        return []
    cols = [c for c in (M.BON_N, M.BON_KL, M.BON_PROXY, M.BON_GOLD, M.BON_WIN) if c in curve]
    out = ["\n[best-of-n of the reference]", "  " + "  ".join(f"{c:>8}" for c in cols)]
    for i in range(len(curve[cols[0]])):
        out.append("  " + "  ".join(f"{fmt(curve[c][i]):>8}" for c in cols))
    return out
