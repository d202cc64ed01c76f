"""DPO with model.share_prompt: one packed [prompt | chosen | rejected] row per pair gives the policy's and the
reference's log-probs of the plain two-row forward, and so the same training losses."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from engine.config import DPOSection
from engine.data.pairs import PairDataset, collate_pairs
from engine.data.rows import Pair
from engine.dpo import losses as DL
from engine.dpo.logps import packed_response_logps, response_logps
from engine.dpo.train import implicit
from engine.models import train_tokenizer
from engine.packing import causal_lm_supported
from engine.rl.policy import frozen_copy
from engine.rm.shared_prompt import pack_pairs

TEXTS = [f"Human: how do I bake bread number {i}? Assistant: knead the dough {i % 7} times." for i in range(200)]
PROMPTS = ["how do I bake bread?", "hi", "what is 2 + 2? Please explain it slowly.", "bake"]
ANSWERS = [(" Knead the dough well.", " No."), (" Hello!", " Go away, I am busy with something else."),
           (" 4", " It is 5, obviously."), (" knead knead", " no")]
# prompts and responses of different lengths, so the two layouts pad differently
PAIRS = [Pair(f"\n\nHuman: {q}\n\nAssistant:", c, r) for q, (c, r) in zip(PROMPTS, ANSWERS, strict=True)]


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS, vocab_size=300, max_length=64)


def tiny_lm(tok, attn: str = "sdpa") -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         pad_token_id=tok.pad_token_id)
    config._attn_implementation = attn
    return LlamaForCausalLM(config)


def two_ways(lm, items, pad_id):
    batch = collate_pairs(items, pad_id)
    plain = response_logps(lm, batch["input_ids"], batch["attention_mask"], batch["prompt_len"], with_hidden=True)
    return plain, packed_response_logps(lm, pack_pairs(batch, pad_id), with_hidden=True)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_logps_equal_the_two_row_ones(tok, attn):
    lm = tiny_lm(tok, attn)
    assert causal_lm_supported(lm, 64) == (True, "")
    (lp, count, hidden), (lp_s, count_s, hidden_s) = two_ways(lm, PairDataset(PAIRS, tok, 64).items, tok.pad_token_id)
    assert lp.abs().min() > 1.0  # real sums over several tokens, not zeros
    # sums of about 200 nats: float32's spacing there is 1.5e-5, hence the relative 1e-6 beside 1e-5
    torch.testing.assert_close(lp_s, lp, atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(count_s, count)
    torch.testing.assert_close(hidden_s, hidden, atol=1e-5, rtol=0)


def test_left_truncated_pairs_and_pad_equal_to_eos_match_too(tok):
    """max_length 14 cuts the prompts from the left, one to nothing (its first response token is unscored)."""
    items = PairDataset(PAIRS, tok, 14).items
    assert any(it["truncated"] for it in items) and any(it["prompt_len"] == 0 for it in items)
    (lp, count, _), (lp_s, count_s, _) = two_ways(tiny_lm(tok), items, tok.eos_token_id)
    torch.testing.assert_close(lp_s, lp, atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(count_s, count)


def test_a_short_dpo_run_has_the_same_losses_packed_or_not(tok):
    """Four AdamW steps of DPO on the implicit rewards of both layouts (policy with grad, reference frozen)."""
    batch = collate_pairs(PairDataset(PAIRS, tok, 64).items, tok.pad_token_id)
    ctx = SimpleNamespace(accelerator=SimpleNamespace(device=torch.device("cpu")), cfg=SimpleNamespace(dpo=DPOSection(beta=0.5)))

    def run(share: bool) -> list[float]:
        policy = tiny_lm(tok)
        ref = frozen_copy(policy)
        optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-2)
        losses = []
        for _ in range(4):
            r_c, r_r, *_ = implicit(ctx, policy, ref, batch, share=share)
            loss = DL.dpo_loss(ctx.cfg.dpo, r_c, r_r).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        return losses

    plain, packed = run(False), run(True)
    assert plain[-1] < plain[0] - 1e-3  # it trains: later steps compare moved weights
    assert packed == pytest.approx(plain, abs=1e-5)


@pytest.mark.parametrize("lora", [False, True])
def test_the_lm_head_scores_only_the_scored_positions(tok, lora):
    """The forward's logits are [K, V], one row a scored token, not [rows, columns, V]: the head never
    sees prompt or padding columns, packed or in two rows a pair. Through peft's LoRA wrapper too, with
    the same log-probs."""
    from engine.config import LoraConfig, ModelSection
    from engine.models import add_lora

    lm = tiny_lm(tok)
    if lora:
        lm = add_lora(lm, ModelSection(name="tiny", lora=LoraConfig(r=4, alpha=8)), "CAUSAL_LM")
    batch = collate_pairs(PairDataset(PAIRS, tok, 64).items, tok.pad_token_id)
    packed = pack_pairs(batch, tok.pad_token_id)
    shapes = []
    handle = lm.get_output_embeddings().register_forward_hook(lambda _m, _a, out: shapes.append(tuple(out.shape)))
    try:
        logps, count, _ = packed_response_logps(lm, packed)
        plain, count_plain, _ = response_logps(lm, batch["input_ids"], batch["attention_mask"], batch["prompt_len"])
    finally:
        handle.remove()
    k = int(count.sum())
    assert int(count_plain.sum()) == k and shapes == [(k, len(tok))] * 2  # one head call a forward, K rows
    assert k < packed["input_ids"].numel() / 2  # the prompts and pads were skipped
    torch.testing.assert_close(logps, plain, atol=1e-5, rtol=1e-6)
