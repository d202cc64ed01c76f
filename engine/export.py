"""`python -m engine.export SRC DEST`: a LoRA checkpoint merged into a plain HF folder (no peft needed to
load it), its adapter kept in DEST/adapter. `aplot export` runs this in a process of its own, because
merging loads torch and the CLI process never does."""

from __future__ import annotations

import sys
from pathlib import Path

from engine.models import export_adapter_folder


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        sys.exit("usage: python -m engine.export SRC DEST")
    export_adapter_folder(Path(args[0]), Path(args[1]))


if __name__ == "__main__":
    main()
