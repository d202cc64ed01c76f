"""Summed log-probs of each response of a pair batch under a causal LM, in one forward pass.

The batch is `engine.data.pairs.collate_pairs`'s: [2n, L], chosen rows then rejected rows, right-padded,
each row prefix + prompt + middle + response + suffix with `prompt_len` the response's first position. A
response's log-prob is Σ log π(token | before) over its tokens and the closing specials (the EOS the policy
must learn to emit), the same tokens on both sides of a pair's shared prompt.

`packed_response_logps` computes the same from `engine.rm.shared_prompt.pack_pairs`' rows, where each
pair's prompt is read once: [prompt | chosen tail | rejected tail] with a block mask and restarted positions.
"""

from __future__ import annotations

import contextlib

import torch

from engine.models import unwrap
from engine.packing import attention_bias
from engine.rl.losses import logprobs_from_logits
from engine.rm.shared_prompt import CHOSEN, REJECTED


def response_logps(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_len: torch.Tensor,
                   with_hidden: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(log-probs [2n], response tokens counted [2n], final hidden state at each row's last real token
    [2n, H] or None). A row with no prompt token at all cannot score its first token (nothing precedes
    it): it starts at position 1."""
    pos = torch.arange(1, input_ids.shape[1], device=input_ids.device)  # [L-1]
    mask = (pos[None, :] >= prompt_len.to(input_ids.device)[:, None]) & attention_mask[:, 1:].bool()  # [2n, L-1]
    rows, cols = torch.nonzero(mask, as_tuple=True)  # [K]: the logits at column t score token t+1
    with scored_logits(model, rows, cols) as scored:
        out = model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=with_hidden,
                    use_cache=False)
    token_logp = logprobs_from_logits(scored(out.logits), input_ids[rows, cols + 1])  # [K]
    logps = torch.zeros(len(input_ids), device=input_ids.device, dtype=token_logp.dtype).index_add(0, rows, token_logp)
    hidden = None
    if with_hidden:
        last = attention_mask.sum(1) - 1  # [2n]
        hidden = out.hidden_states[-1][torch.arange(len(last), device=last.device), last]  # [2n, H]
    return logps, mask.sum(1), hidden


def packed_response_logps(model, packed: dict, with_hidden: bool = False
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """`response_logps`' (log-probs [2n], tokens counted [2n], hidden [2n, H] or None) from packed rows.

    Each tail token is scored by the logits of the token before it in its own sequence: the previous
    column, except the rejected tail's first token, whose predecessor is the prompt's last token (the
    chosen tail sits between them in the row). A token at position 0 (no prompt left) has none and is
    not scored, as in the two-row layout. Only the scored positions go through the log-softmax."""
    device = next(model.parameters()).device
    ids, seg, pair, pos = (packed[k].to(device) for k in ("input_ids", "segments", "pair_ids", "position_ids"))
    n = packed["last"].shape[0] // 2
    tail = (seg == CHOSEN) | (seg == REJECTED)
    rows, cols = torch.nonzero(tail & (pos > 0), as_tuple=True)  # [K] each scored token
    prev = cols - 1
    after_chosen = (seg[rows, cols] == REJECTED) & (seg[rows, prev] == CHOSEN)  # the rejected tail's first token
    chosen_len = torch.bincount(pair[seg == CHOSEN], minlength=n)  # [n]
    prev = torch.where(after_chosen, prev - chosen_len[pair[rows, cols]], prev)
    impl = unwrap(model).config._attn_implementation
    with scored_logits(model, rows, prev) as scored:
        out = model(input_ids=ids, attention_mask=attention_bias(packed["attention_mask"], impl, device),
                    position_ids=pos, output_hidden_states=with_hidden, use_cache=False)
    token_logp = logprobs_from_logits(scored(out.logits), ids[rows, cols])  # [K]
    seq = pair[rows, cols] + n * (seg[rows, cols] == REJECTED).long()  # [K] index in chosen-then-rejected order
    logps = torch.zeros(2 * n, device=device, dtype=token_logp.dtype).index_add(0, seq, token_logp)
    count = torch.bincount(seq, minlength=2 * n)
    hidden = out.hidden_states[-1][packed["last_row"].to(device), packed["last"].to(device)] if with_hidden else None
    return logps, count, hidden


@contextlib.contextmanager
def scored_logits(model, rows: torch.Tensor, cols: torch.Tensor):
    """While open, the LM head sees only the hidden states at (rows, cols): logits [K, V] instead of
    [B, L, V]. A batch scores only its answers' tokens, never the prompts or the padding, and the full
    logits of a 49k-word head over 32 rows of 512 are ~3 GB in fp32 (an HH eval ran out of memory on
    them; bench/dpo_eval_memory.py: 0.62× the peak). A pre-hook on the output embedding keeps the call
    inside the model's own forward, so a DDP/FSDP wrapper, LoRA and any logit scaling or soft-capping
    after the head still apply. Yields `pick(logits) -> [K, V]`: the forward's logits as they are, or
    picked at (rows, cols) where the hook never fired (a model without an output embedding module)."""
    head = unwrap(model)
    head = head.get_output_embeddings() if hasattr(head, "get_output_embeddings") else None
    calls = []

    def keep(_module, args):
        calls.append(1)
        return (args[0][rows, cols], *args[1:])

    handle = head.register_forward_pre_hook(keep) if isinstance(head, torch.nn.Module) else None
    try:
        yield lambda logits: logits if calls else logits[rows, cols]
    finally:
        if handle is not None:
            handle.remove()
