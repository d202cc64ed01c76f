"""Preference rows to pairs of plain text: the row shapes, JSON files, column names, the held-out split.

Torch-free and numpy-free: the launch preflight reads every data set in full through this module,
in the parent process (the CLI, the TUI, a sweep), before a run folder exists; the trainer reads
the same sets through it again (or the row cache, `engine.data.row_cache`, when the preflight left
an entry) and trusts what it gets.

Every supported row shape becomes a `Pair` of plain text — a prompt (the shared context) and
two responses — so everything downstream (tokenisation, losses, the OT margin) sees one shape:

- standard (TRL): `{prompt, chosen, rejected[, margin]}` with text, or with `{role, content}`
  message lists (prompt = the context messages, chosen/rejected = the assistant turn(s));
- implicit prompt (TRL), for rows with no `prompt` column only:
  - conversational: `{chosen: [msgs], rejected: [msgs]}` whole conversations, split at their
    longest common message prefix;
  - hh (Anthropic HH-RLHF): `{chosen, rejected}` whole "\\n\\nHuman: … \\n\\nAssistant: …"
    transcripts, split at the longest shared prefix that ends in "\\n\\nAssistant:"; other texts
    split where their shared words end.
- N-way (RewardBench 2): `{prompt, chosen: [texts], rejected: [texts][, id]}`, one prompt with correct
  and incorrect completions, becomes pairs that share an `item` number (`parse_item`); an eval scores
  the item as a whole (`engine.analysis.rewardbench`).

A row that has a `prompt` column (its own, or one `[data.columns]` maps) never gets an implicit
prompt: a null or missing prompt there is an error, not a common prefix made up in its place.

Message lists are rendered with the HH template ("\\n\\nHuman: …" for `user`, "\\n\\nAssistant: …"
for `assistant`, the capitalised role name otherwise), so conversational and HH data look alike
to a tokenizer and `prompt + response` always reproduces the full transcript. A split prompt ends
with the responder's turn marker ("…\\n\\nAssistant:") and responses keep their leading space.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import stat
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.errors import AplotError

ASSISTANT_MARK = "\n\nAssistant:"
SPEAKERS = {"user": "Human", "assistant": "Assistant"}
REQUIRED = ("prompt", "chosen", "rejected")  # a mapped one must be in every row: no fallback stands in
OPTIONAL = ("margin", "subset")  # a row may lack these; a mapped one must be in some row


class DataError(AplotError):
    """A one-line, user-facing problem with a data file, naming the file (and line)."""


@dataclass
class Pair:
    prompt: str
    chosen: str  # response only; the context lives in `prompt`
    rejected: str
    margin: float | None = None
    subset: str | None = None  # a label (e.g. RewardBench's "alpacaeval-easy") for per-subset accuracy
    # an N-way row (one prompt, a list of correct and of incorrect completions) becomes several pairs:
    # `item` is that row's number in its file, the slots say which of its completions this pair holds
    item: int | None = None
    chosen_slot: int = 0
    rejected_slot: int = 0
    item_id: str | None = None  # the row's `id` (RewardBench 2's Ties pairs "ref:N" with "tied:N" by it)


@dataclass
class LoadResult:
    pairs: list[Pair]
    skipped_empty: int  # rows whose chosen or rejected response was empty or whitespace
    path: str
    sha256: str  # of the file's bytes as stored (compressed if .gz): provenance for the manifest
    format: str  # detected row shape(s): "standard", "conversational", "hh", joined by "+" if mixed
    # mapped margin/subset columns no row of this set has (ours -> theirs), and then the columns its rows
    # do have: a set may lack margins, but a mapping no set of a config has is a typo (engine.data.sets)
    absent: dict[str, str] = field(default_factory=dict)
    columns: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------- rows


def render_messages(messages: Sequence[dict]) -> str:
    """The plain HH-style template; `prompt + response` splits of it concatenate back exactly."""
    return "".join(f"\n\n{_speaker(m['role'])}: {m['content']}" for m in messages)


def _speaker(role: str) -> str:
    return SPEAKERS.get(role, role.capitalize())


def _split_messages(context: list[dict], chosen: list[dict], rejected: list[dict]) -> tuple[str, str, str]:
    """Render context and responses; the shared turn marker of the responders moves to the prompt."""
    prompt, c, r = render_messages(context), render_messages(chosen), render_messages(rejected)
    if chosen and rejected and chosen[0]["role"] == rejected[0]["role"]:
        head = f"\n\n{_speaker(chosen[0]['role'])}:"
        prompt, c, r = prompt + head, c[len(head) :], r[len(head) :]
    return prompt, c, r


def _common_prefix_len(a: str, b: str) -> int:
    """Binary search over slice equality: C-speed compares instead of a per-character Python loop."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def split_transcripts(chosen: str, rejected: str) -> tuple[str, str, str, str]:
    """Two whole texts -> (prompt, chosen, rejected, shape). HH transcripts split at the longest shared
    prefix that ends in "\\n\\nAssistant:", so responses that share their first words still split at
    the marker. Other texts (TRL's standard format with an implicit prompt) split where their shared
    prefix last ends a word: the responses keep their leading space; the prompt may be empty.
    Only for rows without a prompt column (`parse_row` decides)."""
    shared = _common_prefix_len(chosen, rejected)
    cut = chosen.rfind(ASSISTANT_MARK, 0, shared)
    if cut >= 0:
        cut += len(ASSISTANT_MARK)
        return chosen[:cut], chosen[cut:], rejected[cut:], "hh"
    if shared == min(len(chosen), len(rejected)):  # one text is a prefix of the other: keep a word
        shared = max(0, shared - 1)
    cut = max(chosen.rfind(" ", 0, shared + 1), chosen.rfind("\n", 0, shared + 1), 0)
    return chosen[:cut], chosen[cut:], rejected[cut:], "implicit"


