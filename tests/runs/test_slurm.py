"""Runs on a real Slurm cluster (one node, started here by tests/slurm_cluster.py): submitted, queued,
watched, stopped, killed, resumed, time-limited and auto-resumed, all through `aplot` as a user would.

The scheduler's word decides what only it knows (queued and why; ended without the trainer's word);
everything else is read from the shared run folder, as for local runs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

import pytest
from _cli import aplot, one_line_error
from _procs import kill_group, wait_for
from conftest import TINY_RM
from slurm_cluster import available, slurm_cluster

from engine import config as C
from engine import metrics as M
from engine.launch import slurm_task_flags
from engine.runs import slurm
from engine.runs import store as mf
from engine.runs.launch import argv as launch_argv

ROOT = Path(__file__).resolve().parents[2]
# one worker for every test of a cluster (here and test_slurm_cluster.py): the clusters share munged and the node
pytestmark = pytest.mark.xdist_group("slurm")


def slurm_config(tmp_path: Path, *lines: str) -> Path:
    cfg = tmp_path / "slurm.toml"
    cfg.write_text(TINY_RM.replace("[launch]", "[launch]\nscheduler = \"slurm\"") + "\n".join(lines) + "\n")
    return cfg


# ---------------------------------------------------------------------------- no cluster needed


def test_the_job_script_is_readable_and_complete(tmp_path):
    cfg = C.load(slurm_config(tmp_path), ["launch.slurm.partition=\"gpu\"", "launch.slurm.time=\"08:00:00\"",
                                          "launch.slurm.nodes=2", "launch.num_processes=16",
                                          "launch.slurm.gpus_per_node=8", "launch.slurm.setup=[\"module load cuda/12.4\"]",
                                          "launch.slurm.extra=[\"--constraint=h100\"]", "launch.cpu=false"])
    run_dir = tmp_path / "runs" / "20261202-000000-rm-aplot-x-0000"
    run_dir.mkdir(parents=True)
    script = slurm.job_script(cfg, run_dir, launch_argv(cfg, run_dir))
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    for opt in ("--nodes=2", "--ntasks-per-node=1", "--partition=gpu", "--gpus-per-node=8", "--time=08:00:00",
                "--signal=INT@300", "--constraint=h100", f"--output={run_dir / 'train.log'}", "--open-mode=append"):
        assert f"#SBATCH {opt}" in lines, opt
    assert "module load cuda/12.4" in lines  # verbatim, before the launch
    (srun,) = [x for x in lines if x.startswith("srun ")]
    assert "-m engine.launch --slurm" in srun and f"--run-dir {run_dir}" in srun and "--num_processes 16" in srun
    assert "--multi_gpu" in srun and "--main_process_port" not in srun  # the task adds it from the job's env
    assert lines.index("module load cuda/12.4") < lines.index(srun)
    assert lines[-1] == "exit $code" and "-m engine.runs.lifecycle after-job" in lines[-2]


def test_each_slurm_task_is_one_machine_of_the_launch():
    args = ["--num_machines", "1", "--num_processes", "2", "--multi_gpu", "-m", "engine.rm.train", "--run-dir", "d"]
    env = {"SLURM_NTASKS": "2", "SLURM_PROCID": "1", "APLOT_MAIN_PROCESS_IP": "node-a", "APLOT_MAIN_PROCESS_PORT": "2345"}
    out = slurm_task_flags(args, env)
    assert out[:5] == args[:5] and out[-4:] == args[-4:]  # the training module and its arguments stay last
    extra = out[5:-4]
    assert extra == ["--num_machines", "2", "--machine_rank", "1", "--main_process_ip", "node-a",
                     "--main_process_port", "2345"]
    assert slurm_task_flags(args, env | {"SLURM_NTASKS": "1"})[5:-4] == ["--main_process_port", "2345"]


def test_bad_cluster_config_fails_in_one_line_and_submits_nothing(tmp_path, runs_dir):
    cfg = slurm_config(tmp_path)
    line = one_line_error(aplot("run", cfg, 'launch.slurm.extra=["nodes=2"]', runs_dir=runs_dir))
    assert line.startswith("aplot: launch.slurm.extra[0]: an #SBATCH option starting with \"--\", got 'nodes=2'")
    env = {**os.environ, "PATH": str(tmp_path / "nothing-here")}
    proc = aplot("run", cfg, runs_dir=runs_dir, env=env)
    assert one_line_error(proc) == "aplot: launch.scheduler: \"slurm\" needs sbatch on PATH, and there is none"
    line = one_line_error(aplot("run", cfg, "launch.num_processes=3", "launch.slurm.tasks_per_node=2",
                                runs_dir=runs_dir))
    assert line.startswith("aplot: launch.num_processes: 3 processes do not split over 2 machines")
    assert not list(runs_dir.iterdir())


# ---------------------------------------------------------------------------- a real cluster


@pytest.fixture(scope="module")
def module_cluster(tmp_path_factory):
    why = available()
    if why:
        pytest.skip(f"no Slurm here: {why}")
    with slurm_cluster(tmp_path_factory.mktemp("slurm")) as c:
        old = os.environ.get("SLURM_CONF")
        os.environ["SLURM_CONF"] = c.env["SLURM_CONF"]
        try:
            yield c
        finally:
            if old is None:
                os.environ.pop("SLURM_CONF", None)
            else:
                os.environ["SLURM_CONF"] = old


@pytest.fixture
def cluster(module_cluster):
    """The module's cluster, with every job cancelled after each test, pass or fail."""
    yield module_cluster
    module_cluster.cancel_all()


