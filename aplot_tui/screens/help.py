"""F1: what the screen underneath shows, and every key that works there."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Markdown

GENERAL = """
**Everywhere:** `ctrl+p` opens the command palette (launch, compare, stop, resume, open a run,
change the theme), `F1` this help, `q` or `Esc` goes back, `ctrl+q` quits.
Quitting never stops a run: training runs in its own session; stop it with `s`.
"""


def _key(key: str) -> str:
    return {"slash": "/", "space": "space", "escape": "Esc"}.get(key, key)


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 84; max-height: 90%; height: auto;
        border: thick $accent; background: $surface; padding: 0 1;
    }
    """
    BINDINGS = [Binding("escape,q,f1", "dismiss", "Close")]

    def __init__(self, under: Screen) -> None:
        super().__init__()
        self.under = under

    def compose(self) -> ComposeResult:
        title = getattr(self.under, "TITLE", None) or type(self.under).__name__
        rows = []
        for key, active in self.under.active_bindings.items():
            if active.binding.description and key not in ("f1",):
                rows.append(f"| `{_key(key)}` | {active.binding.description} |")
        table = "\n".join(["| key | does |", "|---|---|", *rows]) if rows else ""
        text = f"# {title}\n{getattr(self.under, 'HELP', '')}\n\n{table}\n{GENERAL}"
        with VerticalScroll():
            yield Markdown(text)
