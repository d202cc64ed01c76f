"""What every `aplot` command shares: the Typer app, the one error for bad arguments, the store's root.

Command modules register on `app` when the package imports them; nothing here imports torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from engine.errors import AplotError
from engine.runs import store as mf

app = typer.Typer(add_completion=False, no_args_is_help=False, rich_markup_mode=None,
                  help="aplot: train reward models (Bradley-Terry, APLOT) and run PPO, from the terminal.")

STATE = {"debug": False, "runs_dir": None}

RunsDir = Annotated[Path | None, typer.Option("--runs-dir", help="run store (default: $APLOT_RUNS_DIR or ./runs)")]


class UserError(AplotError):
    """A one-line message about the command's arguments (exit status 2 unless given)."""


def runs_root(runs_dir: Path | None) -> Path:
    """This command's --runs-dir, else the one given before the command, else the default."""
    return mf.runs_root(runs_dir or STATE["runs_dir"])


def err(line: str) -> None:
    typer.echo(f"aplot: {line}", err=True)


def fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
