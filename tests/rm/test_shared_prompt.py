"""Shared-prompt packing: the layout by hand, and equality with the plain two-row forward."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2ForSequenceClassification,
    MistralConfig,
    MistralForSequenceClassification,
    Qwen2Config,
    Qwen2ForSequenceClassification,
)

from engine import metrics as M
from engine.config import LoraConfig, ModelSection, TinyModelConfig
from engine.data.pairs import PairDataset, collate_pairs
from engine.data.rows import Pair
from engine.models import RewardModel, build_reward_model, train_tokenizer
from engine.rm.losses import bt_loss
from engine.rm.shared_prompt import pack_pairs, shared_prompt_forward, shared_prompt_supported

PAD_ID = 0


def item(prompt: list[int], chosen: list[int], rejected: list[int]) -> dict:
    return {"chosen_ids": prompt + chosen, "rejected_ids": prompt + rejected, "prompt_len": len(prompt),
            "chosen_len": len(chosen), "rejected_len": len(rejected), "margin": None}


# --- the packed layout, by hand ---------------------------------------------------------------------


def test_pack_pairs_layout_positions_and_mask_by_hand():
    batch = [item([5, 6], [7, 8], [9]), item([4], [3], [2, 1])]
    packed = pack_pairs(batch, PAD_ID)
    assert packed["input_ids"].tolist() == [[5, 6, 7, 8, 9], [4, 3, 2, 1, 0]]
    assert packed["position_ids"].tolist() == [[0, 1, 2, 3, 2], [0, 1, 1, 2, 0]]
    assert packed["last"].tolist() == [3, 1, 4, 3]  # chosen ends of pairs 0, 1; then rejected ends
    assert packed["n_tokens"] == 9  # 5 + 4: each prompt once
    assert packed["attention_mask"].shape == (2, 1, 5, 5)
    assert packed["attention_mask"][0, 0].int().tolist() == [
        [1, 0, 0, 0, 0],  # prompt: causal
        [1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0],  # chosen: prompt + itself
        [1, 1, 1, 1, 0],
        [1, 1, 0, 0, 1],  # rejected: prompt + itself, not the chosen tail
    ]
    assert packed["attention_mask"][1, 0].int().tolist() == [
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [1, 0, 1, 0, 0],
        [1, 0, 1, 1, 0],
        [0, 0, 0, 0, 1],  # padding sees itself only, and nothing sees padding
    ]


def test_pack_pairs_rounds_the_width_up_with_masked_padding():
    packed = pack_pairs([item([5, 6], [7, 8], [9])], PAD_ID, pad_to_multiple_of=4)
    assert packed["input_ids"].tolist() == [[5, 6, 7, 8, 9, 0, 0, 0]]
    allowed = packed["attention_mask"][0, 0]
    assert not allowed[:5, 5:].any() and not allowed[5:, :5].any()  # real and pad tokens never meet
    assert packed["n_tokens"] == 5 and packed["last"].tolist() == [3, 4]


def test_short_pairs_share_a_row_and_never_see_each_other():
    # sizes 5, 2, 3: the row is 5 wide; the 3- and 2-token pairs fill the second row (longest first)
    batch = [item([5, 6], [7, 8], [9]), item([4], [3], [2]), item([1], [2], [3])]
    batch[1] = item([], [3], [2])  # an empty prompt: the tails attend to themselves only
    packed = pack_pairs(batch, PAD_ID)
    assert packed["input_ids"].tolist() == [[5, 6, 7, 8, 9], [1, 2, 3, 3, 2]]
    assert packed["pair_ids"].tolist() == [[0, 0, 0, 0, 0], [2, 2, 2, 1, 1]]
    assert packed["position_ids"].tolist() == [[0, 1, 2, 3, 2], [0, 1, 1, 0, 0]]
    assert packed["last_row"].tolist() == [0, 1, 1, 0, 1, 1]
    assert packed["last"].tolist() == [3, 3, 1, 4, 4, 2]
    assert packed["n_tokens"] == 10
    assert packed["attention_mask"][1, 0].int().tolist() == [
        [1, 0, 0, 0, 0],  # pair 2's prompt
        [1, 1, 0, 0, 0],  # pair 2's chosen tail: its prompt + itself
        [1, 0, 1, 0, 0],  # pair 2's rejected tail: its prompt + itself
        [0, 0, 0, 1, 0],  # pair 1's chosen tail: nothing of pair 2
        [0, 0, 0, 0, 1],  # pair 1's rejected tail: not its chosen tail either
    ]


def test_rows_can_be_wider_than_the_longest_pair():
    batch = [item([5, 6], [7, 8], [9]), item([4], [3], [2]), item([1], [2], [3])]
    packed = pack_pairs(batch, PAD_ID, row_tokens=12)
    assert packed["input_ids"].shape == (1, 12) and packed["n_tokens"] == 11
    assert packed["attention_mask"][0, 0, 11].int().tolist() == [0] * 11 + [1]  # padding: itself only


def test_pack_pairs_reads_the_collator_batch_like_the_items():
    batch = [item([5, 6, 7], [8], [9, 10, 11]), item([4], [3, 3], [2]), item([1, 2], [3], [4])]
    from_items = pack_pairs(batch, PAD_ID)
    from_collator = pack_pairs(collate_pairs(batch, PAD_ID), PAD_ID)
    for key in ("input_ids", "position_ids", "attention_mask", "last_row", "last", "segments", "pair_ids"):
        assert torch.equal(from_items[key], from_collator[key]), key
    plain_tokens = collate_pairs(batch, PAD_ID)["n_tokens"]
    assert from_items["n_tokens"] == plain_tokens - (3 + 1 + 2)  # the prompts no longer counted twice


def test_pack_pairs_rejects_pairs_that_do_not_share_the_prompt():
    bad = {"chosen_ids": [1, 2, 3], "rejected_ids": [1, 9, 3], "prompt_len": 2}
    with pytest.raises(ValueError, match="pair 0: chosen and rejected differ"):
        pack_pairs([bad], PAD_ID)
    with pytest.raises(ValueError, match="no token after the prompt"):
        pack_pairs([{"chosen_ids": [1, 2], "rejected_ids": [1, 2, 3], "prompt_len": 2}], PAD_ID)


# --- equality with the plain forward ------------------------------------------------------------------

TEXTS = [f"Human: how do I bake bread number {i}? Assistant: knead the dough {i % 7} times." for i in range(200)]
PAIRS = [  # prompts and responses of different lengths, so rows pad differently in both layouts
    Pair("\n\nHuman: how do I bake bread?\n\nAssistant:", " Knead the dough well.", " No."),
    Pair("\n\nHuman: hi\n\nAssistant:", " Hello!", " Go away, I am busy with something else."),
    Pair("\n\nHuman: what is 2 + 2? Please explain it slowly.\n\nAssistant:", " 4", " It is 5, obviously."),
]


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS, vocab_size=300, max_length=64)


def tiny(tok, attn: str = "sdpa", **kw) -> RewardModel:
    cfg = ModelSection(name="tiny", max_length=64, tiny=TinyModelConfig(hidden_size=32, num_layers=2,
                                                                        num_heads=4, vocab_size=300))
    model = build_reward_model(replace(cfg, **kw), tok, seed=0)
    model.config._attn_implementation = attn
    return model.train()


def loss_and_grads(model: RewardModel, rewards: torch.Tensor, pooled: torch.Tensor) -> dict[str, torch.Tensor]:
    """BT loss plus a term on the pooled states, so the representation's gradient is checked too."""
    n = rewards.shape[0] // 2
    loss = bt_loss(rewards[:n], rewards[n:]).mean() + 0.01 * pooled.pow(2).mean()
    model.zero_grad(set_to_none=True)
    loss.backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


