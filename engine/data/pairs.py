"""Preference pairs: file formats, the held-out split, tokenisation and the pair collator.

Every supported row shape becomes a `Pair` of plain text — a prompt (the shared context) and
two responses — so everything downstream (tokenisation, losses, the OT margin) sees one shape:

- standard (TRL): `{prompt, chosen, rejected[, margin]}` with text, or with `{role, content}`
  message lists (prompt = the context messages, chosen/rejected = the assistant turn(s));
- conversational: `{chosen: [msgs], rejected: [msgs]}` whole conversations, split at their
  longest common message prefix;
- hh (Anthropic HH-RLHF): `{chosen, rejected}` whole "\\n\\nHuman: … \\n\\nAssistant: …"
  transcripts, split at the longest shared prefix that ends in "\\n\\nAssistant:".

Message lists are rendered with the HH template ("\\n\\nHuman: …" for `user`, "\\n\\nAssistant: …"
for `assistant`, the capitalised role name otherwise), so conversational and HH data look alike
to a tokenizer and `prompt + response` always reproduces the full transcript. A split prompt ends
with the responder's turn marker ("…\\n\\nAssistant:") and responses keep their leading space.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import random
import stat
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from engine.errors import AplotError

ASSISTANT_MARK = "\n\nAssistant:"
SPEAKERS = {"user": "Human", "assistant": "Assistant"}
ENCODE_CHUNK = 1024  # pairs tokenised per batch call: bounds the memory of untruncated token lists


class DataError(AplotError):
    """A one-line, user-facing problem with a data file, naming the file (and line)."""


@dataclass
class Pair:
    prompt: str
    chosen: str  # response only; the context lives in `prompt`
    rejected: str
    margin: float | None = None
    subset: str | None = None  # a label (e.g. RewardBench's "alpacaeval-easy") for per-subset accuracy


@dataclass
class LoadResult:
    pairs: list[Pair]
    skipped_empty: int  # rows whose chosen or rejected response was empty or whitespace
    path: str
    sha256: str  # of the file's bytes as stored (compressed if .gz): provenance for the manifest
    format: str  # detected row shape(s): "standard", "conversational", "hh", joined by "+" if mixed




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
    prefix last ends a word: the responses keep their leading space; the prompt may be empty."""
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
    elif lists:
        chosen, rejected = _messages(chosen, "chosen"), _messages(rejected, "rejected")
        k = 0
        while k < min(len(chosen), len(rejected)) and chosen[k] == rejected[k]:
            k += 1
        shape, parts = "conversational", _split_messages(chosen[:k], chosen[k:], rejected[k:])
    elif texts:
        *parts, shape = split_transcripts(chosen, rejected)
    else:
        raise ValueError("chosen and rejected must both be text or both be message lists")
    subset = row.get("subset")
    if subset is not None and not isinstance(subset, str):
        raise ValueError(f"subset must be text, got {subset!r}")
    margin = row.get("margin")
    if margin is not None and (isinstance(margin, bool) or not isinstance(margin, (int, float))):
        raise ValueError(f"margin must be a number, got {margin!r}")
    try:
        margin = None if margin is None else float(margin)
    except OverflowError:  # an integer beyond float range; ±Infinity written as such stays allowed
        raise ValueError(f"margin is too large for a float ({len(str(abs(margin)))} digits)") from None
    return Pair(*parts, margin=margin, subset=subset), shape


# ---------------------------------------------------------------------------------------- files


def _read_rows(path: str, raw: bytes) -> list[tuple[str, Any]]:
    """(where, row) for every row; `where` is "file:line" for JSONL and "file: row i" for a JSON list."""
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


def rename_columns(row: Any, columns: dict[str, str] | None) -> Any:
    """The user's column names onto aplot's (`columns` maps aplot's name to theirs); a mapped column
    the row lacks is an error naming both names."""
    if not columns or not isinstance(row, dict):
        return row
    out = {k: v for k, v in row.items() if k not in columns.values()}
    for ours, theirs in columns.items():
        if theirs in row:
            out[ours] = row[theirs]
        elif ours in ("chosen", "rejected"):
            raise ValueError(f"no column {theirs!r} (data.columns.{ours}); got keys {sorted(row)}")
    return out


def _collect(rows, path: str, sha256: str, columns: dict[str, str] | None = None) -> LoadResult:
    """Rows (any iterable of (where, row)) to pairs; the first bad row stops it with where + why."""
    pairs, shapes, skipped = [], [], 0
    for where, row in rows:
        try:
            pair, shape = parse_row(rename_columns(row, columns))
        except ValueError as e:
            raise DataError(f"{where}: {e}") from None
        if not pair.chosen.strip() or not pair.rejected.strip():
            skipped += 1
            continue
        pairs.append(pair)
        if shape not in shapes:
            shapes.append(shape)
    if not pairs:
        raise DataError(f"{path}: no preference pairs ({skipped} rows skipped for an empty response)")
    return LoadResult(pairs, skipped, path, sha256, "+".join(shapes))


