"""The run screen's health line: the best eval so far (step, checkpoint) and what looks wrong."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from aplot_tui.views.health import Best
from engine import metrics as M


class HealthStrip(Widget):
    DEFAULT_CSS = """
    HealthStrip {
        height: 1;  /* one line at any width: a strip that grew when the flags came moved every panel */
        padding: 0 1;
    }
    """

    best: reactive[Best | None] = reactive(None)
    flags: reactive[tuple[str, ...]] = reactive(())
    error: reactive[str] = reactive("")

    def render(self) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        if self.error:
            text.append(f"✗ {self.error}", style="bold red")
            return text
        if self.best is not None:
            b = self.best
            label = M.KEY_LABELS.get(b.key, M.split_key(b.key)[1])
            where = f" · {b.checkpoint}" if b.checkpoint else " · no checkpoint holds it"
            eval_set = M.eval_set(M.split_key(b.key)[0])
            what = label if label == eval_set else f"{eval_set} {label}"  # `win`, not `win win`
            text.append(f"best {what} {b.value:.4g} @ step {b.step}{where}")
        else:
            text.append("best: no eval yet", style="dim")
        if self.flags:
            for flag in self.flags:
                text.append("  ⚠ " + flag, style="bold yellow")
        else:
            text.append("  ✓ no warnings", style="green")
        return text
