"""What a DPO run samples: the reference's own preference pairs, and the policy's held-out answers judged
by the gold rule against the reference's (the win-rate), with the KL of the policy to the reference.

The win-rate is PPO's (`engine.rl.losses.win_rate`, `predictions/win/step-N.npy`, held-out prompts drawn
as `engine.rl.train` draws them), so a DPO run and an RL run on the synthetic task are judged on the same
prompts and compare prompt by prompt. Sampling runs under a forked RNG from a fixed seed: eval samples
differ only by the policy, and nothing here moves the training RNG (resume stays exact).
"""

from __future__ import annotations

import numpy as np
import torch
from accelerate.utils import gather_object

from engine import metrics as M
from engine.analysis import predictions
from engine.data import synthetic
from engine.data.rows import Pair
from engine.rl import losses as L
from engine.rl import policy as P
from engine.rl.train import HELDOUT_SEED_SYNTHETIC


def heldout_prompts(n: int) -> list[str]:
    """PPO's held-out synthetic prompts (`engine.rl.train.load_prompts`): the same for every seed."""
    return list(dict.fromkeys(synthetic.make_prompts(4 * n + 64, HELDOUT_SEED_SYNTHETIC)))[:n]


@torch.no_grad()
def sample(lm, tok, prompts: list[str], cfg, seed: int, ref=None, batch: int = 64):
    """(responses, their KL to `ref` in nats a response (None without ref), their lengths in tokens),
    sampled from `lm` at `dpo.temperature` from a fixed seed. The KL is the sampled estimate
    Σₜ log π − log π_ref over each response's tokens (PPO's `objective/kl`)."""
    d = cfg.dpo
    texts, kls, lengths = [], [], []
    with torch.random.fork_rng(devices=[lm.device] if lm.device.type == "cuda" else []):
        torch.manual_seed(seed)
        for i in range(0, len(prompts), batch):
            chunk = P.encode_prompts(tok, prompts[i:i + batch], cfg.model.max_length - d.max_new_tokens)
            ids, mask = P.left_pad(chunk, tok.pad_token_id, lm.device)  # [B, P]
            resp = P.generate(lm, ids, mask, max_new_tokens=d.max_new_tokens, temperature=d.temperature,
                              eos_id=tok.eos_token_id, pad_id=tok.pad_token_id)  # [B, T]
            r_mask = P.response_mask(resp, tok.eos_token_id)  # [B, T]
            texts += P.decode_responses(tok, resp, r_mask)
            lengths += r_mask.sum(1).tolist()
            if ref is not None:
                logp = P.sequence_logprobs(lm, ids, mask, resp, r_mask, d.temperature, entropy=False)[0]  # [B, T]
                ref_logp = P.sequence_logprobs(ref, ids, mask, resp, r_mask, d.temperature, entropy=False)[0]
                kls += (L.per_token_kl(logp, ref_logp) * r_mask).sum(1).tolist()
    return texts, (kls if ref is not None else None), lengths


def reference_pairs(ref, tok, cfg, exclude: set[str]) -> list[dict]:
    """`data.synthetic_pairs` rows of the reference's own two samples per synthetic prompt (none of the
    held-out win-rate prompts), labelled by the task's rater with `data.label_noise` and `data.length_bias`."""
    n, seed = cfg.data.synthetic_pairs, cfg.seed
    prompts = [p for p in synthetic.make_prompts(2 * n + 64, seed) if p not in exclude]
    first, _, _ = sample(ref, tok, prompts, cfg, seed=seed + 1, batch=256)
    second, _, _ = sample(ref, tok, prompts, cfg, seed=seed + 2, batch=256)
    rows = synthetic.rate_pairs(prompts, first, second, seed, cfg.data.label_noise, cfg.data.length_bias)
    return rows[:n]


def as_pairs(rows: list[dict]) -> list[Pair]:
    return [Pair(r["prompt"], r["chosen"], r["rejected"]) for r in rows]


def win_rate_eval(ctx, lm, ref, tok, prompts: list[str], reference_texts: list[str], step: int) -> dict:
    """Gold win-rate of the policy against the reference's (once sampled) answers on this rank's share of
    the held-out prompts, with the KL to the reference; gathered, logged as `eval/win`, and each prompt's
    outcome and gold kept for a paired comparison."""
    cfg = ctx.cfg
    texts, kls, lengths = sample(lm, tok, prompts, cfg, seed=cfg.seed + 7919, ref=ref)
    local = [(synthetic.gold_judge(p, a, b), synthetic.gold_reward(p, a), k, n)
             for p, a, b, k, n in zip(prompts, texts, reference_texts, kls, lengths, strict=True)]
    rows, every = gather_object(local), gather_object(prompts)
    outcomes = [r[0] for r in rows]
    rate, se, n = L.win_rate(outcomes)
    result = {M.WIN_RATE: rate, M.WIN_RATE_SE: se, M.WIN_RATE_N: n, M.KL: float(np.mean([r[2] for r in rows])),
              M.GOLD_SCORE: float(np.mean([r[1] for r in rows])),
              M.RESPONSE_LENGTH: float(np.mean([r[3] for r in rows]))}
    if ctx.is_main:
        predictions.write_outcomes(ctx.paths.dir, M.WIN, step, outcomes, [r[1] for r in rows], every)
    ctx.log(step, M.eval_split(M.WIN), result)
    return result