def load_pairs(path: str, columns: dict[str, str] | None = None) -> LoadResult:
    """Read preference rows, detecting each row's shape: a .jsonl / .json (optionally .gz) file here;
    parquet files or globs, a `save_to_disk` folder and `hf:` hub datasets through `engine.data.sources`."""
    path = str(path)
    from engine.data import sources  # pyarrow and `datasets` load only for the sources that need them

    if sources.is_dataset_source(path):
        return sources.load_dataset_source(path, columns)
    if not path.removesuffix(".gz").endswith((".jsonl", ".json")):
        raise DataError(f"{path}: unsupported file type; expected {sources.SUPPORTED}")
    raw = _read_regular_file(path)
    return _collect(_read_rows(path, raw), path, hashlib.sha256(raw).hexdigest(), columns)


def _read_regular_file(path: str) -> bytes:
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


def synthetic_pairs(n: int, seed: int, noise: float, length_bias: float = 0.0) -> LoadResult:
    """The demo task's pairs; the hash covers the generated rows, so it identifies (n, seed, noise,
    length bias, code)."""
    from engine.data.synthetic import make_pairs  # lazy: the demo task is optional for file-based runs

    rows = make_pairs(n, seed, label_noise=noise, length_bias=length_bias)
    digest = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()
    result = _collect([(f"synthetic: row {i}", r) for i, r in enumerate(rows, 1)], "synthetic", digest)
    result.format = "synthetic"
    return result


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


# ---------------------------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class SpecialLayout:
    """Special tokens around `prompt` and `response`: prefix + prompt + middle + response + suffix."""

    prefix: list[int]
    middle: list[int]
    suffix: list[int]

    @property
    def size(self) -> int:
        return len(self.prefix) + len(self.middle) + len(self.suffix)


def _layout_of(tokenizer: Any, texts: tuple[str, ...]) -> tuple[list[int], list[int], list[int]]:
    """Read the tokenizer's own template off a probe encoding: transformers 5's fast tokenizers have
    no `build_inputs_with_special_tokens`, but every tokenizer reports a special-tokens mask."""
    lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    enc = tokenizer(*texts, add_special_tokens=True, return_special_tokens_mask=True)
    parts: tuple[list[int], list[int], list[int]] = ([], [], [])
    seen = 0
    for token, special in zip(enc["input_ids"], enc["special_tokens_mask"], strict=True):
        if not special:
            seen += 1
        elif seen == 0:
            parts[0].append(token)
        elif len(texts) == 2 and seen == lengths[0]:
            parts[1].append(token)
        elif seen == sum(lengths):
            parts[2].append(token)
    if seen != sum(lengths):
        raise DataError(f"cannot read the special-token layout of {type(tokenizer).__name__}")
    return parts


def special_layout(tokenizer: Any) -> SpecialLayout:
    """Encoders (a tokenizer with a SEP token: BERT, RoBERTa, DeBERTa) use their own pair template,
    e.g. [CLS] prompt [SEP] response [SEP]. Decoders get their single-sequence template (BOS, if
    any) around prompt+response, then EOS, so last-token pooling lands on EOS."""
    if tokenizer.sep_token_id is not None:
        return SpecialLayout(*_layout_of(tokenizer, ("hello world", "goodbye")))
    prefix, _, suffix = _layout_of(tokenizer, ("hello world",))
    eos = tokenizer.eos_token_id
    if eos is not None and suffix[-1:] != [eos]:
        suffix = suffix + [eos]
    return SpecialLayout(prefix, [], suffix)


def _assemble(
    layout: SpecialLayout, prompt: list[int], chosen: list[int], rejected: list[int], max_length: int,
    prompt_floor: int = 0,
) -> dict:
    """Fit both sequences in max_length. The prompt keeps at least `prompt_floor` tokens (all of it
    when shorter): responses lose their end when they must make room for that floor (or when one
    alone is too long); the prompt gets what the longer response leaves beyond it, cut from the
    left (its end, the turn the responses answer, stays). Both sides keep the same prompt tokens so
    the two rewards are computed over the same context."""
    budget = max_length - layout.size
    floor = min(len(prompt), prompt_floor)
    c, r = chosen[: budget - floor], rejected[: budget - floor]
    keep = budget - max(len(c), len(r))
    p = prompt[max(0, len(prompt) - keep) :] if keep > 0 else []
    head = layout.prefix + p + layout.middle
    return {
        "chosen_ids": head + c + layout.suffix,
        "rejected_ids": head + r + layout.suffix,
        "prompt_len": len(head),  # where the responses start: ids[prompt_len:] is response + closing specials
        "chosen_len": len(c),  # response tokens kept, specials excluded
        "rejected_len": len(r),
        "truncated": len(p) < len(prompt) or len(c) < len(chosen) or len(r) < len(rejected),
        "no_prompt": bool(prompt) and not p,  # a prompt that lost every token
    }


