"""The log pane: the tail of a run's train.log, following new lines as the screen reads them."""

from __future__ import annotations

from textual.widgets import Log


class LogPane(Log):
    """A bounded, auto-scrolling log; the screen feeds it lines from its file-tailing worker."""

    DEFAULT_CSS = """
    LogPane {
        border: round $primary 50%;
        border-title-color: $text;
        height: 10;
    }
    LogPane:focus { border-title-color: $accent; border-title-style: bold reverse; }  /* no layout */
    """

    def __init__(self, *, title: str = "train.log", max_lines: int = 5000, id: str | None = None) -> None:
        super().__init__(max_lines=max_lines, highlight=True, id=id)
        self.border_title = title
        self.total = 0

    def append(self, lines: list[str]) -> None:
        if lines:
            self.total += len(lines)
            self.write_lines(lines)
            self.border_subtitle = f"{self.total} lines"
