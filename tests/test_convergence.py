"""Steps to BT's final accuracy (bench/convergence.py), on metrics streams written by hand: the
interpolated crossing, the upper bound at a first eval, the never-reached seed, and the per-seed
intervals against BT, every number computed here by hand."""

from __future__ import annotations

import pytest

from bench import convergence as C
from bench import real_accuracy as RA
from engine import metrics as M

# method → seed → held-out (`id`) accuracy at steps 10, 20, 30, 40 (the last is the final eval)
CURVES = {
    "bt": {0: [0.50, 0.55, 0.60, 0.70], 1: [0.50, 0.56, 0.62, 0.68]},  # finals: target = 0.69
    "aplot": {0: [0.55, 0.65, 0.75, 0.75], 1: [0.50, 0.60, 0.70, 0.72]},
    "aplot-minmax": {0: [0.70, 0.72, 0.74, 0.74], 1: [0.50, 0.52, 0.54, 0.55]},  # seed 0 at once, seed 1 never
}


def stream(path, accs):
    """One run's metrics file: a train record per step, an `id` and an `ood` eval every 10 steps."""
    w = M.MetricsWriter(path)
    for i, acc in enumerate(accs):
        for s in range(10 * i + 1, 10 * i + 11):
            w.write(s, M.TRAIN, {M.LOSS: 0.7})
        w.write(10 * i + 10, M.EVAL_PREFIX + "id", {M.ACCURACY: acc, M.N_PAIRS: 100})
        w.write(10 * i + 10, M.EVAL_PREFIX + "ood", {M.ACCURACY: 0.5, M.N_PAIRS: 100})
    w.close()


@pytest.fixture
def runs(tmp_path):
    out = []
    for method, seeds in CURVES.items():
        for seed, accs in seeds.items():
            path = tmp_path / f"{method}-{seed}.jsonl"
            stream(path, accs)
            out.append({"method": method, "seed": seed, **RA.run_result(M.read_all(path))})
    return out


def test_crossing_is_interpolated_bounded_at_the_first_eval_or_none():
    curve = [[20, 0.6], [10, 0.5], [30, 0.8]]  # out of order on purpose
    assert C.crossing_step(curve, 0.55) == (pytest.approx(15.0), False)
    assert C.crossing_step(curve, 0.7) == (pytest.approx(25.0), False)
    assert C.crossing_step(curve, 0.6) == (20.0, False)  # exactly at an eval
    assert C.crossing_step(curve, 0.4) == (10.0, True)
    assert C.crossing_step(curve, 0.81) == (None, False)
    assert C.crossing_step([[10, None], [20, 0.9]], 0.5) == (20.0, True)  # a missing accuracy is no point


def test_convergence_of_hand_made_streams(runs):
    rep = C.convergence(runs, "id")
    assert rep["target"] == pytest.approx(0.69)
    bt, ap, mm = (rep["methods"][m] for m in ("bt", "aplot", "aplot-minmax"))
    # bt seed 0: 0.60 @30 → 0.70 @40: 30 + 0.09/0.10·10 = 39; seed 1 ends at 0.68 < 0.69: never
    assert bt["steps"] == {0: pytest.approx(39.0), 1: None} and (bt["reached"], bt["runs"]) == (1, 2)
    # aplot seed 0: 0.65 @20 → 0.75 @30: 20 + 0.4·10 = 24; seed 1: 0.60 @20 → 0.70 @30: 29
    assert ap["steps"] == {0: pytest.approx(24.0), 1: pytest.approx(29.0)}
    assert ap["mean"] == pytest.approx(26.5)
    half = 12.706204736174707 * 2.5  # t(0.975, 1) · sd / √n: sd of (24, 29) = 5/√2, / √2 = 2.5
    assert (ap["low"], ap["high"]) == (pytest.approx(26.5 - half), pytest.approx(26.5 + half))
    assert ap["vs_reference"]["seeds"] == [0] and ap["vs_reference"]["diffs"] == [pytest.approx(-15.0)]
    assert mm["steps"] == {0: 10.0, 1: None} and mm["upper_bound_seeds"] == [0]
    assert ap["total_steps"] == 40 and ap["evals_per_run"] == [4]


def test_convergence_table_marks_bounds_and_never(runs):
    text = C.markdown(C.convergence(runs, "id"), "toy")
    rows = {ln.split(" | ")[0][2:]: ln for ln in text.splitlines() if ln.startswith("| ") and "---" not in ln}
    assert "0.6900" in text
    assert rows["bt"].startswith("| bt | 1/2 | 0: 39, 1: — | 39 | 98 % | — |")
    assert "| 2/2 | 0: 24, 1: 29 | 26 [" in rows["aplot"] and "| -15 |" in rows["aplot"]
    assert "0: 10≤, 1: —" in rows["aplot-minmax"]


def test_no_reference_runs_means_no_target():
    rep = C.convergence([{"method": "aplot", "seed": 0, "steps": 10, "curve": {"id": [[10, 0.7]]}}])
    assert rep["target"] is None and rep["methods"]["aplot"]["steps"] == {}


def test_decoder_methods_are_named_by_their_switches():
    axes = {"loss.type": "bt", "loss.aplot.normalize_costs": "none", "loss.length.balance": False}
    assert RA.method_label(axes) == "bt"
    assert RA.method_label({**axes, "loss.length.balance": True}) == "bt-balance"
    assert RA.method_label({**axes, "loss.type": "aplot", "loss.aplot.normalize_costs": "minmax"}) == "aplot-minmax"


def test_a_sweep_of_three_methods_reports_each_against_bt(tmp_path):
    """Fixture runs made one sweep's seed 0 (BT and two APLOT methods): the convergence table reads
    their curves, and the statistics compare each method with BT, not 'three groups'."""
    import shutil
    from pathlib import Path

    import tomli_w

    from engine.runs import store as mf
    from engine.runs import sweeps as sweep

    fixtures = Path(__file__).parent / "fixtures" / "runs"
    bt, ap = "20260301-091500-rm-bt-base-a1f3", "20260301-101500-rm-aplot-hh-b2c4"
    sweep_id = "20260301-090000-sweep-dec-0a0b"
    made = []
    for src, run_id, loss, norm in ((bt, bt, "bt", "none"), (ap, ap, "aplot", "none"),
                                    (ap, "20260301-111500-rm-aplot-hh-c3d5", "aplot", "minmax")):
        shutil.copytree(fixtures / src, tmp_path / run_id)
        mf.update(mf.RunPaths(tmp_path / run_id), config={"seed": 0},
                  sweep={"id": sweep_id, "seed": 0, "axes": {"loss.type": loss, "loss.aplot.normalize_costs": norm}})
        made.append(run_id)
    folder = sweep.sweep_dir(tmp_path, sweep_id)
    folder.mkdir(parents=True)
    (folder / sweep.STATE).write_text(tomli_w.dumps({"id": sweep_id, "name": "dec", "runs": made}))
    report, text = RA.convergence_report(tmp_path, "dec", "heldout")
    assert set(report["methods"]) == {"bt", "aplot", "aplot-minmax"} and report["completed"] == "3/3"
    assert report["methods"]["bt"]["reached"] == 1 and "| bt | 1/1 |" in text
    _, lines = RA.sweep_report(tmp_path, "dec")
    assert "bt vs aplot:" in lines and "bt vs aplot-minmax:" in lines
    assert not any("compare two at a time" in ln for ln in lines)
    assert "seed 0, bt vs aplot-minmax:" in lines
