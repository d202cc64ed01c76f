"""What a packed row needs from a causal LM: several responses read after ONE copy of their prompt.

A packed row [prompt | response 1 | response 2 | …] with a block attention mask (each response sees
the prompt and itself, causally, never another response) and positions that restart every response
at the prompt's end gives every real token the context and position it has in its own plain row, so
a causal decoder computes the same for it. That holds only where the modelling code hands a custom 4D
mask to attention untouched and takes position ids: the architectures and attention implementations
checked here. Used by reward-model pairs (`engine.rm.shared_prompt`), DPO pairs (`engine.dpo.logps`)
and GRPO/RLOO groups (`engine.rl.group_pack`).
"""

from __future__ import annotations

import torch
from torch import nn

from engine.models import unwrap

# Decoder families whose modelling code hands a 4D mask to attention untouched and takes position
# ids for RoPE or learned positions; each is checked against the plain forward in the tests.
SUPPORTED_TYPES = ("llama", "mistral", "qwen2", "qwen3", "gpt2")
MASK_IMPLEMENTATIONS = ("sdpa", "eager")  # flash-attention kernels take no arbitrary 4D mask
PROMPT, PAD = 0, -1  # segment ids every packed row shares; its responses are numbered from 1


def _sliding_window(config) -> int | None:
    """The attention window if any layer uses one (Mistral's `sliding_window`, Qwen's layer_types)."""
    window = getattr(config, "sliding_window", None)
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None and "sliding_attention" not in layer_types:
        return None
    return window


def causal_lm_supported(lm: nn.Module, max_length: int | None = None) -> tuple[bool, str]:
    """(True, "") when a packed row [prompt | response | response …] gives this causal LM (a DPO or GRPO
    policy, or the decoder inside a RewardModel) exactly what the plain rows would, else (False, one
    line why)."""
    lm = unwrap(lm)
    peft_config = getattr(lm, "active_peft_config", None)
    if peft_config is not None and peft_config.is_prompt_learning:
        return False, f"peft {peft_config.peft_type} adds virtual tokens that the packed mask does not cover"
    config = lm.config
    if config.model_type not in SUPPORTED_TYPES:
        return False, f"architecture {config.model_type!r} is not among those checked for packed masks {SUPPORTED_TYPES}"
    if config._attn_implementation not in MASK_IMPLEMENTATIONS:
        return False, (f"attention implementation {config._attn_implementation!r} takes no custom 4D mask; "
                       "use sdpa or eager")
    window = _sliding_window(config)
    if window is not None and (max_length is None or max_length > window):
        return False, f"sliding-window attention ({window} tokens) is not expressed in the packed mask"
    return True, ""


def round_up(width: int, multiple: int) -> int:
    """`width` rounded up to a multiple of `multiple` (see `row_multiple`)."""
    return -(-width // multiple) * multiple


def block_mask(segments: torch.Tensor, owners: torch.Tensor | None = None) -> torch.Tensor:
    """The boolean mask [R, 1, T, T] (True = may attend) of packed rows with these segment ids [R, T]:
    a token sees, causally, its own owner's PROMPT and its own segment, never a sibling response nor
    another owner (`owners` [R, T]: which pair a token belongs to, when a row holds several; None: one
    owner per row). A PAD query attends to itself only: an all-masked row would give NaN that reaches
    real tokens through 0 · NaN in the next layer's attention."""
    width = segments.shape[1]
    idx = torch.arange(width)
    causal = idx[:, None] >= idx[None, :]  # [T, T] query ≥ key
    seg_q, seg_k = segments[:, :, None], segments[:, None, :]  # [R, T, 1], [R, 1, T]
    allowed = causal & ((seg_k == PROMPT) | (seg_k == seg_q)) & (seg_q != PAD) & (seg_k != PAD)  # [R, T, T]
    if owners is not None:
        allowed &= owners[:, :, None] == owners[:, None, :]
    allowed |= torch.eye(width, dtype=torch.bool) & (seg_q == PAD)
    return allowed[:, None]


def attention_bias(allowed: torch.Tensor, attn_implementation: str, device) -> torch.Tensor:
    """A packed row's boolean mask [R, 1, T, T] (True = may attend) as the attention layer of `attn_implementation` takes it:
    eager adds the mask to the scores (0 or the float minimum), sdpa takes the booleans whatever the
    compute dtype."""
    allowed = allowed.to(device)
    if attn_implementation == "eager":
        return torch.zeros(allowed.shape, device=device).masked_fill_(~allowed, torch.finfo(torch.float32).min)
    return allowed


def row_multiple(device: torch.device) -> int:
    """The width packed rows round up to: 16 on a GPU, where fused attention kernels want the mask's
    last dimension aligned and fall back to a slow path otherwise; 1 (no padding) on CPU."""
    return 16 if device.type == "cuda" else 1
