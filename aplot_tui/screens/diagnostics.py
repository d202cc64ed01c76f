"""What a reward model's accuracy hides, for one run: length bias, calibration, hardest pairs.

Pushed from the run screen with `d`. A worker follows the metrics stream (by byte offset) and
re-reads the small hard-pairs file whenever an eval record arrives, so it is live during training
and complete after it; the panel widgets only display what this screen feeds them.
"""

from __future__ import annotations

import asyncio
import os

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Header

from aplot_tui.widgets.bias_panel import DiagnosticsPanel
from aplot_tui.widgets.footer import KeyFooter
from engine import metrics as M
from engine.analysis import bias_checks as D
from engine.runs import store as mf


class DiagnosticsScreen(Screen):
    BINDINGS = [
        Binding("q", "app.pop_screen", "Back"),
        Binding("escape", "app.pop_screen", "Back", show=False),
    ]

    class Loaded(Message):
        def __init__(self, records: list[M.Record], hard: list[dict] | None) -> None:
            self.records, self.hard = records, hard
            super().__init__()

    def __init__(self, paths: mf.RunPaths) -> None:
        super().__init__()
        self.paths = paths

    def compose(self) -> ComposeResult:
        yield Header()
        yield DiagnosticsPanel()
        yield KeyFooter()

    def on_mount(self) -> None:
        self.sub_title = f"diagnostics · {self.paths.id}"
        self.follow()

    @work(exclusive=True, group="diagnostics")
    async def follow(self) -> None:
        tail = M.MetricsTail(self.paths.metrics)
        first = True
        while True:
            records = await asyncio.to_thread(tail.read_new)
            evals = [r for r in records if r.split.startswith(M.EVAL_PREFIX)]
            hard = None
            if (evals or first) and os.path.exists(self.paths.hard_pairs):
                hard = await asyncio.to_thread(D.read_hard_pairs, self.paths.hard_pairs)
            if evals or hard:
                self.post_message(self.Loaded(evals, hard))
            first = False
            await asyncio.sleep(self.app.follow_s if hasattr(self.app, "follow_s") else 0.5)

    def on_diagnostics_screen_loaded(self, message: Loaded) -> None:
        panel = self.query_one(DiagnosticsPanel)
        panel.ingest(message.records)
        if message.hard:
            panel.ingest_hard_pairs(message.hard)
