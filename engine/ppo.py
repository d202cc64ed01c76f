"""Kept for one release: Slurm job scripts queued before the move run `python -m engine.ppo`; the module is
`engine.rl.train`."""

from engine.rl.train import main

if __name__ == "__main__":
    main()
