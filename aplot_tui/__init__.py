"""aplot: the terminal workbench (CLI, TUI, views). Never imports torch."""
__version__ = "0.1.0"
