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


def test_a_preset_that_needs_a_field_opens_the_form_with_the_field_flagged(make_app):
    """demo-ppo needs a reward-model run: from the palette and from the form's preset picker the
    form opens filled from the preset, ppo.reward_model_run marked, instead of the app dying."""
    async def script(pilot):
        await runs_loaded(pilot)
        await palette(pilot, "preset demo-ppo")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, NewRunScreen), timeout=15)
        screen = pilot.app.screen
        await wait_for(pilot, lambda: screen.problems, what="the form's problems")
        assert screen.cfg is None and any(p.startswith("ppo.reward_model_run") for p in screen.problems)
        assert screen.form.values()["kind"] == "ppo"
        await pilot.press("escape")
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, NewRunScreen), timeout=15)
        screen = pilot.app.screen
        screen.query_one("#preset").value = "demo-ppo"
        await wait_for(pilot, lambda: any(p.startswith("ppo.reward_model_run") for p in screen.problems),
                       what="the flagged field")
        assert pilot.app.return_code is None  # still running

    drive(make_app(), script)


def test_an_app_that_dies_of_an_exception_exits_non_zero(store, monkeypatch):
    """`aplot` with no command: Textual prints the traceback and returns; the shell must see 1."""
    from textual.app import App
    from typer.testing import CliRunner

    from aplot_tui.app import AplotApp
    from aplot_tui.cli import app as cli_app

    def boom(self):
        raise RuntimeError("boom")

    monkeypatch.setattr(AplotApp, "on_mount", boom)
    monkeypatch.setattr(AplotApp, "run", lambda self, **kw: App.run(self, headless=True))
    result = CliRunner().invoke(cli_app, ["--runs-dir", str(store)])
    assert result.exit_code == 1, result.output


def test_the_palette_offers_resume_only_for_a_run_with_a_checkpoint(make_app, store):
    """EMD (stopped) and LS (failed) have no checkpoint in the fixture: no Resume; a complete
    checkpoint in EMD's folder brings its Resume back."""
    from aplot_tui.screens.commands import RunCommands

    async def texts(pilot) -> list[str]:
        provider = RunCommands(pilot.app.screen)
        await provider.startup()
        return [text for text, _command, _help in provider.commands()]

    async def script(pilot):
        await runs_loaded(pilot)
        assert not [t for t in await texts(pilot) if t.startswith("Resume")]
        (store / EMD / "checkpoints" / "step-10").mkdir(parents=True)
        (store / EMD / "checkpoints" / "step-10" / "done").write_text("")
        assert [t for t in await texts(pilot) if t.startswith("Resume")] == [f"Resume run aplot-emd ({EMD})"]

    drive(make_app(), script)
