import os
import subprocess
import sys
import time
import tomllib

import pytest
from _procs import fake_trainer, is_zombie, wait_exited

from engine.runs import liveness
from engine.runs import status as S
from engine.runs import store as mf


def _new(root, name="x"):
    paths = mf.run_paths(root, mf.new_run_id(name, "rm", "bt"))
    mf.create(paths, name=name, kind="rm", config={"seed": 0})
    return paths


def test_run_ids_sort_by_creation_and_validate(tmp_path):
    rid = mf.new_run_id("HH aplot!", "rm", "aplot")
    assert mf.RUN_ID_RE.match(rid) and "-rm-aplot-hh-aplot-" in rid
    for bad in ["../x", "a/b", "..", "", "/etc/passwd", "20261129-2115-x/../../y", "null\x00", "CON"]:
        with pytest.raises(mf.RunError):
            mf.run_paths(tmp_path, bad)


def test_create_update_merges_tables_and_writes_atomically(tmp_path):
    paths = _new(tmp_path)
    mf.update(paths, summary={"a": 1})
    mf.update(paths, summary={"b": 2}, status="running", pid=None)
    m = mf.read(paths)
    assert m["summary"] == {"a": 1, "b": 2} and m["status"] == "running" and "pid" not in m
    assert not [p for p in paths.dir.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(mf.RunError):
        mf.create(paths, name="x", kind="rm", config={})


def test_a_writer_killed_mid_write_leaves_the_old_manifest_intact(tmp_path):
    paths = _new(tmp_path)
    before = paths.manifest.read_text()
    # a child process starts an atomic write of a huge manifest and is SIGKILLed while writing
    code = (
        "import os, signal, sys\n"
        "from engine.runs import store as mf\n"
        "orig = os.fsync\n"
        "def die(fd):\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "os.fsync = die\n"
        f"mf.write_atomic(mf.RunPaths(__import__('pathlib').Path({str(paths.dir)!r})).manifest, 'x' * 10_000_000)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=os.getcwd())
    assert proc.returncode == -9
    assert paths.manifest.read_text() == before
    tomllib.loads(before)


def test_running_is_alive_exactly_while_a_process_holds_the_lock(tmp_path):
    paths = _new(tmp_path)
    proc = fake_trainer(paths.dir, paths.id)
    mf.update(paths, status="running", pid=proc.pid, host=liveness.this_host())
    assert S.effective(paths) == "running"
    proc.stdin.close()
    proc.wait()
    assert S.effective(paths) == "crashed"


def test_a_killed_trainer_left_a_zombie_is_crashed_at_once(tmp_path):
    """The flake this rule replaced: an unreaped (zombie) rank still answers kill(pid, 0)."""
    paths = _new(tmp_path)
    proc = fake_trainer(paths.dir, paths.id)
    mf.update(paths, status="running", pid=proc.pid, host=liveness.this_host())
    proc.kill()
    wait_exited([proc.pid])  # exited, deliberately not reaped
    try:
        assert is_zombie(proc.pid)
        os.kill(proc.pid, 0)  # the pid still "exists"
        assert S.effective(paths) == "crashed"
    finally:
        proc.wait()


def test_a_live_pid_without_the_lock_is_not_the_run(tmp_path):
    """A reused pid (or any process that is not the run's) holds no lock: the run is crashed."""
    paths = _new(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()", paths.id],
                            stdin=subprocess.PIPE, start_new_session=True)
    try:
        mf.update(paths, status="running", pid=proc.pid, host=liveness.this_host())
        assert S.effective(paths) == "crashed"
    finally:
        proc.stdin.close()
        proc.wait()


def test_a_run_on_another_host_is_judged_by_its_heartbeat(tmp_path):
    paths = _new(tmp_path)
    mf.update(paths, status="running", pid=4242, host="gpu-node-17")  # a pid of that host means nothing here
    stale = liveness.STALE_AFTER * liveness.HEARTBEAT_S
    liveness.beat(paths.dir, now=time.time() - stale - 1)
    assert S.effective(paths) == "crashed"
    liveness.beat(paths.dir, now=time.time() - stale + 5)
    assert S.effective(paths) == "running"
    liveness.beat(paths.dir)
    assert S.effective(paths) == "running"
    # the other host's lock file is not consulted: a lock held here says nothing about that host
    mf.update(paths, host=liveness.this_host())
    assert S.effective(paths) == "crashed"


def test_a_created_run_is_created_until_launched(tmp_path):
    paths = _new(tmp_path)
    assert S.effective(paths) == "created"  # never launched: queued, not crashed
    mf.update(paths, launched_at=mf.now_iso(), host=liveness.this_host())
    assert S.effective(paths) == "crashed"  # launched, and nothing of it is left


def test_the_heartbeat_thread_beats_and_stops(tmp_path):
    hb = liveness.Heartbeat(tmp_path, interval=0.01).start()
    first = liveness.last_beat(tmp_path)
    assert first is not None and abs(first - time.time()) < 5
    deadline = time.monotonic() + 10
    while liveness.last_beat(tmp_path) == first and time.monotonic() < deadline:
        time.sleep(0.005)  # waiting for the thread's next beat, not for a race to settle
    assert liveness.last_beat(tmp_path) > first
    hb.stop()


def test_find_run_by_unique_part(tmp_path):
    a = _new(tmp_path, "alpha")
    _new(tmp_path, "beta")
    assert mf.find_run(tmp_path, a.id).id == a.id
    assert mf.find_run(tmp_path, a.id[-4:]).id == a.id
    assert mf.find_run(tmp_path, "bt-alpha").id == a.id  # any part of the id that only it has
    assert mf.find_run(tmp_path, "beta").id != a.id  # or its name
    with pytest.raises(mf.RunError, match="ambiguous"):
        mf.find_run(tmp_path, "-rm-bt-")
    with pytest.raises(mf.RunError):
        mf.find_run(tmp_path, "2026")  # ambiguous (both start with the year) or none
    with pytest.raises(mf.RunError):
        mf.find_run(tmp_path, "../x")


def test_list_runs_skips_unreadable_folders(tmp_path):
    good = _new(tmp_path)
    bad = tmp_path / "20260101-000000-rm-broken-0000"
    bad.mkdir()
    (bad / "manifest.toml").write_text("not = [toml")
    assert [p.id for p, _ in mf.list_runs(tmp_path)] == [good.id]


def test_checkpoint_steps_need_the_done_marker(tmp_path):
    paths = _new(tmp_path)
    for step, done in ((3, True), (6, False), (12, True)):
        d = paths.checkpoints / f"step-{step}"
        d.mkdir(parents=True)
        if done:
            (d / "done").write_text("")
    assert mf.checkpoint_steps(paths) == [3, 12]
