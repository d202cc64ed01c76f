"""Shared fixtures: a temp run store, the repo's shared data, and a tiny RM config for subprocess runs."""

from __future__ import annotations

import collections
import gc
import os
import sys
from pathlib import Path

import pytest
from _procs import end_runs_under

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
HH = SHARED_DATA / "hh-rlhf-harmless-base" / "test.jsonl.gz"
OASST = SHARED_DATA / "oasst-en100" / "pairs.jsonl"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
gc.disable()  # until pytest_runtestloop: collection imports torch, transformers and Textual on each worker

TINY_RM = """
kind = "rm"
name = "tiny"
seed = 0
[model]
max_length = 48
[model.tiny]
hidden_size = 32
num_layers = 1
num_heads = 2
vocab_size = 256
[data]
train = "synthetic"
synthetic_pairs = 240
eval_fraction = 0.1
[optim]
lr = 1e-3
batch_size = 8
max_steps = 6
warmup_ratio = 0.0
[eval]
every = 3
[checkpoint]
every = 3
keep = 2
[launch]
cpu = true
threads = 1
"""


@pytest.fixture
def runs_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "runs"
    d.mkdir()
    monkeypatch.setenv("APLOT_RUNS_DIR", str(d))
    return d


@pytest.fixture
def tiny_config(tmp_path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_RM)
    return path


@pytest.fixture(autouse=True)
def _end_leftover_runs(tmp_path):
    """Pass or fail, no training process a test started outlives it (a frozen one included)."""
    yield
    end_runs_under(tmp_path)


def _built_once(name: str, defs: dict) -> bool:
    """Whether fixture `name` is module-scoped and writes a temp folder (a training run, an export, a
    cluster: tmp_path_factory, itself or through another such fixture) — too dear to build twice."""
    fixture = defs.get(name)
    if not fixture or fixture[-1].scope != "module":
        return False
    args = fixture[-1].argnames
    return "tmp_path_factory" in args or any(_built_once(a, defs) for a in args)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups off the marks
def pytest_collection_modifyitems(items):
    """The suite runs on three pytest-xdist workers (`--dist loadgroup`, pyproject's addopts). The tests
    that share such a module fixture go to one worker, so it is built once rather than once per
    worker; a test that names its own `xdist_group` keeps it. Cheap module fixtures (a tokenizer)
    are built on each worker and their tests spread over all of them.

    Tests marked `heavy` (and so their groups) are handed out first: the workers take work in collection
    order, and one left alone on a minute-long test at the end is a minute of two idle cores."""
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None or item.get_closest_marker("xdist_group") is not None:
            continue
        if any(_built_once(name, info.name2fixturedefs) for name in info.names_closure):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
    sizes = collections.Counter(_group(item) for item in items)
    heavy = {_group(item) for item in items if item.get_closest_marker("heavy")}
    # the longest chains first (a module group is run by one worker, test after test); stable otherwise
    items.sort(key=lambda item: (_group(item) not in heavy, -sizes[_group(item)] if _group(item) in heavy else 0))


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session):
    """After collection (on a worker; on the xdist controller, which collects nothing, at once): what it
    imported lives as long as the process, so it is frozen out of the collector's way, as in a rank
    (engine/__init__), and the collector goes back on. Collection runs in half the CPU time.

    Torch in a worker computes on one thread: three workers and their runs already share two cores,
    and intra-op threads that outnumber the cores spin against each other (a test scoring 400 pairs
    in-process took 12 s on two threads beside a run, 4.7 s on one)."""
    gc.freeze()
    gc.enable()
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def _group(item) -> str:
    mark = item.get_closest_marker("xdist_group")
    return mark.args[0] if mark and mark.args else mark.kwargs.get("name", item.nodeid) if mark else item.nodeid


def pytest_sessionfinish(session):
    """The same for runs under module-scoped temp folders, and after an interrupted session."""
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is not None:
        try:
            end_runs_under(factory.getbasetemp())
        except OSError:
            pass
