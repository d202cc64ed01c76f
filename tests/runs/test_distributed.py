"""Data parallelism that is right at every size, launches that are what they say, and a stop that
works whatever the launching shell ignored. Multi-rank runs use gloo on CPU: `--multi_gpu` with
ACCELERATE_USE_CPU, the way `[launch] cpu = true` starts them."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from _cli import aplot, one_line_error
from _procs import group_members, kill_group, wait_for
from conftest import TINY_RM

from engine import HOLD_STOPS_ENV
from engine import config as C
from engine import metrics as M
from engine.rm.train import micro_batch_indices, rebatch_for_resume
from engine.runs import lifecycle, liveness
from engine.runs import status as S
from engine.runs import store as mf
from engine.runs.launch import free_port
from engine.runtime import TrainingError

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "tests" / "_eval_worker.py"


def cpu_env() -> dict[str, str]:
    return {**os.environ, "ACCELERATE_USE_CPU": "1", "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}


# ---------------------------------------------------------------------------- training batches


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("bs,accum", [(1, 1), (3, 2), (4, 1)])
@pytest.mark.parametrize("n", [7, 45, 50])
def test_every_pair_is_trained_each_epoch_on_any_number_of_ranks(world, bs, accum, n):
    cfg = C.load(None, [f"optim.batch_size={bs}", f"optim.grad_accum={accum}", "optim.epochs=2"])
    if n < bs * world:
        with pytest.raises(C.ConfigError, match="cannot fill one micro-batch"):
            C.resolve(cfg, n, world)
        return
    r = C.resolve(cfg, n, world)
    seen = {0: [], 1: []}  # epoch → every index any rank trained on, topped-up ones included
    for step in range(1, r["total_steps"] + 1):
        for k in range(accum):
            epoch = ((step - 1) * accum + k) // r["micro_batches_per_epoch"]
            for rank in range(world):
                idx = micro_batch_indices(step, k, r, seed=3, rank=rank, bs=bs)
                assert len(idx) == bs  # every rank holds the same count: no collective waits on a short one
                seen.setdefault(epoch, []).extend(idx.tolist())
    for epoch in (0, 1):
        assert set(seen[epoch]) == set(range(n)), epoch  # nothing dropped
        assert len(seen[epoch]) == n + r["padded_pairs_per_epoch"]  # and the top-up is exactly as stated
    assert r["padded_pairs_per_epoch"] == math.ceil(n / (bs * world)) * bs * world - n


# ---------------------------------------------------------------------------- eval


def launch_worker(world: int, out: Path) -> subprocess.Popen:
    """The eval worker started on `world` ranks, in a process group of its own; its stderr goes to OUT.err."""
    argv = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--mixed_precision", "no",
            "--dynamo_backend", "no", "--num_processes", str(world)]
    argv += ["--multi_gpu", "--main_process_port", str(free_port())] if world > 1 else ["--cpu"]
    with open(out.with_suffix(".err"), "wb") as err:
        return subprocess.Popen([*argv, str(WORKER), str(out)], env=cpu_env(), cwd=ROOT, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)


def worker_results(proc: subprocess.Popen, out: Path) -> dict:
    assert proc.wait(timeout=300) == 0, out.with_suffix(".err").read_text()[-3000:]
    return json.loads(out.read_text())


@pytest.mark.heavy
def test_eval_counts_every_pair_once_and_agrees_across_world_sizes(tmp_path):
    """One fixed model, held-out sets of 1, 2, 7 and 115 pairs, eval batches of 1, 3 and 4, on 1, 2 and 3
    ranks: `n_pairs` is the set's size, and every metric (margin and diagnostics included) is the same."""
    from _eval_worker import BATCH_SIZES, SIZES

    # the three launches side by side: each is mostly imports, and the one-rank launch leaves a core idle
    procs = {w: launch_worker(w, tmp_path / f"w{w}.json") for w in (1, 2, 3)}
    try:
        results = {w: worker_results(procs[w], tmp_path / f"w{w}.json") for w in (1, 2, 3)}
    finally:  # a failed launch must not leave the others' ranks behind
        for proc in procs.values():
            kill_group(proc.pid)
            proc.wait()
    assert [results[w]["world"] for w in (1, 2, 3)] == [1, 2, 3]
    for size in SIZES:
        for bs in BATCH_SIZES:
            key = f"{size}/{bs}"
            one = results[1][key]
            assert one["metrics"]["n_pairs"] == size, key
            for w in (2, 3):
                other = results[w][key]
                assert other["metrics"].keys() == one["metrics"].keys(), (key, w)
                for name, value in one["metrics"].items():
                    assert other["metrics"][name] == pytest.approx(value, rel=1e-5, abs=1e-5), (key, w, name)
                assert other["hard"] == one["hard"], (key, w)


