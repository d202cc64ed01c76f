"""`python -m aplot_tui.cli`: the same as the `aplot` command."""

from aplot_tui.cli import main

if __name__ == "__main__":
    main()
