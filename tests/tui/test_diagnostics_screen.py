"""The run screen's `d` opens the diagnostics of a real run folder: table values and hard pairs."""

import asyncio

from aplot_tui.app import AplotApp
from aplot_tui.widgets.bias_panel import DiagnosticsTable, HardPairInspector
from engine.analysis import bias_checks as D
from engine.metrics import MetricsWriter
from engine.runs import store as mf


def _run_folder(root):
    paths = mf.run_paths(root, "20260305-100000-rm-aplot-diag-0001")
    mf.create(paths, name="diag", kind="rm", config={"loss": {"type": "aplot"}})
    mf.update(paths, status="completed")
    diag = D.diagnostics([1.0, 2.0, 0.5, 3.0], [0.0, 2.5, 1.0, 1.0], [10, 40, 12, 60], [30, 10, 11, 20])
    with MetricsWriter(paths.metrics) as w:
        w.write(1, "train", {"loss": 0.7})
        w.write(1, "eval/heldout", {"accuracy": 0.5, **diag})
    pairs = [{"prompt": f"p{i}", "chosen": f"chosen text {i}", "rejected": f"rejected text {i}"} for i in range(4)]
    D.append_hard_pairs(paths.hard_pairs, 1, "heldout",
                        D.hard_pair_records(pairs, [1.0, 2.0, 0.5, 3.0], [0.0, 2.5, 1.0, 1.0], k=2))
    return paths, diag


def test_d_opens_live_diagnostics_with_the_hardest_pair_first(tmp_path):
    paths, diag = _run_folder(tmp_path)

    async def drive():
        app = AplotApp(runs_dir=tmp_path)
        async with app.run_test(size=(140, 40)) as pilot:
            app.open_run(paths.id)
            await pilot.pause()
            await pilot.press("d")
            for _ in range(50):  # the worker reads the stream in the background
                await pilot.pause(0.05)
                table = app.screen.query_one(DiagnosticsTable)
                inspector = app.screen.query_one(HardPairInspector)
                if table.evals and inspector.entries:
                    break
            assert table.evals["heldout"][1][D.ECE] == diag[D.ECE]
            entry = inspector.entry
            assert entry["pairs"][0]["gap"] == -0.5  # pair 1: 2.0 − 2.5, the most negative
            assert "chosen text 1" in inspector.detail_text
            await pilot.press("q")
            assert app.screen.__class__.__name__ == "RunScreen"

    asyncio.run(drive())
