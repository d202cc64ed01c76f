"""The key bar at the bottom of every screen, rebuilt only when the keys it shows change.

Textual's Footer recomposes itself whenever a screen's bindings may have changed, which includes
every focus move. On the run screen that move is `tab` between panels that add no keys of their
own, and the rebuild (a FooterKey widget per binding, each restyled) was most of the cost of the
repaint after the key. This footer compares what it would show and keeps its widgets when that is
the same.
"""

from __future__ import annotations

from textual.screen import Screen
from textual.widgets import Footer


class KeyFooter(Footer):
    _shown: tuple | None = None

    def bindings_changed(self, screen: Screen) -> None:
        shown = tuple((binding.key, binding.description, binding.action, enabled, tooltip)
                      for _node, binding, enabled, tooltip in screen.active_bindings.values() if binding.show)
        if shown == self._shown and self._bindings_ready:
            return
        self._shown = shown
        super().bindings_changed(screen)
