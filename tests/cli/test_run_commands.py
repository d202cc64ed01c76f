"""The commands around a run, end to end through the CLI: follow, logs, run --from, tag, note, archive,
rm, and the demo's overrides and --detach. Runs that need no training are made with engine.runs.store
(a fake trainer holds a live one's lock); the rest share the demo's two runs, trained once."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from _cli import ROOT, aplot, one_line_error
from _procs import fake_trainer, wait_exited, wait_for

from engine import metrics as M
from engine.runs import liveness
from engine.runs import status as S
from engine.runs import store as mf

DEMO_SMALL = ("optim.max_steps=2", "eval.every=2", "data.synthetic_pairs=300", "ppo.sft_steps=1",
              "ppo.win_rate_every=2", "ppo.bon_samples=2", "ppo.eval_prompts=8", "rm:model.tiny.hidden_size=32")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """(store, RM run, PPO run, what `aplot run --preset demo … --detach` said): the demo, detached,
    followed to its end; the trained runs the other tests read."""
    runs = tmp_path_factory.mktemp("demo") / "runs"
    proc = aplot("run", "--preset", "demo", *DEMO_SMALL, "--detach", runs_dir=runs)
    assert proc.returncode == 0, proc.stderr
    rm_paths = mf.find_run(runs, proc.stdout.strip())
    assert aplot("follow", rm_paths.id, "-q", runs_dir=runs).returncode == 0
    ppo = wait_for(lambda: [p for p, m in mf.list_runs(runs) if m["kind"] == "ppo"], 60, "the PPO half")[0]
    assert aplot("follow", ppo.id, "-q", runs_dir=runs).returncode == 0
    chain = [int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit()
             and b"demo-ppo-half" in _cmdline(d) and rm_paths.id.encode() in _cmdline(d)]
    wait_exited(chain, 30)  # the background aplot that started the PPO half is gone too
    return runs, rm_paths, ppo, proc


@pytest.fixture(scope="module")
def done(demo):
    """(store, run): a completed RM run (the demo's first half)."""
    return demo[0], demo[1]


def _cmdline(d: Path) -> bytes:
    try:
        return (d / "cmdline").read_bytes()
    except OSError:
        return b""


def _fake(root, name, kind="rm", **changes) -> mf.RunPaths:
    paths = mf.run_paths(root, mf.new_run_id(name, kind))
    mf.create(paths, name=name, kind=kind, config={"kind": kind, "loss": {"type": "bt"}})
    if changes:
        mf.update(paths, **changes)
    return paths


def _live(root, name):
    """A run whose record says running and whose lock a stand-in trainer holds: (paths, that process)."""
    paths = _fake(root, name)
    trainer = fake_trainer(paths.dir)
    mf.update(paths, status=S.RUNNING, pid=trainer.pid, host=liveness.this_host(), launched_at=mf.now_iso())
    return paths, trainer


def _end(trainer: subprocess.Popen) -> None:
    trainer.stdin.close()
    trainer.wait(30)


def _hears_ctrl_c() -> None:
    """In the child before exec: SIGINT as a terminal's foreground job has it, even when this suite runs
    as a background job with SIGINT ignored (which the child would inherit, and so never hear Ctrl-C)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _follow(runs, paths, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "aplot_tui.cli", "--runs-dir", str(runs), "follow", paths.id, *args],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, preexec_fn=_hears_ctrl_c)  # noqa: PLW1509 - no threads yet


# --------------------------------------------------------------------------- follow, logs


def test_train_log_has_no_accelerate_thread_warning(done):
    _, paths = done
    log = paths.log.read_text()
    assert "--num_cpu_threads_per_process 1" in log  # passed by the launch, threads = 1
    assert "num_cpu_threads_per_process` was set" not in log


def test_follow_a_run_it_did_not_start_to_its_end_and_exit_status(runs_dir):
    paths, trainer = _live(runs_dir, "far")
    try:
        watcher = _follow(runs_dir, paths)
        writer = M.MetricsWriter(paths.metrics)
        writer.write(1, M.TRAIN, {M.LOSS: 0.5})
        # a record with the accuracy and the sections' mean: one line for it, not one per key
        writer.write(2, M.eval_split(M.HELDOUT), {M.ACCURACY: 0.75, M.SECTIONS_MEAN: 0.5})
        writer.close()
        wait_for(lambda: mf.read(paths) and paths.metrics.exists(), 5, "the metrics")
        assert watcher.poll() is None  # the lock is held: still going
        mf.update(paths, status=S.STOPPED, exit_code=130)
    finally:
        _end(trainer)
    out, errs = watcher.communicate(timeout=60)
    assert watcher.returncode == 130, errs
    assert errs.count("step 2 eval/heldout:") == 1, errs
    assert f"aplot: run {paths.id} stopped (log: {paths.log})" in errs


def test_ctrl_c_on_follow_leaves_the_run_going(runs_dir):
    paths, trainer = _live(runs_dir, "stays")
    try:
        writer = M.MetricsWriter(paths.metrics)
        writer.write(3, M.eval_split(M.HELDOUT), {M.ACCURACY: 0.5})
        writer.close()
        watcher = _follow(runs_dir, paths)
        assert "step 3 eval/heldout" in watcher.stderr.readline()  # it is following now
        watcher.send_signal(signal.SIGINT)
        _, errs = watcher.communicate(timeout=30)
        assert watcher.returncode == 130, errs
        assert f"{paths.id} goes on" in errs and "Traceback" not in errs
        assert S.effective(paths) == S.RUNNING and trainer.poll() is None
    finally:
        _end(trainer)


def test_follow_of_a_completed_run_and_logs(done):
    runs, paths = done
    proc = aplot("follow", paths.id, "-q", runs_dir=runs)
    assert proc.returncode == 0 and proc.stdout.startswith(f"{paths.id}: completed"), proc.stderr
    logs = aplot("logs", paths.id, runs_dir=runs)
    assert logs.returncode == 0 and logs.stdout == paths.log.read_text()
    assert aplot("logs", "-f", paths.id, runs_dir=runs).stdout == logs.stdout  # ended: prints all, returns


def test_logs_follow_prints_until_the_run_ends(runs_dir):
    paths, trainer = _live(runs_dir, "chatty")
    try:
        paths.log.write_text("first\n")
        reader = subprocess.Popen([sys.executable, "-m", "aplot_tui.cli", "--runs-dir", str(runs_dir), "logs", "-f",
                                   paths.id], cwd=ROOT, stdout=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        assert reader.stdout.readline() == "first\n"
        with open(paths.log, "a") as fh:
            fh.write("second\n")
        assert reader.stdout.readline() == "second\n"
        assert reader.poll() is None
        mf.update(paths, status=S.COMPLETED)
    finally:
        _end(trainer)
    assert reader.wait(30) == 0


def test_show_prints_config_data_resumes_and_checkpoints(done, runs_dir):
    runs, paths = done
    shown = aplot("show", paths.id, runs_dir=runs).stdout
    assert "\ndata train: synthetic  (sha256 " in shown and "\ndata eval heldout: 0.1 of train\n" in shown
    config = shown.split("\n[config]")[1]
    assert "\n  [optim]\n" in config and "\n  max_steps = 2\n" in config
    assert "\ncheckpoints: step-2  best\n" in shown
    resumed = _fake(runs_dir, "again", status=S.COMPLETED, resume_count=2, resumed_at="2026-12-01T10:00:00+00:00",
                    world_size_changes=["resumed on 2 processes from 1: the effective batch is kept"])
    shown = aplot("show", resumed.id, runs_dir=runs_dir).stdout
    assert "resumed 2 time(s), last at 2026-12-01T10:00:00+00:00\nresume note: resumed on 2 processes" in shown


# --------------------------------------------------------------------------- run --from


def test_run_from_a_run_uses_its_config_with_overrides(done, tmp_path):
    runs, paths = done
    bad = aplot("run", "--from", paths.id, "optim.lr=-1", runs_dir=runs)
    assert one_line_error(bad) == f"aplot: optim.lr: must be > 0, got -1.0 (command line: optim.lr=-1, over run {paths.id})"
    before = {p.id for p, _ in mf.list_runs(runs)}
    assert bad.returncode == 2 and len(before) == 2  # the demo's two
    proc = aplot("run", "--from", paths.id, "optim.max_steps=3", 'name="again"', "-q", runs_dir=runs)
    assert proc.returncode == 0, proc.stderr
    (again,) = [p for p, _ in mf.list_runs(runs) if p.id not in before]
    try:
        old, new = mf.read(paths)["config"], mf.read(again)["config"]
        assert new["optim"]["max_steps"] == 3 and new["name"] == "again"
        new["optim"]["max_steps"], new["name"] = old["optim"]["max_steps"], old["name"]
        assert new == old
        assert mf.read(again)["resolved"]["total_steps"] == 3
    finally:
        mf.remove(again)  # the module's store keeps its one run


# --------------------------------------------------------------------------- tag, note, archive, rm


def test_tag_and_note_show_in_ls_and_show(runs_dir):
    paths = _fake(runs_dir, "keep", status=S.COMPLETED)
    assert aplot("tag", paths.id, "+hh", "+base", "+hh", runs_dir=runs_dir).stdout.strip() == f"{paths.id}: tags hh, base"
    assert aplot("tag", paths.id, "--", "-hh", "+new", runs_dir=runs_dir).returncode == 0
    assert mf.read(paths)["tags"] == ["base", "new"]
    assert "+TAG" in one_line_error(aplot("tag", paths.id, "hh", runs_dir=runs_dir))
    aplot("note", paths.id, "lr too high", runs_dir=runs_dir)
    aplot("note", "-a", paths.id, "try 1e-4", runs_dir=runs_dir)
    assert mf.read(paths)["notes"] == "lr too high\ntry 1e-4"
    line = aplot("ls", runs_dir=runs_dir).stdout.splitlines()[1]
    assert line.endswith("[base, new]  # lr too high"), line
    shown = aplot("show", paths.id, runs_dir=runs_dir).stdout
    assert "tags: base, new\nnotes: lr too high\n       try 1e-4\n" in shown
    assert aplot("ls", "--tag", "new", "--json", runs_dir=runs_dir).stdout.count("\n") == 1


def test_archive_hides_a_run_from_ls_until_all(runs_dir):
    paths = _fake(runs_dir, "old", status=S.COMPLETED)
    assert aplot("archive", paths.id, runs_dir=runs_dir).returncode == 0
    assert aplot("ls", runs_dir=runs_dir).stdout == f"no runs in {runs_dir} (1 archived: ls --all)\n"
    (listed,) = [json.loads(line) for line in aplot("ls", "--all", "--json", runs_dir=runs_dir).stdout.splitlines()]
    assert listed["id"] == paths.id and listed["archived"] is True
    aplot("archive", "--undo", paths.id, runs_dir=runs_dir)
    assert paths.id in aplot("ls", runs_dir=runs_dir).stdout


def test_rm_asks_refuses_a_live_run_and_deletes_with_yes(runs_dir):
    gone = _fake(runs_dir, "gone", status=S.COMPLETED)
    asked = aplot("rm", gone.id, runs_dir=runs_dir)  # no terminal to ask on
    assert "pass --yes" in one_line_error(asked) and asked.returncode == 2 and gone.dir.exists()
    paths, trainer = _live(runs_dir, "busy")
    try:
        live = aplot("rm", "--yes", gone.id, paths.id, runs_dir=runs_dir)
        assert one_line_error(live) == f"aplot: {paths.id}: is running; stop it first (aplot stop {paths.id})"
        assert live.returncode == 2 and gone.dir.exists() and paths.dir.exists()  # none deleted
    finally:
        _end(trainer)
    proc = aplot("rm", "-y", gone.id, runs_dir=runs_dir)
    assert proc.returncode == 0 and not gone.dir.exists() and proc.stdout == f"{gone.id}: deleted\n"


# --------------------------------------------------------------------------- the demo


def test_a_bad_override_of_the_demo_is_refused_for_the_half_it_reaches(runs_dir):
    line = one_line_error(aplot("run", "--preset", "demo", "ppo.kl_coef=-1", runs_dir=runs_dir))
    assert line == "aplot: ppo.kl_coef: must be >= 0, got -1.0 (command line: ppo.kl_coef=-1, over preset demo-ppo)"
    assert not list(runs_dir.iterdir())


def test_the_demo_detaches_and_its_overrides_reach_both_halves(demo):
    runs_dir, rm_paths, ppo, proc = demo
    assert "note: optim.max_steps: set in both halves of the demo (rm and ppo)" in proc.stderr
    rm_cfg, ppo_cfg = mf.read(rm_paths)["config"], mf.read(ppo)["config"]
    assert rm_cfg["optim"]["max_steps"] == 2 and ppo_cfg["optim"]["max_steps"] == 2
    assert rm_cfg["model"]["tiny"]["hidden_size"] == 32 and ppo_cfg["model"]["tiny"]["hidden_size"] == 64
    assert ppo_cfg["ppo"]["sft_steps"] == 1 and mf.read(ppo)["links"]["reward_model_run"] == rm_paths.id
    shown = aplot("show", ppo.id, runs_dir=runs_dir).stdout
    assert "\n[best-of-n of the reference]\n" in shown and f"reward_model_run = {rm_paths.id}" in shown
    assert "data prompts: synthetic" in shown
