"""Per-pair rewards of every eval, kept so two runs can be compared pair by pair after the fact.

Each eval of each set writes one file, `runs/<id>/predictions/<set>/step-<N>.npy`: a structured
array of `(r_pos float32, r_neg float32, index int32)`, 12 bytes a pair plus a 128-byte header, in the
set's fixed order (`index` is the pair's position in the eval set, so two runs on the same set line
up row by row; it is stored anyway so a reader can check that they do). The metrics stream keeps
only aggregates; these files are what `aplot compare` bootstraps over.

    write(run_dir, set_name, step, r_pos, r_neg)     # main process only, after the gather
    read(run_dir, set_name, step=None)               # the newest step unless one is named
    steps(run_dir, set_name), sets(run_dir)

An RL run's win-rate eval writes the same kind of file in `predictions/win/`, one row a held-out
prompt: `(outcome float32, gold float32, prompt uint64)`: the judge's outcome of the policy's response
against the opponent's (1 win, 0.5 tie, 0 loss), the judge's own score of that response (the gold
rule's for synthetic prompts, else the judging RM's reward), and a key of the prompt's text. Runs pair
up by that key, not by position: runs over seeds hold out the same prompts, in whatever order their
ranks gathered them.

    write_outcomes(run_dir, set_name, step, outcome, gold, prompts)   # main process only

An N-way set (one prompt, correct against incorrect completions: RewardBench 2) writes one row an
item instead: `(outcome float32, chosen float32, best_rejected float32, index int32)`, the item's
outcome (1 on top, 1/t tied with t − 1 others, else 0), the first correct completion's reward, the
best incorrect one's, and the item's number in its set (runs pair up by it).

    write_items(run_dir, set_name, step, outcome, chosen, best_rejected, index)   # main process only

A set with subsets also keeps, once, each row's subset label (`subsets.json`, a JSON list in row
order), so a comparison can give each subset and section its own interval.

    write_labels(run_dir, set_name, labels), read_labels(run_dir, set_name)

numpy only: the UI reads these files, and the engine's eval (RM training, `eval` runs, RL) writes them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

import numpy as np

DIR = "predictions"
DTYPE = np.dtype([("r_pos", "<f4"), ("r_neg", "<f4"), ("index", "<i4")])
RL_DTYPE = np.dtype([("outcome", "<f4"), ("gold", "<f4"), ("prompt", "<u8")])
ITEM_DTYPE = np.dtype([("outcome", "<f4"), ("chosen", "<f4"), ("best_rejected", "<f4"), ("index", "<i4")])
LABELS = "subsets.json"
_STEP = re.compile(r"step-(\d+)\.npy")


@dataclass(frozen=True)
class Predictions:
    """One eval of one set: the step it was taken at and the rewards in set order."""

    set_name: str
    step: int
    r_pos: np.ndarray  # [n] float32
    r_neg: np.ndarray  # [n] float32
    index: np.ndarray  # [n] int32

    @property
    def correct(self) -> np.ndarray:
        """[n] bool: the chosen answer got the higher reward (a tie counts as wrong, as the accuracy does)."""
        return self.r_pos > self.r_neg


@dataclass(frozen=True)
class Outcomes:
    """One RL win-rate eval: per held-out prompt, the judge's outcome and score of the policy's response."""

    set_name: str
    step: int
    outcome: np.ndarray  # [n] float32 in {0, 0.5, 1}
    gold: np.ndarray  # [n] float32, NaN where no judge score was taken
    prompt: np.ndarray  # [n] uint64 keys of the prompts' text


@dataclass(frozen=True)
class Items:
    """One eval of an N-way set: per item its outcome, the chosen's reward and the best rejected's."""

    set_name: str
    step: int
    outcome: np.ndarray  # [n] float32 in [0, 1]
    chosen: np.ndarray  # [n] float32
    best_rejected: np.ndarray  # [n] float32
    index: np.ndarray  # [n] int32: the item's number in the set


def prompt_key(prompt: str) -> int:
    """A prompt's text as 64 bits (the first 8 bytes of its SHA-256): the same prompt in any run."""
    return int.from_bytes(hashlib.sha256(prompt.encode("utf-8")).digest()[:8], "little")


def _folder_name(set_name: str) -> str:
    """An eval set's name as one safe path component: a set may be called anything the config allows
    (even `../x`), and its folder must still be a plain child of `predictions/`."""
    if not set_name:
        raise ValueError("an eval set needs a name")
    name = quote(set_name, safe="")
    return "%2E" + name[1:] if name.startswith(".") else name


def set_dir(run_dir: Path, set_name: str) -> Path:
    return Path(run_dir) / DIR / _folder_name(set_name)


