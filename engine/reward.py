"""Kept for one release: Slurm job scripts queued before the move run `python -m engine.reward`; the module is
`engine.rm.train`."""

from engine.rm.train import main

if __name__ == "__main__":
    main()