LS_POLL = 0.5  # each look is a whole `aplot ls` process (~0.4 s of a core the run being watched needs)


def ls(runs_dir: Path) -> dict:
    proc = aplot("ls", "--json", runs_dir=runs_dir, timeout=60)
    assert proc.returncode == 0, proc.stderr
    (row,) = [r for r in map(json.loads, proc.stdout.splitlines()) if r["kind"] == "rm"]
    return row


def only_run(runs_dir: Path) -> mf.RunPaths:
    ((paths, _),) = mf.list_runs(runs_dir)
    return paths


def train_losses(paths: mf.RunPaths) -> dict[int, float]:
    return {r.step: r.data[M.LOSS] for r in M.read_all(paths.metrics) if r.split == M.TRAIN}


def test_an_unknown_partition_fails_in_one_line(cluster, tmp_path, runs_dir):
    line = one_line_error(aplot("run", slurm_config(tmp_path), 'launch.slurm.partition="nope"', runs_dir=runs_dir))
    assert line == f"aplot: launch.slurm.partition: no partition 'nope' on this cluster (known: {cluster.partition})"
    assert not list(runs_dir.iterdir())


def test_a_run_goes_queued_then_running_then_completed_and_a_held_job_says_why(cluster, tmp_path, runs_dir):
    blocker = cluster.slurm("sbatch", "--parsable", f"--cpus-per-task={cluster.cpus}", "--output=/dev/null",
                            "--wrap", "sleep 300").strip()
    wait_for(lambda: cluster.slurm("squeue", "-h", "-j", blocker, "-o", "%T").strip() == "RUNNING", 30,
             "the blocker to hold every CPU")
    proc = aplot("run", slurm_config(tmp_path), "optim.max_steps=6", "--detach", runs_dir=runs_dir)
    assert proc.returncode == 0, proc.stderr
    paths = only_run(runs_dir)
    job = slurm.job_of(mf.read(paths))
    row = wait_for(lambda: (r := ls(runs_dir))["reason"] and r, 30, "Slurm's reason", poll=LS_POLL)
    assert (row["status"], row["job"], row["reason"]) == ("queued", job, "Resources")
    assert (paths.dir / "job.sbatch").exists() and mf.read(paths)["slurm"]["submit"].startswith("sbatch --parsable")

    cluster.slurm("scontrol", "hold", job)
    row = wait_for(lambda: (r := ls(runs_dir))["reason"].startswith("JobHeld") and r, 30, "the hold to show",
                   poll=LS_POLL)
    assert row["status"] == "queued"
    assert tui_runs_table_status(runs_dir, paths.id) == f"queued #{job} ({row['reason']})"

    cluster.slurm("scontrol", "release", job)
    cluster.slurm("scancel", blocker)
    wait_for(lambda: ls(runs_dir)["status"] == "running", 60, "the run to start", poll=LS_POLL)
    wait_for(lambda: ls(runs_dir)["status"] == "completed", 120, "the run to complete", poll=LS_POLL)
    row = ls(runs_dir)
    assert row["job"] == job and row["step"] == 6
    assert mf.read(paths)["provenance"]["world_size"] == 1


def tui_runs_table_status(runs_dir: Path, run_id: str) -> str:
    """The status cell of the run's row in the TUI's runs table, as the app shows it."""
    from tui.helpers import drive, runs_loaded

    from aplot_tui.app import AplotApp

    cells = []

    async def read(pilot) -> None:
        await runs_loaded(pilot)
        cells.append(str(pilot.app.screen.query_one("RunTable").get_cell(run_id, "status")))

    drive(AplotApp(runs_dir=runs_dir, poll_s=0.1), read, size=(200, 30))
    return cells[0]


