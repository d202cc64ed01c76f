"""PPO end to end: the real entry point under `accelerate launch` against a tiny RM run made here,
plus the policy helpers whose mistakes would silently skew PPO (padding, masks, RM layout)."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from _cli import aplot, one_line_error
from _procs import group_members, wait_exited
from safetensors.torch import load_file

from engine import config as C
from engine import metrics as M
from engine.data import synthetic
from engine.data.pairs import encode_pairs
from engine.data.rows import Pair
from engine.models import build_reward_model, save_reward_model, train_tokenizer
from engine.rl import policy as P
from engine.runs import launch, lifecycle
from engine.runs import status as S
from engine.runs import store as mf
from engine.runtime import TrainingError

ROOT = Path(__file__).resolve().parents[2]


def tiny_model(cfg: C.Config, vocab: int = 300) -> None:
    cfg.model.max_length = 32
    cfg.model.tiny = C.TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, vocab_size=vocab)


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(synthetic.corpus(0, n=300), 300, max_length=32)


def make_rm_run(root: Path, tokenizer, status: str = "completed") -> str:
    """An RM run folder as engine.rm.train leaves it: manifest (kind rm) + checkpoints/final."""
    cfg = C.Config(kind="rm", name="tiny-rm")
    tiny_model(cfg)
    paths = mf.run_paths(root, mf.new_run_id("tiny-rm", "rm", "bt"))
    mf.create(paths, name=cfg.name, kind="rm", config=C.to_dict(cfg))
    save_reward_model(build_reward_model(cfg.model, tokenizer, seed=1), paths.checkpoints / "final", tokenizer)
    mf.update(paths, status=status, summary={"final_model": "checkpoints/final"})
    return paths.id


def ppo_config(rm_run: str, **optim) -> C.Config:
    cfg = C.Config(kind="ppo", name="tiny-ppo", seed=3)
    tiny_model(cfg)
    cfg.ppo = C.PPOSection(reward_model_run=rm_run, eval_prompts=16, sft_steps=5, rollout_batch=8, minibatch_size=4,
                           max_new_tokens=8, ppo_epochs=2, win_rate_every=1000, samples_logged=2)
    cfg.optim = C.OptimSection(lr=1e-3, **optim)
    cfg.checkpoint = C.CheckpointSection(every=3, keep=2)
    cfg.launch = C.LaunchSection(cpu=True, threads=1)
    return cfg


# ---------------------------------------------------------------------------- the entry point


def kill_after_step_3_checkpoint(paths: mf.RunPaths) -> None:
    """Launch the run, SIGKILL its whole group once step 3's checkpoint is complete; it reads crashed."""
    proc = lifecycle.spawn(paths)
    deadline = time.monotonic() + 90
    while not (paths.checkpoints / "step-3" / "done").exists():
        assert proc.poll() is None, paths.log.read_text()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint within 90 s"
        time.sleep(0.02)
    members = group_members(proc.pid)
    os.killpg(proc.pid, signal.SIGKILL)  # a hard kill: no chance to save anything more
    wait_exited(members)  # exited, not reaped: the ranks may stay zombies, and zombies hold no lock
    assert S.effective(paths) == "crashed"  # at once: no pid is asked, no sleep
    proc.wait()


