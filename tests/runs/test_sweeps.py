"""Sweeps on the tiny model through the real CLI: two losses × three seeds, two at a time.

Concurrency is read back from the manifests (each run's launch and finish times), never from
sleeps; the scheduler is killed with SIGKILL at a chosen moment (after the first run has finished)
and a claimed-but-never-launched run is made by hand, which is exactly what a scheduler killed
between its claim and its spawn leaves behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
from datetime import datetime

import pytest
from _cli import aplot
from _procs import wait_for
from conftest import TINY_RM

from aplot_tui.views import run_data, significance
from engine.analysis import predictions as P
from engine.runs import status as S
from engine.runs import store as mf
from engine.runs import sweeps as sweep

AXES = '\n[sweep.axes]\n"loss.type" = ["bt", "aplot"]\n'


@pytest.fixture
def sweep_file(tmp_path):
    def make(config: str = "", seeds: str = "[0, 1, 2]") -> str:
        (tmp_path / "tiny.toml").write_text(TINY_RM)
        path = tmp_path / "sweep.toml"
        path.write_text(f'[sweep]\nname = "losses"\nbase = "tiny.toml"\nseeds = {seeds}\n' + AXES
                        + (f"[config]\n{config}\n" if config else ""))
        return str(path)

    return make


@pytest.fixture(autouse=True)
def _no_scheduler_left(runs_dir):
    yield
    for sweep_id in sweep.list_ids(runs_dir):
        pid = sweep.read_state(runs_dir, sweep_id).get("scheduler_pid")
        if pid and sweep.scheduler_alive(runs_dir, sweep_id):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


def start(path: str, runs_dir) -> str:
    proc = aplot("sweep", path, "--max-parallel", "2", "--detach", runs_dir=runs_dir)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def states(runs_dir, sweep_id: str) -> list[sweep.RunState]:
    return sweep.run_states(runs_dir, sweep.read_state(runs_dir, sweep_id))


def wait_done(runs_dir, sweep_id: str, timeout: float = 420) -> None:
    wait_for(lambda: sweep.sweep_status(runs_dir, sweep_id) != "running", timeout, "the sweep to end", poll=0.2)


def most_at_once(manifests: list[dict]) -> int:
    """The largest number of runs alive at one instant, from launched_at → finished_at (an end and a
    start in the same second count as end first: the scheduler starts a run only after one ended)."""
    events = []
    for m in manifests:
        events.append((datetime.fromisoformat(m["launched_at"]).timestamp(), 1))
        events.append((datetime.fromisoformat(m["finished_at"]).timestamp(), -1))
    alive = peak = 0
    for _, change in sorted(events):  # (t, -1) sorts before (t, +1)
        alive += change
        peak = max(peak, alive)
    return peak


def launches(paths: mf.RunPaths) -> int:
    return paths.log.read_text().count("[aplot] launch:") + paths.log.read_text().count("[aplot] resume:")


@pytest.mark.heavy
def test_a_2x2_sweep_runs_every_run_once_never_more_than_two_at_a_time(sweep_file, runs_dir):
    sweep_id = start(sweep_file(seeds="[0, 1]"), runs_dir)  # four runs, two slots
    first = states(runs_dir, sweep_id)
    assert len(first) == 4  # all created up front, queued (or just claimed by the scheduler)
    assert {s.manifest["sweep"]["seed"] for s in first} == {0, 1}
    assert all(f"sweep:{sweep_id}" in s.manifest["tags"] for s in first)
    wait_done(runs_dir, sweep_id)
    done = states(runs_dir, sweep_id)
    assert [s.status for s in done] == ["completed"] * 4, [s.manifest.get("error") for s in done]
    assert [launches(s.paths) for s in done] == [1] * 4
    assert most_at_once([s.manifest for s in done]) == 2
    assert {(s.manifest["sweep"]["axes"]["loss.type"], s.manifest["sweep"]["seed"]) for s in done} == {
        (loss, seed) for loss in ("bt", "aplot") for seed in (0, 1)}
    # every eval left its per-pair rewards: 24 held-out pairs, 12 bytes each plus the header
    pred = P.read(done[0].paths.dir, "heldout")
    assert pred is not None and pred.step == 6 and len(pred.index) == 24
    assert (done[0].paths.dir / "predictions" / "heldout" / "step-6.npy").stat().st_size <= 24 * 16 + 256
    # and compare sees two groups over two seeds
    runs = [run_data.load_run(s.paths) for s in done]
    analysis = significance.analyse(runs)
    assert analysis.group_labels == ["loss.type=bt", "loss.type=aplot"]  # the full field
    assert analysis.groups[0].result.seeds == [0, 1]
    out = aplot("sweep", "show", sweep_id, runs_dir=runs_dir).stdout
    assert "4/4 done" in out and sum(" completed " in line for line in out.splitlines()[2:]) == 4


@pytest.mark.heavy
def test_a_killed_scheduler_resumes_and_finishes_the_rest_with_no_run_started_twice(sweep_file, runs_dir):
    sweep_id = start(sweep_file(seeds="[0, 1]"), runs_dir)  # 2 x 2: one done, one running, two queued
    wait_for(lambda: any(s.status == "completed" for s in states(runs_dir, sweep_id)), 300, "a first run to finish")
    pid = int(sweep.read_state(runs_dir, sweep_id)["scheduler_pid"])
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not sweep.scheduler_alive(runs_dir, sweep_id), 30, "the scheduler's lock to drop")
    # what a scheduler killed between its claim and its spawn leaves: claimed, never launched
    queued = [s for s in states(runs_dir, sweep_id) if s.status == "queued"]
    assert queued, "the sweep finished before the kill; nothing left to resume"
    assert mf.claim(queued[-1].paths, "queued", status="created", sweep={"claimed_at": mf.now_iso()})
    assert sweep.sweep_status(runs_dir, sweep_id) in ("running", "stopped")
    proc = aplot("sweep", "resume", sweep_id, runs_dir=runs_dir, timeout=420)
    assert proc.returncode == 0, proc.stderr
    done = states(runs_dir, sweep_id)
    assert [s.status for s in done] == ["completed"] * 4
    assert [launches(s.paths) for s in done] == [1] * 4
    assert most_at_once([s.manifest for s in done]) <= 2
    log = (sweep.sweep_dir(runs_dir, sweep_id) / sweep.LOG).read_text()
    assert f"{queued[-1].paths.id}: claimed but never launched; back in the queue" in log


def test_sweep_stop_leaves_queued_runs_queued_and_stops_running_ones_with_checkpoints(sweep_file, runs_dir):
    sweep_id = start(sweep_file("optim.max_steps = 5000\ncheckpoint.every = 0\neval.every = 0"), runs_dir)

    def two_training():
        live = [s for s in states(runs_dir, sweep_id) if s.status == "running"]
        return len(live) == 2 and all(s.paths.metrics.exists() and s.paths.metrics.stat().st_size for s in live)

    wait_for(two_training, 180, "two runs to be training")
    proc = aplot("sweep", "stop", sweep_id, runs_dir=runs_dir, timeout=180)
    assert proc.returncode == 0, proc.stderr
    after = states(runs_dir, sweep_id)
    assert sorted(s.status for s in after) == ["queued"] * 4 + ["stopped"] * 2
    stopped = [s for s in after if s.status == "stopped"]
    assert all(mf.checkpoint_steps(s.paths) for s in stopped)  # each stopped at a step with its checkpoint
    assert not sweep.scheduler_alive(runs_dir, sweep_id)
    assert sweep.sweep_status(runs_dir, sweep_id) == "stopped"
    assert all(not mf.launched(s.manifest) for s in after if s.status == "queued")
    # resume continues the stopped runs from their checkpoints (and would then start the queue)
    assert aplot("sweep", "resume", sweep_id, "--detach", runs_dir=runs_dir).returncode == 0
    wait_for(lambda: all(mf.read(s.paths).get("resume_count") == 1 and S.effective(s.paths) == "running"
                         for s in stopped), 180, "the stopped runs to resume")
    sweep.stop(runs_dir, sweep_id, grace=30)
    assert sorted(s.status for s in states(runs_dir, sweep_id)) == ["queued"] * 4 + ["stopped"] * 2


def test_create_queues_every_run_seed_by_seed_and_starts_nothing(sweep_file, runs_dir):
    from engine.runs import sweep_spec

    sweep_id = sweep.create(sweep_spec.load(sweep_file()), runs_dir)
    got = states(runs_dir, sweep_id)
    assert [(s.manifest["sweep"]["seed"], s.manifest["sweep"]["axes"]["loss.type"]) for s in got] == [
        (seed, loss) for seed in (0, 1, 2) for loss in ("bt", "aplot")]  # whole seeds first
    assert all(s.status == "queued" and not mf.launched(s.manifest) for s in got)
    assert all({f"sweep:{sweep_id}", f"loss.type={s.manifest['sweep']['axes']['loss.type']}"} <= set(s.manifest["tags"])
               for s in got)
    assert not sweep.scheduler_alive(runs_dir, sweep_id) and sweep.sweep_status(runs_dir, sweep_id) == "stopped"
    assert (sweep.sweep_dir(runs_dir, sweep_id) / sweep.SPEC).read_text() == open(sweep_file()).read()


def test_a_claimed_run_whose_launcher_holds_its_lock_is_never_requeued(sweep_file, runs_dir):
    """The window b9ab2f5 closed, forced: two runs claimed, neither with launched_at; one's liveness
    lock is held (its launcher started, the scheduler died before noting it). Only the other goes back
    in the queue, so a resumed sweep cannot start the first a second time."""
    from engine.runs import liveness, sweep_spec

    sweep_id = sweep.create(sweep_spec.load(sweep_file(seeds="[0]")), runs_dir)  # two runs, nothing started
    alive, dead = states(runs_dir, sweep_id)
    for rs in (alive, dead):
        assert mf.claim(rs.paths, S.QUEUED, status=S.CREATED, sweep={"claimed_at": mf.now_iso()})
    fd = liveness.hold(alive.paths.dir)  # the launcher's hold
    try:
        assert sweep.requeue_unlaunched(runs_dir, sweep.read_state(runs_dir, sweep_id)) == [dead.paths.id]
        assert mf.read(alive.paths)["status"] == S.CREATED and mf.read(dead.paths)["status"] == S.QUEUED
    finally:
        os.close(fd)
    # once the launcher is gone without a trace, the run was never started: it is queued again
    assert sweep.requeue_unlaunched(runs_dir, sweep.read_state(runs_dir, sweep_id)) == [alive.paths.id]