# ---------------------------------------------------------------------------- real runs on several ranks


def accelerate_file(path: Path, **settings) -> Path:
    base = {"compute_environment": "LOCAL_MACHINE", "debug": False, "machine_rank": 0, "num_machines": 1,
            "rdzv_backend": "static", "same_network": True, "main_training_function": "main"}
    path.write_text("\n".join(f"{k}: {json.dumps(v)}" for k, v in (base | settings).items()) + "\n")
    return path


def write_config(tmp_path: Path) -> Path:
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY_RM)
    return cfg


UNEVEN = ["data.synthetic_pairs=50", "optim.max_steps=0", "optim.epochs=1", "eval.every=2", "eval.batch_size=2",
          "checkpoint.every=0", "loss.type=aplot"]


def check_uneven_run(runs_dir: Path, world: int) -> mf.RunPaths:
    ((paths, manifest),) = mf.list_runs(runs_dir)
    assert manifest["status"] == "completed", paths.log.read_text()[-3000:]
    resolved, prov = manifest["resolved"], manifest["provenance"]
    assert resolved["world_size"] == prov["world_size"] == manifest["config"]["launch"]["num_processes"] == world
    assert prov["distributed_type"] == "MULTI_CPU"
    assert resolved["padded_pairs_per_epoch"] > 0  # the premise: the last micro-batch really was uneven
    records = M.read_all(paths.metrics)
    assert sorted(r.step for r in records if r.split == M.TRAIN) == list(range(1, resolved["total_steps"] + 1))
    evals = [r for r in records if r.split == M.eval_split(M.HELDOUT)]
    assert evals and all(r.data["n_pairs"] == resolved["n_eval_heldout"] for r in evals)
    assert resolved["n_eval_heldout"] % world != 0  # …and so was the held-out set
    return paths


def test_two_ranks_from_an_accelerate_config_file_global_margin_shared_prompt(tmp_path, runs_dir):
    """A MULTI_CPU file from `accelerate config` (it used to run one process, silently)."""
    file = accelerate_file(tmp_path / "acc.yaml", distributed_type="MULTI_CPU", num_processes=2, use_cpu=True,
                           mixed_precision="no")
    proc = aplot("run", write_config(tmp_path), *UNEVEN, "optim.batch_size=3", "optim.grad_accum=2",
                 "loss.aplot.ot_scope=global", "model.share_prompt=true", f"launch.accelerate_config={file}", "-q",
                 runs_dir=runs_dir)
    assert proc.returncode == 0, proc.stderr
    paths = check_uneven_run(runs_dir, 2)
    assert "--multi_gpu" in mf.read(paths)["launch_argv"]
    assert (paths.dir / "accelerate_config.yaml").read_text() == file.read_text()  # the run keeps its copy


