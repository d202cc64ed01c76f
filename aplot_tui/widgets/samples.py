"""The latest PPO sample completions: prompt, response and the reward model's score."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import RenderResult
from textual.reactive import reactive
from textual.widget import Widget


class SamplesView(Widget):
    """Shows the newest `samples` record; older ones are in metrics.jsonl."""

    DEFAULT_CSS = """
    SamplesView {
        border: round $primary 50%;
        border-title-color: $text;
        border-title-style: bold;
        height: 1fr;
        overflow-y: auto;
    }
    """

    samples: reactive[tuple[dict, ...]] = reactive(())
    step: reactive[int] = reactive(0)

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "samples"

    def watch_step(self, step: int) -> None:
        self.border_title = f"samples · step {step}" if step else "samples"

    def render(self) -> RenderResult:
        if not self.samples:
            return Text("no samples yet", style="dim", justify="center")
        table = Table(box=None, expand=True, show_edge=False, pad_edge=False)
        table.add_column("prompt", ratio=2, style="dim", overflow="fold")
        table.add_column("response", ratio=3, overflow="fold")
        table.add_column("score", justify="right", width=6)
        for s in self.samples:
            score = s.get("score")
            table.add_row(shown(s.get("prompt", "")), shown(s.get("response", "")),
                          f"{score:.2f}" if isinstance(score, (int, float)) else "")
        return table


def shown(value: object) -> str:
    """Text as a person reads it: a byte-level tokenizer's partial characters (U+FFFD), control
    bytes and escapes become `·`, so an early policy's babble reads as babble, not as `�2�^` and
    terminal garbage; whitespace runs fold to one space."""
    text = str(value)
    return " ".join("".join(c if c.isprintable() and c != "\ufffd" else "·" for c in part) for part in text.split())
