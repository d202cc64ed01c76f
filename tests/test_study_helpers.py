"""The real-data study's helpers (bench/real_accuracy.py, bench/study_report.py), not its trainings:
the data splits, one run's results, the table, and the report over a sweep's runs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from bench import real_accuracy as RA
from bench import study_report as SR
from engine import metrics as M
from engine.analysis import bias_checks as D

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


# ---------------------------------------------------------------------------- splits


def test_shuffle_split_is_seeded_disjoint_and_sized():
    rows = list(range(100))
    train, test = RA.shuffle_split(rows, 60, 30, seed=0)
    assert (len(train), len(test)) == (60, 30)
    assert not set(train) & set(test)
    assert RA.shuffle_split(rows, 60, 30, seed=0) == (train, test)
    assert RA.shuffle_split(rows, 60, 30, seed=1) != (train, test)
    assert train != rows[:60]  # shuffled, not the file order
    with pytest.raises(ValueError):
        RA.shuffle_split(rows, 80, 30, seed=0)


def test_prompt_split_keeps_each_prompt_on_one_side():
    rows = [{"prompt": f"p{i % 25}", "chosen": f"c{i}", "rejected": f"r{i}"} for i in range(100)]  # 4 per prompt
    train, test = RA.prompt_split(rows, 0.2, seed=0)
    assert len(train) + len(test) == 100
    assert len(test) == 20  # five whole prompts of four pairs reach the target exactly
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in test}
    assert RA.prompt_split(rows, 0.2, seed=0) == (train, test)


@pytest.mark.skipif(not DATA.is_dir(), reason="needs ../shared/data")
def test_study_splits_of_the_real_data(tmp_path):
    files = RA.write_splits(["a", "b"], root=tmp_path)
    a = {k: RA.read_jsonl(Path(v)) for k, v in files["a"].items()}
    b = {k: RA.read_jsonl(Path(v)) for k, v in files["b"].items()}
    assert (len(a["train"]), len(a["id"]), len(a["ood"])) == (1800, 512, 732)
    assert not {r["chosen"] + r["rejected"] for r in a["train"]} & {r["chosen"] + r["rejected"] for r in a["id"]}
    assert len(b["train"]) + len(b["id"]) == 732
    assert 0.17 <= len(b["id"]) / 732 <= 0.25
    assert not {r["prompt"] for r in b["train"]} & {r["prompt"] for r in b["id"]}
    assert b["ood"] == a["id"]  # direction b's OOD set is direction a's HH test split
    again = RA.write_splits(["a"], root=tmp_path)
    assert Path(again["a"]["train"]).read_bytes() == Path(files["a"]["train"]).read_bytes()


# ---------------------------------------------------------------------------- runs and overrides


def rec(step, split, **data):
    return M.Record(0.0, step, split, data)


def test_run_result_reads_curves_finals_and_margin_after_warmup():
    records = [
        rec(1, "train", loss=0.7),  # warm-up: no margin logged
        rec(2, "train", loss=0.6, **{M.MARGIN_MEAN: 0.5, M.MARGIN_STD: 0.1, M.MARGIN_GAP_CORR: 0.2}),
        rec(2, "eval/id", accuracy=0.55, n_pairs=4),
        rec(2, "eval/ood", accuracy=0.45, n_pairs=4),
        rec(3, "train", loss=0.5, **{M.MARGIN_MEAN: 0.7, M.MARGIN_STD: 0.3, M.MARGIN_GAP_CORR: None}),
        rec(3, "eval/id", accuracy=0.6, n_pairs=4, **{D.ACC_CHOSEN_SHORTER: 1.0, D.N_CHOSEN_SHORTER: 2,
                                                      D.SHORTER_WINS_ACC: 0.75}),
        rec(3, "eval/ood", accuracy=0.5, n_pairs=4),
    ]
    out = RA.run_result(records)
    assert out["steps"] == 3 and out["final_train_loss"] == 0.5
    assert out["curve"] == {"id": [[2, 0.55], [3, 0.6]], "ood": [[2, 0.45], [3, 0.5]]}
    assert out["final"]["id"]["accuracy"] == 0.6 and out["final"]["id"]["shorter_wins_acc"] == 0.75
    assert out["final"]["id"]["buckets"] == {"chosen_shorter": 1.0, "similar": None, "chosen_longer": None}
    assert out["margin"] == {"mean": pytest.approx(0.6), "std": pytest.approx(0.2), "gap_corr": 0.2, "steps": 2}
    assert RA.run_result(records[:1] + records[2:4])["margin"] is None  # BT: no margin at all


def result(method, seed, id_acc, ood_acc=0.5, curve=None, margin=None, direction="a", buckets=None):
    bucket_n = {"chosen_shorter": 2, "similar": 1, "chosen_longer": 1}
    ev = {"accuracy": id_acc, "buckets": buckets or {b: id_acc for b in D.BUCKETS}, "bucket_n": bucket_n,
          "shorter_wins_acc": 0.625, "n_pairs": 4}
    return {"method": method, "seed": seed, "direction": direction, "steps": 112,
            "final": {"id": ev, "ood": {**ev, "accuracy": ood_acc}},
            "curve": {"id": curve or [[112, id_acc]]}, "margin": margin}


# ---------------------------------------------------------------------------- report statistics


def test_mean_sd_is_the_sample_sd_and_ignores_missing():
    out = SR.mean_sd([0.60, 0.62, 0.64, None])
    assert out["mean"] == pytest.approx(0.62) and out["sd"] == pytest.approx(0.02) and out["n"] == 3
    assert SR.mean_sd([0.7]) == {"mean": 0.7, "sd": None, "n": 1}
    assert SR.mean_sd([]) == {"mean": None, "sd": None, "n": 0}


def test_steps_to_reach_is_the_first_eval_at_or_above_the_target():
    curve = [[56, 0.61], [28, 0.55], [84, 0.60], [112, 0.63]]  # out of order on purpose
    assert SR.steps_to_reach(curve, 0.60) == 56
    assert SR.steps_to_reach(curve, 0.61) == 56  # equal counts as reached
    assert SR.steps_to_reach(curve, 0.62) == 112
    assert SR.steps_to_reach(curve, 0.64) is None
    assert SR.steps_to_reach([], 0.5) is None


def test_shorter_wins_buckets_by_hand():
    # 64 pairs: 25 chosen shorter (rule right), 23 chosen longer (rule wrong), 16 similar;
    # overall 31.5/64 ⇒ the similar bucket scored 6.5/16
    got = SR.shorter_wins_buckets(31.5 / 64, {"chosen_shorter": 25, "similar": 16, "chosen_longer": 23})
    assert got == {"chosen_shorter": 1.0, "similar": pytest.approx(0.40625), "chosen_longer": 0.0}
    empty = SR.shorter_wins_buckets(0.5, {"chosen_shorter": 0, "similar": 10, "chosen_longer": 0})
    assert empty == {"chosen_shorter": None, "similar": pytest.approx(0.5), "chosen_longer": None}


def test_shorter_wins_buckets_agree_with_the_rule_applied_per_bucket():
    rng = np.random.default_rng(0)
    len_c, len_r = rng.integers(1, 80, 300), rng.integers(1, 80, 300)
    len_r[:20] = len_c[:20]  # ties score a half
    diag = D.diagnostics(np.zeros(300), np.zeros(300), len_c, len_r)
    bucket_n = {b: diag[D.BUCKET_N[b]] for b in D.BUCKETS}
    got = SR.shorter_wins_buckets(diag[D.SHORTER_WINS_ACC], bucket_n)
    buckets = D.length_buckets(len_c, len_r)
    for b in D.BUCKETS:
        sel = buckets == b
        assert got[b] == pytest.approx(D.length_rule_accuracy(len_c[sel], len_r[sel], "shorter"))


def test_direction_report_rows_target_and_convergence():
    runs = [
        result(SR.UNTRAINED, 0, 0.50),
        result("bt", 0, 0.60, curve=[[28, 0.55], [112, 0.60]]),
        result("bt", 1, 0.64, curve=[[28, 0.62], [112, 0.64]]),
        result("aplot", 0, 0.66, margin={"mean": 0.5, "std": 0.1, "gap_corr": 0.3},
               curve=[[28, 0.63], [112, 0.66]]),
        result("aplot", 1, 0.58, margin={"mean": 0.7, "std": 0.3, "gap_corr": None},
               curve=[[28, 0.50], [112, 0.58]]),
    ]
    rep = SR.direction_report(runs, ["bt", "aplot"], "test")
    assert rep["bt_target"] == pytest.approx(0.62)
    assert [r["method"] for r in rep["rows"]] == [SR.UNTRAINED, SR.SHORTER_WINS, "bt", "aplot"]
    untrained, rule, bt, aplot = rep["rows"]
    assert "steps_to_bt" not in untrained and "margin" not in bt
    assert bt["steps_to_bt"] == {"values": [None, 28], "reached": 1, "n": 2, "mean": 28}
    assert aplot["steps_to_bt"]["values"] == [28, None]
    assert aplot["id"]["mean"] == pytest.approx(0.62) and aplot["id"]["sd"] == pytest.approx(math.sqrt(0.0032))
    assert aplot["margin"] == {"mean": pytest.approx(0.6), "std": pytest.approx(0.2), "gap_corr": 0.3}
    assert rule["id"]["mean"] == 0.625
    # 4 pairs, 2 chosen shorter, 1 similar, 1 chosen longer: 2.5/4 ⇒ the similar pair is a tie
    assert rule["buckets"]["id"] == {"chosen_shorter": 1.0, "similar": 0.5, "chosen_longer": 0.0}

    text = SR.markdown({"settings": {"max_length": 128, "lr": 2e-5, "max_steps": 0}, "methods": {"bt": []},
                        "directions": {"a": rep}})
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert table[1].startswith("| untrained | 0 | 0.500 |")
    assert table[3].startswith("| bt | 0,1 | 0.620 ± 0.028 |") and "28 (1/2 seeds)" in table[3]
    assert "| 0.600 | 0.200 | +0.300 |" in table[4]
    assert "1.00 / 0.50 / 0.00" in table[2]


def test_with_the_test_sets_scored_only_at_the_end_the_steps_column_reads_the_curve_set():
    """eval.final_only: `id` has one point, at the end, so every method 'reaches' BT there; the column
    reads the small `curve` set scored along the way instead, and says so."""
    def along(method, seed, final, points):
        r = result(method, seed, 0.6)
        r["final"]["curve"] = {**r["final"]["id"], "accuracy": final}
        r["curve"]["curve"] = points
        return r

    runs = [along("bt", 0, 0.60, [[23, 0.50], [46, 0.58], [112, 0.60]]),
            along("aplot", 0, 0.61, [[23, 0.55], [46, 0.61], [112, 0.61]])]
    rep = SR.direction_report(runs, ["bt", "aplot"], "t")
    assert rep["convergence_set"] == "curve" and rep["bt_target"] == pytest.approx(0.60)
    bt, aplot = rep["rows"][-2:]
    assert bt["steps_to_bt"]["values"] == [112] and aplot["steps_to_bt"]["values"] == [46]
    text = SR.markdown({"settings": {"max_length": 256, "lr": 1e-4, "max_steps": 0}, "methods": {"bt": []},
                        "directions": {"a": rep}})
    assert "steps to BT's curve acc (of 112)" in text
    assert SR.direction_report([result("bt", 0, 0.6)], ["bt"], "t")["convergence_set"] == "id"


def test_never_reaching_bt_reads_never():
    runs = [result("bt", 0, 0.60), result("aplot", 0, 0.55, curve=[[28, 0.5], [112, 0.55]])]
    row = SR.direction_report(runs, ["bt", "aplot"], "t")["rows"][-1]
    assert row["steps_to_bt"]["reached"] == 0 and SR.fmt_steps(row["steps_to_bt"]) == "never"


def test_the_report_of_a_sweep_is_the_study_table_with_its_statistics(tmp_path):
    """Two fixture runs (BT, APLOT) made one sweep's seed-0 pair: rows per method, stats per set."""
    import shutil

    import tomli_w

    from engine.runs import store as mf
    from engine.runs import sweeps as sweep

    fixtures = Path(__file__).parent / "fixtures" / "runs"
    bt, ap = "20260301-091500-rm-bt-base-a1f3", "20260301-101500-rm-aplot-hh-b2c4"
    sweep_id = "20260301-090000-sweep-study-0a0b"
    for run_id, loss in ((bt, "bt"), (ap, "aplot")):
        shutil.copytree(fixtures / run_id, tmp_path / run_id)
        mf.update(mf.RunPaths(tmp_path / run_id), config={"seed": 0},
                  sweep={"id": sweep_id, "seed": 0, "axes": {"loss.type": loss, "loss.aplot.normalize_costs": "none"}})
    folder = sweep.sweep_dir(tmp_path, sweep_id)
    folder.mkdir(parents=True)
    (folder / sweep.STATE).write_text(tomli_w.dumps({"id": sweep_id, "name": "study", "runs": [bt, ap]}))
    result, lines = RA.sweep_report(tmp_path, "study")
    rows = {r["method"]: r for r in result["directions"]["study"]["rows"]}
    assert set(rows) == {"bt", "aplot", "shorter wins"} and rows["bt"]["seeds"] == [0]
    assert result["settings"]["completed"] == "2/2"
    assert any(line.startswith("  eval/heldout: bt ") and "discordant" in line for line in lines)
    assert RA.method_label({"loss.type": "aplot", "loss.aplot.normalize_costs": "minmax"}) == "aplot-minmax"


