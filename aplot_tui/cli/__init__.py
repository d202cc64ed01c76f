"""The `aplot` command line: the TUI with no arguments, and headless commands for scripts.

Every user mistake ends in one line on stderr and a non-zero exit; `--debug` shows tracebacks.
Nothing here imports torch: training runs in the subprocess the run service starts. One module per
command group (runs, watch, browse, manage, compare, export, configs, sweep; demo is the demo's
override routing) registers its commands on `common.app`.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

# each registers its commands; `aplot --help` lists them in this order
from aplot_tui.cli import runs, watch  # noqa: F401

# isort: split
from aplot_tui.cli import browse, manage  # noqa: F401

# isort: split
from aplot_tui.cli import compare, configs, export  # noqa: F401

# isort: split
from aplot_tui.cli.common import STATE, RunsDir, app, err, runs_root
from aplot_tui.cli.sweep import sweep_app
from engine.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, AplotError

__all__ = ["app", "main"]


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"aplot {version('aplot')}")
        raise typer.Exit(0)


def usage_line(e: Exception) -> str:
    """A usage mistake as one plain line: the command, click's message without its class name, and
    where the command's help is (`aplot run: no such option: --bogus (see aplot run --help)`)."""
    ctx = getattr(e, "ctx", None)
    message = e.format_message().rstrip(".")  # type: ignore[attr-defined]
    message = message[:1].lower() + message[1:]
    if ctx is None:  # click raised before it knew the command
        return message
    command = ctx.command_path.removeprefix("aplot").strip()
    return f"{command + ': ' if command else ''}{message} (see {ctx.command_path} --help)"


@app.callback(invoke_without_command=True)
def main_callback(
    ctx: typer.Context,
    runs_dir: RunsDir = None,
    debug: Annotated[bool, typer.Option("--debug", help="show full tracebacks on errors")] = False,
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                          help="print aplot's version and exit")] = False,
) -> None:
    """With no command, open the terminal UI."""
    STATE["debug"] = debug
    STATE["runs_dir"] = runs_dir
    if ctx.invoked_subcommand is None:
        from aplot_tui.app import AplotApp

        raise typer.Exit(AplotApp(runs_dir=runs_root(runs_dir)).run_to_exit_code())


app.add_typer(sweep_app, name="sweep")


def main() -> None:
    """Console entry point: map known errors to one line and an exit status."""
    debug = "--debug" in sys.argv
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        rc = app(standalone_mode=False, prog_name="aplot")  # click returns typer.Exit's code instead of raising it
        sys.exit(rc if isinstance(rc, int) else 0)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except AplotError as e:  # config, data, run reference, arguments, training: one line each
        if debug:
            raise
        for line in e.lines():
            err(line)
        sys.exit(e.code)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    except typer.Abort:
        sys.exit(EXIT_INTERRUPTED)
    except typer.TyperException as e:  # typer's own click: a usage mistake (exit 2) or a bad file argument
        if debug:
            raise
        err(usage_line(e))
        sys.exit(getattr(e, "exit_code", EXIT_USAGE))
    except Exception as e:  # the unforeseen
        if debug:
            raise
        err(f"{type(e).__name__}: {e} (rerun with --debug for the traceback)")
        sys.exit(EXIT_FAILED)


if __name__ == "__main__":
    main()