def test_a_two_task_job_stands_in_for_two_machines(cluster, tmp_path, runs_dir):
    proc = aplot("run", slurm_config(tmp_path), "optim.max_steps=3", "eval.every=0", "launch.num_processes=2",
                 "launch.slurm.tasks_per_node=2", "-q", runs_dir=runs_dir, timeout=240)
    assert proc.returncode == 0, proc.stderr + only_run(runs_dir).log.read_text()[-3000:]
    manifest = mf.read(only_run(runs_dir))
    assert manifest["status"] == "completed"
    assert manifest["provenance"]["world_size"] == manifest["resolved"]["world_size"] == 2
    assert manifest["provenance"]["distributed_type"] == "MULTI_CPU"
    assert manifest["config"]["launch"]["slurm"]["tasks_per_node"] == 2


# a constant learning rate: the run can be cut short before its last resume without changing any step
LONG = ["optim.max_steps=100000", "optim.scheduler=constant", "checkpoint.every=5", "eval.every=0"]


def start_reference(tmp_path: Path, *overrides: str) -> mf.RunPaths:
    """The same config run locally and uninterrupted: what an interrupted Slurm run must reproduce.
    Detached, so it trains beside the Slurm run (on the other core) instead of after it."""
    store = tmp_path / "reference"
    store.mkdir()
    cfg = tmp_path / "local.toml"
    cfg.write_text(TINY_RM)
    proc = aplot("run", cfg, *LONG, *overrides, "--detach", runs_dir=store)
    assert proc.returncode == 0, proc.stderr
    return only_run(store)


def reference_losses(reference: mf.RunPaths, total: int) -> dict[int, float]:
    """The reference's losses of steps 1..total, once it has trained that far (it is ended then)."""
    wait_for(lambda: max(train_losses(reference), default=0) >= total, 300, f"the reference run to reach step {total}")
    kill_group(mf.read(reference)["pid"])
    return {s: loss for s, loss in train_losses(reference).items() if s <= total}


def finish_at(paths: mf.RunPaths, total: int) -> None:
    data = mf.read(paths)["config"]
    data["optim"]["max_steps"] = total
    mf.update(paths, config=data)


def assert_same_losses(paths: mf.RunPaths, reference: mf.RunPaths, total: int) -> None:
    losses, expected = train_losses(paths), reference_losses(reference, total)
    assert sorted(losses) == sorted(expected) == list(range(1, total + 1))
    for s, loss in expected.items():
        assert losses[s] == pytest.approx(loss, rel=1e-5, abs=1e-6), s


def test_stop_kill_and_resume_through_the_scheduler_match_an_uninterrupted_run(cluster, tmp_path, runs_dir):
    assert aplot("run", slurm_config(tmp_path), *LONG, "--detach", runs_dir=runs_dir).returncode == 0
    paths = only_run(runs_dir)
    wait_for(lambda: mf.checkpoint_steps(paths), 120, "a first checkpoint")
    stopped = aplot("stop", paths.id, runs_dir=runs_dir)
    assert stopped.returncode == 0 and stopped.stdout.strip().endswith("stopped"), stopped.stderr
    manifest = mf.read(paths)
    assert manifest["status"] == "stopped" and manifest["exit_code"] == 130
    assert "[aplot] received SIGINT" in paths.log.read_text()  # the stop signal itself, not a cancel's SIGTERM
    step = manifest["summary"]["step"]
    assert mf.checkpoint_steps(paths)[-1] == step and (paths.checkpoints / f"step-{step}" / "done").exists()

    assert aplot("resume", paths.id, "--detach", runs_dir=runs_dir).returncode == 0
    wait_for(lambda: max(train_losses(paths), default=0) > step + 5, 120, "the resumed run to train on")
    job = slurm.job_of(mf.read(paths))
    # A hard death (an OOM kill, a node lost): every process of the job, as Slurm lists them, SIGKILLed.
    # (`scancel -s KILL` would not do: Slurm cancels with SIGTERM first, and the trainer turns that
    # into a checkpointed stop.) No checkpoint, no record: only the scheduler knows.
    for line in cluster.slurm("scontrol", "listpids", job).splitlines()[1:]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(line.split()[0]), signal.SIGKILL)
    row = wait_for(lambda: (r := ls(runs_dir))["status"] == "crashed" and r, 60, "the scheduler's word",
                   poll=LS_POLL)
    assert row["job"] == job and row["reason"].startswith(f"slurm job {job}")
    assert mf.read(paths)["status"] == "running"  # the manifest itself was never told

    total = mf.checkpoint_steps(paths)[-1] + 7
    finish_at(paths, total)
    reference = start_reference(tmp_path, f"optim.max_steps={total}")
    done = aplot("resume", paths.id, "-q", runs_dir=runs_dir, timeout=300)
    assert done.returncode == 0, done.stderr + paths.log.read_text()[-3000:]
    assert mf.read(paths)["status"] == "completed" and len(mf.read(paths)["slurm"]["jobs"]) == 3
    assert_same_losses(paths, reference, total)


