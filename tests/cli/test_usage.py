"""Usage mistakes at the command line: one plain line (no click class names), exit 2, and `--version`."""

import pytest
from _cli import aplot, one_line_error

from engine.runs import store as mf


@pytest.mark.parametrize(("args", "expected"), [
    (("run", "--bogus"), "aplot: run: no such option: --bogus (see aplot run --help)"),
    (("show",), "aplot: show: missing argument 'RUN' (see aplot show --help)"),
    (("zzzz",), "aplot: no such command 'zzzz' (see aplot --help)"),
])
def test_a_usage_mistake_is_one_plain_line_and_exit_2(runs_dir, args, expected):
    proc = aplot(*args, runs_dir=runs_dir)
    assert one_line_error(proc) == expected
    assert proc.returncode == 2


def test_version():
    from importlib.metadata import version

    proc = aplot("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"aplot {version('aplot')}"


def _fake_run(root, name, kind="rm", **changes):
    paths = mf.run_paths(root, mf.new_run_id(name, kind))
    mf.create(paths, name=name, kind=kind, config={"kind": kind})
    if changes:
        mf.update(paths, **changes)
    return paths


def test_an_ambiguous_reference_says_how_many_runs_it_matches(runs_dir):
    made = sorted(_fake_run(runs_dir, f"r{i}").id for i in range(6))
    line = one_line_error(aplot("show", "rm-r", runs_dir=runs_dir))
    assert line == f"aplot: rm-r: ambiguous, matches 6 runs: {', '.join(made[:4])} and 2 more"


def test_eval_of_an_eval_run_says_an(runs_dir):
    paths = _fake_run(runs_dir, "scored", kind="eval", status="completed")
    line = one_line_error(aplot("eval", paths.id, runs_dir=runs_dir))
    assert line == f"aplot: {paths.id}: is an eval run; aplot eval scores reward models"