def assert_same_as_plain(model: RewardModel, batch: dict, atol: float = 1e-5, multiple: int = 1) -> None:
    r_plain, h_plain = model(batch["input_ids"], batch["attention_mask"])  # [2n], [2n, H]
    g_plain = loss_and_grads(model, r_plain, h_plain)
    r_shared, h_shared = shared_prompt_forward(model, pack_pairs(batch, PAD_ID, pad_to_multiple_of=multiple))
    g_shared = loss_and_grads(model, r_shared, h_shared)
    torch.testing.assert_close(r_shared, r_plain, atol=atol, rtol=0)
    torch.testing.assert_close(h_shared, h_plain, atol=atol, rtol=0)
    assert g_plain.keys() == g_shared.keys() and g_plain
    for name in g_plain:
        torch.testing.assert_close(g_shared[name], g_plain[name], atol=atol, rtol=0, msg=name)
    assert any(g.abs().max() > 1e-4 for g in g_plain.values())  # the check compares real gradients


@pytest.mark.parametrize(("attn", "multiple"), [("sdpa", 1), ("eager", 1), ("sdpa", 16)])
def test_tiny_llama_rewards_and_gradients_match_the_plain_forward(tok, attn, multiple):
    model = tiny(tok, attn)
    assert shared_prompt_supported(model, 64) == (True, "")
    assert tok.pad_token_id == PAD_ID
    batch = collate_pairs(PairDataset(PAIRS, tok, 64).items, tok.pad_token_id)
    assert_same_as_plain(model, batch, multiple=multiple)