def test_three_ranks_from_a_multi_gpu_file_with_use_cpu_local_margin_two_row_forward(tmp_path, runs_dir):
    file = accelerate_file(tmp_path / "acc.yaml", distributed_type="MULTI_GPU", num_processes=3, use_cpu=True)
    proc = aplot("run", write_config(tmp_path), *UNEVEN, "optim.batch_size=2", "loss.aplot.ot_scope=local",
                 "model.share_prompt=false", f"launch.accelerate_config={file}", runs_dir=runs_dir)
    assert proc.returncode == 0, proc.stderr
    paths = check_uneven_run(runs_dir, 3)
    # followed with its output piped, as a scheduler or CI would: every line whole, none cut at 80 columns
    evals = [line for line in proc.stderr.splitlines() if " eval/heldout: " in line]
    assert evals and all("n_pairs=" in line and "diag/ece=" in line for line in evals), proc.stderr
    assert any(line.startswith(paths.id) and "step " in line for line in proc.stderr.splitlines()), proc.stderr


@pytest.mark.heavy
def test_three_ranks_then_resumed_on_two_keeps_the_effective_batch_and_says_so(tmp_path, runs_dir):
    proc = aplot("run", write_config(tmp_path), *UNEVEN, "optim.batch_size=4", "loss.aplot.ot_scope=global",
                 "launch.num_processes=3", "-q", runs_dir=runs_dir)
    assert proc.returncode == 0, proc.stderr
    paths = check_uneven_run(runs_dir, 3)
    total = mf.read(paths)["resolved"]["total_steps"]
    before = {r.step: r.data[M.LOSS] for r in M.read_all(paths.metrics) if r.split == M.TRAIN}
    cfg = mf.read(paths)["config"]  # a longer run, as if it had been stopped at `total`
    cfg["optim"]["max_steps"] = total + 2
    mf.update(paths, status="stopped", config=cfg)

    done = aplot("resume", paths.id, "launch.num_processes=2", "-q", runs_dir=runs_dir)  # a node was lost
    assert done.returncode == 0, done.stderr + paths.log.read_text()[-3000:]
    manifest = mf.read(paths)
    assert manifest["status"] == "completed"
    assert manifest["resolved"]["world_size"] == manifest["provenance"]["world_size"] == 2
    assert manifest["resolved"]["effective_batch"] == 12  # 3 × 4 before, 2 × 6 now
    (note,) = manifest["world_size_changes"]
    assert note.startswith(f"step {total + 1}: resumed on 2 ranks (was 3), batch_size 4 → 6 per rank")
    assert "not bit-exact" in note and note in paths.log.read_text()
    after = {r.step: r.data[M.LOSS] for r in M.read_all(paths.metrics) if r.split == M.TRAIN}
    assert sorted(after) == list(range(1, total + 3)) and all(after[s] == before[s] for s in before)


def test_a_resume_that_cannot_keep_the_batch_is_refused_in_one_line():
    cfg = C.load(None, ["optim.batch_size=4"])
    ctx = SimpleNamespace(accelerator=SimpleNamespace(num_processes=5, print=print), cfg=cfg, is_main=False,
                          manifest={})
    with pytest.raises(TrainingError) as err:
        rebatch_for_resume(ctx, {"step": 4, "world_size": 3, "effective_batch": 12})
    assert "resume with launch.num_processes=3" in str(err.value) and "\n" not in str(err.value)
    ctx.accelerator.num_processes = 4
    rebatch_for_resume(ctx, {"step": 4, "world_size": 3, "effective_batch": 12})
    assert cfg.optim.batch_size == 3


# ---------------------------------------------------------------------------- launches that are what they say


