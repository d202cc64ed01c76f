"""GRPO groups packed one to a row ([prompt | sample 1 | … | sample k]) give the plain rollout rows'
per-token log-probs, entropies and gradients, early EOS and left-padded prompts of unequal length
included."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from engine.rl import policy as P
from engine.rl.group_pack import pack_groups, packed_sequence_logprobs

VOCAB, PAD, EOS, K, T = 97, 0, 1, 3, 7


def tiny_lm(attn: str) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         pad_token_id=PAD)
    config._attn_implementation = attn
    return LlamaForCausalLM(config)


def rollout():
    """Three prompts of 5, 2 and 4 tokens, each three times, left-padded; samples of 7 tokens, two of
    them stopped early by an EOS (and padded with EOS, as generate pads)."""
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(2, VOCAB, (n,), generator=g).tolist() for n in (5, 2, 4)]
    q_ids, q_mask = P.left_pad([q for q in prompts for _ in range(K)], PAD)  # [9, 5]
    responses = torch.randint(2, VOCAB, (len(q_ids), T), generator=g)  # [9, 7]
    responses[1, 3:] = EOS  # sample 2 of group 1 stops after 3 tokens, its EOS the 4th
    responses[5, 0:] = EOS  # sample 3 of group 2 is one EOS
    return q_ids, q_mask, responses, P.response_mask(responses, EOS)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_groups_give_the_plain_rows_logprobs_entropies_and_gradients(attn):
    lm = tiny_lm(attn)
    q_ids, q_mask, responses, r_mask = rollout()
    assert r_mask.sum(1).tolist() == [7, 4, 7, 7, 7, 1, 7, 7, 7]
    packed = pack_groups(q_ids, q_mask, responses, r_mask, K, PAD, pad_to_multiple_of=8)
    assert packed["input_ids"].shape == (3, 32)  # 5 + 3 · 7 = 26, rounded up to 8s

    lp, ent, _ = P.sequence_logprobs(lm, q_ids, q_mask, responses, r_mask, temperature=0.7)
    (lp * r_mask).sum().backward()
    plain_grads = [p.grad.clone() for p in lm.parameters()]
    lm.zero_grad()
    lp_s, ent_s, values = packed_sequence_logprobs(lm, packed, responses, temperature=0.7)
    (lp_s * r_mask).sum().backward()

    m = r_mask.bool()
    assert values is None and (lp_s[~m] == 0).all() and (ent_s[~m] == 0).all()
    torch.testing.assert_close(lp_s[m], lp[m], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ent_s[m], ent[m], atol=1e-5, rtol=1e-5)
    for plain, packed_grad in zip(plain_grads, (p.grad for p in lm.parameters()), strict=True):
        torch.testing.assert_close(packed_grad, plain, atol=1e-5, rtol=1e-4)


def test_rows_that_do_not_share_a_prompt_are_refused():
    q_ids, q_mask, responses, r_mask = rollout()
    q_ids[4, -1] = 3 if q_ids[4, -1] != 3 else 4  # group 1's second row, another prompt
    with pytest.raises(ValueError, match="group 1: its 3 rows do not share one prompt"):
        pack_groups(q_ids, q_mask, responses, r_mask, K, PAD)


def test_packed_updates_take_whole_groups_and_every_sample_once_a_pass():
    from engine.rl.train import update_order

    torch.manual_seed(0)
    micro = list(update_order(12, 3, 6, 2, "cpu"))  # 4 groups of 3, minibatches of 2 groups, 2 micro-batches each
    assert [len(m) for m in micro] == [3, 3, 3, 3]
    assert all((m.view(-1, 3) - m.view(-1, 3)[:, :1] == torch.arange(3)).all() and m[0] % 3 == 0 for m in micro)
    assert sorted(torch.cat(micro).tolist()) == list(range(12))
    torch.manual_seed(0)
    plain = torch.cat(list(update_order(12, 1, 6, 2, "cpu")))
    torch.manual_seed(0)
    assert torch.equal(plain, torch.randperm(12))  # k = 1: the shuffle the updates always took


def test_a_minibatch_of_groups_is_cut_to_its_own_rows():
    from engine.rl.group_pack import select

    lm = tiny_lm("sdpa")
    q_ids, q_mask, responses, r_mask = rollout()
    packed = pack_groups(q_ids, q_mask, responses, r_mask, K, PAD)
    part = select(packed, torch.tensor([1]), K)  # group 1: a 2-token prompt, samples of 7, 7 and 1 tokens
    assert part["input_ids"].shape == (1, 2 + 7 + 7 + 1)
    with torch.no_grad():
        whole = packed_sequence_logprobs(lm, packed, responses, 1.0)[0][3:6]
        alone = packed_sequence_logprobs(lm, part, responses[3:6], 1.0)[0]
    torch.testing.assert_close(alone, whole, atol=1e-6, rtol=0)