def test_packed_rows_of_several_pairs_match_the_plain_forward(tok):
    """Twelve pairs, one long and the rest short (as in HH-RLHF, where one long conversation sets the
    width): they pack into fewer rows than pairs, and every reward and gradient holds."""
    model = tiny(tok)
    pairs = [Pair(f"\n\nHuman: bake {i}{' more bread' * (6 if i == 0 else 0)}?\n\nAssistant:",
                  " knead" * (1 + i % 3), " no" * (1 + i % 2)) for i in range(12)]
    batch = collate_pairs(PairDataset(pairs, tok, 64).items, tok.pad_token_id)
    packed = pack_pairs(batch, PAD_ID)
    assert packed["input_ids"].shape[0] < 12
    assert packed["input_ids"].numel() < batch["input_ids"].numel() * 0.6
    assert_same_as_plain(model, batch)


def test_truncated_prompts_and_pad_equal_to_eos_match_too(tok):
    """Left-cut prompts (max_length 24) and pad = eos: the reward is still read at the real last token."""
    model = tiny(tok)
    items = PairDataset(PAIRS, tok, 24).items
    assert any(it["truncated"] for it in items)
    batch = collate_pairs(items, tok.eos_token_id)
    r_plain, _ = model(batch["input_ids"], batch["attention_mask"])
    r_shared, _ = shared_prompt_forward(model, pack_pairs(items, tok.eos_token_id))
    torch.testing.assert_close(r_shared, r_plain, atol=1e-5, rtol=0)


def test_lora_and_gradient_checkpointing_match_the_plain_forward(tok):
    model = tiny(tok, lora=LoraConfig(r=4, target_modules=["q_proj", "v_proj"]), gradient_checkpointing=True)
    assert shared_prompt_supported(model, 64)[0]
    assert_same_as_plain(model, collate_pairs(PairDataset(PAIRS, tok, 64).items, tok.pad_token_id))


def _other_decoder(kind: str) -> RewardModel:
    torch.manual_seed(0)
    common = dict(vocab_size=60, num_labels=1, pad_token_id=PAD_ID)
    llama_like = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, **common)  # grouped-query attention
    hf = {
        "qwen2": lambda: Qwen2ForSequenceClassification(Qwen2Config(**llama_like)),
        "mistral": lambda: MistralForSequenceClassification(MistralConfig(sliding_window=None, **llama_like)),
        "gpt2": lambda: GPT2ForSequenceClassification(GPT2Config(
            n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=1, eos_token_id=1,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **common)),
    }[kind]()
    return RewardModel(hf, is_decoder=True).train()