def _messages(value: Any, name: str) -> list[dict]:
    for i, m in enumerate(value, 1):
        if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
            raise ValueError(f"message {i} of {name}: expected {{role, content}} with text content")
    return value


def parse_row(row: Any) -> tuple[Pair, str]:
    """One JSON row -> (Pair, shape). Raises ValueError with a message the caller prefixes with file:line."""
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    if "chosen" not in row or "rejected" not in row:
        raise ValueError(
            "expected fields prompt/chosen/rejected, or chosen/rejected transcripts, or message lists; "
            f"got keys {sorted(row)}"
        )
    for name in REQUIRED:
        if name in row and row[name] is None:
            raise ValueError(f"{name} is null; expected text or a message list"
                             + (" (leave the column out for an implicit prompt)" if name == "prompt" else ""))
    chosen, rejected, prompt = row["chosen"], row["rejected"], row.get("prompt")
    texts = isinstance(chosen, str) and isinstance(rejected, str)
    lists = isinstance(chosen, list) and isinstance(rejected, list)
    if prompt is not None and texts and isinstance(prompt, str):
        shape, parts = "standard", (prompt, chosen, rejected)
    elif prompt is not None and lists and isinstance(prompt, list):
        shape = "conversational"
        parts = _split_messages(
            _messages(prompt, "prompt"), _messages(chosen, "chosen"), _messages(rejected, "rejected")
        )
    elif prompt is not None:
        raise ValueError("prompt, chosen and rejected must all be text or all be message lists")
    elif lists:  # TRL's implicit prompt: whole conversations share their opening messages
        chosen, rejected = _messages(chosen, "chosen"), _messages(rejected, "rejected")
        k = 0
        while k < min(len(chosen), len(rejected)) and chosen[k] == rejected[k]:
            k += 1
        shape, parts = "conversational", _split_messages(chosen[:k], chosen[k:], rejected[k:])
    elif texts:  # TRL's implicit prompt: whole transcripts share their opening text
        *parts, shape = split_transcripts(chosen, rejected)
    else:
        raise ValueError("chosen and rejected must both be text or both be message lists")
    subset = _subset(row)
    margin = row.get("margin")
    if margin is not None and (isinstance(margin, bool) or not isinstance(margin, (int, float))):
        raise ValueError(f"margin must be a number, got {margin!r}")
    try:
        margin = None if margin is None else float(margin)
    except OverflowError:  # an integer beyond float range; ±Infinity written as such stays allowed
        raise ValueError(f"margin is too large for a float ({len(str(abs(margin)))} digits)") from None
    return Pair(*parts, margin=margin, subset=subset), shape


