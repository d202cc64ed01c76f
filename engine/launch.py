"""Kept for one release: Slurm job scripts queued before the move run `python -m engine.launch`; the module is
`engine.runs.launch`."""

from engine.runs.launch import main

if __name__ == "__main__":
    main()
