"""Kept for one release: Slurm job scripts queued before the move end with `python -m engine.slurm
after-job RUN_DIR`; that step is `engine.runs.lifecycle` now."""

from engine.runs.lifecycle import main

if __name__ == "__main__":
    main()