def write(run_dir: Path, set_name: str, step: int, r_pos, r_neg, index=None) -> Path:
    """Write one eval's rewards atomically (temp file + rename: a reader never sees half a file)."""
    r_pos, r_neg = np.asarray(r_pos, dtype=np.float32).ravel(), np.asarray(r_neg, dtype=np.float32).ravel()
    if r_pos.shape != r_neg.shape:
        raise ValueError(f"predictions: {r_pos.shape} chosen rewards against {r_neg.shape} rejected")
    rows = np.empty(len(r_pos), dtype=DTYPE)
    rows["r_pos"], rows["r_neg"] = r_pos, r_neg
    rows["index"] = np.arange(len(r_pos)) if index is None else np.asarray(index)
    return _save(run_dir, set_name, step, rows)


def write_outcomes(run_dir: Path, set_name: str, step: int, outcome, gold, prompts: list[str]) -> Path:
    """Write one RL win-rate eval's per-prompt outcomes and judge scores (NaN for none), atomically."""
    outcome, gold = np.asarray(outcome, dtype=np.float32).ravel(), np.asarray(gold, dtype=np.float32).ravel()
    if not (len(outcome) == len(gold) == len(prompts)):
        raise ValueError(f"outcomes: {len(outcome)} outcomes, {len(gold)} scores, {len(prompts)} prompts")
    rows = np.empty(len(outcome), dtype=RL_DTYPE)
    rows["outcome"], rows["gold"] = outcome, gold
    rows["prompt"] = np.array([prompt_key(p) for p in prompts], dtype=np.uint64)
    return _save(run_dir, set_name, step, rows)


def write_items(run_dir: Path, set_name: str, step: int, outcome, chosen, best_rejected, index) -> Path:
    """Write one N-way eval's per-item outcomes and rewards (in set order) atomically."""
    cols = [np.asarray(c).ravel() for c in (outcome, chosen, best_rejected, index)]
    if len({len(c) for c in cols}) != 1:
        raise ValueError(f"items: columns of {[len(c) for c in cols]} rows")
    rows = np.empty(len(cols[0]), dtype=ITEM_DTYPE)
    for name, col in zip(ITEM_DTYPE.names, cols, strict=True):
        rows[name] = col
    return _save(run_dir, set_name, step, rows)


def write_labels(run_dir: Path, set_name: str, labels: list[str | None]) -> Path:
    """Each row's subset label (per pair, or per item for an N-way set), atomically."""
    folder = set_dir(run_dir, set_name)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".labels.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(list(labels), fh)
        os.replace(tmp, folder / LABELS)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return folder / LABELS


def read_labels(run_dir: Path, set_name: str) -> list[str | None] | None:
    """The set's subset labels in row order, or None when it has none (or the file cannot be read)."""
    try:
        labels = json.loads((set_dir(run_dir, set_name) / LABELS).read_text())
    except (OSError, ValueError):
        return None
    return labels if isinstance(labels, list) else None


def _save(run_dir: Path, set_name: str, step: int, rows: np.ndarray) -> Path:
    folder = set_dir(run_dir, set_name)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step-{int(step)}.npy"
    fd, tmp = tempfile.mkstemp(prefix=".pred.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, rows, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def sets(run_dir: Path) -> list[str]:
    """Eval sets with at least one predictions file."""
    root = Path(run_dir) / DIR
    names = [unquote(d.name) for d in root.iterdir() if d.is_dir()] if root.is_dir() else []
    return sorted(n for n in names if steps(run_dir, n))


def steps(run_dir: Path, set_name: str) -> list[int]:
    folder = set_dir(run_dir, set_name)
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := _STEP.fullmatch(p.name)))


def read(run_dir: Path, set_name: str, step: int | None = None) -> Predictions | Outcomes | Items | None:
    """One eval's rewards, or an RL eval's outcomes (the newest unless `step` is given); None when
    the run has none for that set."""
    have = steps(run_dir, set_name)
    if not have or (step is not None and step not in have):
        return None
    step = have[-1] if step is None else step
    rows = np.load(set_dir(run_dir, set_name) / f"step-{step}.npy", allow_pickle=False)
    if rows.dtype == RL_DTYPE:
        return Outcomes(set_name, step, rows["outcome"], rows["gold"], rows["prompt"])
    if rows.dtype == ITEM_DTYPE:
        return Items(set_name, step, rows["outcome"], rows["chosen"], rows["best_rejected"], rows["index"])
    if rows.dtype != DTYPE:
        raise ValueError(f"{set_dir(run_dir, set_name)}/step-{step}.npy: not a predictions file ({rows.dtype})")
    return Predictions(set_name, step, rows["r_pos"], rows["r_neg"], rows["index"])
