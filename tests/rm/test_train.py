"""The real RM entry point in subprocesses (accelerate launch), with a tiny model for a few steps."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _cli import aplot, aplot_in_background
from _procs import kill_group
from safetensors.numpy import load_file

from engine import metrics as M
from engine.runs import liveness
from engine.runs import store as mf

ROOT = Path(__file__).resolve().parents[2]
EVERY_STEP = [M.LOSS, M.ACCURACY, M.REWARD_GAP, M.MARGIN_MEAN, M.OT_COST, M.OT_ITERATIONS, M.LEARNING_RATE,
              M.GRAD_NORM, M.SAMPLES_PER_S, M.TOKENS_PER_S, M.CHOSEN_REWARD, M.REJECTED_REWARD]




def only_run(runs_dir):
    (run,) = mf.list_runs(runs_dir)
    return run


def train_losses(paths):
    return {r.step: r.data[M.LOSS] for r in M.read_all(paths.metrics) if r.split == M.TRAIN}


def test_tiny_aplot_run_completes_logs_every_step_and_changes_weights(tiny_config, tmp_path, runs_dir):
    ood = tmp_path / "ood.jsonl"
    long_answer = "yes, and here is a much longer and more careful answer " * 3
    ood.write_text("".join(json.dumps({"prompt": f"q{i}", "chosen": long_answer, "rejected": "no"}) + "\n"
                           for i in range(10)))
    proc = aplot("run", tiny_config, f'data.eval.ood="{ood}"', f'data.eval.last="{ood}"', 'eval.final_only=["last"]',
                 "-q", runs_dir=runs_dir)
    assert proc.returncode == 0, proc.stderr
    paths, manifest = only_run(runs_dir)
    assert manifest["status"] == "completed" and manifest["exit_code"] == 0
    assert manifest["resolved"]["total_steps"] == 6 and manifest["provenance"]["world_size"] == 1
    assert manifest["provenance"]["data_sha256"]["ood"]
    recs = M.read_all(paths.metrics)
    train = [r for r in recs if r.split == M.TRAIN]
    assert [r.step for r in train] == [1, 2, 3, 4, 5, 6]
    for r in train:
        assert all(isinstance(r.data[k], float) for k in EVERY_STEP), r.data
    evals = {(r.step, r.split) for r in recs if r.split.startswith("eval/")}
    assert evals == {(3, "eval/heldout"), (3, "eval/ood"), (6, "eval/heldout"), (6, "eval/ood"), (6, "eval/last")}
    last_ood = [r for r in recs if r.split == "eval/ood"][-1].data
    assert last_ood["n_pairs"] == 10 and 0 <= last_ood[M.ACCURACY] <= 1
    assert len(last_ood[M.MARGIN_HIST]) == len(last_ood[M.GAP_HIST]) == 10
    # diagnostics ride along every eval: length buckets, rules, calibration, hardest pairs
    from engine.analysis import bias_checks as D

    assert last_ood[D.N_CHOSEN_LONGER] == 10 and last_ood[D.LONGER_WINS_ACC] == 1.0
    assert 0 <= last_ood[D.ECE] <= 1
    hard = D.latest_hard_pairs(D.read_hard_pairs(paths.hard_pairs))
    assert set(hard) == {"heldout", "ood", "last"} and hard["ood"]["step"] == 6
    gaps = [p["gap"] for p in hard["ood"]["pairs"]]
    assert gaps == sorted(gaps) and hard["ood"]["pairs"][0]["prompt"].startswith("q")
    # weights: step checkpoints differ from each other, the export equals the last state
    assert mf.checkpoint_steps(paths) == [3, 6]
    w3 = load_file(paths.checkpoints / "step-3" / "model.safetensors")
    w6 = load_file(paths.checkpoints / "step-6" / "model.safetensors")
    assert any((w3[k] != w6[k]).any() for k in w3)
    assert list((paths.checkpoints / "final").glob("*.safetensors"))
    assert not list(paths.dir.rglob("*.bin")) or all("optimizer" in p.name or "scheduler" in p.name
                                                      for p in paths.dir.rglob("*.bin"))
    assert manifest["summary"]["final_model"] == "checkpoints/final"


@pytest.mark.heavy
def test_two_cpu_processes_run_as_two_gloo_ranks(tiny_config, tmp_path):
    """Two gloo ranks under DDP; the shared-prompt forward (the prompt encoded once, packed rows) goes
    through the DDP wrapper and trains the same as the plain two-row forward. The packed forward itself
    is checked against the plain one in-process (tests/rm/test_shared_prompt.py); this is the trainer's."""
    losses, procs = {}, {}
    for share in ("true", "false"):  # the two runs side by side
        (tmp_path / share).mkdir()
        procs[share] = aplot_in_background("run", tiny_config, "launch.num_processes=2", "optim.max_steps=3",
                                           "eval.every=0", "checkpoint.every=0", f"model.share_prompt={share}",
                                           "-q", runs_dir=tmp_path / share)
    for share, started in procs.items():
        store = tmp_path / share
        proc = started.result()
        assert proc.returncode == 0, proc.stderr + only_run(store)[0].log.read_text()[-3000:]
        paths, manifest = only_run(store)
        assert manifest["provenance"]["world_size"] == 2
        assert manifest["resolved"]["effective_batch"] == 16
        assert manifest["resolved"]["share_prompt"] is (share == "true")
        assert "--multi_gpu" in manifest["launch_argv"]
        assert ("model.share_prompt: on" in paths.log.read_text()) is (share == "true")
        losses[share] = train_losses(paths)
    assert losses["true"].keys() == losses["false"].keys() == {1, 2, 3}
    for step, loss in losses["false"].items():
        assert losses["true"][step] == pytest.approx(loss, rel=1e-4, abs=1e-5), step


