"""Smoke test of the test Slurm cluster: a job runs and writes its output, a held job stays pending,
and stopping the cluster leaves no process of it behind."""

from __future__ import annotations

import time

import pytest
from slurm_cluster import _marked_pids, available, slurm_cluster

pytestmark = pytest.mark.xdist_group("slurm")  # never beside test_slurm.py's cluster: one munged, one node


def _wait(check, timeout: float = 30.0):
    """Poll check() until it returns something truthy; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
    return result


def test_job_runs_and_held_job_pends(tmp_path):
    if reason := available():
        pytest.skip(reason)
    out = tmp_path / "hi.out"
    with slurm_cluster(tmp_path / "slurm") as cluster:
        job = cluster.slurm("sbatch", "--parsable", f"--output={out}", "--wrap", "echo hi").strip()
        _wait(lambda: cluster.slurm("squeue", "-h", "-t", "all", "-j", job, "-o", "%T").strip() == "COMPLETED")
        assert out.read_text() == "hi\n"

        held = cluster.slurm("sbatch", "--parsable", "--hold", f"--output={tmp_path / 'held.out'}",
                             "--wrap", "echo never").strip()
        state, reason = cluster.slurm("squeue", "-h", "-j", held, "-o", "%T|%r").strip().split("|")
        assert state == "PENDING" and reason in ("JobHeldUser", "JobHeldAdmin")
        cluster.slurm("scancel", held)
        _wait(lambda: cluster.slurm("squeue", "-h", "-t", "all", "-j", held, "-o", "%T").strip() == "CANCELLED")
    assert not _marked_pids(cluster.scratch)
    assert not (tmp_path / "held.out").exists()
