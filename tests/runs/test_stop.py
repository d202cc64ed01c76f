"""`lifecycle.stop`'s last resort reaches the ranks, which torch starts outside the run's process group."""

from __future__ import annotations

import os
import subprocess
import sys

from _procs import fake_trainer

from engine.runs import lifecycle, liveness
from engine.runs import status as S
from engine.runs import store as mf

# a rank that a stop cannot end gently (a hung collective, say): it ignores SIGINT and SIGTERM
DEAF_RANK = ("import signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
             "signal.signal(signal.SIGTERM, signal.SIG_IGN); sys.stdin.read()")


def test_a_rank_in_a_session_of_its_own_that_ignores_the_stop_is_killed_with_the_launcher(runs_dir):
    paths = mf.run_paths(runs_dir, mf.new_run_id("deaf", "rm"))
    mf.create(paths, name="deaf", kind="rm", config={"kind": "rm", "loss": {"type": "bt"}})
    run_dir = ["--run-dir", str(paths.dir.resolve())]
    launcher = fake_trainer(paths.dir, *run_dir)  # dies at the SIGINT, as an agent killed mid-shutdown
    fd = liveness.hold(paths.dir, inheritable=True)
    try:  # as torch's elastic agent starts a rank: start_new_session, out of the launcher's group
        rank = subprocess.Popen([sys.executable, "-c", DEAF_RANK, *run_dir], stdin=subprocess.PIPE,
                                start_new_session=True, pass_fds=(fd,))
    finally:
        os.close(fd)
    try:
        mf.update(paths, status=S.RUNNING, pid=launcher.pid, host=liveness.this_host(), launched_at=mf.now_iso())
        assert sorted(liveness.processes_of(paths.dir)) == sorted([launcher.pid, rank.pid])
        assert lifecycle.stop(paths, grace=0.2, proc=launcher) == S.STOPPED
        assert rank.wait(timeout=5) == -9  # SIGKILLed: before, the stop gave up when the group was gone
        assert not liveness.held_here(paths.dir) and liveness.processes_of(paths.dir) == []
    finally:
        for p in (launcher, rank):
            p.kill()
            p.wait()