@pytest.mark.heavy
def test_sigkill_then_resume_matches_an_uninterrupted_run(tiny_config, tmp_path, runs_dir):
    common = ["optim.max_steps=120", "checkpoint.every=10", "eval.every=0", "-q"]
    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    reference = aplot_in_background("run", tiny_config, *common, runs_dir=ref_dir)  # uninterrupted, alongside

    env = dict(os.environ, APLOT_RUNS_DIR=str(runs_dir))
    follower = subprocess.Popen([sys.executable, "-m", "aplot_tui.cli", "run", str(tiny_config), *common],
                                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    paths = None
    while time.monotonic() < deadline:  # wait for the first complete checkpoint, then kill everything
        runs = mf.list_runs(runs_dir)
        if runs and mf.checkpoint_steps(runs[0][0]):
            paths, manifest = runs[0]
            break
        time.sleep(0.02)
    assert paths is not None, "no checkpoint appeared"
    kill_group(mf.read(paths)["pid"])  # every process of the run has exited when this returns
    follower.kill()
    follower.wait()
    status = aplot("ls", "--json", runs_dir=runs_dir)
    (row,) = [json.loads(line) for line in status.stdout.splitlines()]  # JSON lines
    if row["status"] == "completed":
        pytest.skip("the run finished before the kill landed (machine too fast for this timing)")
    assert row["status"] == "crashed"
    last_ckpt = mf.checkpoint_steps(paths)[-1]
    resumed = aplot("resume", paths.id, "-q", runs_dir=runs_dir)
    assert resumed.returncode == 0, resumed.stderr
    manifest = mf.read(paths)
    assert manifest["status"] == "completed"
    log = paths.log.read_text()
    assert f"resumed from step-{last_ckpt}: continuing at step {last_ckpt + 1}" in log
    losses = train_losses(paths)
    assert sorted(losses) == list(range(1, 121))  # superseded lines moved aside, no duplicates
    assert reference.result().returncode == 0
    ref_losses = train_losses(only_run(ref_dir)[0])
    for step in range(1, 121):
        assert losses[step] == pytest.approx(ref_losses[step], rel=1e-5, abs=1e-6), step


@pytest.mark.heavy
def test_a_stop_during_a_long_eval_keeps_that_step_and_the_eval_runs_first_on_resume(tiny_config, runs_dir, tmp_path):
    """A stop must not wait on an eval (past its grace the run is killed and every step since the last
    checkpoint is lost): the eval is dropped unlogged, the step it followed is checkpointed, and the
    resumed run scores that eval before it trains on."""
    from engine.runs import lifecycle

    big = tmp_path / "big.jsonl"  # 600 pairs one at a time: seconds of eval on the tiny model
    big.write_text("".join(json.dumps({"prompt": f"q{i}", "chosen": "a fine answer", "rejected": "no"}) + "\n"
                           for i in range(600)))
    proc = aplot("run", tiny_config, f'data.eval.big="{big}"', "eval.batch_size=1", "eval.every=2",
                 "optim.max_steps=4", "checkpoint.every=0", "--detach", runs_dir=runs_dir)
    assert proc.returncode == 0, proc.stderr
    paths, _ = only_run(runs_dir)
    deadline = time.monotonic() + 120
    while 2 not in train_losses(paths) if paths.metrics.exists() else True:
        assert time.monotonic() < deadline, paths.log.read_text()[-2000:]
        time.sleep(0.02)  # step 2 trained: its eval is starting
    assert lifecycle.stop(paths) == "stopped"
    assert "[aplot] stop during the eval at step 2: checkpointed" in paths.log.read_text()
    manifest = mf.read(paths)
    assert manifest["summary"]["step"] == 2 and mf.checkpoint_steps(paths) == [2]
    assert not [r for r in M.read_all(paths.metrics) if r.split.startswith("eval/")]  # nothing half-scored
    cfg = manifest["config"]
    cfg["eval"]["batch_size"] = 64  # the same sets, scored in seconds less: only the stopped eval had to be slow
    mf.update(paths, config=cfg)
    done = aplot("resume", paths.id, "-q", runs_dir=runs_dir)
    assert done.returncode == 0, done.stderr
    evals = sorted((r.step, r.split) for r in M.read_all(paths.metrics) if r.split.startswith("eval/"))
    assert evals == [(2, "eval/big"), (2, "eval/heldout"), (4, "eval/big"), (4, "eval/heldout")]
    assert sorted(train_losses(paths)) == [1, 2, 3, 4]


def test_stop_checkpoints_then_resume_completes(tiny_config, runs_dir):
    proc = aplot("run", tiny_config, "optim.max_steps=100000", "checkpoint.every=0", "eval.every=0", "--detach",
                 runs_dir=runs_dir)
    assert proc.returncode == 0, proc.stderr
    paths, _ = only_run(runs_dir)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (paths.metrics.exists() and paths.metrics.stat().st_size):
        time.sleep(0.05)  # wait until it trains
    stopped = aplot("stop", paths.id, runs_dir=runs_dir)
    assert stopped.returncode == 0 and stopped.stdout.strip().endswith("stopped"), stopped.stderr
    manifest = mf.read(paths)
    assert manifest["status"] == "stopped" and manifest["exit_code"] == 130
    step = manifest["summary"]["step"]
    assert mf.checkpoint_steps(paths) == [step]  # the stop saved exactly where it stopped
    assert not liveness.held_here(paths.dir)
    # the resumed run must reach max_steps; shorten the (huge) target through the manifest's config
    cfg = manifest["config"]
    cfg["optim"]["max_steps"] = step + 3
    mf.update(paths, config=cfg)
    done = aplot("resume", paths.id, "-q", runs_dir=runs_dir)
    assert done.returncode == 0, done.stderr
    losses = train_losses(paths)
    assert max(losses) == step + 3 and sorted(losses) == list(range(1, step + 4))
