"""DPO and its variants: a policy trained on preference pairs against its frozen start, no reward model.

Started by the run service (`engine.runs.lifecycle`) (never by hand, though it can be):

    accelerate launch [--multi_gpu] [--num_processes N] [--mixed_precision bf16] \
        [--config_file ds_or_fsdp.yaml] -m engine.dpo.train --run-dir runs/<id> [--resume]

Reads top to bottom: tokenizer → policy (`model.name`, a finished run's export folder, or `tiny` fitted
to the synthetic reference first) and its frozen copy, the reference → pairs (the RM's sources, or the
reference's own samples labelled by the synthetic rater) → resolved sizes → loop (reference log-probs
under no_grad, policy log-probs, implicit rewards, loss, step) → eval (implicit-reward accuracy per
eval set, the gold win-rate and KL on held-out prompts) → checkpoint. Data order is the RM's pure
function of (seed, step) (`engine.rm.train.micro_batch_indices`), so resume is exact.
"""

from __future__ import annotations

import hashlib
import json
import time

import numpy as np
import torch
from accelerate.utils import broadcast_object_list

from engine import config as config_mod
from engine import metrics as M
from engine.analysis import bias_checks as D
from engine.analysis import predictions
from engine.data import sets as data_sets
from engine.data import synthetic
from engine.data.pairs import collate_pairs
from engine.data.rows import LoadResult
from engine.dpo import losses as DL
from engine.dpo import sampling
from engine.dpo.logps import packed_response_logps, response_logps
from engine.lr_schedule import adamw, lr_scheduler
from engine.models import SentenceEncoder, add_lora, load_tokenizer, n_params
from engine.packing import causal_lm_supported, row_multiple
from engine.rl import policy as P
from engine.rm import train as rm_train
from engine.rm.losses import bt_loss
from engine.rm.shared_prompt import pack_pairs
from engine.runs import status as S
from engine.runtime import RunContext, StopDuringEval, TrainingError, run_process

REFERENCE = "reference"  # checkpoints/reference: the SFT-fitted start, kept for resume
REFERENCE_PAIRS = "reference_pairs.jsonl"  # dpo.pairs = "reference": the sampled, rated rows, kept for resume


# ---------------------------------------------------------------------------- set-up


