"""Shared-prompt forward: a decoder reward model reads each pair's prompt once, not twice.

The plain layout runs `prompt + chosen` and `prompt + rejected` as two rows, so the prompt (about
60 % of the tokens in HH-RLHF) is computed twice. Here each pair is ONE packed row

    [ prompt | chosen tail | rejected tail | pad ]

with a block attention mask: the prompt is causal, the chosen tail sees the prompt and itself
causally, the rejected tail sees the prompt and itself causally but never the chosen tail. Position
ids restart the rejected tail at the prompt's end, so every real token has the same position and the
same visible context as in the plain layout. In a causal decoder a token's hidden state depends only
on what it attends to, so the rewards (and, by the chain rule, the parameter gradients, which now
reach the prompt's computation from both responses at once) equal the plain two-row forward's.
Encoders attend both ways and cannot share the prompt; they keep the plain forward.

Used by the trainer as a drop-in for `RewardModel.forward`:

    ok, why = shared_prompt_supported(model, cfg.model.max_length)
    rewards, hidden = shared_prompt_forward(model, pack_pairs(batch, pad_id))  # [2n], [2n, H]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from engine.models import RewardModel

# Decoder families whose modelling code hands a 4D mask to attention untouched and takes position
# ids for RoPE or learned positions; each is checked against the plain forward in the tests.
SUPPORTED_TYPES = ("llama", "mistral", "qwen2", "qwen3", "gpt2")
MASK_IMPLEMENTATIONS = ("sdpa", "eager")  # flash-attention kernels take no arbitrary 4D mask

PROMPT, CHOSEN, REJECTED, PAD = 0, 1, 2, -1  # segment ids of a packed row


def _sliding_window(config) -> int | None:
    """The attention window if any layer uses one (Mistral's `sliding_window`, Qwen's layer_types)."""
    window = getattr(config, "sliding_window", None)
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None and "sliding_attention" not in layer_types:
        return None
    return window


def shared_prompt_supported(model: nn.Module, max_length: int | None = None) -> tuple[bool, str]:
    """(True, "") when `shared_prompt_forward` computes exactly what `model.forward` would, else
    (False, the reason, one line for the trainer's log)."""
    if not isinstance(model, RewardModel):
        return False, (f"the model is a {type(model).__name__}, not a bare RewardModel (a DDP/FSDP wrapper "
                       "must run its own forward, which takes no packed layout)")
    if not model.is_decoder:
        return False, "encoder model: bidirectional attention lets the prompt see the response, so it cannot be shared"
    peft_config = getattr(model.hf_model, "active_peft_config", None)
    if peft_config is not None and peft_config.is_prompt_learning:
        return False, f"peft {peft_config.peft_type} adds virtual tokens that the packed mask does not cover"
    config = model.config
    if config.model_type not in SUPPORTED_TYPES:
        return False, f"architecture {config.model_type!r} is not among those checked for packed masks {SUPPORTED_TYPES}"
    impl = config._attn_implementation
    if impl not in MASK_IMPLEMENTATIONS:
        return False, f"attention implementation {impl!r} takes no custom 4D mask; use sdpa or eager"
    window = _sliding_window(config)
    if window is not None and (max_length is None or max_length > window):
        return False, f"sliding-window attention ({window} tokens) is not expressed in the packed mask"
    return True, ""


def _triples(batch: Mapping | Sequence[Mapping]) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(prompt [P], chosen tail [c], rejected tail [r]) per pair, from a `collate_pairs` batch or from
    `encode_pairs` items. The tails keep the closing specials (EOS), which is where the reward is read."""
    if isinstance(batch, Mapping):
        ids, lengths, starts = batch["input_ids"], batch["attention_mask"].sum(-1), batch["prompt_len"]
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


def pack_pairs(batch: Mapping | Sequence[Mapping], pad_id: int, pad_to_multiple_of: int = 1) -> dict:
    """One right-padded row per pair with its block mask, positions and the two reward positions.

    `pad_to_multiple_of` rounds the row width up (8 or 16 on GPUs: fused attention kernels want the
    mask's last dimension aligned, and fall back to a slow path otherwise).

    Returns input_ids [n, T], segments [n, T] (PROMPT/CHOSEN/REJECTED/PAD), position_ids [n, T],
    attention_mask [n, 1, T, T] bool (True = may attend), last [2n] (index of the last token of each
    chosen tail, then of each rejected tail), n_tokens (real tokens: each prompt counted once).
    """
    triples = _triples(batch)
    n = len(triples)
    width = max(len(p) + len(c) + len(r) for p, c, r in triples)
    width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)  # [n, T]
    segments = torch.full((n, width), PAD, dtype=torch.long)  # [n, T]
    position_ids = torch.zeros((n, width), dtype=torch.long)  # [n, T]
    last = torch.empty(2 * n, dtype=torch.long)  # [2n]
    for i, (prompt, chosen, rejected) in enumerate(triples):
        p, c, r = len(prompt), len(chosen), len(rejected)
        if c == 0 or r == 0:
            raise ValueError(f"pair {i}: a response with no token after the prompt has no reward position")
        input_ids[i, : p + c + r] = torch.cat([prompt, chosen, rejected])
        segments[i, :p], segments[i, p : p + c], segments[i, p + c : p + c + r] = PROMPT, CHOSEN, REJECTED
        position_ids[i, : p + c] = torch.arange(p + c)
        position_ids[i, p + c : p + c + r] = torch.arange(p, p + r)  # as if it followed the prompt directly
        last[i], last[n + i] = p + c - 1, p + c + r - 1

    idx = torch.arange(width)
    causal = idx[:, None] >= idx[None, :]  # [T, T] query ≥ key
    seg_q, seg_k = segments[:, :, None], segments[:, None, :]  # [n, T, 1], [n, 1, T]
    visible = (seg_k == PROMPT) | (seg_k == seg_q)  # the prompt, or the query's own segment
    allowed = causal & visible & (seg_q != PAD) & (seg_k != PAD)  # [n, T, T]
    # A pad query attends to itself only: an all-masked row would give NaN that reaches real tokens
    # through 0 · NaN in the next layer's attention.
    allowed |= torch.eye(width, dtype=torch.bool) & (seg_q == PAD)
    return {
        "input_ids": input_ids,
        "segments": segments,
        "position_ids": position_ids,
        "attention_mask": allowed[:, None],  # [n, 1, T, T]
        "last": last,
        "n_tokens": int((segments != PAD).sum()),
    }


def shared_prompt_forward(model: RewardModel, packed: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(rewards [2n] chosen then rejected, pooled final hidden state [2n, H]): `RewardModel.forward`'s
    contract, from one packed row per pair. Tensors are moved to the model's device here."""
    hf_model = model.hf_model
    device = next(model.parameters()).device
    allowed = packed["attention_mask"].to(device)  # [n, 1, T, T]
    if model.config._attn_implementation == "eager":  # eager adds the mask to the scores
        mask = torch.zeros(allowed.shape, device=device).masked_fill_(~allowed, torch.finfo(torch.float32).min)
    else:  # sdpa takes a boolean mask whatever the compute dtype
        mask = allowed
    out = hf_model(input_ids=packed["input_ids"].to(device), attention_mask=mask,
                   position_ids=packed["position_ids"].to(device), output_hidden_states=True)
    hidden = out.hidden_states[-1]  # [n, T, H], after the final norm
    n = hidden.shape[0]
    rows = torch.arange(n, device=device).repeat(2)  # [2n]
    pooled = hidden[rows, packed["last"].to(device)]  # [2n, H]
    rewards = hf_model.score(pooled).squeeze(-1)  # [2n]
    return rewards, pooled
