"""`aplot init | fields`: a commented config to start from, and every field a run accepts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aplot_tui.cli.common import UserError, app
from engine import config as config_mod


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
