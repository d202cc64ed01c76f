"""DPO with LoRA: the adapters train, the reference is the start without them, step checkpoints hold
the adapters alone, the export is a plain merged policy, and a resume from a step checkpoint is exact.
The run also scores one eval set at the end only (`eval.final_only`)."""

from __future__ import annotations

import json
import shutil

import pytest
from _cli import aplot
from safetensors import safe_open

from engine import metrics as M
from engine.runs import store as mf

STEPS, EVERY = 6, 3


@pytest.fixture(scope="module")
def lora_dpo(tmp_path_factory):
    root = tmp_path_factory.mktemp("dpo-lora")
    runs = root / "runs"
    runs.mkdir()
    extra = root / "extra.jsonl"
    extra.write_text("".join(json.dumps({"prompt": f"say {w}", "chosen": f" {w} {w}", "rejected": " no"}) + "\n"
                             for w in ("red", "blue", "green", "black", "white", "pink")))
    proc = aplot("run", "--preset", "demo-dpo", "dpo.pairs=data", "dpo.judge=none", "dpo.sft_steps=4",
                 "data.synthetic_pairs=120", f"data.eval.extra={json.dumps(str(extra))}", 'eval.final_only=["extra"]',
                 "model.tiny.num_layers=1", "model.lora.r=4", "model.lora.alpha=8", "optim.batch_size=8",
                 f"optim.max_steps={STEPS}", f"eval.every={EVERY}", f"checkpoint.every={EVERY}", "checkpoint.keep=5",
                 "-q", runs_dir=runs, timeout=600)
    assert proc.returncode == 0, proc.stderr
    (paths, manifest), = mf.list_runs(runs)
    return runs, paths, manifest


def tensors(path) -> dict:
    with safe_open(path, "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def test_the_adapters_train_and_the_export_is_the_merged_policy(lora_dpo):
    _, paths, manifest = lora_dpo
    assert manifest["status"] == "completed"
    res = manifest["resolved"]
    assert 0 < res["n_trainable_params"] < res["n_params"] / 10
    evals = {(r.step, r.split) for r in M.read_all(paths.metrics) if r.split.startswith("eval/")}
    assert evals == {(3, "eval/heldout"), (6, "eval/heldout"), (6, "eval/extra")}
    for step in (EVERY, STEPS):  # step checkpoints: the adapters alone, nothing of the frozen base
        keys = tensors(paths.checkpoints / f"step-{step}" / "model.safetensors")
        assert keys and all("lora_" in k for k in keys), sorted(keys)[:5]
    final = paths.checkpoints / "final"
    assert not (final / "adapter_config.json").exists()
    start, end = tensors(paths.checkpoints / "reference" / "model.safetensors"), tensors(final / "model.safetensors")
    assert set(start) == set(end)  # plain HF names: the adapters merged in, loadable without peft
    q = next(k for k in start if k.endswith("q_proj.weight"))
    k = next(k for k in start if k.endswith("k_proj.weight"))
    assert not (start[q] == end[q]).all()  # peft's default targets (q, v) moved
    assert (start[k] == end[k]).all() and (start["lm_head.weight"] == end["lm_head.weight"]).all()


def test_resume_from_a_lora_step_checkpoint_is_exact(lora_dpo, tmp_path):
    runs, _, _ = lora_dpo
    copy = tmp_path / "runs"
    shutil.copytree(runs, copy)
    (paths, _), = mf.list_runs(copy)
    want = {r.step: r.data for r in M.read_all(paths.metrics) if r.split == M.TRAIN}
    shutil.rmtree(paths.checkpoints / f"step-{STEPS}")  # as if the run had died after step 3's checkpoint
    mf.update(paths, status="failed")
    done = aplot("resume", paths.id, "-q", runs_dir=copy)
    assert done.returncode == 0, done.stderr
    assert f"resumed from step-{EVERY}" in paths.log.read_text()
    got = {r.step: r.data for r in M.read_all(paths.metrics) if r.split == M.TRAIN}
    assert sorted(got) == list(range(1, STEPS + 1))
    for s in range(EVERY + 1, STEPS + 1):
        for key in (M.LOSS, M.REWARDS_MARGINS, M.LOGPS_CHOSEN):
            assert got[s][key] == pytest.approx(want[s][key], rel=1e-6, abs=1e-7), (s, key)
