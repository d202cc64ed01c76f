"""RM ensembles: the three aggregations and the disagreement metrics on hand-computed numbers, and
one member scoring exactly as the single RM does."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
from _cli import aplot, one_line_error
from _procs import group_members, run_processes_under, wait_exited, wait_for
from safetensors.torch import load_file

from engine import config as C
from engine import metrics as M
from engine.analysis import overopt
from engine.data import synthetic
from engine.models import build_reward_model, save_reward_model, train_tokenizer
from engine.rl import ensemble as E
from engine.rl import policy as P
from engine.runs import lifecycle
from engine.runs import status as S
from engine.runs import store as mf
from rl.test_train import make_rm_run, ppo_config

ROOT = Path(__file__).resolve().parents[2]

# three members (rows) scoring three samples (columns)
SCORES = torch.tensor([[1.0, 2.0, 3.0],
                       [3.0, 2.0, 0.0],
                       [2.0, 5.0, 0.0]])


def test_mean_worst_and_uwo_by_hand():
    assert E.aggregate(SCORES, "mean").tolist() == [2.0, 3.0, 1.0]
    # worst: column 1 ties at 2 (two members), column 2 ties at 0: the tied value either way
    assert E.aggregate(SCORES, "worst").tolist() == [1.0, 2.0, 0.0]
    # population variances over members: (1 + 1 + 0)/3, (1 + 1 + 4)/3, (4 + 1 + 1)/3
    torch.testing.assert_close(E.aggregate(SCORES, "uwo", 0.5), torch.tensor([2 - 1 / 3, 3 - 1.0, 1 - 1.0]))
    assert E.aggregate(SCORES, "uwo", 0.0).tolist() == E.aggregate(SCORES, "mean").tolist()


def test_members_that_all_agree_make_every_aggregate_the_same():
    tied = torch.tensor([[0.5, -1.0], [0.5, -1.0], [0.5, -1.0]])
    for how in E.AGGREGATES:
        assert E.aggregate(tied, how, 2.0).tolist() == [0.5, -1.0], how


def test_one_member_is_its_own_reward_under_every_aggregate():
    one = torch.tensor([[0.1234567, -2.5, 7.0]])
    for how in E.AGGREGATES:
        assert torch.equal(E.aggregate(one, how, 3.0), one[0]), how


def test_a_rank_with_no_samples_aggregates_to_nothing():
    for how in E.AGGREGATES:
        assert E.aggregate(torch.zeros(3, 0), how, 1.0).shape == (0,)


def test_an_unknown_aggregate_is_refused():
    with pytest.raises(ValueError, match="mean, worst, uwo"):
        E.aggregate(SCORES, "median")


def test_disagreement_metrics_by_hand():
    scores = torch.tensor([[1.0, 2.0, 0.0, 0.0],
                           [3.0, 2.0, 1.0, 1.0]])
    reference = torch.tensor([[0.0, 3.0, 0.0, 0.0],
                              [1.0, 1.0, 1.0, 0.0]])
    lengths = torch.tensor([2, 4, 0, 1])
    got = E.disagreement(scores, lengths, reference)
    assert got[M.ENSEMBLE_MEAN] == pytest.approx(10 / 8)
    # per-sample std over the two members: 1, 0, 0.5, 0.5
    assert got[M.ENSEMBLE_STD] == pytest.approx(2 / 4)
    # ÷ length (0 counts as 1): 1/2, 0/4, 0.5/1, 0.5/1
    assert got[M.ENSEMBLE_STD_PER_LENGTH] == pytest.approx(1.5 / 4)
    # signs against the reference: (+, +) agree; (−, +) disagree; (0, 0) agree; (0, +) disagree
    assert E.sign_disagreement(scores, reference).tolist() == [False, True, False, True]
    assert got[M.ENSEMBLE_SIGN_DISAGREE] == 0.5


def test_one_member_has_no_spread_and_never_disagrees():
    got = E.disagreement(torch.tensor([[1.0, -2.0]]), torch.tensor([3, 3]), torch.tensor([[5.0, -9.0]]))
    assert got[M.ENSEMBLE_STD] == got[M.ENSEMBLE_STD_PER_LENGTH] == got[M.ENSEMBLE_SIGN_DISAGREE] == 0.0


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(synthetic.corpus(0, n=300), 300, max_length=32)


@pytest.fixture(scope="module")
def two_rms(tok):
    cfg = C.Config()
    cfg.model.max_length = 32
    cfg.model.tiny = C.TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, vocab_size=300)
    other = train_tokenizer(synthetic.corpus(1, n=200), 260, max_length=32)  # a member with its own tokenizer
    return ((build_reward_model(cfg.model, tok, seed=1).eval(), tok),
            (build_reward_model(cfg.model, other, seed=2).eval(), other))


PROMPTS, TEXTS = ["fruit: dog red plum.", "color: cat.", "tool: saw."], [" apple pear", " red", " hammer saw saw"]


def test_one_member_scores_exactly_as_the_single_rm(two_rms):
    (rm, tok), _ = two_rms
    single = P.score(rm, tok, PROMPTS, TEXTS, E.rm_max_length(tok), "cpu")
    for how in E.AGGREGATES:
        assert torch.equal(E.Ensemble([(rm, tok)], how, 0.7, "cpu").score(PROMPTS, TEXTS), single), how


def test_each_member_scores_its_own_tokenisation(two_rms):
    (rm_a, tok_a), (rm_b, tok_b) = two_rms
    assert tok_a.get_vocab() != tok_b.get_vocab()
    ens = E.Ensemble([(rm_a, tok_a), (rm_b, tok_b)], "worst", device="cpu")
    got = ens.member_scores(PROMPTS, TEXTS)
    assert got.shape == (2, 3)
    assert torch.equal(got[0], P.score(rm_a, tok_a, PROMPTS, TEXTS, 32, "cpu"))
    assert torch.equal(got[1], P.score(rm_b, tok_b, PROMPTS, TEXTS, 32, "cpu"))
    assert torch.equal(ens.score(PROMPTS, TEXTS), torch.minimum(got[0], got[1]))


# ---------------------------------------------------------------------------- the entry point


def member_runs(root, tokenizer, seeds) -> list[str]:
    """Completed RM runs (exported, untrained: no RM training needed) whose heads differ by seed."""
    ids = []
    for seed in seeds:
        run_id = make_rm_run(root, tokenizer)
        cfg = C.Config(kind="rm")
        cfg.model.max_length = 32
        cfg.model.tiny = C.TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, vocab_size=300)
        save_reward_model(build_reward_model(cfg.model, tokenizer, seed=seed), root / run_id / "checkpoints" / "final",
                          tokenizer)
        ids.append(run_id)
    return ids


def hard_kill_after_step_3(paths) -> None:
    """Launch the run and SIGKILL every process of it once step 3's checkpoint is complete. On several
    ranks the workers each have a session of their own (torch's elastic launcher starts them so), so the
    launcher's group alone is not the run: every group whose command line names the run folder is."""
    proc = lifecycle.spawn(paths)
    wait_for(lambda: (paths.checkpoints / "step-3" / "done").exists() or proc.poll() is not None, 120,
             "step 3's checkpoint")
    assert proc.poll() is None, paths.log.read_text()[-3000:]
    groups = set(run_processes_under(paths.dir).values())
    members = [pid for g in groups for pid in group_members(g)]
    for group in groups:
        os.killpg(group, signal.SIGKILL)
    wait_exited(members)
    assert S.effective(paths) == S.CRASHED
    proc.wait()


def train_records(paths) -> dict[int, dict]:
    """Each step's train metrics, less those read off the wall clock."""
    return {r.step: {k: v for k, v in r.data.items() if k not in M.CLOCK_KEYS}
            for r in M.read_all(paths.metrics) if r.split == M.TRAIN}


@pytest.mark.heavy
def test_ensemble_grpo_on_two_ranks_killed_and_resumed_matches_an_uninterrupted_run(tmp_path, tok):
    """Three members, uwo, GRPO on 2 gloo ranks: one run SIGKILLed after its step-3 checkpoint and resumed,
    one run left alone, side by side. Every step's metrics (the disagreement among them), every win-rate
    eval and the final weights agree exactly."""
    members = member_runs(tmp_path, tok, seeds=(11, 12, 13))
    cfg = ppo_config("", max_steps=6)
    # a hair-trigger warning (W = 1, any rise of both), so six steps show where it fires and that a resume keeps it
    cfg.ppo.ensemble = C.EnsembleSection(members=members, aggregate="uwo", uwo_lambda=0.5, warn_window=1,
                                         warn_ratio=0.0, warn_patience=1)
    cfg.ppo.advantage, cfg.ppo.samples_per_prompt, cfg.ppo.rollout_batch, cfg.ppo.sft_steps = "grpo", 2, 2, 2
    cfg.ppo.eval_prompts, cfg.ppo.win_rate_every, cfg.ppo.ppo_epochs, cfg.ppo.bon_samples = 6, 3, 1, 4
    cfg.launch.num_processes = 2
    whole, killed = lifecycle.create(cfg, tmp_path), lifecycle.create(cfg, tmp_path)
    assert mf.read(killed)["links"] == {"ensemble_members": members}
    proc = lifecycle.spawn(whole)
    hard_kill_after_step_3(killed)
    resumed = lifecycle.resume(killed)
    assert lifecycle.reap(whole, proc) == "completed", whole.log.read_text()[-3000:]
    assert lifecycle.reap(killed, resumed) == "completed", killed.log.read_text()[-3000:]
    assert "continuing at step 4" in killed.log.read_text()

    want, got = train_records(whole), train_records(killed)
    assert sorted(got) == list(range(1, 7)) and got == want
    for key in M.ENSEMBLE_KEYS:
        assert all(isinstance(r[key], float) for r in got.values()), key
    assert any(r[M.ENSEMBLE_STD] > 0 for r in got.values())  # three different heads do disagree
    win = [[r.data for r in M.read_all(p.metrics) if r.split == M.eval_split(M.WIN)] for p in (whole, killed)]
    assert win[0] == win[1] and len(win[1]) == 3 and all(M.ENSEMBLE_STD in d for d in win[1])
    steps = sorted(got)
    alarm = overopt.first_alarm(steps, [got[s][M.SCORES] for s in steps], [got[s][M.ENSEMBLE_STD] for s in steps],
                                overopt.Rule(window=1, ratio=0.0, patience=1))
    assert alarm is not None
    def said(log: str) -> list[str]:
        return [line for line in log.splitlines() if "over-optimisation warning" in line]

    assert said(whole.log.read_text()) == [alarm.line()]  # once, at the step the stream shows
    first, resumed = killed.log.read_text().split("continuing at step 4")
    # the resumed attempt says it only if it is new there (the killed one may have said it, even at step 4)
    assert said(resumed) == ([alarm.line()] if alarm.step > 3 else []) and set(said(first)) <= {alarm.line()}
    bons = [[r.data for r in M.read_all(p.metrics) if r.split == M.BON_SPLIT] for p in (whole, killed)]
    assert bons[0] == bons[1] and bons[0][0][M.BON_N] == [1.0, 2.0, 4.0]  # best-of-n picked by the ensemble
    assert bons[0][0][M.BON_PROXY] == sorted(bons[0][0][M.BON_PROXY])
    a = load_file(whole.checkpoints / "final" / "model.safetensors")
    b = load_file(killed.checkpoints / "final" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert mf.read(killed)["resolved"]["reward_model"] == [
        str(tmp_path / m / "checkpoints" / "final") for m in members]


# ---------------------------------------------------------------------------- preflight


def ensemble_ppo(members: list[str]) -> C.Config:
    cfg = ppo_config("", max_steps=2)
    cfg.ppo.ensemble = C.EnsembleSection(members=members, aggregate="worst")
    return cfg


def as_sweep(root, sweep_id: str, run_ids: list[str]) -> None:
    """Mark runs as a sweep's, in the given order, as engine.runs.sweeps.create records them."""
    for index, run_id in enumerate(run_ids):
        mf.update(mf.run_paths(root, run_id), sweep={"id": sweep_id, "index": index, "seed": index, "axes": {}})


def test_a_sweeps_runs_become_the_members_in_the_sweeps_order(tmp_path, tok):
    a, b, c = member_runs(tmp_path, tok, seeds=(1, 2, 3))
    as_sweep(tmp_path, "20261207-0100-sweep-ensemble-members", [c, a])
    as_sweep(tmp_path, "20261207-0200-sweep-other", [b])
    paths = lifecycle.create(ensemble_ppo(["sweep:ensemble-members", b]), tmp_path)
    assert mf.read(paths)["links"] == {"ensemble_members": [c, a, b]}
    assert mf.read(paths)["status"] == "created"


def test_the_example_sweep_trains_five_length_tempted_members():
    from engine.runs import sweep_spec

    sweep = sweep_spec.load(ROOT / "examples" / "ensemble-members.toml")
    assert [p.cfg.seed for p in sweep.points] == [0, 1, 2, 3, 4]
    assert {(p.cfg.kind, p.cfg.data.length_bias) for p in sweep.points} == {("rm", 0.5)}


@pytest.mark.parametrize("case,expected", [
    ("unfinished", "ppo.ensemble.members[1]: run {bad} is 'crashed', not a completed RM run"),
    ("ppo-run", "ppo.ensemble.members[1]: run {bad} is a PPO run, not a completed RM run"),
    ("twice", "ppo.ensemble.members[1]: {bad} is already a member; name each reward model once"),
    ("no-sweep", "ppo.ensemble.members[1]: sweep:nope: no runs of such a sweep in {root}")],
    ids=["unfinished", "ppo-run", "twice", "no-sweep"])
def test_members_are_checked_before_any_folder_exists(tmp_path, tok, case, expected):
    (good,) = member_runs(tmp_path, tok, seeds=(1,))
    bad = {"unfinished": lambda: make_rm_run(tmp_path, tok, status="running"), "twice": lambda: good,
           "ppo-run": lambda: make_rm_run(tmp_path, tok), "no-sweep": lambda: "sweep:nope"}[case]()
    if case == "ppo-run":
        mf.update(mf.run_paths(tmp_path, bad), kind="ppo")
    before = sorted(tmp_path.iterdir())
    with pytest.raises(C.ConfigError) as e:
        lifecycle.create(ensemble_ppo([good, bad]), tmp_path)
    assert e.value.problems == [expected.format(bad=bad, root=tmp_path)]
    assert sorted(tmp_path.iterdir()) == before


def test_aplot_run_refuses_a_member_without_its_tokenizer_in_one_line(runs_dir, tok):
    good, bare = member_runs(runs_dir, tok, seeds=(1, 2))
    export = runs_dir / bare / "checkpoints" / "final"
    (export / "tokenizer_config.json").unlink()
    before = sorted(runs_dir.iterdir())
    proc = aplot("run", "--preset", "demo-grpo", f'ppo.ensemble.members=["{good}", "{bare}"]', runs_dir=runs_dir)
    assert proc.returncode == 2
    assert one_line_error(proc) == (f"aplot: ppo.ensemble.members[1]: {bare}'s export {export} carries no tokenizer "
                                    "(tokenizer_config.json); a member scores its own tokenisation, so its export "
                                    "must hold it")
    assert sorted(runs_dir.iterdir()) == before


def test_one_rm_named_twice_ways_is_refused_by_the_config():
    with pytest.raises(C.ConfigError, match=r"^ppo.ensemble.members: set either it or ppo.reward_model_run"):
        C.from_dict({"kind": "ppo", "ppo": {"reward_model_run": "x", "ensemble": {"members": ["y"]}}})
