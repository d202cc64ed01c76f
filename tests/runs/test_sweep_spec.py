"""Sweep files: expansion (zip × cross × seeds) and the one-line refusals, before anything exists."""

from __future__ import annotations

import pytest
from _cli import aplot, one_line_error
from conftest import TINY_RM

from engine import config as C
from engine.runs import sweep_spec


def write(tmp_path, body: str, base: str = TINY_RM):
    (tmp_path / "tiny.toml").write_text(base)
    path = tmp_path / "sweep.toml"
    path.write_text('[sweep]\nname = "s"\nbase = "tiny.toml"\n' + body)
    return path


def test_axes_are_crossed_zips_zipped_and_every_point_runs_once_per_seed(tmp_path):
    path = write(tmp_path, 'seeds = [0, 1, 2]\n[sweep.axes]\n"optim.lr" = [1e-3, 2e-3]\n'
                           '[sweep.zip]\n"loss.type" = ["bt", "aplot"]\n"loss.aplot.normalize_costs" = ["none", "minmax"]\n')
    sweep = sweep_spec.load(path)
    assert len(sweep.points) == 2 * 2 * 3
    combos = {(p.cfg.loss.type, p.cfg.loss.aplot.normalize_costs, p.cfg.optim.lr, p.seed) for p in sweep.points}
    assert len(combos) == 12
    assert ("bt", "minmax", 1e-3, 0) not in combos and ("aplot", "minmax", 2e-3, 2) in combos
    assert [p.index for p in sweep.points] == list(range(12))
    first = sweep.points[0]
    assert first.values == {"loss.type": "bt", "loss.aplot.normalize_costs": "none", "optim.lr": 1e-3}
    assert first.cfg.model.name == "tiny" and first.cfg.optim.max_steps == 6  # the base is kept


def test_an_inline_config_overrides_the_base_file_and_dotted_tables_mean_the_same_axis(tmp_path):
    path = write(tmp_path, 'seeds = [4]\n[sweep.axes.loss]\ntype = ["bt"]\n[config]\noptim.max_steps = 2\n')
    (point,) = sweep_spec.load(path).points
    assert (point.cfg.optim.max_steps, point.seed, point.cfg.seed, point.values) == (2, 4, 4, {"loss.type": "bt"})


@pytest.mark.parametrize(("body", "expected"), [
    ('[sweep.axes]\n"loss.typo" = ["bt"]\n', "[sweep.axes] loss.typo: unknown config field"),
    ('[sweep.axes]\n"loss.type" = []\n', "[sweep.axes] loss.type: empty axis"),
    ('[sweep.zip]\n"loss.type" = ["bt", "aplot"]\n"optim.lr" = [1e-3]\n',
     "[sweep.zip]: zipped axes must have the same length (loss.type has 2, optim.lr has 1)"),
    ('[sweep.axes]\n"loss.type" = ["bt", "hinge"]\n', 'axis loss.type = "hinge": must be one of'),
    ('[sweep.axes]\n"optim.lr" = [1e-3, -1.0]\n', "axis optim.lr = -1.0: must be > 0"),
    ('[sweep.axes]\n"optim.batch_size" = ["big"]\n', 'axis optim.batch_size = "big": expected int'),
    ('[sweep.axes]\n"seed" = [1, 2]\n', "seed: list the seeds in [sweep] seeds"),
    ('seeds = []\n', "[sweep] seeds: expected a non-empty list"),
    ('seeds = [1, 1]\n', "lists a seed twice"),
    ('paralel = 2\n', "[sweep] paralel: unknown key"),
])
def test_a_bad_sweep_file_is_refused_in_one_line_naming_the_axis_and_value(tmp_path, body, expected):
    path = write(tmp_path, body)
    with pytest.raises(C.ConfigError) as err:
        sweep_spec.load(path)
    (line,) = err.value.problems
    assert line.startswith(f"{path}: ") and expected in line, line


def test_a_bad_sweep_creates_nothing_and_the_cli_says_one_line(tmp_path, runs_dir):
    path = write(tmp_path, '[sweep.axes]\n"loss.type" = ["bt", "nope"]\n')
    line = one_line_error(aplot("sweep", path, runs_dir=runs_dir))
    assert 'axis loss.type = "nope"' in line
    assert list(runs_dir.iterdir()) == []
    # a missing data file in one point fails the same way, before the first run folder exists
    path = write(tmp_path, '[sweep.axes]\n"data.train" = ["synthetic", "missing.jsonl"]\n')
    line = one_line_error(aplot("sweep", path, runs_dir=runs_dir))
    assert "data.train: no such data file 'missing.jsonl'" in line and "run 1" in line
    assert list(runs_dir.iterdir()) == []


def test_the_shipped_sweep_files_expand_as_their_comments_say():
    from pathlib import Path

    examples = Path(__file__).resolve().parents[2] / "examples"
    sizes = {"tiny-losses": 6, "study-a": 6, "study-b": 9}
    for name, n in sizes.items():
        sweep = sweep_spec.load(examples / f"{name}.toml")
        assert len(sweep.points) == n and sweep.max_parallel == 2
        assert [p.seed for p in sweep.points][: n // 3] == [0] * (n // 3)  # whole seeds first
    a = sweep_spec.load(examples / "study-a.toml").points
    assert {(p.cfg.loss.type, p.cfg.loss.aplot.normalize_costs) for p in a} == {("bt", "none"), ("aplot", "minmax")}
    assert a[0].cfg.data.train.endswith("bench/.cache/data/a/train.jsonl")
    assert Path(a[0].cfg.data.train).is_absolute() or not Path(a[0].cfg.data.train).exists()
    assert (a[0].cfg.optim.lr, a[0].cfg.model.max_length, a[0].cfg.optim.batch_size) == (1e-4, 128, 16)
