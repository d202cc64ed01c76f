"""App-wide conventions: F1 help, the command palette's run commands, back and quit keys."""

from __future__ import annotations

from textual.command import CommandInput, CommandList
from textual.widgets import Markdown

from aplot_tui.screens.compare import CompareScreen
from aplot_tui.screens.help import HelpScreen
from aplot_tui.screens.new_run import NewRunScreen
from aplot_tui.screens.run import RunScreen
from aplot_tui.widgets.run_table import RunTable
from engine import config as config_mod

from .helpers import APLOT, BT, EMD, drive, runs_loaded, wait_for


def test_f1_shows_the_screens_help_and_keys(make_app):
    async def script(pilot):
        await runs_loaded(pilot)
        await pilot.press("f1")
        assert isinstance(pilot.app.screen, HelpScreen)
        text = pilot.app.screen.query_one(Markdown).source
        assert text.startswith("# Runs") and "| `space` | Mark |" in text and "| `m` | Compare |" in text
        assert "never stops a run" in text
        await pilot.press("escape")
        assert type(pilot.app.screen).__name__ == "RunsScreen"

    drive(make_app(), script)


async def palette(pilot, query: str) -> None:
    await pilot.press("ctrl+p")
    await pilot.press(*query[:2])  # typed; the rest set at once (each key would re-run the search)
    pilot.app.screen.query_one(CommandInput).value = query
    await wait_for(pilot, lambda: pilot.app.screen.query_one(CommandList).option_count > 0, what="palette hits")
    await pilot.pause(0.1)
    await pilot.press("down", "enter")


def test_palette_opens_a_run_and_compares_marked_runs(make_app):
    async def script(pilot):
        await runs_loaded(pilot)
        await palette(pilot, "open aplot-emd")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, RunScreen))
        assert pilot.app.screen.paths.id == EMD
        await pilot.press("q")
        table = pilot.app.screen.query_one(RunTable)
        for run_id in (BT, APLOT):
            table.move_cursor(row=table.shown_ids.index(run_id))
            await pilot.press("space")
        await palette(pilot, "compare")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, CompareScreen))
        assert [p.id for p in pilot.app.screen.run_paths] == [APLOT, BT]

    drive(make_app(), script)


def test_palette_launch_from_preset_fills_the_form(make_app):
    async def script(pilot):
        await runs_loaded(pilot)
        await palette(pilot, "preset demo-rm")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, NewRunScreen), timeout=15)
        screen = pilot.app.screen
        await wait_for(pilot, lambda: screen.cfg is not None)
        preset = config_mod.load(preset="demo-rm")
        assert screen.cfg == preset and screen.query_one("#preset").value == "demo-rm"

    drive(make_app(), script)