def prompt_floor(max_length: int, share: float) -> int:
    """Prompt tokens kept at least, from `model.prompt_share` of max_length."""
    return int(share * max_length)


def encode_pairs(tokenizer: Any, pairs: Sequence[Pair], max_length: int, prompt_share: float = 0.0) -> list[dict]:
    """Tokenise prompts and responses separately (batched, one fast-tokenizer call per field and
    chunk) and join them with the tokenizer's special tokens; see `_assemble` for truncation."""
    floor = prompt_floor(max_length, prompt_share)
    layout = special_layout(tokenizer)
    if max_length <= layout.size:
        raise ValueError(f"max_length {max_length} leaves no room beside {layout.size} special tokens")
    out = []
    for start in range(0, len(pairs), ENCODE_CHUNK):
        chunk = pairs[start : start + ENCODE_CHUNK]
        texts = ([p.prompt for p in chunk], [p.chosen for p in chunk], [p.rejected for p in chunk])
        ids = [tokenizer(t, add_special_tokens=False, verbose=False)["input_ids"] for t in texts]
        for pair, p, c, r in zip(chunk, *ids, strict=True):
            out.append(_assemble(layout, p, c, r, max_length, floor) | {"margin": pair.margin})
    return out


def encode_pair(tokenizer: Any, pair: Pair, max_length: int, prompt_share: float = 0.0) -> dict:
    return encode_pairs(tokenizer, [pair], max_length, prompt_share)[0]


class PairDataset(Dataset):
    """Pairs encoded once up front; token ids kept as int32 arrays (a Python int list costs ~9x).

    With `cache_dir` (the run store's token cache) an identical set tokenised before, by any run,
    is read back instead of tokenised again; `cached` says whether it was."""

    def __init__(self, pairs: Sequence[Pair], tokenizer: Any, max_length: int, prompt_share: float = 0.0,
                 cache_dir: Any = None):
        from engine.data import token_cache

        floor = prompt_floor(max_length, prompt_share)
        k = token_cache.key(pairs, tokenizer, max_length, floor) if cache_dir is not None else None
        items = token_cache.load(cache_dir, k) if k else None
        self.cached = items is not None
        if items is None:
            items = encode_pairs(tokenizer, pairs, max_length, prompt_share)
            for item in items:
                item["chosen_ids"] = np.asarray(item["chosen_ids"], dtype=np.int32)
                item["rejected_ids"] = np.asarray(item["rejected_ids"], dtype=np.int32)
            if k:
                token_cache.store(cache_dir, k, items)
        for item, pair in zip(items, pairs, strict=True):
            item["margin"] = pair.margin
        self.items = items
        self.truncated = sum(item["truncated"] for item in self.items)  # pairs that lost tokens
        self.no_prompt = sum(item["no_prompt"] for item in self.items)  # pairs whose prompt lost every token

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def collate_pairs(batch: Sequence[dict], pad_id: int) -> dict:
    """Chosen and rejected of n pairs in one [2n, L] batch for a single forward pass: rows 0..n-1
    chosen, n..2n-1 rejected; right-padded to the longest sequence in the batch."""
    n = len(batch)
    seqs = [b["chosen_ids"] for b in batch] + [b["rejected_ids"] for b in batch]
    width = max(len(s) for s in seqs)
    input_ids = torch.full((2 * n, width), pad_id, dtype=torch.long)  # [2n, L]
    attention_mask = torch.zeros((2 * n, width), dtype=torch.long)  # [2n, L]
    for row, seq in enumerate(seqs):
        input_ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        attention_mask[row, : len(seq)] = 1
    margins = [math.nan if b.get("margin") is None else b["margin"] for b in batch]
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "margin": torch.tensor(margins, dtype=torch.float32),  # [n], NaN where a pair has none
        "prompt_len": torch.tensor([b["prompt_len"] for b in batch] * 2, dtype=torch.long),  # [2n]
        "lengths": torch.tensor(
            [b["chosen_len"] for b in batch] + [b["rejected_len"] for b in batch], dtype=torch.long
        ),  # [2n] response tokens, for length-bias diagnostics
        "n_tokens": int(attention_mask.sum()),
    }
