"""Widgets of the TUI: they draw what screens hand them and never touch files or processes."""
