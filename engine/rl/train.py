"""PPO against a trained reward model, read top to bottom like CleanRL's ppo.py.

Started by the run service (`engine.runs.lifecycle`) (never by hand, though it can be):

    accelerate launch [--multi_gpu] [--num_processes N] [--mixed_precision bf16] \
        [--config_file ds_or_fsdp.yaml] -m engine.rl.train --run-dir runs/<id> [--resume]

Set-up: prompts → policy (optionally fitted to the synthetic reference first; that fit is also the
frozen reference) → the reward model of a completed RM run, or `[ppo.ensemble]`'s members as one proxy
(engine.rl.ensemble) → judge and opponent for the win-rate.
Loop, per step: sample prompts → generate → score with the RM → per-token KL penalty against the
reference (`kl_coef`, adaptive when `kl_target` > 0) → GAE (`gamma`, `lam`) → clipped policy and
value updates (`clip_range`, `clip_range_value`, `vf_coef`) over `ppo_epochs` × minibatches. Every
switch is in the manifest and its diagnostic is logged beside it (KL control ↔ objective/kl and
objective/kl_coef, advantage whitening ↔ advantages/*, value clipping ↔ val/clipfrac_avg).
Win-rate every `win_rate_every` steps on held-out prompts, then checkpoint; resume is exact.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import gather_object

from engine import metrics as M
from engine.analysis import overopt, predictions
from engine.data import synthetic
from engine.data.rows import ASSISTANT_MARK, render_messages
from engine.lr_schedule import lr_scheduler
from engine.models import load_tokenizer, n_params
from engine.packing import causal_lm_supported, row_multiple
from engine.rl import best_of_n as bon
from engine.rl import ensemble as E
from engine.rl import group_pack as GP
from engine.rl import losses as L
from engine.rl import policy as P
from engine.runs import status as S
from engine.runs import store as mf
from engine.runtime import RunContext, TrainingError, run_process
from engine.timing import Laps

SYNTHETIC_POOL = 8192  # training prompts drawn for prompts = "synthetic"
# the held-out win-rate prompts do not follow the run's seed: runs over seeds are judged on the same
# prompts, so two of them compare prompt by prompt (the seed still draws the training prompts' order
# and everything sampled). 1 and 0 are the seeds a seed-0 run split with before, so a prompt file splits
# as it did for seed 0; synthetic training prompts now give way to the held-out ones, not the reverse.
HELDOUT_SEED_SYNTHETIC, HELDOUT_SEED_FILE = 1, 0
REFERENCE = "reference"  # checkpoints/reference: the SFT-fitted start, kept for resume
BON_SEED_OFFSET = 15485863  # best-of-n samples from the run's seed plus this: their own stream, as evals have


# ---------------------------------------------------------------------------- prompts


def read_prompts(path: str) -> list[str]:
    """`prompt` of each row of a .jsonl(.gz): text, or {role, content} messages (HH template)."""
    p = Path(path)
    if not p.is_file():
        raise TrainingError(f"ppo.prompts: {path}: no such file")
    raw = p.read_bytes()
    text = (gzip.decompress(raw) if path.endswith(".gz") else raw).decode("utf-8-sig")
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            prompt = json.loads(line)["prompt"]
            out.append(prompt if isinstance(prompt, str) else render_messages(prompt) + ASSISTANT_MARK)
        except (ValueError, KeyError, TypeError):
            raise TrainingError(f"{path}:{lineno}: expected a JSON object with a \"prompt\" field holding text "
                                "or {role, content} messages") from None
    return list(dict.fromkeys(out))  # a repeated prompt must not land on both sides of the split


def load_prompts(cfg) -> tuple[list[str], list[str], dict]:
    """(training prompts, held-out win-rate prompts, data hashes); the two never share a prompt."""
    p = cfg.ppo
    if p.prompts == "synthetic":
        held = list(dict.fromkeys(synthetic.make_prompts(4 * p.eval_prompts + 64, HELDOUT_SEED_SYNTHETIC)))
        held = held[:p.eval_prompts]
        kept = set(held)
        train = [x for x in synthetic.make_prompts(SYNTHETIC_POOL, cfg.seed) if x not in kept]
        return train, held, {"prompts": "synthetic"}
    prompts = read_prompts(p.prompts)
    digest = hashlib.sha256(Path(p.prompts).read_bytes()).hexdigest()
    order = np.random.default_rng(HELDOUT_SEED_FILE).permutation(len(prompts))
    held = [prompts[i] for i in order[:p.eval_prompts]]
    train = [prompts[i] for i in order[p.eval_prompts:]]  # rollouts draw from them by the run's seed
    if len(train) < p.rollout_batch:
        raise TrainingError(f"ppo.prompts: {len(prompts)} prompts leave {len(train)} for training after "
                            f"{p.eval_prompts} held out; need at least ppo.rollout_batch = {p.rollout_batch}")
    return train, held, {"prompts": digest}


def step_prompts(train: list[str], step: int, resolved: dict, seed: int, rank: int, n: int) -> list[str]:
    """Prompts of `step` (1-based) on `rank`: a pure function of (seed, step), so resume is exact."""
    epoch, pos = divmod(step - 1, resolved["rollouts_per_epoch"])
    order = np.random.default_rng([seed, epoch]).permutation(len(train))
    start = pos * resolved["global_rollout"] + rank * n
    return [train[i] for i in order[start:start + n]]


# ---------------------------------------------------------------------------- runs we read from


def linked_models(ctx: RunContext, link: str) -> list[Path]:
    """The exported model folders of a run (or, for a list link such as `ensemble_members`, of each run)
    this config names. The preflight found each one before the run began and wrote it to `[links]` by
    whole id; the trainer never searches the store again, but a run may have gone since."""
    refs = ctx.manifest.get("links", {}).get(link)
    if not refs:
        raise TrainingError(f"[links] {link}: not set; launch this run through aplot, whose preflight sets it")
    try:
        return [mf.exported_model(ctx.paths.dir.parent, ref) for ref in ([refs] if isinstance(refs, str) else refs)]
    except mf.RunError as e:
        raise TrainingError(f"[links] {link}: {e}") from None


def linked_model(ctx: RunContext, link: str) -> tuple[Path, str]:
    """(exported model folder, run id or folder) of the one run a link names."""
    return linked_models(ctx, link)[0], ctx.manifest["links"][link]


def load_proxy(ctx: RunContext) -> E.Ensemble:
    """The reward the policy optimises: `ppo.reward_model_run` alone, or `[ppo.ensemble]`'s members
    aggregated (one member is that RM exactly)."""
    ens = ctx.cfg.ppo.ensemble
    link = "ensemble_members" if ens.members else "reward_model_run"
    return E.Ensemble.load(linked_models(ctx, link), ctx.accelerator.device, ens.aggregate, ens.uwo_lambda)


class Judge:
    """Outcome of response a against b for each prompt: 1 a wins, 0.5 tie, 0 b wins."""

    def __init__(self, ctx: RunContext, proxy: E.Ensemble):
        spec = ctx.cfg.ppo.judge  # "gold" with prompts other than synthetic fails config validation
        self.gold, self.rm = spec == "gold", proxy  # "rm": the proxy itself (an ensemble's aggregate)
        if spec not in ("rm", "gold"):
            self.rm = E.Ensemble.load(linked_models(ctx, "judge_run"), ctx.accelerator.device)

    def scores(self, prompts: list[str], texts: list[str]) -> list[float]:
        """The judge's own score of each response (gold, or the judging RM's reward)."""
        if self.gold:
            return [synthetic.gold_reward(p, t) for p, t in zip(prompts, texts, strict=True)]
        return self.rm.score(prompts, texts).tolist()

    def __call__(self, prompts: list[str], a: list[str], b: list[str]) -> list[float]:
        return self.judged(prompts, a, b)[0]

    def judged(self, prompts: list[str], a: list[str], b: list[str]) -> tuple[list[float], list[float]]:
        """(the outcome of a against b, the judge's score of a) for each prompt, from one scoring of each side."""
        if self.gold:
            return ([synthetic.gold_judge(p, x, y) for p, x, y in zip(prompts, a, b, strict=True)],
                    self.scores(prompts, a))
        sa, sb = self.rm.score(prompts, a).tolist(), self.rm.score(prompts, b).tolist()
        return [0.5 if abs(x - y) < 1e-6 else float(x > y) for x, y in zip(sa, sb, strict=True)], sa


# ---------------------------------------------------------------------------- generation


@torch.no_grad()
def sample_texts(lm, tok, prompts: list[str], cfg, seed: int, batch: int = 64) -> list[str]:
    """Responses to `prompts` from a fixed sampling seed: eval samples differ only by the policy."""
    texts = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for i in range(0, len(prompts), batch):
            chunk = P.encode_prompts(tok, prompts[i:i + batch], cfg.model.max_length - cfg.ppo.max_new_tokens)
            ids, mask = P.left_pad(chunk, tok.pad_token_id, lm.device)
            resp = P.generate(lm, ids, mask, max_new_tokens=cfg.ppo.max_new_tokens, temperature=cfg.ppo.temperature,
                              eos_id=tok.eos_token_id, pad_id=tok.pad_token_id)
            texts += P.decode_responses(tok, resp, P.response_mask(resp, tok.eos_token_id))
    return texts


def eval_disagreement(proxy: E.Ensemble, tok, prompts, texts, opponent_texts) -> dict:
    """An ensemble's disagreement on the policy's held-out samples (this rank's share, gathered), the
    sign test against the opponent's sample of the same prompt (the reference's, by default)."""
    own, theirs = proxy.member_scores(prompts, texts), proxy.member_scores(prompts, opponent_texts)  # [K, b]
    lengths = [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]] if texts else []
    rows = gather_object([(own[:, i].tolist(), theirs[:, i].tolist(), lengths[i]) for i in range(len(texts))])
    return E.disagreement(torch.tensor([r[0] for r in rows]).T, torch.tensor([r[2] for r in rows]),
                          torch.tensor([r[1] for r in rows]).T)


