"""The base of the screens made of plots (run, compare)."""

from __future__ import annotations

from textual.reactive import Reactive
from textual.screen import Screen
from textual.widget import Widget


class ChartScreen(Screen):
    """Textual repaints the whole screen when focus moves, which redraws every plot on it (about
    40 ms with six). The widgets that gain and lose focus repaint themselves as their styles
    change; nothing else on a screen of plots needs to."""

    focused: Reactive[Widget | None] = Reactive(None, repaint=False)
