"""Two RL runs compared prompt by prompt: each win-rate eval keeps every held-out prompt's judge outcome
and score (predictions/win/step-N.npy), so GRPO runs over seeds get the paired interval and verdict
reward models get; a run against its own copy gives 0 and p = 1."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from _cli import aplot

from aplot_tui.views import run_data, significance
from engine import metrics as M
from engine.analysis import predictions as P
from engine.analysis import stats
from engine.runs import lifecycle
from engine.runs import store as mf
from rl.test_train import make_rm_run, ppo_config, tokenizer  # noqa: F401 - the module fixture


@pytest.fixture(scope="module")
def two_grpo_runs(tmp_path_factory, tokenizer):  # noqa: F811 - the imported fixture
    root = tmp_path_factory.mktemp("rl-compare")
    rm_id = make_rm_run(root, tokenizer)
    started = []
    for seed in (3, 4):  # side by side: each is one process on one thread
        cfg = ppo_config(rm_id, max_steps=2)
        cfg.seed, cfg.name = seed, f"grpo-s{seed}"
        cfg.ppo.advantage, cfg.ppo.samples_per_prompt, cfg.ppo.rollout_batch = "grpo", 2, 4
        paths = lifecycle.create(cfg, root)
        started.append((paths, lifecycle.spawn(paths)))
    for paths, proc in started:
        assert lifecycle.reap(paths, proc) == "completed", paths.log.read_text()[-3000:]
    return root, [paths.id for paths, _ in started]


def test_each_win_rate_eval_keeps_every_prompts_outcome_and_gold(two_grpo_runs):
    root, (a, _) = two_grpo_runs
    assert P.steps(root / a, M.WIN) == [0, 2]  # the start of the curve and the end
    out = P.read(root / a, M.WIN)
    assert isinstance(out, P.Outcomes) and len(out.outcome) == 16 and len(set(out.prompt.tolist())) == 16
    assert set(out.outcome.tolist()) <= {0.0, 0.5, 1.0} and np.isfinite(out.gold).all()
    (win,) = [r for r in M.read_all(mf.RunPaths(root / a).metrics) if r.split == M.eval_split(M.WIN) and r.step == 2]
    assert win.data[M.WIN_RATE] == pytest.approx(float(out.outcome.mean()), abs=1e-6)  # the same eval


def test_two_grpo_seeds_get_a_paired_interval_on_the_same_prompts(two_grpo_runs):
    root, (a, b) = two_grpo_runs
    pa, pb = P.read(root / a, M.WIN), P.read(root / b, M.WIN)
    assert sorted(pa.prompt.tolist()) == sorted(pb.prompt.tolist())  # seeds differ, held-out prompts do not
    proc = aplot("compare", a, b, runs_dir=root)
    assert proc.returncode == 0, proc.stderr
    order_a, order_b = np.argsort(pa.prompt), np.argsort(pb.prompt)
    win = stats.paired_values(pa.outcome[order_a], pb.outcome[order_b])
    gold = stats.paired_values(pa.gold[order_a], pb.gold[order_b])
    (win_line,) = [x for x in proc.stdout.splitlines() if x.strip().startswith("eval/win/win_rate:")]
    assert f"Δ {win.diff * 100:+.1f} [{win.low * 100:+.1f}, {win.high * 100:+.1f}]" in win_line
    assert win_line.endswith(win.verdict("A", "B"))
    (gold_line,) = [x for x in proc.stdout.splitlines() if x.strip().startswith("eval/win/objective/gold_score:")]
    assert f"Δ {gold.diff:+.3f} [{gold.low:+.3f}, {gold.high:+.3f}]" in gold_line
    assert "prompt by prompt (16 shared held-out prompts)" in proc.stdout
    assert win.only_a + win.only_b > 0 and gold.only_a + gold.only_b == 16  # two runs, not one run twice
    data = [run_data.load_run(root / r) for r in (a, b)]
    assert significance.verdict_line(significance.analyse(data), {a: "A", b: "B"}).startswith("eval/win/win_rate: B − A")


def test_a_grpo_run_against_its_copy_gives_zero_and_p_one(two_grpo_runs, tmp_path):
    root, (a, _) = two_grpo_runs
    store = tmp_path / "runs"
    shutil.copytree(root / a, store / a)
    copy = a[:-4] + "c0c0"
    shutil.copytree(root / a, store / copy)
    proc = aplot("compare", a, copy, runs_dir=store)
    (line,) = [x for x in proc.stdout.splitlines() if x.strip().startswith("eval/win/win_rate:")]
    assert "Δ +0.0 [+0.0, +0.0]  0/0 discordant  → difference within noise (p = 1)" in line
