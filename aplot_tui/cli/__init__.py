"""The `aplot` command line: the TUI with no arguments, and headless commands for scripts.

Every user mistake ends in one line on stderr and a non-zero exit; `--debug` shows tracebacks.
Nothing here imports torch: training runs in the subprocess the run service starts.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from aplot_tui.views import run_data
from engine import config as config_mod
from engine import metrics as M
from engine.errors import EXIT_FAILED, EXIT_INTERRUPTED, AplotError
from engine.runs import status as S
from engine.runs import store as mf

app = typer.Typer(add_completion=False, no_args_is_help=False, rich_markup_mode=None,
                  help="aplot: train reward models (Bradley-Terry, APLOT) and run PPO, from the terminal.")

_state = {"debug": False, "runs_dir": None}

RunsDir = Annotated[Path | None, typer.Option("--runs-dir", help="run store (default: $APLOT_RUNS_DIR or ./runs)")]


class UserError(AplotError):
    """A one-line message about the command's arguments (exit status 2 unless given)."""


def _root(runs_dir: Path | None) -> Path:
    return mf.runs_root(runs_dir or _state["runs_dir"])


def _err(line: str) -> None:
    typer.echo(f"aplot: {line}", err=True)


@app.callback(invoke_without_command=True)
def main_callback(
    ctx: typer.Context,
    runs_dir: RunsDir = None,
    debug: Annotated[bool, typer.Option("--debug", help="show full tracebacks on errors")] = False,
) -> None:
    """With no command, open the terminal UI."""
    _state["debug"] = debug
    _state["runs_dir"] = runs_dir
    if ctx.invoked_subcommand is None:
        from aplot_tui.app import AplotApp

        AplotApp(runs_dir=_root(runs_dir)).run()


# --------------------------------------------------------------------------- run


def _load_config(config: Path | None, overrides: list[str], preset: str | None) -> config_mod.Config:
    if config is None and not preset:
        raise UserError("give a CONFIG file or --preset NAME (presets: "
                        + ", ".join(config_mod.preset_names()) + ")")
    if config is not None and "=" in str(config):  # `aplot run --preset x a.b=1`: shift overrides
        overrides = [str(config), *overrides]
        config = None
    return config_mod.load(config, overrides, preset=preset if config is None else None)