def test_a_kept_sweep_carries_its_record_without_weights_and_resumes_its_queue(tmp_path):
    """`keep` copies what a fresh machine needs to report a sweep and start its queued runs: manifests,
    metrics, predictions; never checkpoints, locks or heartbeats. A run still going is refused."""
    import shutil

    import tomli_w

    from engine.runs import status as S
    from engine.runs import store as mf
    from engine.runs import sweeps as sweep

    root, dest = tmp_path / "runs", tmp_path / "kept"
    fixtures = Path(__file__).parent / "fixtures" / "runs"
    done, waiting = "20260301-091500-rm-bt-base-a1f3", "20260301-101500-rm-aplot-hh-b2c4"
    sweep_id = "20260301-090000-sweep-study-0a0b"
    for run_id in (done, waiting):
        shutil.copytree(fixtures / run_id, root / run_id)
        mf.update(mf.RunPaths(root / run_id), sweep={"id": sweep_id, "seed": 0, "axes": {"loss.type": "bt"}})
    (root / done / "checkpoints" / "step-10").mkdir(parents=True)
    (root / done / "checkpoints" / "step-10" / "model.safetensors").write_bytes(b"weights")
    (root / done / "heartbeat").write_text("1")
    (root / done / "hard_pairs.jsonl").write_text('{"prompt": "the data\'s own text"}\n')
    folder = sweep.sweep_dir(root, sweep_id)
    folder.mkdir(parents=True)
    (folder / sweep.STATE).write_text(tomli_w.dumps({"id": sweep_id, "name": "study", "runs": [done, waiting]}))
    (folder / sweep.LOCK).write_text("")

    mf.update(mf.RunPaths(root / waiting), status=S.CREATED)  # claimed by a live scheduler: going
    with pytest.raises(SystemExit, match=f"{waiting}: created"):
        RA.keep(root, "study", dest)
    assert not dest.exists()

    mf.update(mf.RunPaths(root / waiting), status=S.QUEUED)
    assert RA.keep(root, "study", dest) == [done, waiting]
    assert not (dest / done / "checkpoints").exists() and not (dest / done / "heartbeat").exists()
    assert not (dest / done / "hard_pairs.jsonl").exists()
    assert not (sweep.sweep_dir(dest, sweep_id) / sweep.LOCK).exists()
    assert (dest / done / "predictions").is_dir()
    assert (dest / done / "metrics.jsonl").read_bytes() == (root / done / "metrics.jsonl").read_bytes()
    states = {s.paths.id: s for s in sweep.run_states(dest, sweep.read_state(dest, sweep_id))}
    assert states[done].status == S.COMPLETED and states[waiting].pending
    assert RA.run_result(M.read_all(states[done].paths.metrics)) == RA.run_result(M.read_all(root / done / "metrics.jsonl"))

    (root / done / "train.log").write_text("later\n")  # keeping again replaces the earlier copy
    RA.keep(root, "study", dest)
    assert (dest / done / "train.log").read_text() == "later\n"
