"""The new-run screen: a form from the schema, inline validation, presets, clone, preview, launch."""

from __future__ import annotations

import importlib.util
import time

import pytest
from textual.widgets import Button, Static

from aplot_tui.screens.new_run import NewRunScreen
from aplot_tui.screens.run import RunScreen
from aplot_tui.widgets.config_form import ConfigForm, fid, to_overrides
from aplot_tui.widgets.run_table import RunTable
from engine import config as config_mod
from engine.runs import status as S
from engine.runs import store as mf

from .helpers import APLOT, EMD, drive, runs_loaded, wait_for


def problem(form: ConfigForm, path: str) -> str:
    return form.problem(path)


async def open_form(pilot) -> NewRunScreen:
    await runs_loaded(pilot)
    await pilot.press("n")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, NewRunScreen))
    await pilot.pause()
    return pilot.app.screen


def test_form_defaults_inline_problems_and_kind_sections(make_app):
    async def script(pilot):
        screen = await open_form(pilot)
        form = screen.form
        # every leaf field of the schema, with its default and its one help string
        leaves = [p for p, _f, _t, table in config_mod.iter_fields() if not table]
        assert form.paths == leaves
        assert form.control("optim.lr").value == "2e-05"
        assert form.control("loss.aplot.solver").value == "sinkhorn"
        assert form.control("launch.cpu").value is False
        assert form.control("launch.scheduler").value == "local"  # the Slurm section is in the form too
        assert form.control("launch.slurm.signal_before_end").value == "300"
        # the common fields are built at once; a folded section is built when it opens
        assert form.query_one("#sec-common").built and not form.query_one("#sec-loss").built
        assert not form.query(f"#h-{fid('loss.aplot.epsilon')}")
        form.query_one("#sec-loss").collapsed = False
        await wait_for(pilot, lambda: bool(form.query(f"#h-{fid('loss.aplot.epsilon')}")))
        assert str(form.query_one(f"#h-{fid('loss.aplot.epsilon')}").render()) == \
            config_mod.field_help("loss.aplot.epsilon")
        assert form.control("model.tokenizer").value == "" and form.control("data.eval").value == []
        assert screen.cfg is not None and not screen.problems

        # bad values: each problem replaces its field's help, and launch is refused
        form.control("optim.lr").value = "-1"
        form.control("model.tiny.num_heads").value = "3"
        form.control("data.eval").value = "ood"
        await wait_for(pilot, lambda: len(screen.problems) == 3)
        assert problem(form, "optim.lr") == "must be > 0, got -1.0"
        assert problem(form, "model.tiny.num_heads") == "must divide model.tiny.hidden_size (64), got 3"
        assert problem(form, "data.eval") == "row 1: give a name and a path (name = path), got ood = ?"
        assert form.query_one("#sec-model").built  # the folded section holding a problem opened
        assert screen.query_one("#launch", Button).disabled
        await pilot.press("ctrl+r")
        assert isinstance(pilot.app.screen, NewRunScreen)  # not launched
        form.control("optim.lr").value = "1e-4"
        form.control("model.tiny.num_heads").value = "4"
        form.control("data.eval").value = {"ood": "held.jsonl"}
        await wait_for(pilot, lambda: not screen.problems)
        assert problem(form, "optim.lr") == "" and screen.cfg.optim.lr == 1e-4
        assert str(form.query_one(f"#h-{fid('optim.lr')}").render()) == config_mod.field_help("optim.lr")
        assert screen.cfg.data.eval == {"ood": "held.jsonl"}

        # PPO swaps the loss section for the PPO one, and needs a reward model run
        assert form.query_one("#sec-loss").display and not form.query_one("#sec-ppo").display
        form.control("kind").value = "ppo"
        await wait_for(pilot, lambda: bool(screen.problems))
        assert not form.query_one("#sec-loss").display and form.query_one("#sec-ppo").display
        assert problem(form, "ppo.reward_model_run").startswith("a PPO run needs a completed RM run")

    drive(make_app(), script)


def test_preset_fills_the_form_and_preview_shows_the_launch_command(make_app):
    async def script(pilot):
        screen = await open_form(pilot)
        preset = config_mod.load(preset="demo-rm")
        screen.query_one("#preset").value = "demo-rm"
        form = screen.form
        await wait_for(pilot, lambda: screen.cfg is not None and screen.cfg.name == "demo-rm")
        assert screen.cfg == preset
        assert form.control("model.tiny.vocab_size").value == str(preset.model.tiny.vocab_size)
        assert form.control("launch.cpu").value is True
        preview = str(screen.query_one("#preview", Static).render())
        assert preview.endswith("--cpu --mixed_precision no --num_cpu_threads_per_process 1 -m engine.rm.train "
                                "--run-dir 'runs/<run-id>'")  # threads = 1 in demo-rm, passed explicitly

    drive(make_app(), script)


def test_clone_starts_from_the_runs_config(make_app):
    async def script(pilot):
        await runs_loaded(pilot)
        table = pilot.app.screen.query_one(RunTable)
        table.move_cursor(row=table.shown_ids.index(EMD))
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, NewRunScreen))
        form = pilot.app.screen.form
        assert form.control("loss.aplot.solver").value == "emd"
        assert form.control("loss.aplot.margin_scale").value == "0.5"
        assert form.control("name").value == "aplot-emd"
        assert form.control("tags").value == "aplot, ablation"
        assert pilot.app.screen.query_one("#preset").value == f"run {EMD}"

    drive(make_app(), script)