EVAL_SHOWN = (M.ACCURACY, M.LOSS, M.REWARD_GAP, M.MARGIN_MEAN, M.N_PAIRS, M.SECTIONS_MEAN, M.WIN_RATE, M.WIN_RATE_SE,
              M.WIN_RATE_N,
              M.SHORTER_WINS_ACC, M.ECE)


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def follow(paths: mf.RunPaths, proc, quiet: bool = False) -> str:
    """Follow a run to its end with a progress bar and live key metrics; its final status."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from engine.runs import lifecycle

    piped = not sys.stderr.isatty()  # a log file or a scheduler: whole lines, never wrapped or cut at 80 columns
    console = Console(stderr=True, soft_wrap=piped, width=1000 if piped else None)
    tail = M.MetricsTail(paths.metrics)
    kind = mf.read(paths).get("kind", "rm")
    keys = {"rm": (M.LOSS, M.ACCURACY, M.MARGIN_MEAN), "ppo": (M.SCORES, M.KL, M.GOLD_SCORE)}.get(kind, ())
    latest: dict[str, float] = {}
    with Progress(TextColumn("[bold]{task.fields[run]}"), BarColumn(), TextColumn("step {task.completed}/{task.total}"),
                  TextColumn("{task.fields[metrics]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=console, disable=quiet, transient=False) as bar:
        task = bar.add_task("train", total=None, run=paths.id, metrics="starting…")
        try:
            while True:
                total = mf.read(paths).get("resolved", {}).get("total_steps")
                for rec in tail.read_new():
                    if rec.split == M.TRAIN:
                        latest.update({k: v for k, v in rec.data.items() if k in keys and v is not None})
                        bar.update(task, completed=rec.step)
                    elif M.is_eval(rec.split):
                        for k in (M.ACCURACY, M.WIN_RATE, M.SECTIONS_MEAN):
                            if k in rec.data:
                                latest[f"{M.eval_set(rec.split)}/{k}"] = rec.data[k]
                                if not quiet:
                                    console.print(f"  step {rec.step} {rec.split}: " + " ".join(
                                        f"{k}={_fmt(v)}" for k, v in rec.data.items()
                                        if k in EVAL_SHOWN and isinstance(v, (int, float))))
                bar.update(task, total=total, metrics=" ".join(f"{k}={_fmt(v)}" for k, v in latest.items()))
                if proc.poll() is not None and tail.offset >= M.file_size(paths.metrics):
                    break
                time.sleep(0.25)
        except KeyboardInterrupt:
            console.print(f"stopping {paths.id} (checkpoint first; Ctrl-C again to force)…")
            try:
                return lifecycle.stop(paths, proc=proc)
            except KeyboardInterrupt:
                return lifecycle.stop(paths, grace=0.5, proc=proc)
    return lifecycle.reap(paths, proc)


def _report_end(paths: mf.RunPaths, status: str) -> int:
    manifest = mf.read(paths)
    if status == S.COMPLETED:
        summ = manifest.get("summary", {})
        shown = {k: v for k, v in summ.items() if isinstance(v, (int, float)) and not k.endswith("step")}
        typer.echo(f"{paths.id}: completed  " + "  ".join(f"{k}={_fmt(v)}" for k, v in shown.items()))
        return 0
    line = manifest.get("error") or status
    _err(f"run {paths.id} {status}: {line} (log: {paths.log})")
    return S.exit_code(status)


def _launch_and_follow(cfg: config_mod.Config, root: Path, detach: bool, quiet: bool,
                       links: dict | None = None) -> tuple[mf.RunPaths, str]:
    from engine.runs import lifecycle

    paths, proc = lifecycle.launch_run(cfg, root, links=links)
    typer.echo(f"run {paths.id}  ({paths.dir})", err=True)
    if detach:
        return paths, S.RUNNING
    return paths, follow(paths, proc, quiet=quiet)


@app.command()
def run(
    config: Annotated[Path | None, typer.Argument(help="a TOML config (see `aplot init`)")] = None,
    overrides: Annotated[list[str] | None, typer.Argument(help="dotted overrides, e.g. optim.lr=2e-5")] = None,
    preset: Annotated[str | None, typer.Option("--preset", help="a shipped preset instead of CONFIG; "
                                               "`demo` runs the RM→PPO pipeline")] = None,
    detach: Annotated[bool, typer.Option("--detach", help="start and return; follow later in the TUI")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
    runs_dir: RunsDir = None,
) -> None:
    """Launch a run and follow it: progress, live metrics; exit 0 only if it completed."""
    root = _root(runs_dir)
    overrides = list(overrides or [])
    if preset == "demo" and config is None:
        raise typer.Exit(_run_demo(root, overrides, quiet))
    cfg = _load_config(config, overrides, preset)
    paths, status = _launch_and_follow(cfg, root, detach, quiet)
    if detach:
        typer.echo(paths.id)
        return
    raise typer.Exit(_report_end(paths, status))


def _run_demo(root: Path, overrides: list[str], quiet: bool) -> int:
    """The embedded default: an APLOT reward model on the synthetic task (the non-`ppo.` overrides),
    then PPO against it (the `ppo.` ones and the seed)."""
    rm_cfg = config_mod.load(None, [o for o in overrides if not o.startswith("ppo.")], preset="demo-rm")
    rm_paths, status = _launch_and_follow(rm_cfg, root, False, quiet)
    code = _report_end(rm_paths, status)
    if code:
        return code
    ppo_over = [o for o in overrides if o.startswith(("ppo.", "seed"))]
    ppo_cfg = config_mod.load(None, [*ppo_over, f'ppo.reward_model_run="{rm_paths.id}"'], preset="demo-ppo")
    ppo_paths, status = _launch_and_follow(ppo_cfg, root, False, quiet)
    return _report_end(ppo_paths, status)


INPUTS_FILE = "aplot_inputs.json"  # how an exported model builds its inputs (written by engine.models)
INHERITED = ("seed",)  # what an eval of a run takes from it besides [model] input settings, [data] and [launch]


def eval_config(root: Path, model: str, data: list[str], sections: Path | None, which: str, name: str,
                overrides: list[str]) -> tuple[config_mod.Config, dict]:
    """The config of an `eval` run for MODEL (a run, a checkpoint folder or any HF reward-model folder)
    and its [links]. A run lends its token settings, seed, data (its own eval sets, the held-out split
    included, when no --data is given) and launch; a folder lends its exported input settings."""
    cfg: dict = {"kind": "eval", "model": {}, "data": {"train": ""}, "eval": {}}
    links: dict = {}
    folder = Path(model)
    run_cfg = None
    if folder.is_dir() and not (folder / "config.json").is_file() and not (folder / mf.MANIFEST).is_file():
        raise UserError(f"{model}: not a model folder (no config.json) nor a run")
    if not (folder / "config.json").is_file():
        paths = mf.find_run(root, folder.name if folder.is_dir() else model)
        run_manifest = mf.read(paths)
        if run_manifest.get("kind") != "rm":
            raise UserError(f"{paths.id}: is a {run_manifest.get('kind')} run; aplot eval scores reward models")
        folder = paths.checkpoints / which
        if not (folder / "config.json").is_file():
            raise UserError(f"{paths.id}: has no checkpoints/{which} model yet")
        run_cfg = run_manifest["config"]
        links = {"model_run": paths.id, "model_checkpoint": which}
        cfg["model"].update({k: run_cfg["model"][k] for k in ("max_length", "prompt_share") if k in run_cfg["model"]})
        cfg.update({k: run_cfg[k] for k in INHERITED if k in run_cfg})
        cfg["launch"] = dict(run_cfg.get("launch", {}))
        if not data:
            cfg["data"] = dict(run_cfg["data"])
    elif (folder / INPUTS_FILE).is_file():
        inputs = json.loads((folder / INPUTS_FILE).read_text())
        cfg["model"].update({k: inputs[k] for k in ("max_length", "prompt_share") if k in inputs})
    cfg["model"]["name"] = str(folder.resolve())
    if data:
        evals = {}
        for item in data:
            set_name, eq, source = item.partition("=")
            if not eq or not set_name or not source:
                raise UserError(f"--data {item}: expected NAME=SOURCE (e.g. oasst=pairs.jsonl)")
            evals[set_name] = source if source.startswith("hf:") else str(Path(source).absolute())
        cfg["data"] = {"train": "", "eval": evals, "columns": cfg["data"].get("columns", {})}
    elif run_cfg is None:
        raise UserError(f"{model}: give the sets to score with --data NAME=SOURCE")
    if sections is not None:
        cfg["eval"]["sections"] = str(sections.absolute())
    cfg["name"] = name or f"{run_cfg.get('name', 'run') if run_cfg else folder.name}"[:40]
    origins = config_mod.Origins("aplot eval")
    config_mod.apply_overrides(cfg, overrides, origins)
    out = config_mod.from_dict(cfg, origins)
    if out.model.max_length == config_mod.ModelSection().max_length and "max_length" not in cfg["model"]:
        out.model.max_length = _folder_max_length(folder, out.model.max_length)
    return out, links  # the launcher's preflight checks it before any folder exists


def _folder_max_length(folder: Path, default: int) -> int:
    """Someone else's model: its tokenizer's own limit when it states a usable one."""
    try:
        limit = json.loads((folder / "tokenizer_config.json").read_text()).get("model_max_length")
    except (OSError, ValueError):
        return default
    return int(limit) if isinstance(limit, int) and 8 < limit <= 32768 else default


@app.command("eval")
def eval_(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="a run id (its best or final model), a checkpoint "
                                         "folder, or any local HF sequence-classification folder")],
    data: Annotated[list[str] | None, typer.Option("--data", "-d", help="NAME=SOURCE, repeatable: .jsonl, "
                                                   ".parquet, a save_to_disk folder or hf:REPO")] = None,
    sections: Annotated[Path | None, typer.Option("--sections", help="TOML: section = [subsets] (or "
                                                  "{subset = weight}); section scores and their mean")] = None,
    which: Annotated[str, typer.Option("--which", help="for a run: best | final")] = "best",
    name: Annotated[str, typer.Option("--name", help="the eval run's name")] = "",
    overrides: Annotated[list[str] | None, typer.Argument(help="dotted overrides, e.g. launch.num_processes=2")] = None,
    detach: Annotated[bool, typer.Option("--detach", help="start and return")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no per-set lines")] = False,
    runs_dir: RunsDir = None,
) -> None:
    """Score a reward model on preference sets, per subset and section: an `eval` run in the store."""
    if which not in ("best", "final"):
        raise UserError(f"--which: must be best | final, got {which!r}")
    root = _root(runs_dir)
    cfg, links = eval_config(root, model, list(data or []), sections, which, name, list(overrides or []))
    paths, status = _launch_and_follow(cfg, root, detach, quiet, links)
    if detach:
        typer.echo(paths.id)
        return
    raise typer.Exit(_report_end(paths, status))


@app.command()
def resume(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="run id (or a unique part of it)")],
    overrides: Annotated[list[str] | None, typer.Argument(help="launch.* overrides, e.g. launch.num_processes=3")] = None,
    detach: Annotated[bool, typer.Option("--detach", help="start and return")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
    runs_dir: RunsDir = None,
) -> None:
    """Continue a stopped, failed or crashed run from its newest complete checkpoint (on other
    hardware with launch.* overrides: the effective batch is kept, the manifest notes the change)."""
    from engine.runs import lifecycle

    paths = mf.find_run(_root(runs_dir), run_id)
    proc = lifecycle.resume(paths, list(overrides or []))
    typer.echo(f"resuming {paths.id} from step {mf.checkpoint_steps(paths)[-1]}", err=True)
    if detach:
        return
    raise typer.Exit(_report_end(paths, follow(paths, proc, quiet=quiet)))


@app.command()
def stop(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="run id (or a unique part of it)")],
    grace: Annotated[float, typer.Option(help="seconds to wait for a clean stop before SIGTERM")] = 30.0,
    runs_dir: RunsDir = None,
) -> None:
    """Stop a running run: SIGINT (checkpoint, then exit), then SIGTERM, then SIGKILL."""
    from engine.runs import lifecycle

    paths = mf.find_run(_root(runs_dir), run_id)
    status = lifecycle.stop(paths, grace=grace)
    typer.echo(f"{paths.id}: {status}")


# --------------------------------------------------------------------------- inspect


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
    rows = store.sort_rows(store.filter_rows(store.list_rows(_root(runs_dir)), filter_text, status, kind, tag, sweep),
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
        typer.echo(f"no runs in {_root(runs_dir)}")
        return
    header = f"{'ID':<44} {'KIND':<4} {'LOSS':<16} {'STATUS':<10} {'STEP':>11}  {'AGE':>5}  METRICS"
    typer.echo(header)
    for r in rows:
        metrics = "  ".join(f"{k.removeprefix(M.EVAL_PREFIX)}={_fmt(v)}" for k, v in r.metrics.items())
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

    paths = mf.find_run(_root(runs_dir), run_id)
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
                typer.echo(f"  {k} = {_fmt(v)}")
    step, values = store.latest_values(store.last_records(paths.metrics))
    if values:
        typer.echo(f"\n[latest metrics @ step {step}]")
        for k, v in sorted(values.items()):
            typer.echo(f"  {k} = {_fmt(v)}")
    ckpts = mf.checkpoint_steps(paths)
    typer.echo(f"\ncheckpoints: {', '.join(f'step-{s}' for s in ckpts) or 'none'}"
               + ("  best" if (paths.checkpoints / 'best').exists() else ""))


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

    root = _root(runs_dir)
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
            typer.echo(f"  {key}: " + "  |  ".join("—" if v is None else _fmt(v) for v in values))
    if plot:
        report.export_compare([p.dir for p in runs], plot)
        typer.echo(f"wrote {plot}", err=True)


@app.command()
def export(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="run id (or a unique part of it)")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="destination folder (default: ./<run-id>)")] = None,
    which: Annotated[str, typer.Option("--which", help="best | final")] = "best",
    runs_dir: RunsDir = None,
) -> None:
    """Copy a run's model out of the store as an HF folder (safetensors, the tokenizer with aplot's pair
    template, aplot_inputs.json), with the run's manifest and metrics beside it. A LoRA run's folder
    holds the merged model, and its adapter alone (peft's adapter files) in adapter/."""
    paths = mf.find_run(_root(runs_dir), run_id)
    src = paths.checkpoints / which
    if not src.is_dir():
        other = "final" if which == "best" else "best"
        if (paths.checkpoints / other).is_dir():
            src = paths.checkpoints / other
        else:
            raise UserError(f"{paths.id}: no exported model (checkpoints/{which}); has the run completed?")
    dest = out or Path(paths.id)
    if dest.exists() and any(dest.iterdir()):
        raise UserError(f"{dest}: exists and is not empty")
    # the folder itself is the model: from_pretrained(dest) loads it, the run's record sits beside
    if (src / "adapter_config.json").is_file():  # a LoRA checkpoint: merged here, the adapter in adapter/
        from engine.runs import launch

        merge = subprocess.run([sys.executable, "-m", "engine.export", str(src), str(dest)],  # noqa: S603 - our own module, an argument list
                               env=launch.env_for_tree(), capture_output=True, text=True)
        if merge.returncode:
            lines = merge.stderr.strip().splitlines()
            raise UserError(f"{paths.id}: merging the LoRA adapter failed: {lines[-1] if lines else merge.returncode}")
    else:
        shutil.copytree(src, dest, dirs_exist_ok=True)
    for f in (paths.manifest, paths.metrics):
        if f.exists():
            shutil.copy2(f, dest / f.name)
    typer.echo(str(dest))


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="where to write the config")] = Path("aplot.toml"),
    preset: Annotated[str | None, typer.Option("--preset", help="start from a shipped preset")] = None,
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing file")] = False,
) -> None:
    """Write a commented config with every field, its default and its help."""
    if path.exists() and not force:
        raise UserError(f"{path}: exists (use --force to overwrite)")
    cfg = config_mod.load(None, [], preset=preset) if preset else config_mod.Config()
    path.write_text(config_mod.commented_template(cfg))
    typer.echo(f"wrote {path}; run it with: aplot run {path}")


