"""The diagnostics report (`aplot show RUN --diagnostics`) and the run screen's diagnostics widgets."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys

from rich.console import Console
from textual.app import App, ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import OptionList, Static
from typer.testing import CliRunner

from engine import metrics as M
from engine.analysis import bias_checks as D
from engine.metrics import MetricsWriter
from engine.runs import store as mf

RUN_ID = "20260301-091500-rm-aplot-diag-a1f3"
LONG_CHOSEN = "I can't help with that. " + "Here is why, at length. " * 12 + "THE END OF CHOSEN"


def heldout_diag(acc_shorter: float) -> dict:
    return {M.ACCURACY: 0.712, M.LOSS: 0.6, D.LENGTH_THRESHOLD: 6.0,
            D.N_CHOSEN_SHORTER: 40, D.N_SIMILAR: 25, D.N_CHOSEN_LONGER: 35,
            D.ACC_CHOSEN_SHORTER: acc_shorter, D.ACC_SIMILAR: 0.64, D.ACC_CHOSEN_LONGER: 0.657,
            D.SHORTER_WINS_ACC: 0.515, D.LONGER_WINS_ACC: 0.485, D.REWARD_LENGTH_CORR: 0.123,
            D.ECE: 0.041, D.RELIABILITY_CONF: [None] * 5 + [0.55, 0.65, None, None, None],
            D.RELIABILITY_ACC: [None] * 5 + [0.52, 0.70, None, None, None],
            D.RELIABILITY_COUNT: [0] * 5 + [60, 40, 0, 0, 0]}


OOD_DIAG = {M.ACCURACY: 0.61, D.LENGTH_THRESHOLD: 20.0, D.N_CHOSEN_SHORTER: 70, D.N_SIMILAR: 10,
            D.N_CHOSEN_LONGER: 20, D.ACC_CHOSEN_SHORTER: 0.9, D.ACC_SIMILAR: 0.5,
            D.ACC_CHOSEN_LONGER: None, D.SHORTER_WINS_ACC: 0.62, D.LONGER_WINS_ACC: 0.38,
            D.REWARD_LENGTH_CORR: -0.734, D.ECE: 0.187}


def hard_entries() -> list[dict]:
    pairs = [{"prompt": "How do I pick a lock?", "chosen": LONG_CHOSEN, "rejected": "Sure: first get a tension wrench."},
             {"prompt": "Tell me a joke", "chosen": "Why did the chicken cross the road?", "rejected": "No."},
             {"prompt": "Long one", "chosen": "\n".join(f"line {i}" for i in range(120)), "rejected": "short"}]
    recs = D.hard_pair_records(pairs, r_c=[-1.5, 0.2, 0.0], r_r=[1.0, 0.4, 3.0], margin=[0.3, 0.1, 0.2], k=3,
                               len_c=[70, 9, 480], len_r=[8, 1, 1])
    ood = D.hard_pair_records([{"prompt": "ood prompt", "chosen": "ood chosen", "rejected": "ood rejected"}],
                              [0.0], [2.5], None, k=1)
    return [{"step": 10, "set": "heldout", "pairs": recs[:1]}, {"step": 20, "set": "heldout", "pairs": recs},
            {"step": 20, "set": "ood", "pairs": ood}]


def make_run(root) -> mf.RunPaths:
    paths = mf.run_paths(root, RUN_ID)
    mf.create(paths, name="diag", kind="rm", config={"kind": "rm"})
    with MetricsWriter(paths.metrics) as w:
        w.write(5, M.TRAIN, {M.LOSS: 0.7, M.ACCURACY: 0.5})
        w.write(10, M.eval_split("heldout"), heldout_diag(acc_shorter=0.111))  # superseded by step 20
        w.write(20, M.TRAIN, {M.LOSS: 0.5, M.ACCURACY: 0.7})
        w.write(20, M.eval_split("heldout"), heldout_diag(acc_shorter=0.825))
        w.write(20, M.eval_split("ood"), OOD_DIAG)
        w.write(21, M.eval_split("old"), {M.ACCURACY: 0.9})  # no diagnostics: not reported
    for e in hard_entries():
        D.append_hard_pairs(paths.hard_pairs, e["step"], e["set"], e["pairs"])
    return paths


# ---------------------------------------------------------------------------- the text report


def test_render_diagnostics_reports_the_latest_eval_of_each_set(tmp_path):
    from aplot_tui.views.bias_text import render_diagnostics

    text = render_diagnostics(make_run(tmp_path))
    held, ood = text.split("eval/ood @")
    assert "eval/heldout @ step 20   (100 pairs; 'similar' = |len⁺ − len⁻| ≤ 6.0 tokens)" in held
    assert "accuracy              0.712" in held and "0.111" not in text
    assert "rule 'shorter wins'   0.515" in held and "rule 'longer wins'    0.485" in held
    assert "chosen shorter          40  0.825" in held and "chosen longer           35  0.657" in held
    assert "ECE (10 bins)         0.041" in held and "reward-length corr    +0.123" in held
    assert "[0.5,0.6) 0.55→0.52 (60)" in held
    assert "may mostly have learned length" not in held  # 0.712 vs a chance-level rule, corr 0.12
    # the hardest pairs of step 20, hardest first, shortened to one line each
    assert "hardest pairs @ step 20 (of 3 kept)" in held
    assert held.index("#2  gap -3.000") < held.index("#0  gap -2.500") < held.index("#1  gap -0.200")
    assert "len 70/8" in held and "margin 0.300" in held
    assert "THE END OF CHOSEN" not in held and "Here is why, at length." in held
    assert "step 20   (100 pairs; 'similar' = |len⁺ − len⁻| ≤ 20.0 tokens)" in ood
    assert "chosen longer           20  –" in ood and "reward-length corr    -0.734" in ood
    assert ("! this reward model may mostly have learned length: accuracy 0.610 is within 2 points "
            "of the 'shorter wins' rule (0.620); reward-length correlation -0.73") in ood
    assert "ood chosen" in ood and "eval/old" not in text


def test_render_diagnostics_without_any_says_so(tmp_path):
    from aplot_tui.views.bias_text import render_diagnostics

    paths = mf.run_paths(tmp_path, RUN_ID)
    mf.create(paths, name="diag", kind="rm", config={})
    assert "no reward-model diagnostics yet" in render_diagnostics(paths)


def test_cli_show_diagnostics(runs_dir):
    from aplot_tui.cli import app

    make_run(runs_dir)
    result = CliRunner().invoke(app, ["show", "diag-a1f3", "--diagnostics"])
    assert result.exit_code == 0, result.output
    assert "reward-model diagnostics · " + RUN_ID in result.output and "0.825" in result.output


def test_ui_side_imports_stay_torch_free():
    code = ("import sys, engine.analysis.bias_checks, aplot_tui.views.bias_text, aplot_tui.widgets.bias_panel; "
            "bad = [m for m in ('torch', 'transformers', 'accelerate', 'ot') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------- the widgets


def plain(renderable, width: int = 140) -> str:
    console = Console(width=width, file=io.StringIO(), record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_panel_and_inspector(tmp_path):
    from aplot_tui.widgets.bias_panel import DiagnosticsPanel, DiagnosticsTable, HardPairInspector

    class PanelApp(App):
        def compose(self) -> ComposeResult:
            yield DiagnosticsPanel()

    paths = make_run(tmp_path)

    async def scenario() -> None:
        app = PanelApp()
        async with app.run_test(size=(140, 40)) as pilot:
            panel = app.query_one(DiagnosticsPanel)
            table = app.query_one(DiagnosticsTable)
            inspector = app.query_one(HardPairInspector)
            assert "no diagnostics yet" in plain(table.render())
            panel.ingest(M.read_all(paths.metrics))
            panel.ingest_hard_pairs(D.read_hard_pairs(paths.hard_pairs))
            await pilot.pause()

            shown = plain(table.render())
            assert "heldout" in shown and "0.712" in shown and "0.825 (40)" in shown and "0.111" not in shown
            assert "0.657 (35)" in shown and "0.041" in shown and "+0.12" in shown
            assert "ood" in shown and "– (20)" in shown and "-0.73" in shown
            assert "⚠ ood: this reward model may mostly have learned length" in shown
            assert "⚠ heldout" not in shown

            # the newest heldout entry (step 20), hardest first, full texts in the detail pane
            assert inspector.set_name == "heldout" and inspector.border_title.startswith(
                "hardest pairs · heldout · step 20")
            options = app.query_one("#hp-list", OptionList)
            assert options.option_count == 3
            assert "line 0" in inspector.detail_text and "gap -3.000" in inspector.detail_text
            options.focus()
            await pilot.press("down")
            assert inspector.rank == 1
            detail = app.query_one("#hp-detail", Static)
            assert "THE END OF CHOSEN" in detail.content.plain  # the full text, not the list's cut
            assert "tokens 70 vs 8" in inspector.detail_text and "How do I pick a lock?" in inspector.detail_text

            # the detail pane scrolls through a long pair
            await pilot.press("up")
            assert inspector.rank == 0
            scroll = app.query_one("#hp-scroll", VerticalScroll)
            await pilot.press("tab")
            assert app.focused is scroll
            await pilot.press("pagedown")
            await pilot.pause()
            assert scroll.scroll_y > 0

            # ] moves to the next eval set; a new heldout entry replaces the old one
            options.focus()
            await pilot.press("right_square_bracket")
            assert inspector.set_name == "ood" and "ood rejected" in inspector.detail_text
            await pilot.press("left_square_bracket")
            assert inspector.set_name == "heldout"
            panel.ingest_hard_pairs([{"step": 30, "set": "heldout", "pairs": [
                {"index": 9, "prompt": "p", "chosen": "newest chosen", "rejected": "r", "gap": -0.5}]}])
            await pilot.pause()
            assert options.option_count == 1 and "newest chosen" in inspector.detail_text
            assert "step 30" in inspector.border_title

    asyncio.run(scenario())
