"""The runs table: filtered, sorted, marked rows that update in place as runs progress.

Rows arrive as `store.RunRow`s (the screen polls the store); the table only decides what is
visible and in what order. When the visible runs and their order are unchanged, cells are
updated in place, so the cursor and scroll position survive a refresh every second.
"""

from __future__ import annotations

import re
from datetime import datetime

from rich.text import Text
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import DataTable

from aplot_tui.views.listing import RunRow, filter_rows, format_age, sort_rows
from engine import metrics as M
from engine.runs import status as S

STATUS_STYLE = {S.RUNNING: "bold green", S.CREATED: "dim", S.QUEUED: "magenta", S.COMPLETED: "blue",
                S.FAILED: "bold red", S.CRASHED: "bold red", S.STOPPED: "yellow"}


def status_cell(row: RunRow) -> Text:
    """The status, and for a Slurm run its job and the scheduler's reason (queued: Resources, …)."""
    text = Text(row.status, style=STATUS_STYLE.get(row.status, ""))
    if row.job:
        text.append(f" #{row.job}", style="dim")
    if row.reason and row.status in (S.QUEUED, S.CRASHED, S.STOPPED):
        text.append(f" ({row.reason})", style="dim")
    return text

# column key, header, sort key of store.sort_rows (None: sorted here). What a glance needs comes
# first (status, step, the key eval), so at 80 columns they are on screen and the rest scrolls.
COLUMNS = (("mark", " ", None), ("id", "id", "created"), ("name", "name", "name"), ("status", "status", "status"),
           ("step", "step", "step"), ("eval", "eval", "eval"), ("train", "train", "metric"),
           ("kind", "kind", "kind"), ("loss", "loss", "loss"), ("sweep", "sweep", None), ("tags", "tags", None),
           ("age", "age", "created"))
NAME_WIDTH = 20  # a longer name is cut with an ellipsis: the id column and the filter find the rest
_SWEEP_ID = re.compile(r"\d{8}-\d{6}-sweep-(.+)-[0-9a-f]{4}")


def short_id(run_id: str) -> str:
    """The id's random tail (`b2c4`): unique in the store, what `aplot show b2c4` takes, and it
    does not repeat the name the next column shows."""
    return run_id.rsplit("-", 1)[-1]


def sweep_name(sweep_id: str) -> str:
    """`20260301-090000-sweep-losses-0a0b` → `losses` (an id of another shape as it is)."""
    m = _SWEEP_ID.fullmatch(sweep_id)
    return m.group(1) if m else sweep_id


def cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"
SORTABLE = [c for c in COLUMNS if c[2]]

# the train and the eval column: each kind's first and last key metric
TRAIN_KEY = {kind: keys[0] for kind, keys in M.KEY_METRICS.items()}
EVAL_KEY = {kind: keys[-1] for kind, keys in M.KEY_METRICS.items()}


def parse_query(query: str) -> dict[str, str]:
    """`status:running kind:rm tag:hh sweep:ID free text` into store.filter_rows keywords."""
    out = {"text": "", "status": "", "kind": "", "tag": "", "sweep": ""}
    words = []
    for token in query.split():
        key, sep, value = token.partition(":")
        if sep and key in ("status", "kind", "tag", "sweep") and value:
            out[key] = value
        else:
            words.append(token)
    out["text"] = " ".join(words)
    return out


def metric_cell(row: RunRow, keys: dict[str, str]) -> tuple[str, float | None]:
    key = keys.get(row.kind, "")
    value = row.metrics.get(key)
    if value is None:
        return "", None
    return f"{M.KEY_LABELS.get(key, key)} {value:.3f}", value


def visible_rows(rows: list[RunRow], query: str, sort: str, reverse: bool) -> list[RunRow]:
    shown = filter_rows(rows, **parse_query(query))
    if sort == "eval":  # the store sorts by the first key metric; the eval column is ours
        missing = [r for r in shown if metric_cell(r, EVAL_KEY)[1] is None]
        have = sorted((r for r in shown if metric_cell(r, EVAL_KEY)[1] is not None),
                      key=lambda r: metric_cell(r, EVAL_KEY)[1], reverse=reverse)
        return have + missing
    return sort_rows(shown, sort, reverse)


