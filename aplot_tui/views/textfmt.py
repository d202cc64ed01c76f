"""How numbers and texts are cut to fit a line, for the CLI's text reports and the widgets alike."""

from __future__ import annotations

from typing import Any

SHOW_CHARS = 100


def shorten(text: str, limit: int = SHOW_CHARS) -> str:
    """One line: whitespace collapsed, cut at `limit` characters with an ellipsis."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def fmt(value: Any, spec: str = ".3f") -> str:
    """A number to `spec`; anything else (a missing value) as a dash."""
    return format(value, spec) if isinstance(value, (int, float)) else "–"
