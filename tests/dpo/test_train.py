"""DPO end to end: the real entry point on 2 gloo ranks, SIGKILLed after a checkpoint and resumed,
against an uninterrupted twin; both train side by side."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from _procs import end_runs_under, kill_group

from engine import config as C
from engine import metrics as M
from engine.analysis import predictions
from engine.runs import lifecycle
from engine.runs import status as S
from engine.runs import store as mf

STEPS = 8


def dpo_config() -> C.Config:
    """The hardest path at the smallest size: the SFT reference exported by rank 0 and loaded by both, the
    APLOT margin solved over both ranks' pairs, the gold win-rate gathered over ranks. (Pairs of a
    3-step reference's own samples are nearly all gold ties: this run reads the synthetic pairs.)"""
    cfg = C.Config(kind="dpo", name="tiny-dpo", seed=2)
    cfg.model.max_length = 32
    cfg.model.tiny = C.TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, vocab_size=300)
    cfg.data.synthetic_pairs, cfg.data.eval_fraction = 60, 0.2
    cfg.dpo = C.DPOSection(type="aplot", beta=0.5, sft_steps=3, judge="gold", eval_prompts=6,
                           max_new_tokens=6)
    cfg.optim = C.OptimSection(lr=3e-3, batch_size=4, max_steps=STEPS, warmup_ratio=0.0)
    cfg.eval = C.EvalSection(every=4, batch_size=8, hard_pairs=0)
    cfg.checkpoint = C.CheckpointSection(every=3, keep=2)
    cfg.launch = C.LaunchSection(num_processes=2, cpu=True, threads=1)
    return cfg


def stream(paths: mf.RunPaths) -> dict[tuple[int, str], dict]:
    return {(r.step, r.split): r.data for r in M.read_all(paths.metrics)}


def test_dpo_on_two_ranks_sigkilled_and_resumed_matches_an_uninterrupted_run(tmp_path):
    twin = lifecycle.create(dpo_config(), tmp_path / "twin")
    twin_proc = lifecycle.spawn(twin)  # uninterrupted, alongside
    paths = lifecycle.create(dpo_config(), tmp_path / "killed")
    proc = lifecycle.spawn(paths)
    try:
        deadline = time.monotonic() + 120
        while not (paths.checkpoints / "step-3" / "done").exists():
            assert proc.poll() is None, paths.log.read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.02)
        # a hard kill of every process: torchrun starts each rank in a session of its own, so the launcher's
        # group alone would leave the ranks training
        end_runs_under(paths.dir)
        proc.wait()
        newest = mf.checkpoint_steps(paths)[-1]
        if newest == STEPS:
            pytest.skip("the run finished before the kill landed")
        assert S.effective(paths) == "crashed"
        assert lifecycle.reap(paths, lifecycle.resume(paths)) == "completed", paths.log.read_text()[-3000:]
        assert f"continuing at step {newest + 1}" in paths.log.read_text()
        assert lifecycle.reap(twin, twin_proc) == "completed", twin.log.read_text()[-3000:]
    finally:
        for p in (proc, twin_proc):  # pass or fail, no rank outlives the test
            if p.poll() is None:
                kill_group(p.pid)
                p.wait()

    manifest = mf.read(paths)
    assert manifest["kind"] == "dpo" and manifest["provenance"]["world_size"] == 2
    assert "--multi_gpu" in manifest["launch_argv"] and "engine.dpo.train" in manifest["launch_argv"]
    got, want = stream(paths), stream(twin)
    train_steps = sorted(step for step, split in got if split == M.TRAIN)
    assert train_steps == list(range(1, STEPS + 1))  # the killed attempt's later lines moved aside
    assert got.keys() == want.keys()
    for key, data in want.items():  # every record, step for step: train, eval sets and win-rate
        for name, value in data.items():
            if name in M.CLOCK_KEYS or not isinstance(value, float):
                continue
            assert got[key][name] == pytest.approx(value, rel=1e-5, abs=1e-6), (key, name)
    last = want[(STEPS, M.TRAIN)]
    for name in (M.REWARDS_CHOSEN, M.REWARDS_REJECTED, M.REWARDS_ACCURACIES, M.REWARDS_MARGINS, M.LOGPS_CHOSEN,
                 M.LOGPS_REJECTED, M.MARGIN_MEAN, M.OT_ITERATIONS):
        assert isinstance(last[name], float), name
    assert last[M.REWARDS_MARGINS] != 0.0  # the policy moved off its reference
    win = want[(STEPS, M.eval_split(M.WIN))]
    assert win[M.WIN_RATE_N] == 6 and win[M.KL] != 0.0
    held = predictions.read(paths.dir, M.HELDOUT, STEPS)
    assert len(held.r_pos) == want[(STEPS, M.eval_split(M.HELDOUT))][M.N_PAIRS]
    assert list((Path(paths.checkpoints) / "final").glob("*.safetensors"))
