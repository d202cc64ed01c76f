"""The new-run screen: the config form, a preset picker, inline validation, the exact launch
command, and launch. Dismissed with the new run's paths, which the caller opens."""

from __future__ import annotations

import shlex

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.suggester import SuggestFromList
from textual.widgets import Button, Header, Label, Select, Static

from aplot_tui.views import listing as store
from aplot_tui.widgets.config_form import ConfigForm, problem_field, to_overrides
from aplot_tui.widgets.footer import KeyFooter
from engine import config as config_mod
from engine.runs import launch, lifecycle
from engine.runs import status as S
from engine.runs import store as mf
from engine.runs.launch import plan

DEFAULTS = "defaults"


def preset_values(name: str) -> dict:
    """A preset's values for the form. A preset that does not validate alone (demo-ppo needs a
    reward-model run) fills the form as written, and validation flags its field: a preset is a
    starting point to complete, not a config that must already be whole."""
    try:
        return config_mod.to_dict(config_mod.load(preset=name))
    except config_mod.ConfigError:
        return config_mod.read_toml(config_mod.preset_path(name))


class NewRunScreen(Screen[mf.RunPaths | None]):
    TITLE = "New run"
    HELP = """The fields most runs change first; every other field, with its default and its
help, in the folded sections below (enter opens one). Pick a preset to fill the form, or start
from an earlier run's config (`c` on the runs or run screen). Problems show under their field as
you type (a folded section holding one opens); the bottom bar shows the exact `accelerate launch`
command. `ctrl+r` launches the run and opens its screen. Lists are comma-separated; `data.eval`
takes one `name = path` row per eval set."""

    # under 110 columns each field's help goes under it, full width (beside it, it was 2 wide at 80)
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]
    BINDINGS = [
        Binding("ctrl+r", "launch", "Launch", priority=True),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, initial: dict | None = None, *, source: str = "", preset: str = "") -> None:
        super().__init__()
        self.initial = initial if initial is not None else config_mod.to_dict(config_mod.Config())
        self.source = source  # a run id the config was cloned from, the picker's first choice
        self._loaded = preset or (f"run {source}" if source else DEFAULTS)  # the picker's current choice
        self.cfg: config_mod.Config | None = None
        self.problems: list[str] = []
        self._pending = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="top"):
            yield Label("preset", id="preset-label")
            choices = ([self._loaded] if self.source else []) + [DEFAULTS] + config_mod.preset_names()
            yield Select([(c, c) for c in choices], value=self._loaded, allow_blank=False, compact=True, id="preset")
        yield ConfigForm(self.initial, id="form")
        with Vertical(id="bottom"):
            yield Static("", id="problems")
            yield Static("", id="preview")
            with Horizontal(id="buttons"):
                yield Button("Launch (ctrl+r)", variant="success", compact=True, id="launch")
                yield Button("Cancel (esc)", compact=True, id="cancel")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.validate()
        self.suggest_reward_models()

    @work(thread=True, exclusive=True, group="suggest")
    def suggest_reward_models(self) -> None:
        """The reward-model field completes the ids of finished reward-model runs (the store is
        listed off the UI thread: a large one takes a while)."""
        rm_runs = [r.id for r in store.list_rows(self.app.runs_dir) if r.kind == "rm" and r.status == S.COMPLETED]
        field = self.form.control("ppo.reward_model_run")
        self.app.call_from_thread(setattr, field, "suggester", SuggestFromList(rm_runs, case_sensitive=False))

    @property
    def form(self) -> ConfigForm:
        return self.query_one(ConfigForm)

    # ---------------------------------------------------------------- validation

    def on_config_form_changed(self) -> None:
        if not self._pending:  # many fields change at once when a preset loads: check once
            self._pending = True
            self.call_after_refresh(self.validate)

    def validate(self) -> None:
        self._pending = False
        overrides, early = to_overrides(self.form.values())
        try:
            cfg = config_mod.load(None, [o for o in overrides if o.split("=", 1)[0] not in early])
            plan(cfg)  # [launch] as the launch will give it; an accelerate file that contradicts it is a problem
            # the preflight's model check (cheap; its data read waits for launch): a bad name is said here
            problems = [why] if (why := lifecycle.model_problem(cfg.model.name, cfg.model.gguf_file)) else []
        except config_mod.ConfigError as e:
            cfg, problems = None, list(e.problems)
        problems += [f"{path}: {message}" for path, message in early.items()]
        self.cfg = cfg if not problems else None
        self.problems = problems
        by_field, general = {}, []
        for line in problems:
            path, message = problem_field(line, self.form.paths)
            if path is None:
                general.append(line)
            else:
                by_field.setdefault(path, message)
        self.form.show_problems(by_field)
        box = self.query_one("#problems", Static)
        box.set_class(bool(problems), "bad")
        box.update("\n".join(general) if general else
                   (f"{len(problems)} problem(s): see the fields marked in red" if problems else "config is valid"))
        self.query_one("#launch", Button).disabled = bool(problems)
        preview = self.query_one("#preview", Static)
        if self.cfg is not None:
            argv = launch.argv(self.cfg, self.app.runs_dir / "<run-id>")
            preview.update("$ " + shlex.join(argv))
        else:
            preview.update("$ (fix the problems above to see the launch command)")

    # ---------------------------------------------------------------- presets

    @on(Select.Changed, "#preset")
    def preset_changed(self, event: Select.Changed) -> None:
        choice = str(event.value)
        if choice == self._loaded:  # the form already holds it
            return
        self._loaded = choice
        if choice == DEFAULTS:
            data = config_mod.to_dict(config_mod.Config())
        elif choice.startswith("run "):
            data = self.initial
        else:
            data = preset_values(choice)
        self.form.set_values(data)

    # ---------------------------------------------------------------- launch

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "launch":
            self.action_launch()
        else:
            self.dismiss(None)

    def action_launch(self) -> None:
        self.validate()
        if self.cfg is None:
            self.notify(f"cannot launch: {len(self.problems)} problem(s) in the config", severity="error")
            return
        self.query_one("#launch", Button).disabled = True
        self.launch(self.cfg)

    @work(thread=True, exclusive=True, group="launch", exit_on_error=False)
    def launch(self, cfg: config_mod.Config) -> None:
        try:
            paths = lifecycle.start(cfg, self.app.runs_dir)
        except (mf.RunError, config_mod.ConfigError, OSError) as e:
            self.app.call_from_thread(self.notify, f"launch failed: {e}", severity="error")
            self.app.call_from_thread(setattr, self.query_one("#launch", Button), "disabled", False)
            return
        self.app.call_from_thread(self.dismiss, paths)

    def action_back(self) -> None:
        self.dismiss(None)
