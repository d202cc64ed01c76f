"""The config diff: only the fields on which the compared runs differ, one column per run."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import DataTable

VALUE_WIDTH = 32  # a run's column at most: three runs and the field names fit 120 columns


def format_value(value, width: int = VALUE_WIDTH) -> Text:
    """A value in at most `width` cells; a longer one keeps its end (a data path's file name is
    what tells runs apart), so a long path no longer pushes the other runs off screen."""
    if value is None:
        return Text("—", style="dim")
    if isinstance(value, list):
        text = ", ".join(map(str, value)) or "[]"
    elif isinstance(value, dict):
        text = ", ".join(f"{k}={v}" for k, v in value.items()) or "{}"
    else:
        text = str(value)
    return Text(text if len(text) <= width else "…" + text[-(width - 1):])


class ConfigDiff(DataTable):
    """Rows are dotted field paths (from `run_data.diff_fields`), columns are runs."""

    diff: reactive[tuple[tuple[str, tuple], ...]] = reactive(())
    run_labels: reactive[tuple[str, ...]] = reactive(())

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)

    @property
    def fields(self) -> list[str]:
        return [path for path, _ in self.diff]

    def watch_diff(self) -> None:
        self._rebuild()

    def watch_run_labels(self) -> None:
        self._rebuild()

    def _rebuild(self) -> None:
        self.clear(columns=True)
        self.add_column("field", key="field")
        for i, label in enumerate(self.run_labels):
            self.add_column(label, key=f"run{i}")
        if not self.diff and self.run_labels:
            self.add_row(Text("the configs are identical", style="dim"), *[""] * len(self.run_labels))
        for path, values in self.diff:
            self.add_row(Text(path, style="bold"), *map(format_value, values), key=path)