def win_rate_eval(ctx, lm, tok, prompts, opponent_texts, judge, proxy, step) -> dict:
    """Policy vs opponent on this rank's share of the held-out prompts, gathered, logged; each
    prompt's outcome and judge score kept (predictions/win/step-N.npy) for a paired comparison."""
    cfg = ctx.cfg
    texts = sample_texts(lm, tok, prompts, cfg, seed=cfg.seed + 7919)
    local_outcomes, local_scores = judge.judged(prompts, texts, opponent_texts)
    outcomes, scores, every = gather_object(local_outcomes), gather_object(local_scores), gather_object(prompts)
    rate, se, n = L.win_rate(outcomes)
    result = {M.WIN_RATE: rate, M.WIN_RATE_SE: se, M.WIN_RATE_N: n}
    if len(proxy) > 1:
        result.update(eval_disagreement(proxy, tok, prompts, texts, opponent_texts))
    if ctx.is_main:
        predictions.write_outcomes(ctx.paths.dir, M.WIN, step, outcomes, scores, every)
    ctx.log(step, M.eval_split(M.WIN), result)
    k = cfg.ppo.samples_logged
    if k and ctx.is_main:
        scores = proxy.score(prompts[:k], texts[:k]).tolist()
        gold = [synthetic.gold_reward(p, t) if cfg.ppo.prompts == "synthetic" else None
                for p, t in zip(prompts[:k], texts[:k], strict=True)]
        ctx.log(step, M.SAMPLES_SPLIT, {M.SAMPLES: [{"prompt": p, "response": t, "score": s, "gold": g}
                                              for p, t, s, g in zip(prompts[:k], texts[:k], scores, gold, strict=True)]})
    return result


