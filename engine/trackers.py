"""`[log] trackers`: checked before launch, so a misspelt or missing tracker is one line, not a run
that ends `completed` with no tracker output or a `CalledProcessError` whose cause is only in train.log.

Torch-free and import-free: a package is looked up with `importlib.util.find_spec`, never imported.
"""

from __future__ import annotations

import importlib.util

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