def test_ppo_killed_after_a_checkpoint_resumes_and_completes(tmp_path, tokenizer):
    rm_id = make_rm_run(tmp_path, tokenizer)
    cfg = ppo_config(rm_id, max_steps=30)
    paths = lifecycle.create(cfg, tmp_path)
    kill_after_step_3_checkpoint(paths)
    newest = mf.checkpoint_steps(paths)[-1]
    assert newest < 30

    proc = lifecycle.resume(paths)
    assert lifecycle.reap(paths, proc) == "completed", paths.log.read_text()[-3000:]
    assert f"continuing at step {newest + 1}" in paths.log.read_text()

    manifest = mf.read(paths)
    assert manifest["exit_code"] == 0
    assert manifest["links"]["reward_model_run"] == rm_id
    assert manifest["resolved"]["total_steps"] == 30
    records = M.read_all(paths.metrics)
    train = [r for r in records if r.split == M.TRAIN]
    assert {r.step for r in train} == set(range(1, 31))  # killed steps are redone, none missing
    for key in (M.KL, M.ENTROPY, M.NON_SCORE_REWARD, M.RLHF_REWARD, M.SCORES, M.APPROXKL, M.CLIPFRAC, M.POLICY_LOSS,
                M.VALUE_LOSS, M.VALUE_CLIPFRAC, M.RESPONSE_LENGTH, M.GOLD_SCORE, M.KL_COEF, M.ADVANTAGE_MEAN,
                M.ADVANTAGE_STD):
        assert isinstance(train[-1].data[key], float), key
    assert train[-1].data[M.KL] != 0.0  # the policy moved away from the reference
    win = [r for r in records if r.split == M.eval_split("win")]
    assert [r.step for r in win] == [0, 30]
    assert win[-1].data[M.WIN_RATE_N] == 16 and 0.0 <= win[-1].data[M.WIN_RATE] <= 1.0
    samples = [r for r in records if r.split == M.SAMPLES][-1].data[M.SAMPLES]
    assert len(samples) == 2 and set(samples[0]) == {"prompt", "response", "score", "gold"}

    ref = load_file(paths.checkpoints / "reference" / "model.safetensors")
    final = load_file(paths.checkpoints / "final" / "model.safetensors")
    assert ref.keys() == final.keys()
    assert any(not torch.equal(ref[k], final[k]) for k in ref)  # PPO changed the parameters


@pytest.mark.heavy
def test_grpo_trains_no_value_head_survives_sigkill_and_resumes(tmp_path, tokenizer):
    """GRPO: k = 2 samples of 4 prompts a step, the KL a loss term; killed after its step-3
    checkpoint, resumed, completed with every step — and no critic anywhere."""
    rm_id = make_rm_run(tmp_path, tokenizer)
    cfg = ppo_config(rm_id, max_steps=8)
    cfg.ppo.advantage, cfg.ppo.samples_per_prompt, cfg.ppo.rollout_batch = "grpo", 2, 4
    paths = lifecycle.create(cfg, tmp_path)
    kill_after_step_3_checkpoint(paths)
    newest = mf.checkpoint_steps(paths)[-1]
    assert newest < 8
    assert lifecycle.reap(paths, lifecycle.resume(paths)) == "completed", paths.log.read_text()[-3000:]
    assert f"continuing at step {newest + 1}" in paths.log.read_text()

    resolved = mf.read(paths)["resolved"]
    assert (resolved["global_rollout"], resolved["samples_per_step"], resolved["tokens_per_step"]) == (4, 8, 64)
    train = [r for r in M.read_all(paths.metrics) if r.split == M.TRAIN]
    assert {r.step for r in train} == set(range(1, 9))
    for r in train:
        assert M.VALUE_LOSS not in r.data and M.VALUE_CLIPFRAC not in r.data
        assert r.data[M.NON_SCORE_REWARD] == 0.0  # the KL is not in the reward
        assert r.data[M.KL_LOSS] >= 0.0 and 0.0 <= r.data[M.FRAC_REWARD_ZERO_STD] <= 1.0
        phases = [r.data[k] for k in (M.TIME_GENERATE, M.TIME_LOGPROBS, M.TIME_REF, M.TIME_SCORE, M.TIME_UPDATE)]
        assert min(phases) > 0.0 and sum(phases) <= r.data[M.TIME_STEP]  # where the step's time went
        assert r.data[M.SAMPLES_PER_S] == pytest.approx(8 / r.data[M.TIME_STEP], rel=1e-2)
    assert train[0].data[M.KL] == 0.0 and train[-1].data[M.KL_LOSS] > 0.0  # sampled from π_ref, then moved off it
    state = load_file(paths.checkpoints / f"step-{mf.checkpoint_steps(paths)[-1]}" / "model.safetensors")
    assert state and not any("v_head" in key for key in state)
    ref = load_file(paths.checkpoints / "reference" / "model.safetensors")
    final = load_file(paths.checkpoints / "final" / "model.safetensors")
    assert ref.keys() == final.keys() and any(not torch.equal(ref[k], final[k]) for k in ref)