def best_of_n_eval(ctx, ref, tok, prompts, judge, proxy) -> dict:
    """The reference's best-of-n curve: ppo.bon_samples responses per held-out prompt (this rank's
    share), each scored by the run's RM (the proxy that picks) and by the judge; gathered, logged."""
    cfg, n = ctx.cfg, ctx.cfg.ppo.bon_samples
    repeated = [q for q in prompts for _ in range(n)]  # each prompt's n samples side by side
    texts = sample_texts(ref, tok, repeated, cfg, seed=cfg.seed + BON_SEED_OFFSET)
    picked = proxy.score(repeated, texts).tolist()
    judged = judge.scores(repeated, texts)
    rows = gather_object([(picked[i * n:(i + 1) * n], judged[i * n:(i + 1) * n]) for i in range(len(prompts))])
    result = bon.curve(np.array([r[0] for r in rows]), np.array([r[1] for r in rows]))
    ctx.log(0, M.BON_SPLIT, result)
    columns = (result[f] for f in (M.BON_N, M.BON_PROXY, M.BON_GOLD, M.BON_WIN))
    ctx.accelerator.print("[aplot] best-of-n of the reference (n: proxy / judge / judge's win-rate): " + ", ".join(
        f"{int(k)}: {p:.3f} / {g:.3f} / {w:.3f}" for k, p, g, w in zip(*columns, strict=True)))
    return result