def _subset(row: dict) -> str | None:
    subset = row.get("subset")
    if subset is not None and not isinstance(subset, str):
        raise ValueError(f"subset must be text, got {subset!r}")
    return subset


def _texts(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)


def parse_item(row: Any, item: int) -> list[Pair] | None:
    """An N-way row (RewardBench 2's shape: a text prompt, `chosen` and `rejected` lists of texts;
    either may be one text) as pairs that between them hold every completion once or more: pair t
    is correct completion t mod m against incorrect completion t mod k, max(m, k) pairs in all.
    None for a row that is a plain pair (`parse_row`'s); a ValueError for a malformed N-way row."""
    if not isinstance(row, dict) or "chosen" not in row or "rejected" not in row \
            or not (_texts(row["chosen"]) or _texts(row["rejected"])):
        return None  # parse_row's: a plain pair, or the one line that names the keys a row lacks
    chosen, rejected = ([v] if isinstance(v, str) else v for v in (row["chosen"], row["rejected"]))
    if not (_texts(chosen) and _texts(rejected)):
        raise ValueError("an N-way row's chosen and rejected must each be a text or a non-empty list of texts")
    prompt = row.get("prompt")
    if not isinstance(prompt, str):
        raise ValueError(f"an N-way row (lists of completions) needs a text prompt, got {type(prompt).__name__}")
    if row.get("margin") is not None:
        raise ValueError("margin is one number per pair; an N-way row cannot have one")
    subset, item_id = _subset(row), None if row.get("id") is None else str(row["id"])
    m, k = len(chosen), len(rejected)
    return [Pair(prompt, chosen[t % m], rejected[t % k], None, subset, item, t % m, t % k, item_id)
            for t in range(max(m, k))]


def rename_columns(row: Any, columns: dict[str, str] | None) -> Any:
    """The user's column names onto aplot's (`columns` maps aplot's name to theirs). A mapped prompt,
    chosen or rejected column the row lacks is an error naming both names and the row's columns;
    a mapped margin or subset may be absent from a row (`collect` notes a set that never has it)."""
    if not columns or not isinstance(row, dict):
        return row
    out = {k: v for k, v in row.items() if k not in columns.values()}
    for ours, theirs in columns.items():
        if theirs in row:
            out[ours] = row[theirs]
        elif ours in REQUIRED:
            raise ValueError(f"no column {theirs!r} (data.columns.{ours}); columns found: {', '.join(sorted(row))}")
    return out


def collect(rows: Iterable[tuple[str, Any]], path: str, sha256: str,
            columns: dict[str, str] | None = None) -> LoadResult:
    """Rows (any iterable of (where, row)) to pairs; the first bad row stops it with where + why.
    An empty set, or a set of empty responses only, is an error naming `path`; a mapped margin or
    subset column found in no row is noted in `absent`."""
    pairs, shapes, skipped, n, kept = [], [], 0, 0, 0
    unseen = {ours: theirs for ours, theirs in (columns or {}).items() if ours in OPTIONAL}
    found: set[str] = set()
    for where, row in rows:
        n += 1
        if unseen and isinstance(row, dict):  # only while a mapped optional column is still unseen
            found.update(row)
            unseen = {ours: theirs for ours, theirs in unseen.items() if theirs not in row}
        try:
            row = rename_columns(row, columns)
            found_pairs = parse_item(row, kept)
            shape = "nway"
            if found_pairs is None:
                pair, shape = parse_row(row)
                found_pairs = [pair]
        except ValueError as e:
            raise DataError(f"{where}: {e}") from None
        if any(not p.chosen.strip() or not p.rejected.strip() for p in found_pairs):
            skipped += 1  # an N-way row with one empty completion goes whole: a part would score otherwise
            continue
        pairs += found_pairs
        kept += 1
        if shape not in shapes:
            shapes.append(shape)
    if n == 0:
        raise DataError(f"{path}: no rows (the data set is empty)")
    if not pairs:
        raise DataError(f"{path}: no preference pairs ({skipped} rows skipped for an empty response)")
    if "nway" in shapes:  # a plain pair among N-way rows is an item of its own: its row's number
        last = -1
        for p in pairs:
            if p.item is None:
                p.item = last + 1
            last = p.item
    return LoadResult(pairs, skipped, path, sha256, "+".join(shapes), unseen, sorted(found) if unseen else [])