def test_rloo_on_two_ranks_puts_the_kl_in_the_reward(tmp_path, tokenizer):
    """RLOO with its groups packed (ppo.pack_groups: each prompt read once for its 2 samples, minibatches
    of whole groups) on two ranks; tests/rl/test_group_pack.py checks the packed log-probs themselves."""
    rm_id = make_rm_run(tmp_path, tokenizer)
    cfg = ppo_config(rm_id, max_steps=2)
    cfg.ppo.advantage, cfg.ppo.samples_per_prompt, cfg.ppo.rollout_batch, cfg.ppo.sft_steps = "rloo", 2, 3, 2
    cfg.ppo.pack_groups = True
    cfg.ppo.bon_samples, cfg.ppo.eval_prompts, cfg.ppo.judge = 4, 5, "gold"  # 5 prompts: 3 on one rank, 2 on the other
    cfg.launch.num_processes = 2
    paths = lifecycle.create(cfg, tmp_path)
    assert lifecycle.reap(paths, lifecycle.spawn(paths)) == "completed", paths.log.read_text()[-3000:]
    resolved = mf.read(paths)["resolved"]
    assert resolved["samples_per_step"] == 3 * 2 * 2 and resolved["pack_groups"] is True
    assert "[aplot] ppo.pack_groups: on" in paths.log.read_text()
    records = M.read_all(paths.metrics)
    (bon,) = [r for r in records if r.split == M.BON_SPLIT]  # the reference's best-of-n curve, gathered once
    assert bon.step == 0 and bon.data["n"] == [1.0, 2.0, 4.0]
    assert bon.data["kl"] == [0.0, math.log(2) - 0.5, math.log(4) - 0.75]
    assert bon.data["proxy"] == sorted(bon.data["proxy"])  # picking the RM's best of more never lowers its score
    assert all(0.0 <= g <= 1.0 for g in bon.data["gold"])  # gold: on-topic words / (words + 2)
    assert bon.data["win"][0] == pytest.approx(0.5)  # best of one against a plain sample: a coin flip, exactly
    train = [r for r in records if r.split == M.TRAIN]
    assert [r.step for r in train] == [1, 2]
    assert all(M.KL_LOSS not in r.data and M.VALUE_LOSS not in r.data for r in train)
    # step 1 samples from the reference itself (KL exactly 0); step 2's policy has moved: −β·KL ≠ 0
    assert train[0].data[M.KL] == 0.0 and train[1].data[M.NON_SCORE_REWARD] != 0.0


@pytest.mark.parametrize("override,expected", [
    ("ppo.samples_per_prompt=1", "aplot: ppo.samples_per_prompt: grpo needs at least 2 samples per prompt"),
    ("ppo.bon_samples=12", "aplot: ppo.bon_samples: the best-of-n curve doubles n up to it, so a power of two")])
def test_bad_rl_settings_fail_before_launch_in_one_line(runs_dir, override, expected):
    line = one_line_error(aplot("run", "--preset", "demo-grpo", override, "ppo.reward_model_run=x", runs_dir=runs_dir))
    assert line.startswith(expected)
    assert not any(runs_dir.iterdir())


@pytest.mark.parametrize("field,make,expected", [
    ("ppo.judge", "unfinished", "ppo.judge: run {id} is 'crashed', not a completed RM run"),
    ("ppo.reward_model_run", "ppo", "ppo.reward_model_run: run {id} is a PPO run, not a completed RM run"),
    ("ppo.opponent", "missing", "ppo.opponent: nope-42: no such run in {root}"),
    ("ppo.judge", "gold-on-a-file", 'ppo.judge: "gold" needs ppo.prompts = "synthetic"')],
    ids=["unfinished-judge", "ppo-run-as-rm", "missing-opponent", "gold-judge-on-a-file"])
def test_the_runs_a_ppo_run_names_are_checked_before_launch(runs_dir, tokenizer, field, make, expected):
    """The reward model, the judge and the opponent: a run that is not a finished one of the right kind
    fails `aplot run` in one line before any run folder or process exists."""
    rm_id = make_rm_run(runs_dir, tokenizer)
    overrides = [f"ppo.reward_model_run={rm_id}"]
    if make == "unfinished":
        named = make_rm_run(runs_dir, tokenizer, status="running")  # its pid is gone: crashed
    elif make == "ppo":
        named = rm_id
        mf.update(mf.run_paths(runs_dir, rm_id), kind="ppo")
    elif make == "missing":
        named = "nope-42"
    else:
        prompts = runs_dir.parent / "prompts.jsonl"
        prompts.write_text('{"prompt": "hi?"}\n')
        named, overrides = "gold", [*overrides, f"ppo.prompts={prompts}"]
    before = set(runs_dir.iterdir())
    line = one_line_error(aplot("run", "--preset", "demo-grpo", *overrides, f"{field}={named}", runs_dir=runs_dir))
    assert line.startswith("aplot: " + expected.format(id=named, root=runs_dir))
    assert set(runs_dir.iterdir()) == before  # no folder, so no process


