"""`aplot init | fields`: a commented config to start from, and every field a run accepts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from aplot_tui.cli.common import UserError, app
from engine import config as config_mod

NAMED_AT_LAUNCH = "ppo.reward_model_run"  # a run of the store, named when the PPO run is launched, not at init
PLACEHOLDER = "RM_RUN"


def _template_config(preset: str | None, overrides: list[str]) -> config_mod.Config:
    """The preset (or the defaults) with `overrides`, every value checked except the reward-model run a
    PPO config names: the store it is launched against has it, the file need not."""
    try:
        return config_mod.load(None, overrides, preset=preset)
    except config_mod.ConfigError:
        pass  # with the run named, only the other problems are left to say (if there are any)
    cfg = config_mod.load(None, [*overrides, f'{NAMED_AT_LAUNCH}="{PLACEHOLDER}"'], preset=preset)
    cfg.ppo.reward_model_run = ""
    return cfg


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="where to write the config")] = Path("aplot.toml"),
    overrides: Annotated[list[str] | None, typer.Argument(help="dotted overrides written into the file, "
                                                          "e.g. optim.lr=2e-5")] = None,
    preset: Annotated[str | None, typer.Option("--preset", help="start from a shipped preset")] = None,
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing file")] = False,
) -> None:
    """Write a commented config with every field, its default (or the preset's value), its help and, for
    a choice field, its choices."""
    if "=" in path.name:
        raise UserError(f"{path}: give the file to write first: aplot init FILE {path}")
    if path.exists() and not force:
        raise UserError(f"{path}: exists (use --force to overwrite)")
    cfg = _template_config(preset, list(overrides or []))
    path.write_text(config_mod.commented_template(cfg))
    later = f" {NAMED_AT_LAUNCH}=RUN" if cfg.kind == "ppo" and not cfg.ppo.reward_model_run else ""
    typer.echo(f"wrote {path}; run it with: aplot run {path}{later}")


@app.command()
def fields(
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines: one object per field (path, type, "
                                          "default, help, choices)")] = False,
) -> None:
    """Every config field with its default, help and choices (what `aplot run` overrides accept)."""
    defaults = config_mod.Config()
    for path, fld, tp, is_table in config_mod.iter_fields():
        if is_table:
            continue
        default = config_mod.get(defaults, path)
        choices = list(fld.metadata.get("choices") or [])
        if as_json:
            typer.echo(json.dumps({"path": path, "type": getattr(tp, "__name__", str(tp)), "default": default,
                                   "help": fld.metadata["help"], "choices": choices}))
            continue
        typer.echo(f"{path} = {default!r}  # {fld.metadata['help']}"
                   + (f" (one of: {' | '.join(map(str, choices))})" if choices else ""))
