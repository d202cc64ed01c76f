"""The log pane: the tail of a run's train.log, following new lines as the screen reads them.

A log is mostly library chatter; what a person looks for is aplot's own lines (`[aplot] …`: the
start, each checkpoint, how it ended) and a traceback. Those stand out; progress-bar redraws
are left out.
"""

from __future__ import annotations

import re

from rich.highlighter import ReprHighlighter
from rich.text import Text
from textual.widgets import Log

APLOT_LINE = re.compile(r"^\[aplot\]")
# a progress bar's frame (tqdm: `Writing model shards: 100%|██████| 1/1 [00:00<00:00, 9.1it/s]`): each
# checkpoint and export writes one, and they were most of the pane; what they say the [aplot] lines say
PROGRESS_LINE = re.compile(r"^\s*[^:|]{0,60}:\s*\d{1,3}%\|.*\|")
ERROR_LINE = re.compile(r"^(Traceback \(most recent call last\)|\s+File \"|\w*(Error|Exception|Interrupt)\b"
                        r"|\[aplot\] (failed|error))")


class LogHighlighter(ReprHighlighter):
    """Numbers and names as usual; aplot's own lines bold, traceback and error lines bold red."""

    def highlight(self, text: Text) -> None:
        super().highlight(text)
        if ERROR_LINE.match(text.plain):
            text.stylize("bold red")
        elif APLOT_LINE.match(text.plain):
            text.stylize("bold reverse")


def last_frame(line: str) -> str:
    """A progress bar redraws itself with carriage returns (`Writing model shards: 0%|…\r…100%|…`): a
    terminal shows its last frame only, and so does the pane."""
    frames = [f for f in line.split("\r") if f.strip()]
    return frames[-1] if frames else line.replace("\r", "")


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
        self.highlighter = LogHighlighter()
        self.border_title = title
        self.total = 0

    def append(self, lines: list[str]) -> None:
        lines = [frame for frame in map(last_frame, lines) if not PROGRESS_LINE.match(frame)]
        if lines:
            self.total += len(lines)
            self.write_lines(lines)
            self.border_subtitle = f"{self.total} lines"