def test_a_ppo_run_links_the_runs_it_names_by_their_full_ids_before_it_starts(runs_dir, tokenizer):
    """Named by a unique part of its id, the reward model is linked by its whole id in the new run's
    manifest from the moment the folder exists (the preflight found it; nothing is started here)."""
    from engine.runs import lifecycle

    rm_id, judge_id = make_rm_run(runs_dir, tokenizer), make_rm_run(runs_dir, tokenizer)
    cfg = ppo_config(rm_id[-9:], max_steps=2)
    cfg.ppo.judge = judge_id[-9:]
    paths = lifecycle.create(cfg, runs_dir)
    assert mf.read(paths)["links"] == {"reward_model_run": rm_id, "judge_run": judge_id}
    assert mf.read(paths)["status"] == "created"


@pytest.mark.parametrize("world,eval_prompts", [(2, 7), (3, 2)])
def test_ppo_on_several_ranks_counts_every_eval_prompt_once(tmp_path, tokenizer, world, eval_prompts):
    """Uneven shares of the held-out prompts (7 on 2 ranks; 2 on 3 ranks, so one rank judges none) and a
    training pool that no global rollout divides: the run completes and every win-rate counts each
    held-out prompt exactly once."""
    rm_id = make_rm_run(tmp_path, tokenizer)
    cfg = ppo_config(rm_id, max_steps=2)
    cfg.ppo.eval_prompts, cfg.ppo.rollout_batch, cfg.ppo.minibatch_size = eval_prompts, 3, 2
    cfg.ppo.win_rate_every, cfg.ppo.sft_steps = 1, 2
    cfg.launch.num_processes = world
    paths = lifecycle.create(cfg, tmp_path)
    assert lifecycle.reap(paths, lifecycle.spawn(paths)) == "completed", paths.log.read_text()[-3000:]
    manifest = mf.read(paths)
    assert manifest["provenance"]["world_size"] == manifest["resolved"]["world_size"] == world
    assert manifest["resolved"]["global_rollout"] == 3 * world
    assert manifest["resolved"]["n_train_prompts"] % (3 * world) != 0
    win = [r for r in M.read_all(paths.metrics) if r.split == M.eval_split("win")]
    assert [r.step for r in win] == [0, 1, 2]
    assert all(r.data[M.WIN_RATE_N] == eval_prompts for r in win), [r.data for r in win]
    assert [r.step for r in M.read_all(paths.metrics) if r.split == M.TRAIN] == [1, 2]


def test_a_non_finite_ppo_loss_fails_the_run_or_is_skipped(tmp_path, tokenizer):
    """An RM whose head is NaN scores every rollout NaN: PPO stops at step 1 with one line, or with
    optim.skip_nonfinite drops every minibatch, completes, and leaves the policy finite."""
    rm_id = make_rm_run(tmp_path, tokenizer)
    rm_final = mf.run_paths(tmp_path, rm_id).checkpoints / "final" / "model.safetensors"
    from safetensors.torch import save_file

    weights = load_file(rm_final)
    head = next(k for k in weights if "score" in k)
    weights[head] = torch.full_like(weights[head], float("nan"))
    save_file(weights, rm_final)

    failing = lifecycle.create(ppo_config(rm_id, max_steps=2), tmp_path)
    paths = lifecycle.create(ppo_config(rm_id, max_steps=2, skip_nonfinite=True), tmp_path)
    procs = [lifecycle.spawn(failing), lifecycle.spawn(paths)]  # the two runs side by side
    assert lifecycle.reap(failing, procs[0]) == "failed"
    assert mf.read(failing)["error"].startswith("non-finite loss at step 1;")

    assert lifecycle.reap(paths, procs[1]) == "completed", paths.log.read_text()[-3000:]
    assert "[aplot] step 1: non-finite loss, batch skipped" in paths.log.read_text()
    train = [r for r in M.read_all(paths.metrics) if r.split == M.TRAIN]
    assert [r.data[M.SKIPPED_NONFINITE] for r in train] == [4, 4]  # 2 epochs x 2 minibatches, every step
    final = load_file(paths.checkpoints / "final" / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in final.values())


