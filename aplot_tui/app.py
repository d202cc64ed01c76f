"""The aplot TUI: a stack of screens over the run store.

The App holds only what every screen shares (the store, the clock, where exports go) and a
few one-line ways to open a screen, so the command palette and the screens reach them alike.
Leaving it never stops a run: runs live in their own sessions and only a `stop` signals them.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from pathlib import Path

from textual.app import App
from textual.binding import Binding

from engine.runs import store as mf

from .screens import run_actions
from .screens.commands import RunCommands
from .screens.help import HelpScreen
from .screens.runs import RunsScreen


class AplotApp(App):
    # Every screen's stylesheet, read once at start. A screen that brought its own would make its
    # first opening re-parse every stylesheet and restyle every widget in the app.
    CSS_PATH = ["app.tcss", *(f"screens/{name}.tcss" for name in ("runs", "run", "new_run", "compare"))]
    TITLE = "aplot"
    COMMANDS = App.COMMANDS | {RunCommands}
    BINDINGS = [
        Binding("f1", "help", "Help"),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(self, runs_dir: Path | str | None = None, *, clock: Callable[[], float] = time.time,
                 export_dir: Path | None = None, poll_s: float = 1.0, follow_s: float = 0.25) -> None:
        super().__init__()
        self.runs_dir = mf.runs_root(runs_dir)
        self.clock = clock
        self.export_dir = Path(export_dir) if export_dir else Path.cwd()
        self.poll_s = poll_s  # runs screen: store re-listed this often
        self.follow_s = follow_s  # run screen: metrics and log polled this often when idle
        self.sub_title = _shown_path(self.runs_dir)

    def on_mount(self) -> None:
        self.push_screen(RunsScreen())
        self.call_after_refresh(_freeze_startup)

    def run_to_exit_code(self) -> int:
        """Run the app; the status for the shell: non-zero when the app died of an exception
        (Textual prints the traceback and sets `return_code` to 1; `run()` alone returns None)."""
        self.run()
        return self.return_code or 0

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    # ---------------------------------------------------------------- ways in (screens, palette)

    def paths(self, ref: str) -> mf.RunPaths:
        return mf.find_run(self.runs_dir, ref)

    def open_run(self, ref: str) -> None:
        from .screens.run import RunScreen

        self.push_screen(RunScreen(self.paths(ref)))

    def new_run(self, initial: dict | None = None, source: str = "", preset: str = "") -> None:
        from .screens.new_run import NewRunScreen

        def opened(paths: mf.RunPaths | None) -> None:
            if paths is not None:
                self.open_run(paths.id)

        self.push_screen(NewRunScreen(initial, source=source, preset=preset), opened)

    def new_run_from_preset(self, name: str) -> None:
        from .screens.new_run import preset_values

        self.new_run(preset_values(name), preset=name)

    def clone_run(self, ref: str) -> None:
        paths = self.paths(ref)
        self.new_run(mf.read(paths).get("config", {}), source=paths.id)

    def compare(self, refs: list[str]) -> None:
        from .screens.compare import CompareScreen

        self.push_screen(CompareScreen([self.paths(r) for r in refs]))

    def compare_marked(self) -> None:
        next(s for s in self.screen_stack if isinstance(s, RunsScreen)).action_compare()

    def stop_run(self, ref: str) -> None:
        run_actions.confirm_stop(self, self.paths(ref))

    def resume_run(self, ref: str) -> None:
        run_actions.confirm_resume(self, self.paths(ref))


def _freeze_startup() -> None:
    """The objects made by start-up (modules, classes, styles, the runs screen) live as long as the
    app; frozen, the collector no longer walks them at every full collection, which building a
    screen of widgets triggers (40-180 ms a collection, a third of opening the new-run form)."""
    gc.collect()
    gc.freeze()


def _shown_path(path: Path) -> str:
    """The store as a person would type it: relative to the working folder when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve())) or "."
    except ValueError:
        return str(path)
