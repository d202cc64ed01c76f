"""`aplot export`: a run's model out of the store as a folder plain `transformers` loads.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from aplot_tui.cli.common import RunsDir, UserError, app, runs_root
from engine.runs import store as mf


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
    paths = mf.find_run(runs_root(runs_dir), run_id)
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
    usual_modes(dest)
    typer.echo(str(dest))


def usual_modes(folder: Path) -> None:
    """A new file's and folder's modes under the user's umask (0644 and 0755 under 022): the store writes
    its files through private temp files (0600), and an export is for sharing."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for path in folder.rglob("*"):
        if not path.is_symlink():
            path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)