@pytest.mark.parametrize("settings,override,expected", [
    ({"distributed_type": "MULTI_CPU", "num_processes": 2, "use_cpu": True}, "launch.num_processes=3",
     "launch.num_processes: 3 contradicts num_processes: 2"),
    ({"distributed_type": "MULTI_CPU", "num_processes": 2, "mixed_precision": "fp16"}, "launch.mixed_precision=bf16",
     "launch.mixed_precision: 'bf16' contradicts mixed_precision: 'fp16'"),
    ({"distributed_type": "FSDP", "num_processes": 2}, "launch.cpu=true", "launch.cpu: FSDP runs only on GPUs"),
])
def test_an_accelerate_file_that_contradicts_launch_fails_before_anything(tmp_path, runs_dir, settings, override,
                                                                          expected):
    file = accelerate_file(tmp_path / "acc.yaml", **settings)
    proc = aplot("run", write_config(tmp_path), override, f"launch.accelerate_config={file}", runs_dir=runs_dir)
    line = one_line_error(proc)
    assert line.startswith(f"aplot: {expected}") and str(file) in line, line
    assert proc.returncode == 2 and not list(runs_dir.iterdir())  # nothing created, nothing launched


def test_the_trainer_refuses_a_launch_that_is_not_what_the_run_asked_for(tmp_path, runs_dir):
    """A run for one process started by hand on two ranks: it fails before training, in one line."""
    cfg = C.load(write_config(tmp_path))
    paths = lifecycle.create(cfg, runs_dir)
    argv = [sys.executable, "-m", "engine.launch", "--num_machines", "1", "--dynamo_backend", "no", "--mixed_precision",
            "no", "--num_processes", "2", "--multi_gpu", "--main_process_port", str(free_port()),
            "-m", "engine.rm.train", "--run-dir", str(paths.dir)]
    proc = subprocess.run(argv, env=cpu_env(), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    manifest = mf.read(paths)
    assert manifest["status"] == "failed"
    assert manifest["error"] == ("launch: world_size 1 asked, 2 given; distributed_type 'NO' asked, 'MULTI_CPU' "
                                 "given — check [launch] and launch.accelerate_config")
    assert not paths.metrics.exists()  # not one step trained


# ---------------------------------------------------------------------------- stop from any launch context


def sig_mask(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1], 16)
    return 0