@app.command()
def fields() -> None:
    """Every config field with its default and help (what `aplot run` overrides accept)."""
    for path, fld, _tp, is_table in config_mod.iter_fields():
        if is_table:
            continue
        default = config_mod.get(config_mod.Config(), path)
        typer.echo(f"{path} = {default!r}  # {fld.metadata['help']}")


from aplot_tui.cli.sweep import sweep_app  # noqa: E402 - the sub-app reads this module's helpers lazily

app.add_typer(sweep_app, name="sweep")


def main() -> None:
    """Console entry point: map known errors to one line and an exit status."""
    debug = "--debug" in sys.argv
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        rc = app(standalone_mode=False)  # click returns typer.Exit's code instead of raising it
        sys.exit(rc if isinstance(rc, int) else 0)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except AplotError as e:  # config, data, run reference, arguments, training: one line each
        if debug:
            raise
        for line in e.lines():
            _err(line)
        sys.exit(e.code)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    except Exception as e:  # click usage errors and the unforeseen
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            sys.exit(e.exit_code)
        if isinstance(e, click.exceptions.Abort):
            sys.exit(EXIT_INTERRUPTED)
        if debug:
            raise
        _err(f"{type(e).__name__}: {e} (rerun with --debug for the traceback)")
        sys.exit(EXIT_FAILED)


if __name__ == "__main__":
    main()