# ---------------------------------------------------------------------------- main


def train(ctx: RunContext) -> tuple[str, dict]:
    cfg, acc, p = ctx.cfg, ctx.accelerator, ctx.cfg.ppo
    dev, rank, world = acc.device, acc.process_index, acc.num_processes
    say = acc.print

    saved = ctx.saved_state()  # a rollout is split over ranks: PPO resumes on the ranks it was saved with
    if saved is not None and saved.get("world_size", world) != world:
        raise TrainingError(f"resume: this PPO run was saved on {saved['world_size']} ranks and the launch has "
                            f"{world}; resume with `aplot resume RUN launch.num_processes={saved['world_size']}`")

    # 1. the reward model(s) first: a wrong reference should fail in a second, not after SFT. Each
    # ensemble member is loaded here once per rank and kept for the run.
    proxy = load_proxy(ctx)
    judge = Judge(ctx, proxy)

    # 2. prompts, tokenizer, policy; the reference is the policy at the start of PPO
    train_prompts, eval_prompts, hashes = load_prompts(cfg)
    if p.sft_steps and p.prompts != "synthetic":
        raise TrainingError("ppo.sft_steps: the supervised warm start fits synthetic.reference_completions; "
                            "it needs ppo.prompts = \"synthetic\"")
    corpus = synthetic.corpus(cfg.seed) if p.prompts == "synthetic" else train_prompts[:5000]
    tok = load_tokenizer(cfg.model, corpus, ctx.paths.dir / "tokenizer") if ctx.is_main else None
    acc.wait_for_everyone()  # rank 0 trains (tiny) and saves it; the others read the saved copy
    tok = tok or load_tokenizer(cfg.model, corpus, ctx.paths.dir / "tokenizer")
    ref_dir = ctx.paths.checkpoints / REFERENCE
    sft_losses: list[float] = []
    if (ref_dir / "config.json").exists():  # a resume, or a relaunch after the warm start
        lm = P.load_causal_lm(ref_dir)
    else:
        lm = P.build_causal_lm(cfg.model, tok, seed=cfg.seed)
        if p.sft_steps:
            refs = synthetic.reference_completions(train_prompts, cfg.seed)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed)
                sft_losses = P.sft_fit(lm.to(dev), tok, train_prompts, refs, steps=p.sft_steps,
                                       batch_size=p.rollout_batch, lr=cfg.optim.lr, max_length=cfg.model.max_length,
                                       seed=cfg.seed, device=dev)
            say(f"[aplot] SFT warm start: {p.sft_steps} steps, loss {sft_losses[0]:.3f} → {sft_losses[-1]:.3f}")
            ctx.export_model(lm, tok, REFERENCE)
            lm = P.load_causal_lm(ref_dir)  # every rank starts from the very same saved weights
    lm.to(dev)
    ref = P.frozen_copy(lm)
    group = p.advantage != "gae"  # grpo / rloo: the prompt's other samples are the baseline, no critic
    policy = (lm if group else P.PolicyWithValue(lm)).to(dev)

    # 3. win-rate opponent: the reference, or another PPO run's final policy (sampled once)
    with acc.split_between_processes(eval_prompts) as eval_local:  # uneven shares; a rank may get none
        eval_local = list(eval_local)
    if p.opponent == "reference":
        opp_lm, opp_tok = ref, tok
    else:
        opp_dir, _ = linked_model(ctx, "opponent_run")
        opp_lm, opp_tok = P.load_causal_lm(opp_dir).to(dev).eval(), P.load_folder_tokenizer(opp_dir)
    opponent_texts = sample_texts(opp_lm, opp_tok, eval_local, cfg, seed=cfg.seed + 104729)
    del opp_lm

    # 4. derived sizes, computed once and frozen into the manifest
    resolved = resolve_ppo(cfg, len(train_prompts), len(eval_prompts), world)
    folders = [str(f) for f in linked_models(ctx, "ensemble_members" if p.ensemble.members else "reward_model_run")]
    resolved.update(n_params=n_params(policy), reward_model=folders[0] if len(folders) == 1 else folders)
    if sft_losses:  # absent on resume, so the manifest keeps the first launch's value
        resolved["sft_final_loss"] = round(sft_losses[-1], 4)
    total = resolved["total_steps"]

    # 5. optimizer, schedule (per PPO update, as TRL anneals it), KL controller
    optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay, eps=1e-5,
                                  fused=True)  # one kernel for every tensor: 0.18 ms a step on the tiny policy, not 0.67
    scheduler = lr_scheduler(cfg.optim.scheduler, optimizer, resolved["warmup_updates"], resolved["total_updates"])
    policy, optimizer, scheduler = acc.prepare(policy, optimizer, scheduler)
    kl_ctl = L.kl_controller(p.kl_coef, p.kl_target, p.kl_horizon)

    # 6. resume
    start_step, best, win = 1, {"win_rate": -1.0, "step": 0}, {}
    watch = overopt.Watch(overopt.Rule(p.ensemble.warn_window, p.ensemble.warn_ratio, p.ensemble.warn_patience))
    state = ctx.resume_state()
    if state is not None:
        start_step, best = state["step"] + 1, state.get("best", best)
        kl_ctl.load_state_dict(state["kl_ctl"])
        watch.load_state_dict(state.get("overopt", watch.state_dict()))
    unwrapped = acc.unwrap_model(policy)
    policy_lm = unwrapped if group else unwrapped.hf_model  # the causal LM that samples and is exported
    pack = False
    if p.pack_groups:  # one packed [prompt | sample 1 | … | sample k] row per group, policy and reference
        pack, why = causal_lm_supported(policy_lm, cfg.model.max_length)
        say("[aplot] ppo.pack_groups: " + ("on" if pack else f"plain rows ({why})"))
    resolved["pack_groups"] = pack
    ctx.start(resolved, hashes)
    say(f"[aplot] {resolved['n_params']:,} policy params, {len(train_prompts)} train / {len(eval_prompts)} held-out "
        f"prompts, {total} steps of {resolved['global_rollout']} prompts × {p.samples_per_prompt} samples ({p.advantage}), "
        f"judge {p.judge}, opponent {p.opponent}")

    def evaluate(step: int) -> dict:
        result = win_rate_eval(ctx, policy_lm, tok, eval_local, opponent_texts, judge, proxy, step)
        if step > 0 and result[M.WIN_RATE] > best["win_rate"]:
            best.update(win_rate=result[M.WIN_RATE], step=step)
            ctx.export_model(policy_lm, tok, "best")
        return result

    if start_step == 1:
        win = evaluate(0)  # the start of the curve: the policy is the reference here (≈ 0.5)
        if p.bon_samples:
            best_of_n_eval(ctx, ref, tok, eval_local, judge, proxy)

    # 7. the loop
    step, last = start_step - 1, {}
    k, n_samples = p.samples_per_prompt, p.rollout_batch * p.samples_per_prompt
    for step in range(start_step, total + 1):
        laps = Laps(torch.cuda.synchronize if dev.type == "cuda" else None)
        # each prompt k times, its samples side by side: [G·k], the layout the group advantages read
        prompts = [q for q in step_prompts(train_prompts, step, resolved, cfg.seed, rank, p.rollout_batch)
                   for _ in range(k)]

        # 7a. rollout: generate, then log-probs/values of the policy and reference log-probs
        with torch.no_grad(), acc.autocast():
            policy.eval()
            queries = P.encode_prompts(tok, prompts, resolved["max_prompt_tokens"])
            q_ids, q_mask = P.left_pad(queries, tok.pad_token_id, dev)  # [B, P]
            responses = P.generate(policy_lm, q_ids, q_mask, max_new_tokens=p.max_new_tokens,
                                   temperature=p.temperature, eos_id=tok.eos_token_id, pad_id=tok.pad_token_id)  # [B, T]
            r_mask = P.response_mask(responses, tok.eos_token_id)  # [B, T]
            laps.lap(M.TIME_GENERATE)
            if pack:
                packed = GP.pack_groups(q_ids, q_mask, responses, r_mask, k, tok.pad_token_id, row_multiple(dev))
                logp, entropy, values = GP.packed_sequence_logprobs(policy, packed, responses, p.temperature)
                laps.lap(M.TIME_LOGPROBS)
                ref_logp, _, _ = GP.packed_sequence_logprobs(ref, packed, responses, p.temperature, entropy=False)
            else:
                logp, entropy, values = P.sequence_logprobs(policy, q_ids, q_mask, responses, r_mask, p.temperature)
                laps.lap(M.TIME_LOGPROBS)
                ref_logp, _, _ = P.sequence_logprobs(ref, q_ids, q_mask, responses, r_mask, p.temperature,
                                                     entropy=False)
            laps.lap(M.TIME_REF)
            texts = P.decode_responses(tok, responses, r_mask)
            member_scores = proxy.member_scores(prompts, texts)  # [K, B]
            scores = E.aggregate(member_scores, p.ensemble.aggregate, p.ensemble.uwo_lambda)  # [B]
            if len(proxy) > 1:  # the sign test reads one reference sample per prompt, drawn from (seed, step)
                ref_texts = sample_texts(ref, tok, prompts[::k], cfg, seed=(cfg.seed * 1_000_003 + step) * 64 + rank)
                ref_scores = proxy.member_scores(prompts[::k], ref_texts).repeat_interleave(k, 1)  # [K, B]
                ens_stats = E.disagreement(member_scores, r_mask.sum(1), ref_scores)
            has_eos = P.ends_with_eos(responses, r_mask, tok.eos_token_id)  # [B]
            scores = scores - p.missing_eos_penalty * (~has_eos).float()
            policy.train()
            laps.lap(M.TIME_SCORE)

        # 7b. advantages. gae: per-token KL penalty, score at the last token, GAE over the value head.
        # grpo: the score against its group's mean and std (the KL is a loss term in 7c). rloo: the
        # KL-penalised sequence reward against the mean of the prompt's other samples. The group
        # methods give every token of a response its sequence's advantage.
        kl = L.per_token_kl(logp, ref_logp) * r_mask  # [B, T]
        group_stats = {}
        if not group:
            rewards, non_score = L.kl_penalised_rewards(scores, kl, r_mask, kl_ctl.value)  # [B, T]
            if p.whiten_rewards:
                rewards = L.masked_whiten(rewards, r_mask, shift_mean=False)
            advantages, returns = L.gae(rewards, values, r_mask, p.gamma, p.lam)  # [B, T]
        else:
            non_score = -kl_ctl.value * kl if p.advantage == "rloo" else torch.zeros_like(kl)  # [B, T]
            seq_reward = scores + non_score.sum(1)  # [B]
            adv = L.grpo_advantages(seq_reward, k) if p.advantage == "grpo" else L.rloo_advantages(seq_reward, k)
            advantages, returns = adv[:, None] * r_mask, None  # [B, T]
            spread = seq_reward.view(-1, k).std(1)  # [G]
            group_stats = {M.REWARD_STD: spread.mean(), M.FRAC_REWARD_ZERO_STD: (spread < 1e-6).float().mean()}
        adv_mean, adv_std = L.masked_mean(advantages, r_mask), L.masked_var(advantages, r_mask).sqrt()
        if p.whiten_advantages and not group:
            advantages = L.masked_whiten(advantages, r_mask)

        # 7c. clipped policy and value updates over ppo_epochs × minibatches
        laps.lap(M.TIME_SCORE)  # the advantages: a few tensor operations, booked with the scores they come from
        stats, n_skipped = defaultdict(list), 0
        for _epoch in range(p.ppo_epochs):
            for micro in update_order(n_samples, k if pack else 1, p.minibatch_size, cfg.optim.grad_accum, dev):
                with acc.accumulate(policy), acc.autocast():
                    if pack:  # micro: whole groups, group-major
                        new_logp = GP.packed_sequence_logprobs(policy, GP.select(packed, micro[::k] // k, k),
                                                               responses[micro], p.temperature, entropy=False)[0]
                        new_values = None
                    else:
                        new_logp, _, new_values = P.sequence_logprobs(
                            policy, q_ids[micro], q_mask[micro], responses[micro], r_mask[micro], p.temperature,
                            entropy=False)
                    m = r_mask[micro]
                    pg_loss, pg_clipfrac, approxkl = L.policy_loss(new_logp, logp[micro], advantages[micro], m,
                                                                   p.clip_range)
                    terms = {M.POLICY_LOSS: pg_loss, M.CLIPFRAC: pg_clipfrac, M.APPROXKL: approxkl}
                    if not group:
                        terms[M.VALUE_LOSS], terms[M.VALUE_CLIPFRAC] = L.value_loss(
                            new_values.float(), values[micro], returns[micro], m, p.clip_range_value)
                        loss = pg_loss + p.vf_coef * terms[M.VALUE_LOSS]
                    elif p.advantage == "grpo":  # β · mean k3 KL to the reference, differentiated
                        terms[M.KL_LOSS] = L.masked_mean(L.k3_kl(new_logp, ref_logp[micro]), m)
                        loss = pg_loss + kl_ctl.value * terms[M.KL_LOSS]
                    else:
                        loss = pg_loss
                    if ctx.nonfinite(loss, step, optimizer):  # fails the run unless optim.skip_nonfinite
                        n_skipped += 1
                        continue
                    acc.backward(loss)
                    if acc.sync_gradients and cfg.optim.max_grad_norm > 0:
                        acc.clip_grad_norm_(policy.parameters(), cfg.optim.max_grad_norm)
                    optimizer.step()
                    if acc.sync_gradients:
                        scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                for name, v in terms.items():
                    stats[name].append(v.detach())

        laps.lap(M.TIME_UPDATE)

        # 7d. KL control and metrics (TRL's names; gathered over ranks, written by rank 0)
        mean_kl = kl.sum(1).mean()
        local = {M.KL: mean_kl, M.ENTROPY: (entropy * r_mask).sum(1).mean(), M.NON_SCORE_REWARD: non_score.sum(1).mean(),
                 M.RLHF_REWARD: (scores + non_score.sum(1)).mean(), M.SCORES: scores.mean(),
                 M.RESPONSE_LENGTH: r_mask.sum(1).float().mean(), M.ADVANTAGE_MEAN: adv_mean, M.ADVANTAGE_STD: adv_std,
                 **group_stats, **{name: torch.stack(v).mean() for name, v in stats.items()}}
        if len(proxy) > 1:
            local.update({name: torch.tensor(v, device=dev) for name, v in ens_stats.items()})
        if p.prompts == "synthetic":
            gold = [synthetic.gold_reward(q, t) for q, t in zip(prompts, texts, strict=True)]
            local[M.GOLD_SCORE] = torch.tensor(float(np.mean(gold)), device=dev)
        names = list(local)
        values_all = acc.reduce(torch.stack([local[k].float().to(dev) for k in names]), reduction="mean")
        data = dict(zip(names, values_all.tolist(), strict=True))
        step_s = laps.total()
        data.update({M.KL_COEF: kl_ctl.value, M.LEARNING_RATE: scheduler.get_last_lr()[0],
                     M.SAMPLES_PER_S: resolved["samples_per_step"] / step_s,
                     **{key: round(s, 4) for key, s in laps.seconds.items()}, M.TIME_STEP: round(step_s, 4)})
        if n_skipped:  # minibatches dropped for a non-finite loss (every rank drops the same ones)
            data[M.SKIPPED_NONFINITE] = n_skipped
        kl_ctl.update(data[M.KL], resolved["samples_per_step"])
        if step % cfg.log.every == 0 or step == total:
            ctx.log(step, M.TRAIN, data)
            if M.ENSEMBLE_STD in data and (alarm := watch.add(step, data[M.SCORES], data[M.ENSEMBLE_STD])):
                say(alarm.line())
        last = data

        # 7e. win-rate, stop, checkpoint
        if step % p.win_rate_every == 0 and step != total:
            win = evaluate(step)
        if ctx.stop_requested:
            ctx.save(step, {"best": best, "kl_ctl": kl_ctl.state_dict(), "overopt": watch.state_dict()})
            return S.STOPPED, summarize(step, last, win, best)
        if cfg.checkpoint.every and step % cfg.checkpoint.every == 0 and step != total:
            ctx.save(step, {"best": best, "kl_ctl": kl_ctl.state_dict(), "overopt": watch.state_dict()})

    # 8. the end: final win-rate, resumable state, exported policy
    win = evaluate(step)
    ctx.save(step, {"best": best, "kl_ctl": kl_ctl.state_dict(), "overopt": watch.state_dict()})
    ctx.export_model(policy_lm, tok, "final")
    return S.COMPLETED, summarize(step, last, win, best, completed=True)


def update_order(n_samples: int, k: int, minibatch_size: int, grad_accum: int, device):
    """Each update's sample indices over one pass of a rollout: a fresh shuffle cut into minibatches, each
    into `grad_accum` micro-batches. k > 1 (`ppo.pack_groups`) shuffles whole groups instead, so every
    micro-batch holds whole groups, group-major, and packs them one to a row."""
    perm = torch.randperm(n_samples // k, device=device)
    arange = torch.arange(k, device=device)
    for mb in perm.split(minibatch_size // k):
        for micro in mb.tensor_split(min(grad_accum, len(mb))):
            yield (micro[:, None] * k + arange).flatten()


def resolve_ppo(cfg, n_train: int, n_eval: int, world: int) -> dict:
    """Every derived number of a PPO run, computed once here and frozen into the manifest."""
    p = cfg.ppo
    global_rollout = p.rollout_batch * world
    per_epoch = n_train // global_rollout
    if per_epoch == 0:
        raise TrainingError(f"ppo.rollout_batch: {n_train} training prompts cannot fill one rollout of {global_rollout}")
    if cfg.model.max_length <= p.max_new_tokens:
        raise TrainingError(f"model.max_length ({cfg.model.max_length}) leaves no room for a prompt beside "
                            f"ppo.max_new_tokens ({p.max_new_tokens})")
    total = cfg.optim.max_steps or cfg.optim.epochs * per_epoch
    samples = global_rollout * p.samples_per_prompt  # responses per step over every rank
    minibatches = math.ceil(p.rollout_batch * p.samples_per_prompt / p.minibatch_size)
    updates = total * p.ppo_epochs * minibatches
    return {"world_size": world, "global_rollout": global_rollout, "samples_per_step": samples,
            "rollouts_per_epoch": per_epoch,
            "n_train_prompts": n_train, "n_eval_prompts": n_eval, "total_steps": total,
            "minibatches_per_epoch": minibatches, "updates_per_step": p.ppo_epochs * minibatches,
            "total_updates": updates, "warmup_updates": math.ceil(cfg.optim.warmup_ratio * updates),
            "max_prompt_tokens": cfg.model.max_length - p.max_new_tokens,
            "tokens_per_step": samples * p.max_new_tokens}


def summarize(step: int, last: dict, win: dict, best: dict, completed: bool = False) -> dict:
    out: dict = {"step": step}
    if completed:
        out["final_model"] = "checkpoints/final"
    out.update(M.keyed(M.TRAIN, last, (M.SCORES, M.KL, M.GOLD_SCORE, M.RESPONSE_LENGTH)))
    out.update(M.keyed(M.eval_split(M.WIN), win, (M.WIN_RATE, M.WIN_RATE_SE, M.WIN_RATE_N)))
    if best["step"]:
        out.update(best_checkpoint="checkpoints/best", best_step=best["step"], best_win_rate=best["win_rate"])
    return out


def main() -> None:
    with run_process() as ctx:
        ctx.outcome = train(ctx)


if __name__ == "__main__":
    main()
