"""A GRPO/RLOO group in one row: the prompt computed once for its k samples, not k times.

A rollout holds each prompt k times side by side ([G·k] rows of left-padded prompt + response). Here
each group becomes ONE row

    [ prompt | sample 1 | sample 2 | … | sample k | pad ]

with a block mask (each sample sees the prompt and itself causally, never a sibling) and positions
that restart every sample at the prompt's end, so every real token computes what it does in its own
row (`engine.packing`). A sample's first token is predicted by the prompt's last position, shared by
all k; its later tokens by the column before them. Tokens after a sample's EOS are padding here, as
the plain rows' attention mask makes them: they attend only to themselves and score 0.

The saving is the prompt's k − 1 extra copies: small for the synthetic task's 6-token prompts, most of
the work for chat prompts of hundreds of tokens with a few dozen sampled.
"""

from __future__ import annotations

import torch
from torch import nn

from engine.models import unwrap
from engine.packing import PAD, PROMPT, attention_bias, block_mask, round_up
from engine.rl.losses import entropy_from_logits, logprobs_from_logits

# segment ids (engine.packing): PROMPT, PAD, and sample j of a group is segment j + 1


def pack_groups(q_ids: torch.Tensor, q_mask: torch.Tensor, responses: torch.Tensor, r_mask: torch.Tensor,
                k: int, pad_id: int, pad_to_multiple_of: int = 1) -> dict:
    """[G·k] rollout rows (prompts left-padded, each repeated k times in a row) → G packed rows.

    Returns input_ids, segments, position_ids [G, W]; attention_mask [G, 1, W, W] bool (True = may
    attend); cols [G·k, T]: the column whose logits predict each response token (the prompt's last
    for token 0), -1 where the response mask is 0.
    """
    n, T = responses.shape
    if n % k:
        raise ValueError(f"{n} samples do not split into groups of {k}")
    groups = n // k
    q_ids, q_mask, responses, r_mask = (t.cpu() for t in (q_ids, q_mask, responses, r_mask))
    prompt_len = q_mask[::k].sum(1)  # [G] real prompt tokens (left padding)
    resp_len = r_mask.sum(1)  # [G·k] real response tokens, EOS included
    width = round_up(int(prompt_len.max()) + k * T, pad_to_multiple_of)  # rounded up (GPU kernels)
    input_ids = torch.full((groups, width), pad_id, dtype=torch.long)  # [G, W]
    segments = torch.full((groups, width), PAD, dtype=torch.long)  # [G, W]
    position_ids = torch.zeros((groups, width), dtype=torch.long)  # [G, W]
    cols = torch.full((n, T), -1, dtype=torch.long)  # [G·k, T]
    for g in range(groups):
        first = g * k
        p = int(prompt_len[g])
        if p == 0:
            raise ValueError(f"group {g}: an empty prompt has no position to predict its samples' first token")
        if not torch.equal(q_ids[first:first + k, q_ids.shape[1] - p:], q_ids[first].expand(k, -1)[:, -p:]):
            raise ValueError(f"group {g}: its {k} rows do not share one prompt")
        input_ids[g, :p] = q_ids[first, -p:]
        segments[g, :p] = PROMPT
        position_ids[g, :p] = torch.arange(p)
        at = p
        for j in range(k):
            s, m = first + j, int(resp_len[first + j])
            input_ids[g, at:at + m] = responses[s, :m]
            segments[g, at:at + m] = j + 1
            position_ids[g, at:at + m] = torch.arange(p, p + m)
            cols[s, :m] = torch.cat([torch.tensor([p - 1]), torch.arange(at, at + m - 1)])
            at += m
    return {"input_ids": input_ids, "segments": segments, "position_ids": position_ids,
            "attention_mask": block_mask(segments), "cols": cols, "pad_to_multiple_of": pad_to_multiple_of}


def packed_sequence_logprobs(model: nn.Module, packed: dict, responses: torch.Tensor, temperature: float,
                             entropy: bool = True) -> tuple[torch.Tensor, torch.Tensor | None, None]:
    """`engine.rl.policy.sequence_logprobs`' (logprobs [B, T], entropy [B, T] or None, values None) for
    a causal LM from `pack_groups`' rows, in the rollout's own [G·k] order; 0 where the response mask
    is 0. Only the predicting positions go through the log-softmax."""
    device = next(model.parameters()).device
    impl = unwrap(model).config._attn_implementation
    ids, pos = packed["input_ids"].to(device), packed["position_ids"].to(device)
    out = model(input_ids=ids, attention_mask=attention_bias(packed["attention_mask"], impl, device),
                position_ids=pos, use_cache=False)
    cols = packed["cols"].to(device)  # [B, T]
    n, k = cols.shape[0], cols.shape[0] // ids.shape[0]
    real = cols >= 0  # [B, T]
    rows = torch.arange(n, device=device)[:, None].expand_as(cols) // k  # [B, T] the group's row
    logits = out.logits[rows[real], cols[real]].float() / temperature  # [K, V]
    responses = responses.to(device)
    logp = torch.zeros(cols.shape, device=device, dtype=logits.dtype)
    logp[real] = logprobs_from_logits(logits, responses[real])
    ent = None
    if entropy:
        ent = torch.zeros(cols.shape, device=device, dtype=logits.dtype)
        ent[real] = entropy_from_logits(logits)
    return logp, ent, None


def select(packed: dict, groups: torch.Tensor, k: int) -> dict:
    """The rows of `groups` (a minibatch of whole groups), cut to their own widest row; cols in the same
    group-major order as the samples `groups[:, None] * k + arange(k)`."""
    groups = groups.cpu()
    samples = (groups[:, None] * k + torch.arange(k)).flatten()  # [g·k]
    segments = packed["segments"][groups]
    multiple = packed["pad_to_multiple_of"]
    width = round_up(int((segments != PAD).sum(1).max()), multiple)  # real tokens fill each row from its start
    return {"input_ids": packed["input_ids"][groups, :width], "segments": segments[:, :width],
            "position_ids": packed["position_ids"][groups, :width],
            "attention_mask": packed["attention_mask"][groups][..., :width, :width], "cols": packed["cols"][samples],
            "pad_to_multiple_of": multiple}
