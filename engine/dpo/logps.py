"""Summed log-probs of each response of a pair batch under a causal LM, in one forward pass.

The batch is `engine.data.pairs.collate_pairs`'s: [2n, L], chosen rows then rejected rows, right-padded,
each row prefix + prompt + middle + response + suffix with `prompt_len` the response's first position. A
response's log-prob is Σ log π(token | before) over its tokens and the closing specials (the EOS the policy
must learn to emit), the same tokens on both sides of a pair's shared prompt.
"""

from __future__ import annotations

import torch

from engine.rl.losses import logprobs_from_logits


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
