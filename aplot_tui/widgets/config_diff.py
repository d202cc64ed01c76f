"""The config diff: only the fields on which the compared runs differ, one column per run."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import DataTable


def format_value(value) -> Text:
    if value is None:
        return Text("—", style="dim")
    if isinstance(value, list):
        return Text(", ".join(map(str, value)) or "[]")
    if isinstance(value, dict):
        return Text(", ".join(f"{k}={v}" for k, v in value.items()) or "{}")
    return Text(str(value))


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
