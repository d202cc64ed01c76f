"""The command palette's run commands (ctrl+p): launch, compare, open, clone, stop, resume."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

from textual.command import DiscoveryHit, Hit, Hits, Provider

from aplot_tui.views import listing as store
from engine import config as config_mod
from engine.runs import status as S
from engine.runs import store as mf

Command = tuple[str, Callable[[], object], str]


class RunCommands(Provider):
    async def startup(self) -> None:
        self.rows, self.resumable = await asyncio.to_thread(_rows_and_resumable, self.app.runs_dir)

    def commands(self) -> Iterator[Command]:
        app = self.app
        yield "Launch a new run", app.new_run, "open the new-run form with the defaults"
        for name in config_mod.preset_names():
            yield f"Launch from preset {name}", partial(app.new_run_from_preset, name), "the form, filled from a preset"
        yield "Compare marked runs", app.compare_marked, "runs marked with space on the runs screen"
        for row in reversed(self.rows):  # newest first
            label = f"{row.name} ({row.id})"
            if row.status == S.RUNNING:
                yield f"Stop run {label}", partial(app.stop_run, row.id), "SIGINT, checkpoint, exit"
            if row.id in self.resumable:
                yield f"Resume run {label}", partial(app.resume_run, row.id), "continue from the last checkpoint"
            yield f"Open run {label}", partial(app.open_run, row.id), f"{row.kind} · {row.status}"
            yield f"Clone run {label}", partial(app.clone_run, row.id), "a new run from this run's config"

    async def discover(self) -> Hits:
        for text, command, help in self.commands():
            if not text.startswith(("Open", "Clone")):
                yield DiscoveryHit(text, command, help=help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, command, help in self.commands():
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), command, help=help)


def _rows_and_resumable(runs_dir) -> tuple[list[store.RunRow], frozenset[str]]:
    """The rows, and which of them a resume can continue: ended short and with a complete
    checkpoint (a run that failed before its first save has nothing to resume from)."""
    rows = store.list_rows(runs_dir)
    return rows, frozenset(r.id for r in rows if r.status in S.RESUMABLE and mf.checkpoint_steps(mf.RunPaths(Path(r.path))))
