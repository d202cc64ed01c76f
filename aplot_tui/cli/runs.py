"""`aplot run | eval | resume | stop`: start a run through the run service and follow it to its end.

Training happens in the subprocess `engine.runs.lifecycle` starts; this module parses, follows and prints.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from aplot_tui.cli.common import RunsDir, UserError, app, err, fmt, runs_root
from engine import config as config_mod
from engine import metrics as M
from engine.runs import status as S
from engine.runs import store as mf

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


FOLLOW_POLL_S = 0.25
STATUS_POLL_S = 1.0  # a run we did not start: its status (lock, heartbeat, Slurm's word) looked up this often


def follow(paths: mf.RunPaths, proc=None, quiet: bool = False) -> str:
    """Follow a run to its end with a progress bar and live key metrics; its final status.

    With `proc` (this command started it) the end is the process's exit, Ctrl-C stops the run and the
    death is reaped. Without (`aplot follow`: a detached or Slurm run) the end is the run's status
    leaving going/queued, as every reader sees it, and Ctrl-C only stops watching."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from engine.runs import lifecycle

    piped = not sys.stderr.isatty()  # a log file or a scheduler: whole lines, never wrapped or cut at 80 columns
    console = Console(stderr=True, soft_wrap=piped, width=1000 if piped else None)
    tail = M.MetricsTail(paths.metrics)
    kind = mf.read(paths).get("kind", "rm")
    keys = {"rm": (M.LOSS, M.ACCURACY, M.MARGIN_MEAN), "ppo": (M.SCORES, M.KL, M.GOLD_SCORE),
            "dpo": (M.LOSS, M.REWARDS_ACCURACIES, M.REWARDS_MARGINS)}.get(kind, ())
    latest: dict[str, float] = {}
    looked = 0.0
    status = ""
    with Progress(TextColumn("[bold]{task.fields[run]}"), BarColumn(), TextColumn("step {task.completed}/{task.total}"),
                  TextColumn("{task.fields[metrics]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=console, disable=quiet, transient=False) as bar:
        task = bar.add_task("train", total=None, run=paths.id, metrics="starting…")
        try:
            while True:
                if proc is None and time.monotonic() - looked >= STATUS_POLL_S:  # before the read: no last lines lost
                    status, looked = S.effective(paths), time.monotonic()
                total = mf.read(paths).get("resolved", {}).get("total_steps")
                for rec in tail.read_new():
                    if rec.split == M.TRAIN:
                        latest.update({k: v for k, v in rec.data.items() if k in keys and v is not None})
                        bar.update(task, completed=rec.step)
                    elif M.is_eval(rec.split):
                        shown = [k for k in (M.ACCURACY, M.WIN_RATE, M.SECTIONS_MEAN) if k in rec.data]
                        latest.update({f"{M.eval_set(rec.split)}/{k}": rec.data[k] for k in shown})
                        if shown and not quiet:  # one line per record, whichever of its keys it has
                            console.print(f"  step {rec.step} {rec.split}: " + " ".join(
                                f"{k}={fmt(v)}" for k, v in rec.data.items()
                                if k in EVAL_SHOWN and isinstance(v, (int, float))))
                bar.update(task, total=total, metrics=" ".join(f"{k}={fmt(v)}" for k, v in latest.items()))
                ended = proc.poll() is not None if proc is not None else status not in S.UNFINISHED
                if ended and tail.offset >= M.file_size(paths.metrics):
                    break
                time.sleep(FOLLOW_POLL_S)
        except KeyboardInterrupt:
            if proc is None:
                console.print(f"{paths.id} goes on (`aplot follow {paths.id}` to watch it again, "
                              f"`aplot stop {paths.id}` to stop it)")
                raise
            console.print(f"stopping {paths.id} (checkpoint first; Ctrl-C again to force)…")
            try:
                return lifecycle.stop(paths, proc=proc)
            except KeyboardInterrupt:
                return lifecycle.stop(paths, grace=0.5, proc=proc)
    return lifecycle.reap(paths, proc) if proc is not None else status


def report_end(paths: mf.RunPaths, status: str) -> int:
    manifest = mf.read(paths)
    if status == S.COMPLETED:
        summ = manifest.get("summary", {})
        shown = {k: v for k, v in summ.items() if isinstance(v, (int, float)) and not k.endswith("step")}
        typer.echo(f"{paths.id}: completed  " + "  ".join(f"{k}={fmt(v)}" for k, v in shown.items()))
        return 0
    why = f": {manifest['error']}" if manifest.get("error") else ""
    hint = f"; continue it with `aplot resume {paths.id}`" if status in S.RESUMABLE and mf.checkpoint_steps(paths) else ""
    err(f"run {paths.id} {status}{why} (log: {paths.log}){hint}")
    return S.exit_code(status)


def _launch_and_follow(cfg: config_mod.Config, root: Path, detach: bool, quiet: bool,
                       links: dict | None = None) -> tuple[mf.RunPaths, str]:
    from engine.runs import launch, lifecycle

    paths, proc = lifecycle.launch_run(cfg, root, links=links)
    typer.echo(f"run {paths.id}  ({paths.dir})", err=True)
    for why in launch.launch_warnings(cfg):  # cfg as planned: the preflight merged [launch] into it
        err(f"warning: {why}")
    if detach:
        return paths, S.RUNNING
    return paths, follow(paths, proc, quiet=quiet)


@app.command()
def run(
    config: Annotated[Path | None, typer.Argument(help="a TOML config (see `aplot init`)")] = None,
    overrides: Annotated[list[str] | None, typer.Argument(help="dotted overrides, e.g. optim.lr=2e-5")] = None,
    preset: Annotated[str | None, typer.Option("--preset", help="a shipped preset instead of CONFIG; "
                                               "`demo` runs the RM→PPO pipeline")] = None,
    from_run: Annotated[str | None, typer.Option("--from", metavar="RUN", help="launch again with RUN's stored "
                                                 "config (overrides apply over it)")] = None,
    detach: Annotated[bool, typer.Option("--detach", help="start and return; `aplot follow RUN` or the TUI "
                                         "watches it")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
    runs_dir: RunsDir = None,
) -> None:
    """Launch a run and follow it: progress, live metrics; exit 0 only if it completed."""
    root = runs_root(runs_dir)
    overrides = list(overrides or [])
    if from_run is not None:
        if preset:
            raise UserError("--from and --preset: give one base config, not both")
        cfg = _config_from_run(root, from_run, [*([str(config)] if config is not None else []), *overrides])
    elif preset == "demo" and (config is None or "=" in str(config)):
        raise typer.Exit(_run_demo(root, [*([str(config)] if config is not None else []), *overrides], quiet,
                                   detach))
    else:
        cfg = _load_config(config, overrides, preset)
    paths, status = _launch_and_follow(cfg, root, detach, quiet)
    if detach:
        typer.echo(paths.id)
        return
    raise typer.Exit(report_end(paths, status))


def _run_demo(root: Path, overrides: list[str], quiet: bool, detach: bool) -> int:
    """The embedded default: an APLOT reward model on the synthetic task, then PPO against it; each
    override goes to the half (or halves) `demo.split` says. Both halves are checked before either
    starts. Detached, the PPO half is started by a background `aplot` that waits for the RM half."""
    from aplot_tui.cli import demo

    halves, notes = demo.split(overrides)
    for line in notes:
        typer.echo(f"note: {line}", err=True)
    rm_cfg = config_mod.load(None, halves["rm"], preset="demo-rm")
    _demo_ppo_config(halves["ppo"], "the-rm-half")  # its values checked now; the RM run is named once it exists
    rm_paths, status = _launch_and_follow(rm_cfg, root, detach, quiet)
    if detach:
        chain = _start_ppo_half(root, rm_paths, halves["ppo"])
        typer.echo(f"the PPO half starts when {rm_paths.id} completes (`aplot ls`; log: {chain})", err=True)
        typer.echo(rm_paths.id)
        return 0
    code = report_end(rm_paths, status)
    if code:
        return code
    ppo_paths, status = _launch_and_follow(_demo_ppo_config(halves["ppo"], rm_paths.id), root, False, quiet)
    return report_end(ppo_paths, status)


def _demo_ppo_config(overrides: list[str], rm_run: str) -> config_mod.Config:
    return config_mod.load(None, [*overrides, f'ppo.reward_model_run="{rm_run}"'], preset="demo-ppo")


DEMO_CHAIN_LOG = "demo-ppo-half.log"


def _start_ppo_half(root: Path, rm_paths: mf.RunPaths, overrides: list[str]) -> Path:
    """`aplot demo-ppo-half RM …` in its own session (it outlives this shell), output to the RM run's folder."""
    import subprocess

    from engine.runs.launch import env_for_tree

    log = rm_paths.dir / DEMO_CHAIN_LOG
    argv = [sys.executable, "-m", "aplot_tui.cli", "--runs-dir", str(root.absolute()), "demo-ppo-half", rm_paths.id,
            "--", *overrides]
    with open(log, "ab") as out:
        subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,  # noqa: S603 - a list
                         env=env_for_tree(), start_new_session=True, close_fds=True)
    return log


@app.command("demo-ppo-half", hidden=True)
def demo_ppo_half(
    rm_run: Annotated[str, typer.Argument(metavar="RM_RUN")],
    overrides: Annotated[list[str] | None, typer.Argument()] = None,
    runs_dir: RunsDir = None,
) -> None:
    """The detached demo's second step: wait for the RM half, then run the PPO half against it."""
    root = runs_root(runs_dir)
    rm_paths = mf.find_run(root, rm_run)
    status = follow(rm_paths, None, quiet=True)
    if status != S.COMPLETED:
        raise typer.Exit(report_end(rm_paths, status))
    ppo_paths, status = _launch_and_follow(_demo_ppo_config(list(overrides or []), rm_paths.id), root, False, True)
    raise typer.Exit(report_end(ppo_paths, status))


def _config_from_run(root: Path, ref: str, overrides: list[str]) -> config_mod.Config:
    """A run's stored config (the manifest's, as it was launched) with `overrides` over it; a bad value
    names the run or the override that set it."""
    paths = mf.find_run(root, ref)
    if "=" not in "".join(overrides[:1]) and overrides:
        raise UserError(f"{overrides[0]}: --from RUN takes overrides (key.path=value), not a config file")
    data = mf.read(paths).get("config")
    if not isinstance(data, dict):
        raise UserError(f"{paths.id}: has no stored config to launch from")
    origins = config_mod.Origins(f"run {paths.id}'s config")
    config_mod.apply_overrides(data, overrides, origins, over=f"run {paths.id}")
    return config_mod.from_dict(data, origins)


INPUTS_FILE = "aplot_inputs.json"  # how an exported model builds its inputs (written by engine.models)
INHERITED = ("seed",)  # what an eval of a run takes from it besides [model] input settings, [data] and [launch]


def eval_config(root: Path, model: str, data: list[str], sections: Path | None, which: str, name: str,
                overrides: list[str], suites: list[str] = ()) -> tuple[config_mod.Config, dict]:
    """The config of an `eval` run for MODEL (a run, a checkpoint folder or any HF reward-model folder)
    and its [links]. A run lends its token settings, seed, data (its own eval sets, the held-out split
    included, when no --data or --suite is given) and launch; a folder lends its exported input settings."""
    from engine.analysis.rewardbench import SUITES

    suite_sets, suite_sections = {}, ""
    for item in suites:
        suite, _, source = item.partition("=")
        if suite not in SUITES:
            raise UserError(f"--suite {item}: expected {' | '.join(SUITES)}[=SOURCE] (SOURCE: a folder or parquet "
                            "in the dataset's shape, instead of the hub cache)")
        suite_sets[suite] = SUITES[suite][0] if not source else source if source.startswith("hf:") \
            else str(Path(source).absolute())
        suite_sections = suite_sections or SUITES[suite][1]
    if suite_sections and sections is not None:
        raise UserError(f"--sections {sections}: --suite rewardbench brings RewardBench's own sections; give one")
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
            kind = str(run_manifest.get("kind"))
            raise UserError(f"{paths.id}: is {'an' if kind[:1] in 'aeiou' else 'a'} {kind} run; "
                            "aplot eval scores reward models")
        folder = paths.checkpoints / which
        if not (folder / "config.json").is_file():
            raise UserError(f"{paths.id}: has no checkpoints/{which} model yet")
        run_cfg = run_manifest["config"]
        links = {"model_run": paths.id, "model_checkpoint": which}
        cfg["model"].update({k: run_cfg["model"][k] for k in ("max_length", "prompt_share") if k in run_cfg["model"]})
        cfg.update({k: run_cfg[k] for k in INHERITED if k in run_cfg})
        cfg["launch"] = dict(run_cfg.get("launch", {}))
        if not data and not suite_sets:
            cfg["data"] = dict(run_cfg["data"])
    elif (folder / INPUTS_FILE).is_file():
        inputs = json.loads((folder / INPUTS_FILE).read_text())
        cfg["model"].update({k: inputs[k] for k in ("max_length", "prompt_share") if k in inputs})
    cfg["model"]["name"] = str(folder.resolve())
    if data or suite_sets:
        evals = dict(suite_sets)
        for item in data:
            set_name, eq, source = item.partition("=")
            if not eq or not set_name or not source:
                raise UserError(f"--data {item}: expected NAME=SOURCE (e.g. oasst=pairs.jsonl)")
            evals[set_name] = source if source.startswith("hf:") else str(Path(source).absolute())
        cfg["data"] = {"train": "", "eval": evals, "columns": cfg["data"].get("columns", {})}
    elif run_cfg is None:
        raise UserError(f"{model}: give the sets to score with --data NAME=SOURCE or --suite NAME")
    if sections is not None:
        cfg["eval"]["sections"] = str(sections.absolute())
    elif suite_sections:
        cfg["eval"]["sections"] = suite_sections
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
    suite: Annotated[list[str] | None, typer.Option("--suite", help="rewardbench | rewardbench2[=SOURCE], "
                                                    "repeatable: the benchmark from the local hub cache (or SOURCE "
                                                    "in its shape), scored by its own rules")] = None,
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
    root = runs_root(runs_dir)
    cfg, links = eval_config(root, model, list(data or []), sections, which, name, list(overrides or []),
                             list(suite or []))
    paths, status = _launch_and_follow(cfg, root, detach, quiet, links)
    if detach:
        typer.echo(paths.id)
        return
    raise typer.Exit(report_end(paths, status))


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

    paths = mf.find_run(runs_root(runs_dir), run_id)
    proc = lifecycle.resume(paths, list(overrides or []))
    typer.echo(f"resuming {paths.id} from step {mf.checkpoint_steps(paths)[-1]}", err=True)
    if detach:
        return
    raise typer.Exit(report_end(paths, follow(paths, proc, quiet=quiet)))


@app.command()
def stop(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="run id (or a unique part of it)")],
    grace: Annotated[float, typer.Option(help="seconds to wait for a clean stop before SIGTERM")] = 30.0,
    runs_dir: RunsDir = None,
) -> None:
    """Stop a running run: SIGINT (checkpoint, then exit), then SIGTERM, then SIGKILL."""
    from engine.runs import lifecycle

    paths = mf.find_run(runs_root(runs_dir), run_id)
    status = lifecycle.stop(paths, grace=grace)
    typer.echo(f"{paths.id}: {status}")


# --------------------------------------------------------------------------- inspect