@pytest.mark.parametrize("kind", ["qwen2", "mistral", "gpt2"])
def test_other_supported_decoders_match_the_plain_forward(kind):
    model = _other_decoder(kind)
    assert shared_prompt_supported(model, 64) == (True, "")
    g = torch.Generator().manual_seed(1)
    ids = [torch.randint(2, 60, (k,), generator=g).tolist() for k in (6, 2, 3, 1, 4, 7)]
    batch = collate_pairs([item(ids[0], ids[1], ids[2]), item(ids[3], ids[4], ids[5])], PAD_ID)
    assert_same_as_plain(model, batch)


# --- when it does not apply ---------------------------------------------------------------------------


def test_supported_explains_every_fallback(tok):
    bert = BertForSequenceClassification(BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=1,
                                                    num_attention_heads=2, intermediate_size=64, num_labels=1))
    ok, why = shared_prompt_supported(RewardModel(bert, is_decoder=False))
    assert not ok and "encoder" in why

    ok, why = shared_prompt_supported(torch.nn.Sequential(tiny(tok)))
    assert not ok and "Sequential" in why
    wrapper = torch.nn.Module()
    wrapper.module = tiny(tok)  # how DDP, FSDP and DeepSpeed hold the model
    assert shared_prompt_supported(wrapper, 64) == (True, "")

    model = tiny(tok)
    model.config._attn_implementation = "flash_attention_2"
    ok, why = shared_prompt_supported(model)
    assert not ok and "flash_attention_2" in why

    windowed = _other_decoder("mistral")
    windowed.config.sliding_window = 32
    assert not shared_prompt_supported(windowed, max_length=64)[0]
    assert shared_prompt_supported(windowed, max_length=32) == (True, "")  # the window never binds

    model = tiny(tok)
    model.config.model_type = "phi"
    ok, why = shared_prompt_supported(model)
    assert not ok and "'phi'" in why



def test_evaluate_packed_gives_the_plain_rewards_and_metrics(tok, monkeypatch):
    """engine.rm.train.evaluate with share on: per-pair rewards to 1e-5 and the same metrics, over an
    uneven last batch (batches of 2) with truncated pairs (max_length 24)."""
    from types import SimpleNamespace

    from accelerate import Accelerator

    from engine.rm import train as T

    model = tiny(tok).eval()
    pairs = PAIRS * 2 + PAIRS[:1]
    ds = PairDataset(pairs, tok, 24)
    assert len(ds) % 2 == 1 and any(it["truncated"] for it in ds.items)
    cfg = SimpleNamespace(kind="eval", loss=SimpleNamespace(type="bt"),
                          eval=SimpleNamespace(batch_size=2, hard_pairs=0))
    ctx = SimpleNamespace(accelerator=Accelerator(cpu=True), cfg=cfg, is_main=True,
                          stop_between_eval_batches=lambda: None)  # an eval run: never stopped mid-eval
    stats = {}
    monkeypatch.setattr(T, "pair_stats", lambda r_c, r_r: stats.setdefault(len(stats), (r_c, r_r)) and
                        {M.ACCURACY: float((r_c > r_r).float().mean()), M.REWARD_GAP: float((r_c - r_r).mean())})
    packed_calls = []
    real = T.shared_prompt_forward
    monkeypatch.setattr(T, "shared_prompt_forward", lambda m, p: packed_calls.append(1) or real(m, p))
    plain, _ = T.evaluate(ctx, model, ds, pairs, tok.eos_token_id, None, share=False)
    assert not packed_calls
    packed, _ = T.evaluate(ctx, model, ds, pairs, tok.eos_token_id, None, share=True)
    assert len(packed_calls) == (len(ds) + 1) // 2  # every batch packed, the last one of a single pair
    for a, b in zip(stats[0], stats[1], strict=True):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=0)
    assert packed.keys() == plain.keys()
    for k, v in plain.items():
        assert packed[k] == pytest.approx(v, abs=1e-5), k
