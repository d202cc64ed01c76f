"""The runs screen: every run in the store, live.

A worker re-lists the store every `app.poll_s` seconds and posts the rows; runs started by
another process (`aplot run`, a scheduler) appear and update without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Header, Input, Static

from aplot_tui.views import listing as store
from aplot_tui.widgets.footer import KeyFooter
from aplot_tui.widgets.run_table import RunTable, parse_query
from engine.runs import status as S

from .confirm import ConfirmScreen

QUIT = "Quit aplot?"


class RunsScreen(Screen):
    AUTO_FOCUS = "RunTable"
    TITLE = "Runs"
    HELP = """Every run in the store, newest first, refreshed every second. Runs started
elsewhere (`aplot run`, a scheduler) appear on their own. Filter with `/`: free text matches
id, name, loss and tags; `status:running`, `kind:ppo`, `tag:hh`, `sweep:NAME` narrow further;
`w` shows only the selected run's sweep (again: every run), with the sweep's progress below.
`space` marks the run and moves to the next one; `m` compares the marked runs. Click a header (or
press `o`) to sort; rows keep their places while their values change, until the sort or the runs
do. The id column is the id's unique tail: `aplot show b2c4` finds the run by it. `q` asks, then quits."""

    BINDINGS = [
        Binding("enter", "open", "Open"),
        Binding("n", "new", "New"),
        Binding("c", "clone", "Clone"),
        Binding("space", "mark", "Mark"),
        Binding("m", "compare", "Compare"),
        Binding("s", "stop", "Stop"),
        Binding("r", "resume", "Resume"),
        Binding("slash", "filter", "Filter"),
        Binding("o", "sort", "Sort"),
        Binding("w", "sweep", "Sweep"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("q", "quit", "Quit"),
    ]

    class RowsLoaded(Message):
        def __init__(self, rows: list[store.RunRow]) -> None:
            self.rows = rows
            super().__init__()

    def __init__(self) -> None:
        super().__init__()
        self.loaded = False
        self._wake = asyncio.Event()

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="filter: text, status:running, kind:rm, tag:hh   (Enter: back to table, Esc: clear)",
                    id="filter")
        yield RunTable(id="runs")
        yield Static("", id="empty", classes="empty")
        yield Static("", id="status-line")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.table.focus()
        self.poll_store()

    def on_screen_resume(self) -> None:
        self._wake.set()  # back from another screen: refresh now, not in a second

    @property
    def table(self) -> RunTable:
        return self.query_one(RunTable)

    @work(exclusive=True, group="poll")
    async def poll_store(self) -> None:
        while True:
            # is_active, not is_current: Textual counts the screen under the top one as current
            if self.is_active or not self.loaded:
                rows = await asyncio.to_thread(store.list_rows, self.app.runs_dir)
                self.post_message(self.RowsLoaded(rows))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.app.poll_s)

    def on_runs_screen_rows_loaded(self, message: RowsLoaded) -> None:
        self.loaded = True
        if not self.is_active:  # a list that came back after another screen opened: Textual would
            return  # repaint the whole screen on top for it. Coming back polls again.
        table = self.table
        table.now = self.app.clock()
        table.runs = tuple(message.rows)
        self._update_status()

    def on_run_table_marks_changed(self) -> None:
        self._update_status()

    def _update_status(self) -> None:
        table, rows = self.table, self.table.runs
        running = sum(r.status == S.RUNNING for r in rows)
        parts = [f"{len(table.shown_ids)} of {len(rows)} runs" if table.filter_text else f"{len(rows)} runs"]
        if running:
            parts.append(f"{running} running")
        if table.marked:
            parts.append(f"{len(table.marked)} marked (m: compare)")
        wanted = parse_query(table.filter_text)["sweep"]
        for sweep_id, counts in store.sweep_progress(list(rows)).items():
            # the filtered sweep, else every sweep with work left
            if (wanted and wanted in sweep_id) or (not wanted and counts.get(S.COMPLETED, 0) < counts["total"]):
                parts.append(store.format_progress(sweep_id, counts))
        self.query_one("#status-line", Static).update(" · ".join(parts))
        empty = self.query_one("#empty", Static)
        empty.display = not rows
        empty.update(f"No runs yet in {self.app.sub_title}. Press n to launch one, or run "
                     "`aplot run --preset demo-rm` in another shell: it appears here.")

    # ---------------------------------------------------------------- actions

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.app.open_run(str(event.row_key.value))

    def _current(self) -> str | None:
        run_id = self.table.current_id
        if run_id is None:
            self.notify("no run selected", severity="warning")
        return run_id

    def action_open(self) -> None:
        if run_id := self._current():
            self.app.open_run(run_id)

    def action_new(self) -> None:
        self.app.new_run()

    def action_clone(self) -> None:
        if run_id := self._current():
            self.app.clone_run(run_id)

    def action_mark(self) -> None:
        table = self.table
        table.toggle_mark()
        if table.cursor_row < table.row_count - 1:
            table.move_cursor(row=table.cursor_row + 1)

    def action_compare(self) -> None:
        marked = [r for r in self.table.shown_ids if r in self.table.marked]
        marked += sorted(self.table.marked - set(marked))
        if len(marked) < 2:
            self.notify("mark two or more runs with space, then press m", severity="warning")
            return
        self.app.compare(marked)

    def action_stop(self) -> None:
        if run_id := self._current():
            self.app.stop_run(run_id)

    def action_resume(self) -> None:
        if run_id := self._current():
            self.app.resume_run(run_id)

    def action_quit(self) -> None:
        """Elsewhere `q` goes back; here it would end the app, so it asks (ctrl+q quits at once)."""
        def answered(yes: bool | None) -> None:
            if yes:
                self.app.exit()

        self.app.push_screen(ConfirmScreen(QUIT, "Runs keep training: leaving never stops them.",
                                           yes="Quit"), answered)

    def action_sort(self) -> None:
        self.table.cycle_sort()

    def action_sweep(self) -> None:
        """Filter to the selected run's sweep, or back to every run."""
        box = self.query_one("#filter", Input)
        if parse_query(box.value)["sweep"]:
            self.action_clear_filter()
            return
        run_id = self._current()
        row = next((r for r in self.table.runs if r.id == run_id), None)
        if row is None or not row.sweep:
            self.notify("this run is not part of a sweep", severity="warning")
            return
        box.value = f"sweep:{row.sweep}"
        box.display = True

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.display = False
        self.table.focus()

    @on(Input.Changed, "#filter")
    def filter_changed(self, event: Input.Changed) -> None:
        self.table.filter_text = event.value
        self._update_status()

    @on(Input.Submitted, "#filter")
    def filter_done(self) -> None:
        self.table.focus()