@pytest.mark.heavy
def test_a_time_limit_stops_with_a_checkpoint_and_auto_resume_finishes_the_run(cluster, tmp_path, runs_dir):
    """`time = 1` minute, SIGINT 30 s before it: each job trains until the signal, checkpoints and ends
    `stopped`, and the job resubmits the run (auto_resume = 2) until it completes — by itself, through
    three jobs — with the losses of an uninterrupted run."""
    limited = ["launch.slurm.time=\"1\"", "launch.slurm.signal_before_end=30", "launch.slurm.auto_resume=2"]
    assert aplot("run", slurm_config(tmp_path), *LONG, "checkpoint.every=0", *limited, "--detach",
                 runs_dir=runs_dir).returncode == 0
    paths = only_run(runs_dir)
    reference = start_reference(tmp_path, "checkpoint.every=0")  # trains while Slurm's clock runs
    wait_for(lambda: mf.read(paths).get("auto_resumes") == 1, 240, "the first time limit and auto-resume")

    def continued_from() -> list[int]:
        return [int(line.split("continuing at step ")[1].split()[0]) - 1
                for line in paths.log.read_text().splitlines() if "continuing at step" in line]

    first_stop = wait_for(continued_from, 120, "the second job to load the first one's checkpoint")[0]
    wait_for(lambda: max(train_losses(paths)) > first_stop, 120, "the second job to train")
    # The second job read its config at its start; the third will read this one: a run that has trained
    # past its max_steps has nothing left to do but its final eval and export, so it completes by itself.
    finish_at(paths, 1)
    wait_for(lambda: mf.read(paths)["status"] == "completed", 240, "the run to complete by itself")
    manifest = mf.read(paths)
    assert manifest["auto_resumes"] == 2 and len(manifest["slurm"]["jobs"]) == 3
    assert paths.log.read_text().count("[aplot] stopped by the scheduler: resubmitted as job") == 2
    stops = continued_from()
    assert len(stops) == 2 and 0 < stops[0] < stops[1] == manifest["summary"]["step"]  # each stop checkpointed
    assert_same_losses(paths, reference, stops[1])


def test_ls_over_fifty_slurm_runs_asks_the_scheduler_once_and_answers_in_under_a_second(cluster, runs_dir):
    held = cluster.slurm("sbatch", "--parsable", "--hold", "--output=/dev/null", "--wrap", "true").strip()
    expected = {}
    for i in range(50):
        paths = mf.run_paths(runs_dir, f"20260101-0000{i:02d}-rm-slurm-{i:04x}")
        mf.create(paths, name="slurm", kind="rm", config={"loss": {"type": "bt"}})
        job = held if i % 2 else str(900000 + i)  # a job Slurm never heard of: ended without a word
        mf.update(paths, launched_at=mf.now_iso(), slurm={"job_id": job, "jobs": [job]})
        expected[paths.id] = "queued" if i % 2 else "crashed"
    from aplot_tui.views import listing as store

    calls = []
    real_run = slurm._run
    slurm._cache.clear()
    try:
        slurm._run = lambda argv, timeout=30: calls.append(argv[0]) or real_run(argv, timeout)
        t0 = time.perf_counter()
        rows = store.list_rows(runs_dir)
        elapsed = time.perf_counter() - t0
    finally:
        slurm._run = real_run
        cluster.slurm("scancel", held)
    assert {r.id: r.status for r in rows} == expected
    assert all(r.reason.startswith("JobHeld") for r in rows if r.status == "queued")
    # one squeue for the whole listing is the point; 5 s bounds a loaded machine (bench/load_runs.py times it)
    assert calls.count("squeue") <= 2 and elapsed < 5.0, (calls, elapsed)
