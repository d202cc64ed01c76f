"""Kept for one release: Slurm job scripts queued before the move run `python -m engine.slurm`; the module is
`engine.runs.slurm`."""

from engine.runs.slurm import main

if __name__ == "__main__":
    main()
