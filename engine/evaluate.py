"""Kept for one release: Slurm job scripts queued before the move run `python -m engine.evaluate`; the module is
`engine.rm.evaluate`."""

from engine.rm.evaluate import main

if __name__ == "__main__":
    main()