def test_a_run_launched_with_sigint_ignored_stops_cleanly_with_a_checkpoint(tmp_path, runs_dir):
    """`nohup`, a background job in a script, some CI runners: the launching shell ignores SIGINT."""
    def ignore_sigint():
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    env = {**os.environ, "APLOT_RUNS_DIR": str(runs_dir)}
    started = subprocess.run([sys.executable, "-m", "aplot_tui.cli", "run", str(write_config(tmp_path)),
                              "optim.max_steps=100000", "checkpoint.every=0", "eval.every=0", "--detach"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, preexec_fn=ignore_sigint)
    assert started.returncode == 0, started.stderr
    ((paths, _),) = mf.list_runs(runs_dir)
    tail, deadline = M.MetricsTail(paths.metrics), time.monotonic() + 120
    while not any(r.split == M.TRAIN for r in tail.read_new()):  # polls for its first train line
        assert liveness.held_here(paths.dir) and time.monotonic() < deadline, paths.log.read_text()[-3000:]
        time.sleep(0.05)
    launcher = mf.read(paths)["pid"]
    bit = 1 << (signal.SIGINT - 1)
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            if os.getpgid(int(pid)) == launcher:  # the launcher and the rank: SIGINT is heard, not ignored
                assert not sig_mask(int(pid), "SigIgn") & bit, Path(f"/proc/{pid}/cmdline").read_bytes()
        except (ProcessLookupError, FileNotFoundError):
            continue
    assert lifecycle.stop(paths, grace=120) == "stopped"
    manifest = mf.read(paths)
    assert manifest["exit_code"] == 130 and manifest["error"] == ""
    step = manifest["summary"]["step"]
    assert mf.checkpoint_steps(paths) == [step] and (paths.checkpoints / f"step-{step}" / "done").exists()
    assert S.effective(paths) == "stopped" and not liveness.held_here(paths.dir)


def rank_pids(pgid: int) -> list[int]:
    """The training ranks (`python -m engine.rm.train …`) of a run's process group, not its launcher."""
    out = []
    for pid in group_members(pgid):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[1:3] == [b"-m", b"engine.rm.train"]:
                out.append(pid)
    return out


def assert_stopped_after_its_first_step(paths: mf.RunPaths) -> None:
    manifest = mf.read(paths)
    assert manifest["status"] == "stopped" and manifest["exit_code"] == 130, paths.log.read_text()[-3000:]
    assert manifest["summary"]["step"] == 1 and mf.checkpoint_steps(paths) == [1]
    assert "Traceback" not in paths.log.read_text() and not liveness.held_here(paths.dir)


def test_a_stop_while_the_rank_still_imports_torch_ends_stopped_after_its_first_step(tmp_path, runs_dir):
    """An `aplot stop` pressed at launch, a Slurm warning signal in a job's first second: the rank holds
    the signal from its first line (SigBlk) until its handlers are in place, then stops with a
    checkpoint after one step — not a KeyboardInterrupt in the middle of `import torch`."""
    paths = lifecycle.create(C.load(write_config(tmp_path), ["optim.max_steps=100000", "checkpoint.every=0",
                                                                  "eval.every=0"]), runs_dir)
    proc = lifecycle.spawn(paths)
    bit = 1 << (signal.SIGINT - 1)
    wait_for(lambda: any(sig_mask(pid, "SigBlk") & bit for pid in rank_pids(proc.pid)), 60, "a rank holding SIGINT")
    os.killpg(proc.pid, signal.SIGINT)  # what `aplot stop` sends: the launcher and every rank at once
    assert proc.wait(timeout=120) == 130
    assert_stopped_after_its_first_step(paths)


def test_a_stop_before_any_rank_exists_reaches_the_ranks_when_they_start(tmp_path, runs_dir):
    """Only the launcher was there to hear it (accelerate was still importing): the ranks it starts
    afterwards find the stop in their environment."""
    paths = lifecycle.create(C.load(write_config(tmp_path), ["optim.max_steps=100000", "checkpoint.every=0",
                                                                  "eval.every=0"]), runs_dir)
    proc = lifecycle.spawn(paths)
    term = 1 << (signal.SIGTERM - 1)  # Python catches SIGINT from its start; SIGTERM only once main() ran
    wait_for(lambda: sig_mask(proc.pid, "SigCgt") & term, 60, "the launcher's stop handlers")
    assert not rank_pids(proc.pid)  # accelerate takes seconds to import; its ranks come after
    os.kill(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    assert_stopped_after_its_first_step(paths)
    assert "[aplot] stopped while starting" in paths.log.read_text()


def test_a_rank_imports_without_the_collector_and_trains_with_it(tmp_path, runs_dir):
    """Start-up runs with gc off (the collector walking what the imports built is a sixth of it);
    training must not: a rank whose collector stayed off would keep every reference cycle it made."""
    paths = lifecycle.create(C.load(write_config(tmp_path)), runs_dir)
    code = ("import gc, sys; import engine; off = not gc.isenabled(); from engine.runtime import RunContext; "
            "RunContext(sys.argv[1]); print(off, gc.isenabled(), gc.get_freeze_count() > 10_000)")
    out = subprocess.run([sys.executable, "-c", code, str(paths.dir)], env={**cpu_env(), HOLD_STOPS_ENV: "1"},
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["True", "True", "True"], out.stderr[-2000:]


def test_resume_refuses_overrides_outside_launch(runs_dir, tmp_path):
    paths = lifecycle.create(C.load(write_config(tmp_path)), runs_dir)
    line = one_line_error(aplot("resume", paths.id, "optim.lr=1", runs_dir=runs_dir))
    assert line == "aplot: optim.lr: a resume keeps the run's config; only launch.* settings can change"
    assert np.isclose(mf.read(paths)["config"]["optim"]["lr"], 1e-3)
