"""`aplot compare` puts the marked runs' diagnostics side by side (accuracy against the length rules)."""

from aplot_tui.views import report, run_data
from engine.analysis import bias_checks as D
from engine.metrics import MetricsWriter
from engine.runs import store as mf


def _run(root, rid, rewards_c, rewards_r):
    paths = mf.run_paths(root, rid)
    mf.create(paths, name=rid[-4:], kind="rm", config={"loss": {"type": "bt"}})
    diag = D.diagnostics(rewards_c, rewards_r, [10, 40, 12, 60], [30, 10, 11, 20])
    with MetricsWriter(paths.metrics) as w:
        w.write(1, "train", {"loss": 0.6, "accuracy": 0.5})
        w.write(1, "eval/ood", {"accuracy": 0.5, **diag})
    return paths, diag


def test_compare_table_has_each_runs_diagnostics(tmp_path):
    a, da = _run(tmp_path, "20260101-000000-rm-bt-a-0001", [1, 2, 0.5, 3], [0, 2.5, 1, 1])
    b, db = _run(tmp_path, "20260101-000001-rm-bt-b-0002", [-10, 5, 0, -8], [-40, 1, 0, -20])  # ≈ −length
    rows = {r["id"]: r for r in run_data.table_rows([run_data.load_run(d) for d in [a.dir, b.dir]])}
    key = "eval/ood/" + D.REWARD_LENGTH_CORR
    assert rows[a.id][f"{key} final"] == da[D.REWARD_LENGTH_CORR]
    assert rows[b.id][f"{key} final"] == db[D.REWARD_LENGTH_CORR]
    assert rows[a.id][f"eval/ood/{D.SHORTER_WINS_ACC} final"] == da[D.SHORTER_WINS_ACC]
    assert rows[b.id][f"eval/ood/{D.ECE} final"] == db[D.ECE]
    text = report.format_table(list(rows.values()), "md")
    assert "diag/shorter_wins_acc" in text
