"""`aplot compare`: metrics as rows and runs as columns in 100 columns, the statistics with a
verdict, and wide CSV / Markdown that carry the same numbers."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
from _cli import aplot

from aplot_tui.views import report, run_data, significance
from engine.analysis import predictions as P
from engine.analysis import stats

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "runs"
BT, APLOT, PPO = "20260301-091500-rm-bt-base-a1f3", "20260301-101500-rm-aplot-hh-b2c4", "20260303-100000-ppo-demo-e5f7"


@pytest.fixture
def store(tmp_path) -> Path:
    shutil.copytree(FIXTURES, tmp_path / "runs")
    return tmp_path / "runs"


def test_the_demo_pair_fits_in_100_columns_with_metrics_as_rows(store):
    proc = aplot("compare", APLOT, PPO, runs_dir=store)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert max(map(len, lines)) <= 100, max(lines, key=len)
    assert lines[0].startswith(f"A  {APLOT}") and lines[1].startswith(f"B  {PPO}")
    rows = {line.split()[0] + (" " + line.split()[1] if line.split()[1] in ("final", "best") else ""): line.split()[-2:]
            for line in lines[3:] if line and not line.startswith((" ", "statistics", "config"))
            and len(line.split()) >= 3}
    assert rows["eval/heldout/accuracy final"] == ["0.7602", "—"]
    assert rows["eval/win/win_rate final"] == ["—", "0.8387"]


def test_two_runs_get_a_paired_interval_a_mcnemar_p_and_a_verdict(store):
    proc = aplot("compare", BT, APLOT, runs_dir=store)
    assert proc.returncode == 0, proc.stderr
    expected = stats.paired(P.read(store / BT, "heldout").correct, P.read(store / APLOT, "heldout").correct)
    (line,) = [x for x in proc.stdout.splitlines() if x.strip().startswith("eval/heldout:")]
    assert f"Δ {expected.diff * 100:+.1f} [{expected.low * 100:+.1f}, {expected.high * 100:+.1f}]" in line
    assert f"{expected.only_a}/{expected.only_b} discordant" in line
    assert line.endswith(expected.verdict("A", "B"))
    assert max(map(len, proc.stdout.splitlines())) <= 100


def test_csv_stays_wide_and_markdown_carries_the_verdict(store, tmp_path):
    proc = aplot("compare", BT, APLOT, "--format", "csv", runs_dir=store)
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert [r["id"] for r in rows] == [BT, APLOT]  # one row per run, every metric a column
    key = f"eval/heldout/accuracy vs {BT}"
    assert rows[0][f"{key} diff"] == "" and float(rows[1][f"{key} mcnemar_p"]) < 1
    assert "eval/heldout/accuracy final" in rows[0]
    md = report.export_compare([store / BT, store / APLOT], tmp_path / "t.md").read_text()
    analysis = significance.analyse([run_data.load_run(store / BT), run_data.load_run(store / APLOT)])
    assert analysis.pairs[0].result.verdict("A", "B") in md and "McNemar p" in md


def test_identical_runs_are_within_noise(store):
    shutil.copytree(store / BT, store / "20260301-091600-rm-bt-copy-a1f4")
    proc = aplot("compare", BT, "20260301-091600-rm-bt-copy-a1f4", runs_dir=store)
    (line,) = [x for x in proc.stdout.splitlines() if x.strip().startswith("eval/heldout:")]
    assert "Δ +0.0 [+0.0, +0.0]  0/0 discordant  → difference within noise (p = 1)" in line


def test_two_groups_over_seeds_get_mean_sd_and_a_difference_paired_by_seed(store):
    from engine.runs import store as mf

    copies = {BT: "20260301-091600-rm-bt-seed5-a1f5", APLOT: "20260301-101600-rm-aplot-seed5-b2c5"}
    for src, dst in copies.items():
        shutil.copytree(store / src, store / dst)
        mf.update(mf.RunPaths(store / dst), config={"seed": 5})
    for src in copies:
        mf.update(mf.RunPaths(store / src), config={"seed": 1})
    runs = [BT, copies[BT], APLOT, copies[APLOT]]
    proc = aplot("compare", *runs, runs_dir=store)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    # groups are not A/B (the runs' letters): G1/G2, named by the full field
    assert "\n  G1 = data.eval.ood=None loss.type=bt\n  G2 = data.eval.ood=data/ood.jsonl loss.type=aplot\n" in out
    data = [run_data.load_run(store / r) for r in runs]
    (heldout, *_) = significance.analyse(data).groups
    r = heldout.result
    assert r.seeds == [1, 5] and r.n_a == r.n_b == 2
    acc = {run.id: significance.final_accuracy(run, "heldout") for run in data}
    assert r.diffs == pytest.approx([acc[APLOT] - acc[BT], acc[copies[APLOT]] - acc[copies[BT]]])
    assert f"G1 {r.mean_a:.3f} ± {r.sd_a:.3f} (n=2)" in out and f"Δ {r.diff * 100:+.1f}" in out
    assert max(map(len, out.splitlines())) <= 100


STOPPED, FAILED = "20260302-120000-rm-aplot-emd-d4e6", "20260302-083000-rm-label-smoothing-c3d5"


def test_compare_says_each_runs_step_and_warns_of_unfinished_runs_and_different_steps(store):
    proc = aplot("compare", BT, STOPPED, runs_dir=store)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "  A  step 200 of 200, completed; last eval at step 200\n" in out
    assert "  B  step 120 of 200, stopped; last eval at step 100\n" in out
    assert "⚠ last evals at different steps (A 200, B 100)" in out
    assert "⚠ B stopped at step 120 of 200: its numbers are not those of a finished run" in out
    assert out.index("where each run stands") < out.index("statistics")  # read before the verdict
    data = [run_data.load_run(store / r) for r in (BT, STOPPED)]
    assert significance.warnings(data, {BT: "A", STOPPED: "B"}) == [  # what the compare screen shows
        "last evals at different steps (A 200, B 100): a gap may be training time, not config",
        "B stopped at step 120 of 200: its numbers are not those of a finished run"]
    same = aplot("compare", BT, APLOT, runs_dir=store).stdout
    assert "⚠" not in same  # both completed, both last evaluated at step 200


def copies_of(store: Path, src: str, n: int) -> list[str]:
    """n copies of a run, each at its own learning rate (one run per config: no groups over seeds)."""
    from engine.runs import store as mf

    ids = [f"{src[:-4]}{i:04x}" for i in range(n)]
    for i, dst in enumerate(ids):
        shutil.copytree(store / src, store / dst)
        mf.update(mf.RunPaths(store / dst), config={"optim": {"lr": 1e-5 * (i + 1)}})
    return ids


def test_several_runs_against_a_are_holm_corrected(store):
    others = copies_of(store, APLOT, 3)
    single = stats.paired(P.read(store / BT, "heldout").correct, P.read(store / APLOT, "heldout").correct)
    assert single.p < 0.05 and single.p * 3 > 0.05  # alone "B better"; one of three, within noise
    out = aplot("compare", BT, *others, runs_dir=store).stdout
    lines = [x for x in out.splitlines() if x.strip().startswith("eval/heldout:")]
    assert len(lines) == 3 and "Holm-adjusted over the runs on each set" in out
    holm = min(1.0, 3 * single.p)
    assert all(line.endswith(f"→ difference within noise (p = {single.p:.2g}, Holm {holm:.2g})") for line in lines)
    alone = aplot("compare", BT, others[0], runs_dir=store).stdout
    assert "Holm" not in alone and f"better, p = {single.p:.2g}" in alone


def write_sweep(store: Path, runs: list[str]) -> str:
    import tomli_w

    sweep_id = "20260304-000000-sweep-lr-9a9a"
    folder = store / "sweeps" / sweep_id
    folder.mkdir(parents=True)
    (folder / "sweep.toml").write_text(tomli_w.dumps({"id": sweep_id, "name": "lr", "runs": runs}))
    return sweep_id


def test_compare_sweep_takes_every_run_of_the_sweep_and_json_carries_it_all(store):
    sweep_id = write_sweep(store, [BT, APLOT, STOPPED])
    proc = aplot("compare", "sweep:lr", "--json", runs_dir=store)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert [(r["letter"], r["id"], r["status"], r["step"], r["eval_step"]) for r in got["runs"]] == [
        ("A", BT, "completed", 200, 200), ("B", APLOT, "completed", 200, 200), ("C", STOPPED, "stopped", 120, 100)]
    assert any(w.startswith("C stopped at step 120") for w in got["warnings"])
    (pair,) = got["pairs"]  # the stopped run has no per-pair predictions shared with A
    expected = stats.paired(P.read(store / BT, "heldout").correct, P.read(store / APLOT, "heldout").correct)
    assert (pair["a"], pair["b"], pair["mcnemar_p"], pair["holm_p"]) == (BT, APLOT, expected.p, None)
    assert pair["verdict"] == expected.verdict("A", "B")
    assert got["config_diff"]["loss.type"] == ["bt", "aplot", "aplot"]
    assert [row["id"] for row in got["table"]] == [BT, APLOT, STOPPED]
    text = aplot("compare", f"sweep:{sweep_id}", BT, runs_dir=store)  # a run named twice counts once
    assert text.returncode == 0 and "C  20260302-120000" in text.stdout and "D  " not in text.stdout
    bad = aplot("compare", "sweep:nope", BT, runs_dir=store)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "nope: no such sweep" in bad.stderr