class RunTable(DataTable):
    """Runs, one per row; the row key is the run id."""

    class MarksChanged(Message):
        def __init__(self, marked: frozenset[str]) -> None:
            self.marked = marked
            super().__init__()

    runs: reactive[tuple[RunRow, ...]] = reactive((), always_update=True, init=False)
    filter_text: reactive[str] = reactive("", init=False)
    sort_by: reactive[str] = reactive("created", init=False)
    sort_reverse: reactive[bool] = reactive(True, init=False)  # newest first
    marked: reactive[frozenset[str]] = reactive(frozenset(), init=False)
    now: reactive[float] = reactive(0.0, init=False)

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self._shown: list[str] = []
        self._layout_key: tuple | None = None  # (ids, sort) the table was last built for
        self._order_key: tuple | None = None  # (filter, sort, reverse) the shown order was sorted by

    @property
    def shown_ids(self) -> list[str]:
        return list(self._shown)

    @property
    def current_id(self) -> str | None:
        if not self._shown or self.cursor_row < 0 or self.cursor_row >= len(self._shown):
            return None
        return self._shown[self.cursor_row]

    def toggle_mark(self) -> None:
        run_id = self.current_id
        if run_id is not None:
            self.marked = self.marked ^ {run_id}
            self.post_message(self.MarksChanged(self.marked))

    def cycle_sort(self) -> None:
        names = [c[2] for c in SORTABLE]
        unique = list(dict.fromkeys(names))
        self.sort_by = unique[(unique.index(self.sort_by) + 1) % len(unique)]

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        key = dict((c[0], c[2]) for c in COLUMNS).get(event.column_key.value or "")
        if not key:
            return
        if key == self.sort_by:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_by = key

    def watch_runs(self) -> None:
        self._rebuild()

    def on_mount(self) -> None:
        self._rebuild()

    def watch_filter_text(self) -> None:
        self._rebuild()

    def watch_sort_by(self) -> None:
        self._rebuild()

    def watch_sort_reverse(self) -> None:
        self._rebuild()

    def watch_marked(self) -> None:
        self._rebuild()

    def watch_now(self) -> None:
        self._rebuild()

    def _cells(self, row: RunRow) -> list:
        train, _ = metric_cell(row, TRAIN_KEY)
        evaluation, _ = metric_cell(row, EVAL_KEY)
        step = f"{row.step}/{row.total_steps}" if row.total_steps else (str(row.step) if row.step else "")
        return [
            Text("●", style="bold magenta") if row.id in self.marked else "",
            short_id(row.id), cut(row.name, NAME_WIDTH), status_cell(row), Text(step, justify="right"),
            evaluation, train, row.kind, row.loss, sweep_name(row.sweep), ",".join(row.tags),
            format_age(row_age(row, self.now)),
        ]

    def _rebuild(self) -> None:
        """Update cells in place when the layout holds; rebuild when rows, order or widths change.

        Column widths are computed here, not left to the table's measuring on idle: a table
        that re-measures after its rows arrive can keep drawing cells cut at the old widths.
        """
        rows = visible_rows(list(self.runs), self.filter_text, self.sort_by, self.sort_reverse)
        order_key = (self.filter_text, self.sort_by, self.sort_reverse)
        if order_key == self._order_key and {r.id for r in rows} == set(self._shown):
            # the same runs under the same sort: keep the order they are shown in. A live value
            # (step, eval, status) re-sorting the rows every second moved runs under the cursor,
            # and `space` marked the wrong one. A new run, a filter or a sort re-sorts.
            by_id = {r.id: r for r in rows}
            rows = [by_id[i] for i in self._shown]
        self._order_key = order_key
        cells = [self._cells(r) for r in rows]
        headers = []
        for key, header, sort in COLUMNS:  # the header marks the sort column
            arrow = (" ▼" if self.sort_reverse else " ▲") if sort == self.sort_by and key != "age" else ""
            headers.append(header + arrow)
        widths = tuple(max([len(h)] + [Text(c).cell_len if isinstance(c, str) else c.cell_len for c in col])
                       for h, col in zip(headers, zip(*cells, strict=True) if cells else [()] * len(COLUMNS),
                                         strict=True))
        ids = [r.id for r in rows]
        layout_key = (tuple(ids), tuple(headers), widths)
        if layout_key == self._layout_key:
            for r, row_cells in zip(rows, cells, strict=True):
                for (key, _, _), cell in zip(COLUMNS, row_cells, strict=True):
                    if self.get_cell(r.id, key) != cell:
                        self.update_cell(r.id, key, cell)
            return
        current = self.current_id
        self.clear(columns=True)
        for (key, _, _), header, width in zip(COLUMNS, headers, widths, strict=True):
            self.add_column(header, key=key, width=width)
        for r, row_cells in zip(rows, cells, strict=True):
            self.add_row(*row_cells, key=r.id)
        self._shown, self._layout_key = ids, layout_key
        if current in ids:
            self.move_cursor(row=ids.index(current), animate=False)


def row_age(row: RunRow, now: float) -> float:
    """Seconds since creation by the app's clock (injectable, so snapshots are stable)."""
    if not now:
        return row.age_s
    try:
        return now - datetime.fromisoformat(row.created_at).timestamp()
    except ValueError:
        return row.age_s