@pytest.mark.heavy
def test_another_rm_run_judges_against_another_ppo_run(tmp_path, tokenizer):
    """judge = an RM run whose head is all zeros (every comparison a tie), opponent = a finished PPO
    run: every eval is 16 ties (rate 0.5, standard error 0), and both runs are linked in the manifest."""
    rm_id = make_rm_run(tmp_path, tokenizer)
    opponent = lifecycle.create(ppo_config(rm_id, max_steps=2), tmp_path)
    assert lifecycle.reap(opponent, lifecycle.spawn(opponent)) == "completed", opponent.log.read_text()[-3000:]
    judge_id = make_rm_run(tmp_path, tokenizer)
    judge_final = mf.run_paths(tmp_path, judge_id).checkpoints / "final" / "model.safetensors"
    from safetensors.torch import save_file

    weights = load_file(judge_final)
    weights = {k: torch.zeros_like(w) if "score" in k else w for k, w in weights.items()}
    save_file(weights, judge_final)

    cfg = ppo_config(rm_id, max_steps=2)
    cfg.ppo.judge, cfg.ppo.opponent, cfg.ppo.win_rate_every = judge_id, opponent.id, 1
    paths = lifecycle.create(cfg, tmp_path)
    assert lifecycle.reap(paths, lifecycle.spawn(paths)) == "completed", paths.log.read_text()[-3000:]
    assert mf.read(paths)["links"] == {"reward_model_run": rm_id, "judge_run": judge_id, "opponent_run": opponent.id}
    win = [r for r in M.read_all(paths.metrics) if r.split == M.eval_split("win")]
    assert [r.step for r in win] == [0, 1, 2]
    for r in win:  # 16 ties: a rate of exactly one half with no spread
        assert (r.data[M.WIN_RATE], r.data[M.WIN_RATE_SE], r.data[M.WIN_RATE_N]) == (0.5, 0.0, 16), r.data
    # the run's own RM (a random head) does not tie: the judge really was the other run
    own = [r for r in M.read_all(opponent.metrics) if r.split == M.eval_split("win")]
    assert all(r.data[M.WIN_RATE_SE] > 0 for r in own), [r.data for r in own]


def test_ppo_on_an_unfinished_rm_run_is_refused_before_any_folder_exists(tmp_path, tokenizer):
    rm_id = make_rm_run(tmp_path, tokenizer, status="running")
    before = sorted(tmp_path.iterdir())
    with pytest.raises(C.ConfigError) as e:
        lifecycle.create(ppo_config(rm_id, max_steps=2), tmp_path)
    assert e.value.problems == [f"ppo.reward_model_run: run {rm_id} is 'crashed', not a completed RM run"]  # nothing holds it
    assert sorted(tmp_path.iterdir()) == before


