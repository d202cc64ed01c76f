"""A LoRA RM run on a base model folder: its best/final checkpoints hold the adapter alone (with the
base named, so the model can be rebuilt), `aplot eval` scores them as the run did, `aplot export`
writes the merged model and the adapter, and a resume from a step checkpoint is exact."""

from __future__ import annotations

import math

import pytest
import torch
from _cli import aplot, eval_records, launch_eval
from conftest import TINY_RM

from engine import metrics as M
from engine.runs import store as mf


def lora_config(base) -> str:
    """The tiny test config on a base model folder, with LoRA on."""
    return TINY_RM.replace("[model]\n", f'[model]\nname = "{base}"\n') + "[model.lora]\nr = 2\nalpha = 8\n"


def size(folder) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    """A base model folder (a tiny Llama RM with its tokenizer) and a finished 12-step LoRA run on it."""
    from engine.config import ModelSection, TinyModelConfig
    from engine.data.sources import synthetic_pairs
    from engine.models import build_reward_model, save_reward_model, train_tokenizer

    root = tmp_path_factory.mktemp("lora")
    pairs = synthetic_pairs(240, 0, 0.0).pairs
    tok = train_tokenizer([p.prompt + p.chosen for p in pairs] + [p.rejected for p in pairs], vocab_size=256,
                          max_length=48)
    tiny = TinyModelConfig(hidden_size=64, num_layers=1, num_heads=2, vocab_size=256)
    base = save_reward_model(build_reward_model(ModelSection(name="tiny", max_length=48, tiny=tiny), tok),
                             root / "base", tokenizer=tok)
    config = root / "lora.toml"
    config.write_text(lora_config(base))
    runs = root / "runs"
    runs.mkdir()
    proc = aplot("run", config, "optim.max_steps=12", "eval.every=6", "checkpoint.every=6", "checkpoint.keep=5",
                 "-q", runs_dir=runs, timeout=600)
    assert proc.returncode == 0, proc.stderr
    (paths, manifest), = mf.list_runs(runs)
    return runs, paths, manifest, base


def test_checkpoints_hold_the_adapter_with_its_base_named(lora_run):
    import json

    runs, paths, manifest, base = lora_run
    assert manifest["status"] == "completed"
    full = (base / "model.safetensors").stat().st_size
    for name in ("best", "final"):
        folder = paths.checkpoints / name
        adapter = json.loads((folder / "adapter_config.json").read_text())
        assert adapter["base_model_name_or_path"] == str(base.resolve())
        assert not (folder / "model.safetensors").exists()
        assert (folder / "adapter_model.safetensors").stat().st_size < full / 10
        assert size(folder) < size(base) / 2
        from safetensors import safe_open

        with safe_open(folder / "adapter_model.safetensors", "pt") as f:  # the trained head is in the adapter
            assert any("score" in k for k in f.keys()) and any("lora_A" in k for k in f.keys())
    for step in mf.checkpoint_steps(paths):  # step checkpoints: the trainable weights and their optimizer state
        assert size(paths.checkpoints / f"step-{step}") < full / 4


def test_eval_of_a_lora_run_reproduces_its_heldout_accuracy(lora_run):
    runs, paths, manifest, _ = lora_run
    own = eval_records(paths)[M.HELDOUT]
    got = eval_records(launch_eval(runs, paths.id, "--which", "final"))[M.HELDOUT]
    assert got[M.N_PAIRS] == own[M.N_PAIRS] and got[M.ACCURACY] == own[M.ACCURACY]
    assert math.isclose(got[M.LOSS], own[M.LOSS], abs_tol=1e-6)


def test_export_writes_the_merged_model_and_the_adapter(lora_run, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    runs, paths, _, base = lora_run
    out = tmp_path / "out"
    assert aplot("export", paths.id, "--which", "final", "--out", out, runs_dir=runs).returncode == 0
    assert (out / "model.safetensors").is_file() and (out / "adapter" / "adapter_model.safetensors").is_file()
    tok = AutoTokenizer.from_pretrained(out)
    inputs = tok(["Human: hi there", "Human: how are you"], ["Assistant: fine", "Assistant: well, thanks"],
                 truncation="only_first", padding=True, return_tensors="pt")
    merged = AutoModelForSequenceClassification.from_pretrained(out).eval()
    adapted = PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained(base, num_labels=1),
                                        out / "adapter").eval()
    with torch.no_grad():
        a, b = merged(**inputs).logits[:, 0], adapted(**inputs).logits[:, 0]
    assert torch.allclose(a, b, atol=1e-6, rtol=0), (a, b)


def test_resume_from_a_lora_step_checkpoint_is_exact(lora_run, tmp_path):
    import shutil

    runs, paths, _, _ = lora_run
    copy = tmp_path / "runs"
    shutil.copytree(runs, copy)
    (p2,) = [p for p, m in mf.list_runs(copy) if m["kind"] == "rm"]
    assert mf.checkpoint_steps(p2) == [6, 12]
    want = {r.step: r.data[M.LOSS] for r in M.read_all(p2.metrics) if r.split == M.TRAIN}
    shutil.rmtree(p2.checkpoints / "step-12")  # as if the run had died after step 6's checkpoint
    mf.update(p2, status="failed")
    done = aplot("resume", p2.id, "-q", runs_dir=copy)
    assert done.returncode == 0, done.stderr
    assert "resumed from step-6" in p2.log.read_text()
    got = {r.step: r.data[M.LOSS] for r in M.read_all(p2.metrics) if r.split == M.TRAIN}
    assert sorted(got) == list(range(1, 13))
    assert all(got[s] == pytest.approx(want[s], rel=1e-6, abs=1e-7) for s in range(7, 13)), (got, want)