def test_to_overrides_round_trips_lists_tables_and_strings():
    overrides, problems = to_overrides({"tags": "a, b", "data.eval": "ood=x.jsonl", "name": "1e-5",
                                        "optim.lr": "3e-4", "launch.cpu": True})
    assert not problems
    cfg = config_mod.load(None, overrides)
    assert cfg.tags == ["a", "b"] and cfg.data.eval == {"ood": "x.jsonl"}
    assert cfg.name == "1e-5" and cfg.optim.lr == 3e-4 and cfg.launch.cpu is True


TINY = {"name": "tui-tiny", "model.max_length": "32", "model.tiny.hidden_size": "16", "model.tiny.num_layers": "1",
        "model.tiny.num_heads": "2", "model.tiny.vocab_size": "128", "data.synthetic_pairs": "96",
        "optim.batch_size": "8", "optim.max_steps": "3", "eval.every": "0", "checkpoint.every": "0",
        "launch.threads": "1"}


@pytest.mark.skipif(importlib.util.find_spec("engine.rm.train") is None, reason="engine.rm.train not written yet")
def test_launch_a_tiny_run_for_real_and_follow_it_to_completed(make_app, store):
    async def script(pilot):
        screen = await open_form(pilot)
        form = screen.form
        for path, value in TINY.items():
            form.control(path).value = value
        form.control("launch.cpu").value = True
        await wait_for(pilot, lambda: screen.cfg is not None and screen.cfg.optim.max_steps == 3)
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, RunScreen), timeout=10, what="the run screen")
        run = pilot.app.screen
        assert run.paths.id.split("-")[2:5] == ["rm", "aplot", "tui"]
        deadline = time.monotonic() + 180
        while mf.read(run.paths)["status"] not in S.FINAL and time.monotonic() < deadline:
            await pilot.pause(0.2)
        manifest = mf.read(run.paths)
        assert manifest["status"] == "completed", (manifest.get("error"), run.paths.log.read_text()[-2000:])
        await wait_for(pilot, lambda: len(run.series.get("loss", ())) == 3, timeout=5, what="3 loss points")

    drive(make_app(), script)


def test_the_reward_model_field_completes_a_finished_reward_model_runs_id(make_app):
    """The store is listed off the UI thread; once it is, typing part of an id offers the rest."""
    from textual.widgets import Input

    async def script(pilot):
        screen = await open_form(pilot)
        screen.form.control("kind").value = "ppo"
        field = screen.form.control("ppo.reward_model_run")
        await wait_for(pilot, lambda: field.suggester is not None, what="the reward-model suggestions")
        field.focus()
        await pilot.press(*"20260301-10")
        await wait_for(pilot, lambda: field._suggestion == APLOT, what="the completed APLOT run offered")
        await pilot.press("right")  # accepts the suggestion, as the shell does
        assert isinstance(field, Input) and field.value == APLOT
        # the PPO run is finished but is no reward model; the label-smoothing reward model failed
        assert await field.suggester.get_suggestion("20260303") is None
        assert await field.suggester.get_suggestion("20260302-08") is None

    drive(make_app(), script)


def test_a_model_name_that_cannot_load_offline_is_refused_by_the_form_and_the_preflight(make_app, store,
                                                                                          monkeypatch):
    """Offline, a name that is neither `tiny`, a model folder nor in the hub cache: one line under
    the field, launch refused; the preflight the launch calls says the same line and creates nothing."""
    from huggingface_hub import constants

    from engine.runs import lifecycle

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    name = "no-such-org/no-such-model"
    with pytest.raises(config_mod.ConfigError) as e:
        lifecycle.preflight(config_mod.load(None, [f"model.name={name}"]), store)
    assert e.value.problems == [f"model.name: {name!r} is not a model folder and not in the local hub cache "
                                "(HF_HUB_OFFLINE is set)"]
    before = sorted(p.name for p in store.iterdir())

    async def script(pilot):
        screen = await open_form(pilot)
        screen.form.control("model.name").value = name
        await wait_for(pilot, lambda: bool(screen.problems), what="the model problem")
        assert problem(screen.form, "model.name") == f"{name!r} is not a model folder and not in the local hub cache"
        assert screen.cfg is None and screen.query_one("#launch").disabled

    drive(make_app(), script)
    assert sorted(p.name for p in store.iterdir()) == before


def test_at_80_columns_the_form_puts_help_under_fields_and_dialogs_wrap(make_app):
    """The help column was 2 wide at 80×24 (wrapping letter by letter); the checkbox fits its
    box; a stop dialog's long text wraps inside the dialog instead of being cut."""
    from textual.widgets import Checkbox, Label

    from aplot_tui.screens.confirm import ConfirmScreen
    from aplot_tui.screens.run_actions import STOP_DETAIL

    async def script(pilot):
        screen = await open_form(pilot)
        help_label = screen.form.query_one(f"#h-{fid('name')}")
        assert help_label.size.width >= 60, help_label.size
        screen.form.query_one("#sec-launch").collapsed = False
        await wait_for(pilot, lambda: bool(screen.form.query(Checkbox)), what="a checkbox")
        await pilot.pause()
        for box in screen.form.query(Checkbox):
            assert box.size.width >= 3, box.size  # the whole ▐X▌, not ▐X…
        screen.dismiss(None)
        await pilot.pause()
        pilot.app.push_screen(ConfirmScreen("Stop 20260301-101500-rm-aplot-hh-b2c4-with-a-long-name?", STOP_DETAIL))
        await pilot.pause()
        for label in pilot.app.screen.query(Label):
            text = str(label.render())
            assert label.size.width <= 80 and label.size.width * label.size.height >= len(text), (text, label.size)

    drive(make_app(), script, size=(80, 24))
