"""Summed log-probs of each response of a pair batch under a causal LM, in one forward pass.

The batch is `engine.data.pairs.collate_pairs`'s: [2n, L], chosen rows then rejected rows, right-padded,
each row prefix + prompt + middle + response + suffix with `prompt_len` the response's first position. A
response's log-prob is Σ log π(token | before) over its tokens and the closing specials (the EOS the policy
must learn to emit), the same tokens on both sides of a pair's shared prompt.

`packed_response_logps` computes the same from `engine.rm.shared_prompt.pack_pairs`' rows, where each
pair's prompt is read once: [prompt | chosen tail | rejected tail] with a block mask and restarted positions.
"""

from __future__ import annotations

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
    out = model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=with_hidden,
                use_cache=False)
    token_logp = logprobs_from_logits(out.logits[:, :-1], input_ids[:, 1:])  # [2n, L-1]: position t+1's token
    pos = torch.arange(1, input_ids.shape[1], device=input_ids.device)  # [L-1]
    mask = (pos[None, :] >= prompt_len.to(input_ids.device)[:, None]) & attention_mask[:, 1:].bool()  # [2n, L-1]
    logps = (token_logp * mask).sum(1)  # [2n]
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
    impl = unwrap(model).config._attn_implementation
    out = model(input_ids=ids, attention_mask=attention_bias(packed["attention_mask"], impl, device),
                position_ids=pos, output_hidden_states=with_hidden, use_cache=False)
    n = packed["last"].shape[0] // 2
    tail = (seg == CHOSEN) | (seg == REJECTED)
    rows, cols = torch.nonzero(tail & (pos > 0), as_tuple=True)  # [K] each scored token
    prev = cols - 1
    after_chosen = (seg[rows, cols] == REJECTED) & (seg[rows, prev] == CHOSEN)  # the rejected tail's first token
    chosen_len = torch.bincount(pair[seg == CHOSEN], minlength=n)  # [n]
    prev = torch.where(after_chosen, prev - chosen_len[pair[rows, cols]], prev)
    token_logp = logprobs_from_logits(out.logits[rows, prev], ids[rows, cols])  # [K]
    seq = pair[rows, cols] + n * (seg[rows, cols] == REJECTED).long()  # [K] index in chosen-then-rejected order
    logps = torch.zeros(2 * n, device=device, dtype=token_logp.dtype).index_add(0, seq, token_logp)
    count = torch.bincount(seq, minlength=2 * n)
    hidden = out.hidden_states[-1][packed["last_row"].to(device), packed["last"].to(device)] if with_hidden else None
    return logps, count, hidden