# ---------------------------------------------------------------------------------------- files


def json_rows(path: str, raw: bytes) -> list[tuple[str, Any]]:
    """(where, row) for every row of a .jsonl / .json (optionally .gz) file's bytes; `where` is
    "file:line" for JSONL and "file: row i" for a JSON list."""
    name = path[:-3] if path.endswith(".gz") else path
    if path.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: not a readable gzip file ({e})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start})") from None
    if name.endswith(".json"):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: invalid JSON ({e.msg}: column {e.colno})") from None
        except (ValueError, RecursionError) as e:  # a 5000-digit number, or [[[[… nested too deep
            raise DataError(f"{path}: invalid JSON ({_first_line(e)})") from None
        if not isinstance(rows, list):
            raise DataError(f"{path}: expected a JSON list of rows, got {type(rows).__name__}")
        return [(f"{path}: row {i}", row) for i, row in enumerate(rows, 1)]
    out = []
    # "\n" only: str.splitlines() also breaks at U+2028, U+0085 and \x0c, which JSON strings may hold
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            out.append((f"{path}:{lineno}", json.loads(line)))
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{lineno}: invalid JSON ({e.msg}: column {e.colno})") from None
        except (ValueError, RecursionError) as e:
            raise DataError(f"{path}:{lineno}: invalid JSON ({_first_line(e)})") from None
    return out


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def read_regular_file(path: str) -> bytes:
    """The bytes of a regular file. A device, FIFO or socket (/dev/zero, /dev/stdin, a named pipe,
    or a symlink to one) is refused before any read: it would never end or block forever. Opened
    non-blocking and checked on the open descriptor, so the file cannot be swapped after the check."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise DataError(f"{path}: no such data file") from None
    except (OSError, ValueError) as e:  # EACCES, ENAMETOOLONG, ELOOP, an embedded NUL…
        raise DataError(f"{path}: cannot open ({getattr(e, 'strerror', None) or e})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise DataError(f"{path}: not a regular file")
    with os.fdopen(fd, "rb") as fh:
        try:
            return fh.read()
        except OSError as e:  # EIO on a failing disk
            raise DataError(f"{path}: cannot read ({e.strerror})") from None


# ---------------------------------------------------------------------------------------- split


def split_eval(pairs: list[Pair], fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """Hold out about `fraction` of the pairs, grouped by prompt so that no prompt is on both sides
    (several pairs of one prompt would otherwise leak it into the eval set). Prompt groups are
    shuffled with a seeded `random.Random` (never `hash()`, which varies per process) and taken
    until the target count is reached, so a large group can overshoot it. With a single prompt
    the split falls back to pairs. Both sides keep the file order."""
    if not 0 <= fraction < 1:
        raise ValueError(f"eval fraction must be in [0, 1), got {fraction}")
    if fraction == 0 or len(pairs) < 2:
        return list(pairs), []
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(pairs):
        groups.setdefault(p.prompt, []).append(i)
    units = list(groups.values()) if len(groups) > 1 else [[i] for i in range(len(pairs))]
    random.Random(seed).shuffle(units)  # noqa: S311 - the seeded eval split must be reproducible, not secret
    target = max(1, round(fraction * len(pairs)))
    held: set[int] = set()
    for unit in units[:-1]:  # the last unit always stays in train
        if len(held) >= target:
            break
        held.update(unit)
    train = [p for i, p in enumerate(pairs) if i not in held]
    heldout = [p for i, p in enumerate(pairs) if i in held]
    return train, heldout