def start_policy(ctx: RunContext, tok):
    """The policy's start, which is also the reference: `model.name` (tiny from the seed, a hub model or
    an exported run folder), fitted to the synthetic reference completions first with `dpo.sft_steps`.
    Every rank fits the same (seeded) model; the fit is exported once (checkpoints/reference) and every
    rank, and every resume, then loads that copy."""
    cfg, dev = ctx.cfg, ctx.accelerator.device
    ref_dir = ctx.paths.checkpoints / REFERENCE
    fitted = (ref_dir / "config.json").exists()
    ctx.accelerator.wait_for_everyone()  # every rank has looked before rank 0 can export it: all fit, or none
    if fitted:
        return P.load_causal_lm(ref_dir).to(dev)
    lm = P.build_causal_lm(cfg.model, tok, seed=cfg.seed)
    if not cfg.dpo.sft_steps:
        return lm.to(dev)
    prompts = synthetic.make_prompts(4096, cfg.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        losses = P.sft_fit(lm.to(dev), tok, prompts, synthetic.reference_completions(prompts, cfg.seed),
                           steps=cfg.dpo.sft_steps, batch_size=32, lr=cfg.optim.lr, max_length=cfg.model.max_length,
                           seed=cfg.seed, device=dev)
    ctx.accelerator.print(f"[aplot] SFT warm start: {cfg.dpo.sft_steps} steps, loss {losses[0]:.3f} → {losses[-1]:.3f}")
    ctx.export_model(lm, tok, REFERENCE)
    return P.load_causal_lm(ref_dir).to(dev)


def reference_data(ctx: RunContext, ref, tok, heldout: list[str]):
    """`dpo.pairs = "reference"`: the rows sampled and rated once by rank 0 (kept in the run folder, read
    back on resume), split like any train set; (train, eval sets, hashes, skipped)."""
    path = ctx.paths.dir / REFERENCE_PAIRS
    rows = [None]
    if ctx.is_main:
        if not path.exists():
            fresh = sampling.reference_pairs(ref, tok, ctx.cfg, set(heldout))
            path.write_text("".join(json.dumps(r) + "\n" for r in fresh))
        rows = [[json.loads(line) for line in path.read_text().splitlines()]]
    broadcast_object_list(rows)  # every rank the same rows, sampled once
    digest = hashlib.sha256(json.dumps(rows[0], sort_keys=True).encode()).hexdigest()
    sets = data_sets.assemble(ctx.cfg, {"train": LoadResult(sampling.as_pairs(rows[0]), 0, REFERENCE_PAIRS, digest,
                                                            "reference")})
    return sets.train, sets.evals, sets.hashes, sets.skipped


# ---------------------------------------------------------------------------- one batch


def implicit(ctx: RunContext, policy, ref, batch: dict, with_hidden: bool = False, share: bool = False):
    """(r⁺, r⁻, log π⁺, log π⁻ [n] each, the policy's last hidden states [2n, H] or None) of a [2n] pair
    batch; the reference's log-probs under no_grad, once per batch (none for SimPO, reference-free).
    `share`: both models read one packed [prompt | chosen | rejected] row per pair (`model.share_prompt`)."""
    dev, d = ctx.accelerator.device, ctx.cfg.dpo
    n = batch["input_ids"].shape[0] // 2
    if share:
        packed = pack_pairs(batch, 0, row_multiple(dev))  # pad columns see only themselves, never read: any id

        def logps(model, hidden=False):
            return packed_response_logps(model, packed, with_hidden=hidden)
    else:
        ids, mask, start = (batch[k].to(dev) for k in ("input_ids", "attention_mask", "prompt_len"))

        def logps(model, hidden=False):
            return response_logps(model, ids, mask, start, with_hidden=hidden)
    ref_c = ref_r = None
    if d.type != "simpo":
        with torch.no_grad():
            ref_logp, _, _ = logps(ref)  # [2n]
        ref_c, ref_r = ref_logp[:n], ref_logp[n:]
    logp, count, hidden = logps(policy, with_hidden)  # [2n], [2n], [2n, H]
    r_c, r_r = DL.implicit_rewards(d, logp[:n], logp[n:], ref_c, ref_r, count[:n], count[n:])
    return r_c, r_r, logp[:n], logp[n:], hidden


def pair_loss(ctx: RunContext, policy, ref, batch: dict, step: int, texts, encoder, share: bool = False):
    """The scalar loss of one micro-batch, its implicit rewards and log-probs, and the stats of its
    margin and length terms. `loss.length` acts on the implicit rewards as on an RM's rewards."""
    cfg, acc = ctx.cfg, ctx.accelerator
    aplot = cfg.dpo.type == "aplot"
    r_c, r_r, lp_c, lp_r, hidden = implicit(ctx, policy, ref, batch, with_hidden=aplot, share=share)
    n, margin, stats = len(r_c), None, {}
    if aplot:
        e_c, e_r = rm_train.representations(cfg.loss.aplot, hidden[:n], hidden[n:], texts, encoder)
        margin, stats = DL.ot_margin(cfg.loss.aplot, step, r_c, r_r, e_c, e_r, acc)
    per_pair = DL.dpo_loss(cfg.dpo, r_c, r_r, offset=batch["margin"].to(acc.device), aplot_margin=margin)
    penalty, weights, length_stats = rm_train.length_debias(ctx, r_c, r_r, batch["lengths"])
    return DL.weighted_mean(per_pair, weights, penalty), r_c, r_r, lp_c, lp_r, {**stats, **length_stats}


# ---------------------------------------------------------------------------- eval


@torch.no_grad()
def evaluate(ctx: RunContext, policy, ref, dataset, pairs: list, pad_id: int, name: str, step: int,
             share: bool = False) -> dict:
    """Implicit-reward accuracy and TRL's DPO metrics over one eval set, every pair once whatever the
    world size (`engine.rm.train.eval_loader`), each pair's implicit rewards kept as an RM eval keeps
    its rewards (`predictions/<set>/step-N.npy`), so compare's statistics read DPO runs as RM runs."""
    acc, cfg = ctx.accelerator, ctx.cfg
    policy.eval()
    parts = []
    for batch, idx in rm_train.eval_loader(acc, dataset, cfg.eval.batch_size, pad_id):
        ctx.stop_between_eval_batches()
        with acc.autocast():
            r_c, r_r, lp_c, lp_r, _ = implicit(ctx, policy, ref, batch, share=share)
        lens = batch["lengths"].view(2, len(idx)).T.contiguous()  # [n, 2]
        parts.append(acc.gather_for_metrics((r_c.float(), r_r.float(), lp_c.float(), lp_r.float(), lens, idx)))
    policy.train()
    cols = [torch.cat(c) for c in zip(*parts, strict=True)]
    order = cols[5].cpu()
    if not torch.equal(order.sort().values, torch.arange(len(dataset))):  # never a dropped or doubled pair
        raise TrainingError(f"eval: gathered {len(order)} rows for {len(dataset)} pairs on {acc.num_processes} ranks")
    sort = order.argsort()
    r_c, r_r, lp_c, lp_r, lens = (c[sort.to(c.device)].cpu() for c in cols[:5])
    if ctx.is_main:
        predictions.write(ctx.paths.dir, name, step, r_c.numpy(), r_r.numpy(), order[sort].numpy())
    out = {M.ACCURACY: float((r_c > r_r).float().mean()), M.LOSS: float(bt_loss(r_c, r_r).mean()),
           M.REWARD_GAP: float((r_c - r_r).mean()), M.N_PAIRS: len(r_c), **DL.dpo_stats(r_c, r_r, lp_c, lp_r)}
    rc, rr, lens = r_c.numpy(), r_r.numpy(), lens.numpy()
    out.update(D.diagnostics(rc, rr, lens[:, 0], lens[:, 1]))
    out.update(D.subset_accuracy([p.subset for p in pairs], rc, rr))
    return out


# ---------------------------------------------------------------------------- main


def train(ctx: RunContext) -> tuple[str, dict]:
    cfg, acc, d = ctx.cfg, ctx.accelerator, ctx.cfg.dpo
    say = acc.print
    saved = ctx.saved_state()
    if saved is not None:
        rm_train.rebatch_for_resume(ctx, saved)

    # 1. tokenizer, policy, its frozen reference
    pairs_from_data = d.pairs == "data"
    train_pairs, eval_pairs, hashes, skipped = rm_train.load_data(cfg, ctx.paths.dir.parent) if pairs_from_data \
        else ([], {}, {}, {})
    corpus = synthetic.corpus(cfg.seed) if cfg.data.train == "synthetic" else \
        [p.prompt + p.chosen for p in train_pairs[:5000]] + [p.rejected for p in train_pairs[:5000]]
    tok = load_tokenizer(cfg.model, corpus, ctx.paths.dir / "tokenizer") if ctx.is_main else None
    acc.wait_for_everyone()  # rank 0 trains (tiny) and saves it; the others read the saved copy
    tok = tok or load_tokenizer(cfg.model, corpus, ctx.paths.dir / "tokenizer")
    lm = start_policy(ctx, tok)
    ref = P.frozen_copy(lm)  # the start, before any adapter: LoRA's reference is its base, as it was
    if cfg.model.lora.r > 0:  # adapters on the policy only; step checkpoints then hold them alone
        lm = add_lora(lm, cfg.model, "CAUSAL_LM")

    # 2. pairs, and the held-out prompts of the win-rate
    heldout = sampling.heldout_prompts(d.eval_prompts) if d.judge == "gold" else []
    if not pairs_from_data:
        train_pairs, eval_pairs, hashes, skipped = reference_data(ctx, ref, tok, heldout)
    if d.type == "offset" and (lacking := sum(p.margin is None for p in train_pairs)):
        raise TrainingError(f"dpo.type = offset: {lacking} of {len(train_pairs)} training pairs have no `margin` "
                            "value (map your column with data.columns.margin)")
    eval_sets = rm_train.pair_datasets(ctx, tok, {"train": train_pairs, **eval_pairs})
    train_ds = eval_sets.pop("train")
    pad_id = tok.pad_token_id
    encoder = SentenceEncoder(cfg.loss.aplot.encoder) if (
        d.type == "aplot" and cfg.loss.aplot.embedding == "encoder") else None
    with acc.split_between_processes(heldout) as mine:  # uneven shares; a rank may get none
        heldout_local = list(mine)
    reference_texts = sampling.sample(ref, tok, heldout_local, cfg, seed=cfg.seed + 104729)[0] if heldout else []

    # 3. derived sizes, computed once and frozen into the manifest
    resolved = config_mod.resolve(cfg, len(train_ds), acc.num_processes)
    resolved.update({"n_params": n_params(lm), "n_trainable_params": n_params(lm, trainable_only=True),
                     "n_train_pairs": len(train_ds),
                     **{f"n_eval_{k}": len(v) for k, v in eval_sets.items()}, "n_heldout_prompts": len(heldout)})
    total, accum, bs = resolved["total_steps"], cfg.optim.grad_accum, cfg.optim.batch_size

    # 4. optimizer and schedule
    optimizer = adamw(lm, cfg.optim.weight_decay, cfg.optim.lr)
    scheduler = lr_scheduler(cfg.optim.scheduler, optimizer, resolved["warmup_steps"], total)
    policy, optimizer, scheduler = acc.prepare(lm, optimizer, scheduler)
    policy_lm = acc.unwrap_model(policy)  # samples and is exported
    share = False
    if cfg.model.share_prompt:  # one packed [prompt | chosen | rejected] row per pair, for policy and reference
        share, why = causal_lm_supported(policy_lm, cfg.model.max_length)
        say("[aplot] model.share_prompt: " + ("on" if share else f"plain two-row forward ({why})"))
    resolved["share_prompt"] = share

    # 5. resume
    state = ctx.resume_state()
    start_step = 1 if state is None else state["step"] + 1
    ctx.start(resolved, hashes)
    say(f"[aplot] {resolved['n_params']:,} policy params, {len(train_ds)} train pairs ({d.pairs}), eval sets "
        f"{[f'{k}:{len(v)}' for k, v in eval_sets.items()]}, {total} steps of {resolved['effective_batch']} pairs, "
        f"dpo.type {d.type}, β {d.beta}, on {acc.num_processes} process(es)")

    def run_evals(step: int, final: bool = False) -> dict:
        results = {name: evaluate(ctx, policy, ref, ds, eval_pairs[name], pad_id, name, step, share)
                   for name, ds in rm_train.due(eval_sets, cfg.eval.final_only, final).items()}
        for name, r in results.items():
            ctx.log(step, M.eval_split(name), r)
        if heldout:
            results[M.WIN] = sampling.win_rate_eval(ctx, policy_lm, ref, tok, heldout_local, reference_texts, step)
        return results

    def checkpoint(step: int, eval_pending: bool = False) -> None:
        ctx.save(step, {"effective_batch": resolved["effective_batch"], "eval_pending": eval_pending})

    def evals(step: int, final: bool = False) -> dict | None:
        """The evals of `step`, or None when a stop arrived during them (then checkpointed as pending)."""
        try:
            return run_evals(step, final)
        except StopDuringEval:
            say(f"[aplot] stop during the eval at step {step}: checkpointed; the eval runs first on resume")
            checkpoint(step, eval_pending=True)
            return None

    results = run_evals(0) if start_step == 1 and heldout else {}  # the start of the curve: ≈ 0.5, KL 0

    # 6. the loop (first the eval a stop interrupted, if any; the final one is the end's)
    policy.train()
    step, last_train = start_step - 1, {}
    if saved is not None and saved.get("eval_pending") and step < total:
        if (results := evals(step)) is None:
            return S.STOPPED, summarize(step, {}, last_train)  # nothing scored since the resume
    for step in range(start_step, total + 1):
        t0 = time.perf_counter()
        rows, losses, mstats, n_tokens, grad_norm, skipped_step = [], [], [], 0, None, False
        for k in range(accum):
            idx = rm_train.micro_batch_indices(step, k, resolved, cfg.seed, acc.process_index, bs)
            batch = collate_pairs([train_ds[i] for i in idx], pad_id)
            texts = ([train_pairs[i].chosen for i in idx], [train_pairs[i].rejected for i in idx])
            with acc.accumulate(policy), acc.autocast():
                loss, r_c, r_r, lp_c, lp_r, stats = pair_loss(ctx, policy, ref, batch, step, texts, encoder, share)
                if ctx.nonfinite(loss, step, optimizer):
                    skipped_step = True
                    break
                acc.backward(loss)
                if acc.sync_gradients:
                    params = [p for p in policy.parameters() if p.requires_grad]
                    grad_norm = acc.clip_grad_norm_(params, cfg.optim.max_grad_norm) if cfg.optim.max_grad_norm > 0 \
                        else torch.norm(torch.stack([p.grad.norm() for p in params if p.grad is not None]))
                optimizer.step()
                if acc.sync_gradients:
                    scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            rows.append(torch.stack([r_c, r_r, lp_c, lp_r]).detach().float())  # [4, n]
            losses.append(loss.detach())
            mstats.append(stats)
            n_tokens += int(batch["n_tokens"])

        # metrics: gathered over ranks, written by the main process only
        if skipped_step:
            ctx.log(step, M.TRAIN, {M.SKIPPED_NONFINITE: 1, M.LEARNING_RATE: scheduler.get_last_lr()[0]})
        elif step % cfg.log.every == 0 or step == total:
            r_c, r_r, lp_c, lp_r = acc.gather(torch.cat(rows, 1).T.contiguous()).T  # [4, world·n·accum]
            loss_mean = acc.reduce(torch.stack(losses).mean(), reduction="mean")
            tokens = acc.reduce(torch.tensor(float(n_tokens), device=acc.device), reduction="sum")
            dt = time.perf_counter() - t0
            data = {M.LOSS: float(loss_mean), **DL.dpo_stats(r_c, r_r, lp_c, lp_r),
                    M.GRAD_NORM: float(grad_norm) if grad_norm is not None else float("nan"),
                    M.LEARNING_RATE: scheduler.get_last_lr()[0], M.SAMPLES_PER_S: len(r_c) / dt,
                    M.TOKENS_PER_S: float(tokens) / dt,
                    M.EPOCH: round((step * accum) / resolved["micro_batches_per_epoch"], 4)}
            if mstats and mstats[0]:
                data.update({key: float(np.mean([s[key] for s in mstats])) for key in mstats[0]})
            ctx.log(step, M.TRAIN, data)
            last_train = data

        if cfg.eval.every and step % cfg.eval.every == 0 and step != total:
            if (scored := evals(step)) is None:
                return S.STOPPED, summarize(step, results, last_train)
            results = scored
        if ctx.stop_requested:
            checkpoint(step)
            return S.STOPPED, summarize(step, results, last_train)
        if cfg.checkpoint.every and step % cfg.checkpoint.every == 0 and step != total:
            checkpoint(step)

    # 7. the end: final evals, resumable state, exported policy
    if (scored := evals(step, final=True)) is None:
        return S.STOPPED, summarize(step, results, last_train)
    results = scored
    checkpoint(step)
    ctx.export_model(policy, tok, "final")
    return S.COMPLETED, summarize(step, results, last_train, completed=True)


def summarize(step: int, results: dict, last_train: dict, completed: bool = False) -> dict:
    """[summary]: the last train values, the last eval of each set and the win-rate, the exported policy."""
    out: dict = {"step": step}
    if completed:
        out["final_model"] = "checkpoints/final"
    out.update(M.keyed(M.TRAIN, last_train, (M.LOSS, M.REWARDS_ACCURACIES, M.REWARDS_MARGINS)))
    for name, r in results.items():
        out.update(M.keyed(M.eval_split(name), r, (M.ACCURACY, M.LOSS, M.WIN_RATE, M.WIN_RATE_SE, M.KL)))
    return out


def main() -> None:
    with run_process() as ctx:
        ctx.outcome = train(ctx)


if __name__ == "__main__":
    main()
