"""`python -m aplot_tui.cli`: the same as the `aplot` command."""

from aplot_tui.cli import main

main()
