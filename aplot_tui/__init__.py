"""aplot: the terminal workbench (CLI, TUI, run supervisor). Never imports torch."""
__version__ = "0.1.0"
