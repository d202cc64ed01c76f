"""Layers are enforced here: the UI never loads the training stack; the engine never loads the UI."""

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "accelerate", "ot", "datasets", "pyarrow")


def _loaded_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_every_aplot_tui_module_imports_without_the_training_stack():
    mods = _loaded_after(
        "import importlib, pkgutil, aplot_tui\n"
        "for m in pkgutil.walk_packages(aplot_tui.__path__, 'aplot_tui.'):\n"
        "    importlib.import_module(m.name)\n")
    assert "aplot_tui.cli" in mods and "aplot_tui.app" in mods
    assert not {m for m in mods if m.split(".")[0] in HEAVY}


def test_the_run_service_and_light_engine_modules_never_import_textual():
    mods = _loaded_after("import aplot_tui.views.listing, engine.runs.status, engine.config, engine.runs.store, "
                         "engine.metrics, engine.runs.sweeps, engine.runs.lifecycle, aplot_tui.views.significance, "
                         "engine.runs.sweep_spec, engine.analysis.stats, engine.analysis.predictions")
    assert not {m for m in mods if m.split(".")[0] in HEAVY + ("textual",)}


def test_engine_never_imports_the_ui():
    mods = _loaded_after(
        "import importlib, pkgutil, engine\n"
        "for m in pkgutil.walk_packages(engine.__path__, 'engine.'):\n"
        "    importlib.import_module(m.name)\n")
    assert not {m for m in mods if m.split(".")[0] in ("aplot_tui", "textual", "typer")}


def test_help_is_fast():
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "aplot_tui.cli", "--help"], cwd=ROOT, capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    # ~0.3 s on an idle machine; 2 s is a generous bound that a machine shared with training jobs
    # still meets (a regression that imports torch at start-up costs several seconds)
    assert sorted(times)[1] < 2.0, times
