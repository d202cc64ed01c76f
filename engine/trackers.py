"""`[log] trackers`: checked before launch, so a misspelt or missing tracker is one line, not a run
that ends `completed` with no tracker output or a `CalledProcessError` whose cause is only in train.log.

Torch-free and import-free: a package is looked up with `importlib.util.find_spec`, never imported.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

# Accelerate's tracker names -> the module each needs, and what to install for it
PACKAGES = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "wandb": ("wandb", "wandb"),
    "mlflow": ("mlflow", "mlflow-skinny (or mlflow)"),
    "comet_ml": ("comet_ml", "comet-ml"),
    "aim": ("aim", "aim"),
    "clearml": ("clearml", "clearml"),
    "dvclive": ("dvclive", "dvclive"),
    "swanlab": ("swanlab", "swanlab"),
    "trackio": ("trackio", "trackio"),
}


def problems(trackers: list[str]) -> list[str]:
    """One line per tracker that is unknown or whose package is not installed."""
    out = []
    for name in trackers:
        if name not in PACKAGES:
            out.append(f"log.trackers: unknown tracker {name!r}; Accelerate knows {', '.join(sorted(PACKAGES))}")
            continue
        module, package = PACKAGES[name]
        if importlib.util.find_spec(module) is None:
            out.append(f"log.trackers: {name!r} needs the {package} package, which is not installed "
                       f"(pip install {package.split()[0]})")
    return out


# which init argument of Accelerate's tracker (init_kwargs[tracker]) takes the run's name and the entity;
# the project is init_trackers' project_name for every tracker
RUN_NAME_ARG = {"wandb": "name", "trackio": "name", "mlflow": "run_name"}
ENTITY_ARG = {"wandb": "entity"}


def init_args(trackers: list[str], project: str, entity: str, run_name: str, run_id: str) -> tuple[str, dict]:
    """(project_name, init_kwargs) for `Accelerator.init_trackers`: the project and run name default to
    the run id, so a run is found in any tracker by the id `aplot ls` shows; an entity only where set."""
    kwargs: dict[str, dict] = {}
    for name in trackers:
        args = {RUN_NAME_ARG[name]: run_name or run_id} if name in RUN_NAME_ARG else {}
        if entity and name in ENTITY_ARG:
            args[ENTITY_ARG[name]] = entity
        if args:
            kwargs[name] = args
    return project or run_id, kwargs


def local_dirs(trackers: list[str], trackers_dir: Path) -> dict[str, str]:
    """Environment for the trackers that keep a local store, pointed inside the run's folder unless the
    user points them elsewhere: MLflow's file store, trackio's SQLite folder (read when trackio is
    imported, so set before)."""
    folder = Path(trackers_dir).resolve()
    out = {}
    if "mlflow" in trackers:
        out["MLFLOW_TRACKING_URI"] = (folder / "mlruns").as_uri()
        out["MLFLOW_ALLOW_FILE_STORE"] = "true"
    if "trackio" in trackers:
        out["TRACKIO_DIR"] = str(folder / "trackio")
    return out
