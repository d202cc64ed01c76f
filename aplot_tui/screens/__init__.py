"""Screens of the TUI: each owns its panels and its file-reading and process-control workers."""
