"""Shared-prompt forward: a decoder reward model reads each pair's prompt once, not twice.

The plain layout runs `prompt + chosen` and `prompt + rejected` as two rows, so the prompt (about
60 % of the tokens in HH-RLHF) is computed twice. Here each pair is ONE packed segment

    [ prompt | chosen tail | rejected tail ]

with a block attention mask: the prompt is causal, the chosen tail sees the prompt and itself
causally, the rejected tail sees the prompt and itself causally but never the chosen tail. Position
ids restart the rejected tail at the prompt's end, so every real token has the same position and the
same visible context as in the plain layout. In a causal decoder a token's hidden state depends only
on what it attends to, so the rewards (and, by the chain rule, the parameter gradients, which now
reach the prompt's computation from both responses at once) equal the plain two-row forward's.
Encoders attend both ways and cannot share the prompt; they keep the plain forward.

Segments are then packed several to a row, up to the longest one's width, with no attention across
pairs: the batch runs on its real tokens, without the padding of the plain layout (about as many
tokens as the real ones in an HH-RLHF batch, because one long pair sets every row's width).

Used by the trainer as a drop-in for `RewardModel.forward`:

    ok, why = shared_prompt_supported(model, cfg.model.max_length)
    rewards, hidden = shared_prompt_forward(model, pack_pairs(batch, pad_id))  # [2n], [2n, H]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from engine.models import RewardModel, unwrap
from engine.packing import PAD, PROMPT, attention_bias, block_mask, causal_lm_supported, round_up

CHOSEN, REJECTED = 1, 2  # segment ids of a packed row's responses (engine.packing: PROMPT, PAD)


def shared_prompt_supported(model: nn.Module, max_length: int | None = None) -> tuple[bool, str]:
    """(True, "") when `shared_prompt_forward` computes exactly what `model.forward` would, else
    (False, the reason, one line for the trainer's log)."""
    model = unwrap(model)  # a DDP / FSDP / DeepSpeed wrapper passes the packed layout through
    if not isinstance(model, RewardModel):
        return False, f"the model is a {type(model).__name__}, not a RewardModel"
    if not model.is_decoder:
        return False, "encoder model: bidirectional attention lets the prompt see the response, so it cannot be shared"
    return causal_lm_supported(model.hf_model, max_length)


def _triples(batch: Mapping | Sequence[Mapping]) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(prompt [P], chosen tail [c], rejected tail [r]) per pair, from a `collate_pairs` batch or from
    `encode_pairs` items. The tails keep the closing specials (EOS), which is where the reward is read."""
    if isinstance(batch, Mapping):  # read on the host: an eval loader's batch is already on the GPU, and the
        # packed rows are built on the host anyway (one copy each here, not a sync per pair and slice)
        ids, lengths, starts = (t.cpu() for t in (batch["input_ids"], batch["attention_mask"].sum(-1),
                                                  batch["prompt_len"]))
        n = ids.shape[0] // 2
        rows = [(ids[i, : lengths[i]], ids[n + i, : lengths[n + i]], int(starts[i])) for i in range(n)]
    else:
        rows = [(torch.as_tensor(b["chosen_ids"]).long(), torch.as_tensor(b["rejected_ids"]).long(),
                 int(b["prompt_len"])) for b in batch]
    out = []
    for i, (chosen, rejected, p) in enumerate(rows):
        if not torch.equal(chosen[:p], rejected[:p]):
            raise ValueError(f"pair {i}: chosen and rejected differ within the first {p} (prompt) tokens")
        out.append((chosen[:p], chosen[p:], rejected[p:]))
    return out


def _first_fit_rows(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Pair indices grouped into rows of at most `capacity` tokens, longest first, each into the first
    row with room (first-fit decreasing: never more than 11/9 of the fewest possible rows, plus one).
    Deterministic: ties keep batch order."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda k: -lengths[k]):
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(capacity - lengths[i])
    return rows


def pack_pairs(batch: Mapping | Sequence[Mapping], pad_id: int, pad_to_multiple_of: int = 1,
               row_tokens: int | None = None) -> dict:
    """Pairs packed several to a row, each with its block mask, positions and two reward positions.

    A row is as wide as the longest pair (or `row_tokens`), and shorter pairs fill the rest of it, so
    a batch runs on its real tokens instead of `n × longest`: padding was about half the tokens of an
    HH-RLHF batch. Pairs in one row never see each other (the mask is block-diagonal per pair) and
    every pair's positions start at 0, so each token computes what it would alone in its own row.
    `pad_to_multiple_of` rounds the row width up (8 or 16 on GPUs: fused attention kernels want the
    mask's last dimension aligned, and fall back to a slow path otherwise).

    Returns input_ids [R, T], segments [R, T] (PROMPT/CHOSEN/REJECTED/PAD), pair_ids [R, T] (the
    pair's index in the batch, -1 on padding), position_ids [R, T], attention_mask [R, 1, T, T] bool
    (True = may attend), last_row and last [2n] (row and column of the last token of each chosen
    tail, then of each rejected tail), n_tokens (real tokens: each prompt counted once).
    """
    triples = _triples(batch)
    n = len(triples)
    sizes = [len(p) + len(c) + len(r) for p, c, r in triples]
    width = max(max(sizes), row_tokens or 0)
    width = round_up(width, pad_to_multiple_of)
    rows = _first_fit_rows(sizes, width)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # [R, T]
    segments = torch.full((len(rows), width), PAD, dtype=torch.long)  # [R, T]
    pair_ids = torch.full((len(rows), width), -1, dtype=torch.long)  # [R, T]
    position_ids = torch.zeros((len(rows), width), dtype=torch.long)  # [R, T]
    last_row = torch.empty(2 * n, dtype=torch.long)  # [2n]
    last = torch.empty(2 * n, dtype=torch.long)  # [2n]
    for row, members in enumerate(rows):
        at = 0  # where the next pair starts in this row
        for i in members:
            prompt, chosen, rejected = triples[i]
            p, c, r = len(prompt), len(chosen), len(rejected)
            if c == 0 or r == 0:
                raise ValueError(f"pair {i}: a response with no token after the prompt has no reward position")
            input_ids[row, at : at + p + c + r] = torch.cat([prompt, chosen, rejected])
            segments[row, at : at + p] = PROMPT
            segments[row, at + p : at + p + c] = CHOSEN
            segments[row, at + p + c : at + p + c + r] = REJECTED
            pair_ids[row, at : at + p + c + r] = i
            position_ids[row, at : at + p + c] = torch.arange(p + c)
            position_ids[row, at + p + c : at + p + c + r] = torch.arange(p, p + r)  # as if right after the prompt
            last_row[i] = last_row[n + i] = row
            last[i], last[n + i] = at + p + c - 1, at + p + c + r - 1
            at += p + c + r

    return {
        "input_ids": input_ids,
        "segments": segments,
        "pair_ids": pair_ids,
        "position_ids": position_ids,
        "attention_mask": block_mask(segments, pair_ids),  # [R, 1, T, T]
        "last_row": last_row,
        "last": last,
        "n_tokens": int((segments != PAD).sum()),
    }


def shared_prompt_forward(model: nn.Module, packed: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(rewards [2n] chosen then rejected, pooled final hidden state [2n, H]): `RewardModel.forward`'s
    contract, from `pack_pairs`' rows. `model` may be the RewardModel or a wrapper around it: the call
    goes through the wrapper, so DDP's gradient sync sees it. Tensors are moved to the device here."""
    inner = unwrap(model)
    device = next(inner.parameters()).device
    mask = attention_bias(packed["attention_mask"], inner.config._attn_implementation, device)  # [R, 1, T, T]
    last = torch.stack([packed["last_row"], packed["last"]]).to(device)  # [2, 2n]
    return model(packed["input_ids"].to(device), mask, position_ids=packed["position_ids"].to(device), last=last)
