"""The CLI's user-facing contract: one clear line and a non-zero exit for every mistake."""

import csv
import json
from pathlib import Path

import pytest
from _cli import aplot, one_line_error

from engine.runs import store as mf

ROOT = Path(__file__).resolve().parents[2]






def test_a_typo_names_where_it_was_made_and_the_nearest_field(tiny_config, runs_dir):
    proc = aplot("run", tiny_config, "optim.lrr=1e-3", runs_dir=runs_dir)
    assert one_line_error(proc) == "aplot: optim.lrr: unknown field (command line: optim.lrr=1e-3); did you mean optim.lr?"
    assert proc.returncode == 2
    tiny_config.write_text(tiny_config.read_text().replace("[optim]", "[optim]\nlrr = 1e-3"))
    proc = aplot("run", tiny_config, runs_dir=runs_dir)
    assert one_line_error(proc) == f"aplot: optim.lrr: unknown field ({tiny_config}); did you mean optim.lr?"
    assert proc.returncode == 2 and not list(runs_dir.iterdir())


def test_a_bad_override_of_a_preset_names_the_preset_and_the_command_line(runs_dir):
    proc = aplot("run", "--preset", "demo-rm", "optim.lr=-1", runs_dir=runs_dir)
    assert one_line_error(proc) == "aplot: optim.lr: must be > 0, got -1.0 (command line: optim.lr=-1, over preset demo-rm)"
    assert proc.returncode == 2 and not list(runs_dir.iterdir())


@pytest.mark.parametrize(("body", "expected"), [
    ('[sweep.axes]\n"loss.typo" = ["bt"]\n', "[sweep.axes] loss.typo: unknown config field; did you mean loss.type?"),
    # a check of two fields that an axis breaks is the axis's, not the base config's
    ('[sweep.zip]\n"ppo.advantage" = ["gae", "grpo"]\n',
     'axis ppo.advantage = "grpo": ppo.samples_per_prompt: grpo needs at least 2 samples per prompt'),
])
def test_a_bad_sweep_axis_names_the_sweep_file_and_the_axis(tiny_config, runs_dir, body, expected):
    sweep = tiny_config.parent / "sweep.toml"
    sweep.write_text(f'[sweep]\nbase = "{tiny_config.name}"\n{body}')
    proc = aplot("sweep", sweep, runs_dir=runs_dir)
    line = one_line_error(proc)
    assert line.startswith(f"aplot: {sweep}: ") and expected in line, line
    assert proc.returncode == 2 and not list(runs_dir.iterdir())


def test_a_bad_value_in_a_sweeps_base_file_names_that_file(tiny_config, runs_dir):
    tiny_config.write_text(tiny_config.read_text().replace("lr = 1e-3", "lr = -1"))
    sweep = tiny_config.parent / "sweep.toml"
    sweep.write_text(f'[sweep]\nbase = "{tiny_config.name}"\n[sweep.axes]\n"loss.type" = ["bt"]\n')
    line = one_line_error(aplot("sweep", sweep, runs_dir=runs_dir))
    assert line == f"aplot: {sweep}: base config: optim.lr: must be > 0, got -1.0 ({tiny_config.resolve()})"


@pytest.mark.parametrize("override, expected", [
    ("loss.aplot.epsilon=-1", "loss.aplot.epsilon: must be > 0, got -1.0"),
    ('loss.type="bogus"', "loss.type: must be one of bt | bt_margin | label_smoothing | aplot, got 'bogus'"),
])
def test_bad_fields_are_one_line(tiny_config, runs_dir, override, expected):
    line = one_line_error(aplot("run", tiny_config, override, runs_dir=runs_dir))
    assert line == f"aplot: {expected} (command line: {override})"  # the override, not the file, set it


def test_malformed_toml(tmp_path, runs_dir):
    p = tmp_path / "bad.toml"
    p.write_text("[optim\n")
    assert "malformed TOML" in one_line_error(aplot("run", p, runs_dir=runs_dir))


def test_missing_data_file(tiny_config, runs_dir):
    line = one_line_error(aplot("run", tiny_config, 'data.train="nope.jsonl"', runs_dir=runs_dir))
    assert "data.train: no such data file 'nope.jsonl'" in line
    assert not list(runs_dir.iterdir())  # nothing launched


def test_unknown_run_and_path_escape(runs_dir):
    assert "no such run" in one_line_error(aplot("show", "zzzz", runs_dir=runs_dir))
    assert "not a run id" in one_line_error(aplot("stop", "../../etc", runs_dir=runs_dir))


def test_init_writes_a_config_that_runs_validation(tmp_path):
    out = tmp_path / "a.toml"
    proc = aplot("init", out)
    assert proc.returncode == 0 and out.exists()
    from engine import config as C

    assert C.load(out) == C.Config()  # every field written back as its default
    assert one_line_error(aplot("init", out)) == f"aplot: {out}: exists (use --force to overwrite)"


def test_ls_json_lines_and_csv_on_an_empty_and_a_filled_store(runs_dir):
    assert aplot("ls", "--json", runs_dir=runs_dir).stdout == ""  # JSON lines: no run, no line
    paths = mf.run_paths(runs_dir, mf.new_run_id("alpha", "rm", "bt"))
    mf.create(paths, name="alpha", kind="rm", config={"loss": {"type": "bt"}}, tags=["baseline"])
    mf.update(paths, status="completed", summary={"eval/heldout/accuracy": 0.7}, error="disk full")
    other = mf.run_paths(runs_dir, mf.new_run_id("beta", "rm", "bt"))
    mf.create(other, name="beta", kind="rm", config={"loss": {"type": "bt"}})
    mf.update(other, status="completed", summary={"eval/heldout/accuracy": 0.9})
    rows = [json.loads(line) for line in aplot("ls", "--json", runs_dir=runs_dir).stdout.splitlines()]
    assert [r["id"] for r in rows] == [paths.id, other.id]  # one object per line
    assert rows[0]["status"] == "completed" and rows[0]["loss"] == "bt" and rows[0]["tags"] == ["baseline"]
    assert rows[0]["metrics"]["eval/heldout/accuracy"] == 0.7
    best_first = aplot("ls", "--json", "--sort", "eval/heldout/accuracy", "-r", runs_dir=runs_dir).stdout
    assert [json.loads(line)["id"] for line in best_first.splitlines()] == [other.id, paths.id]
    table = list(csv.DictReader(aplot("ls", "--csv", runs_dir=runs_dir).stdout.splitlines()))
    assert table[0]["id"] == paths.id and table[0]["error"] == "disk full"
    assert table[1]["eval/heldout/accuracy"] == "0.9"
    assert aplot("ls", "--filter", "zzz", "--json", runs_dir=runs_dir).stdout == ""
    assert "--sort" in one_line_error(aplot("ls", "--sort", "bogus", runs_dir=runs_dir))


@pytest.mark.parametrize(("option", "value", "allowed"), [
    ("--kind", "foo", "rm | ppo | dpo | eval"),
    ("--status", "bogus", "created | queued | running | completed | failed | stopped | crashed"),
])
def test_ls_refuses_a_kind_or_status_that_does_not_exist(runs_dir, option, value, allowed):
    proc = aplot("ls", option, value, runs_dir=runs_dir)
    assert one_line_error(proc) == f"aplot: {option}: must be one of {allowed}, got {value!r}"
    assert proc.returncode == 2
    assert "eval" in aplot("ls", "--help").stdout.split("--kind")[1].split("--")[0]
