"""Preference pairs to token ids: the special-token layout, truncation, the token cache, the collator.

The rows themselves (file formats, row shapes, column names, the held-out split) are
`engine.data.rows`'s and `engine.data.sources`'s, torch-free; this module is the trainer's side.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from engine.data.rows import DataError, Pair

ENCODE_CHUNK = 1024  # pairs tokenised per batch call: bounds the memory of untruncated token lists


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
        "no_prompt": not p,  # no prompt token reaches the model: an empty prompt, or max_length cut it all
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
        self.no_prompt = sum(item["no_prompt"] for item in self.items)  # pairs with no prompt token left

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