def test_a_linked_run_gone_since_the_preflight_fails_the_trainer_in_one_line(tmp_path, tokenizer):
    """The trainer reads the preflight's [links] and never searches the store; a run removed between the
    preflight and the start is one line, not a traceback."""
    rm_id = make_rm_run(tmp_path, tokenizer)
    paths = lifecycle.create(ppo_config(rm_id, max_steps=2), tmp_path)
    assert mf.read(paths)["links"] == {"reward_model_run": rm_id}
    shutil.rmtree(tmp_path / rm_id)
    env = launch.env(C.from_dict(mf.read(paths)["config"]))
    proc = subprocess.run([sys.executable, "-m", "engine.rl.train", "--run-dir", str(paths.dir)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    manifest = mf.read(paths)
    assert manifest["status"] == "failed" and manifest["error"].startswith(f"[links] reward_model_run: {rm_id}: "), manifest
    assert f"[aplot] failed: {manifest['error']}" in proc.stderr.splitlines()


def test_model_runs_are_checked_before_use(tmp_path, tokenizer):
    find_model_run = lifecycle.find_model_run

    rm_id = make_rm_run(tmp_path, tokenizer)
    folder, run_id = find_model_run(tmp_path, rm_id[-4:], "rm", "ppo.reward_model_run")  # a unique suffix works
    assert (run_id, folder) == (rm_id, tmp_path / rm_id / "checkpoints" / "final")
    assert find_model_run(tmp_path, str(folder), "rm", "ppo.judge")[0] == folder  # so does an export's path
    with pytest.raises(mf.RunError, match=f"^ppo.opponent: run {rm_id} is an RM run, not a completed PPO run$"):
        find_model_run(tmp_path, rm_id, "ppo", "ppo.opponent")
    with pytest.raises(mf.RunError, match="^ppo.judge: nope: no such run in "):
        find_model_run(tmp_path, "nope", "rm", "ppo.judge")


def test_prompt_files_split_into_disjoint_train_and_heldout(tmp_path):
    from engine.rl.train import load_prompts

    path = tmp_path / "prompts.jsonl"
    rows = [{"prompt": f"question {i}?"} for i in range(30)] + [{"prompt": "question 3?"}]
    rows.append({"prompt": [{"role": "user", "content": "hi"}]})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cfg = C.Config(kind="ppo", seed=1)
    cfg.ppo = C.PPOSection(reward_model_run="x", prompts=str(path), eval_prompts=10, rollout_batch=8)
    train, held, hashes = load_prompts(cfg)
    assert len(held) == 10 and len(train) == 21 and not set(train) & set(held)
    assert "\n\nHuman: hi\n\nAssistant:" in train + held
    assert len(hashes["prompts"]) == 64
    path.write_text('{"prompt": "ok"}\n{"text": "no prompt"}\n')
    with pytest.raises(TrainingError, match=r"prompts.jsonl:2: expected a JSON object with a \"prompt\" field"):
        load_prompts(cfg)


# ---------------------------------------------------------------------------- policy helpers


def test_response_mask_keeps_tokens_through_the_first_eos():
    eos = 2
    responses = torch.tensor([[5, 6, 2, 2, 2], [5, 2, 7, 2, 9], [5, 6, 7, 8, 9]])
    expected = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]])
    mask = P.response_mask(responses, eos)
    assert torch.equal(mask, expected)
    assert P.ends_with_eos(responses, mask, eos).tolist() == [True, True, False]


def test_left_padded_logprobs_equal_unpadded_ones(tokenizer):
    cfg = C.Config()
    tiny_model(cfg)
    policy = P.PolicyWithValue(P.build_causal_lm(cfg.model, tokenizer, seed=0)).eval()
    torch.nn.init.normal_(policy.v_head.weight)  # a non-zero head, so values are checked too
    prompts = P.encode_prompts(tokenizer, ["fruit: dog red plum.", "tool: saw."], 24)
    assert len(prompts[0]) > len(prompts[1])
    responses = torch.tensor([[10, 11, 12], [13, 14, tokenizer.eos_token_id]])
    ids, mask = P.left_pad(prompts, tokenizer.pad_token_id)
    r_mask = P.response_mask(responses, tokenizer.eos_token_id)
    with torch.no_grad():
        batch = P.sequence_logprobs(policy, ids, mask, responses, r_mask, temperature=0.7)
        for row in range(2):
            one_ids, one_mask = P.left_pad([prompts[row]], tokenizer.pad_token_id)
            alone = P.sequence_logprobs(policy, one_ids, one_mask, responses[row:row + 1], r_mask[row:row + 1], 0.7)
            for got, want in zip(batch, alone, strict=True):
                torch.testing.assert_close(got[row], want[0], atol=1e-5, rtol=1e-5)


def test_scores_use_the_rm_training_layout(tokenizer):
    cfg = C.Config()
    tiny_model(cfg)
    rm = build_reward_model(cfg.model, tokenizer, seed=0).eval()
    prompts, responses = ["fruit: dog red plum.", "color: cat."], [" apple pear", " red"]
    got = P.score(rm, tokenizer, prompts, responses, max_length=32, device="cpu")
    for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        ids = torch.tensor([encode_pairs(tokenizer, [Pair(p, r, r)], 32)[0]["chosen_ids"]])
        with torch.no_grad():
            want, _ = rm(ids, torch.ones_like(ids))
        assert got[i].item() == pytest.approx(want.item(), abs=1e-5)
