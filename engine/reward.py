"""Reward-model training: Bradley-Terry and its variants, or APLOT's optimal-transport margin.

Started by the supervisor (never by hand, though it can be):

    accelerate launch [--multi_gpu] [--num_processes N] [--mixed_precision bf16] \
        [--config_file ds_or_fsdp.yaml] -m engine.reward --run-dir runs/<id> [--resume]

Reads top to bottom: data → tokenizer and model → resolved sizes → loop (forward chosen and
rejected together, margin, loss, step) → eval → checkpoint. Data order is a pure function of
(seed, step): micro-batch k of the run is slice k of epoch k // per_epoch's seeded permutation,
and rank r takes its share of it. That makes resume exact without pickled sampler state.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from transformers import get_scheduler

from engine import config as config_mod
from engine import diagnostics as D
from engine import metrics as M
from engine.data import DataError, PairDataset, collate_pairs, load_pairs, split_eval, synthetic_pairs
from engine.losses import bt_loss, pair_stats, rm_loss
from engine.models import SentenceEncoder, build_reward_model, load_tokenizer, n_params
from engine.ot_margin import aplot_margin, global_margin
from engine.runtime import RunContext, TrainingError, run_main
from engine.shared_prompt import pack_pairs, shared_prompt_forward, shared_prompt_supported

HIST_POINTS = 256  # (margin, gap) pairs kept per eval set for the margin panel


# ---------------------------------------------------------------------------- data


def load_data(cfg: config_mod.Config):
    """Train pairs, named eval sets, and the sha256 of every file read (for provenance)."""
    d = cfg.data
    try:
        if d.train == "synthetic":
            train = synthetic_pairs(d.synthetic_pairs, cfg.seed, d.label_noise)
        else:
            train = load_pairs(d.train)
        train_pairs, heldout = split_eval(train.pairs, d.eval_fraction, cfg.seed)
        evals = {M.HELDOUT: heldout} if heldout else {}
        hashes = {"train": train.sha256}
        for name, path in d.eval.items():
            res = load_pairs(path)
            evals[name] = res.pairs
            hashes[name] = res.sha256
    except DataError as e:
        raise TrainingError(str(e)) from None
    if d.max_train_pairs:
        train_pairs = train_pairs[: d.max_train_pairs]
    if d.max_eval_pairs:
        evals = {k: v[: d.max_eval_pairs] for k, v in evals.items()}
    return train_pairs, {k: v for k, v in evals.items() if v}, hashes, train.skipped_empty


def micro_batch_indices(step: int, k: int, resolved: dict, seed: int, rank: int, bs: int) -> np.ndarray:
    """Dataset indices of micro-batch k of optimizer step `step` (1-based) on `rank`."""
    per_epoch = resolved["micro_batches_per_epoch"]
    global_idx = (step - 1) * (resolved["effective_batch"] // resolved["pairs_per_micro_batch"]) + k
    epoch, pos = divmod(global_idx, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(resolved["n_train_pairs"])
    start = pos * resolved["pairs_per_micro_batch"] + rank * bs
    return order[start:start + bs]


# ---------------------------------------------------------------------------- margin


def representations(aplot_cfg, h_c, h_r, texts, encoder):
    """e⁺, e⁻ for the semantic cost: the RM's pooled hidden states, or the cached sentence encoder's."""
    if aplot_cfg.embedding == "encoder":
        return encoder.encode(texts[0]).to(h_c.device), encoder.encode(texts[1]).to(h_c.device)
    return h_c.detach().float(), h_r.detach().float()


def compute_margin(ctx: RunContext, step: int, r_c, r_r, h_c, h_r, texts, encoder):
    """APLOT margin for this micro-batch (zeros with empty stats when the loss has none)."""
    cfg = ctx.cfg.loss
    if cfg.type != "aplot":
        return None, {}
    if step <= cfg.aplot.warmup_steps:  # plain BT first: the rewards are not yet worth a margin
        return torch.zeros_like(r_c), {}
    e_c, e_r = representations(cfg.aplot, h_c, h_r, texts, encoder)
    if cfg.aplot.ot_scope == "global" and ctx.accelerator.num_processes > 1:
        return global_margin(ctx.accelerator, r_c.detach().float(), r_r.detach().float(), e_c, e_r, cfg.aplot)
    return aplot_margin(r_c.detach().float(), r_r.detach().float(), e_c, e_r, cfg.aplot)


# ---------------------------------------------------------------------------- eval


@torch.no_grad()
def evaluate(ctx: RunContext, model, dataset: PairDataset, pairs: list, pad_id: int, encoder) -> dict:
    """Accuracy, BT loss and reward gap over one eval set, sharded across ranks then gathered."""
    acc, cfg = ctx.accelerator, ctx.cfg
    model.eval()
    idx = np.arange(len(dataset))[acc.process_index::acc.num_processes]
    n_batches = math.ceil(len(dataset) / (cfg.eval.batch_size * acc.num_processes))
    chosen, rejected, margins, lengths, order = [], [], [], [], []
    for b in range(n_batches):  # the same count on every rank, so gathers line up
        part = idx[b * cfg.eval.batch_size:(b + 1) * cfg.eval.batch_size]
        if len(part) == 0:
            part = idx[:1]  # pad this rank with a duplicate; dropped after the gather
        batch = collate_pairs([dataset[i] for i in part], pad_id)
        n = len(part)
        with acc.autocast():
            rewards, hidden = model(batch["input_ids"].to(acc.device), batch["attention_mask"].to(acc.device))
        r_c, r_r = rewards[:n].float(), rewards[n:].float()
        if cfg.loss.type == "aplot":
            texts = ([pairs[i].chosen for i in part], [pairs[i].rejected for i in part])
            m, _ = compute_margin_eval(cfg, r_c, r_r, hidden[:n], hidden[n:], texts, encoder)
        else:
            m = torch.zeros_like(r_c)
        valid = torch.tensor([b * cfg.eval.batch_size + j < len(idx) for j in range(n)], device=acc.device)
        keep = acc.gather(valid)
        chosen.append(acc.gather(r_c)[keep])
        rejected.append(acc.gather(r_r)[keep])
        margins.append(acc.gather(m.float())[keep])
        lengths.append(acc.gather(batch["lengths"].to(acc.device).view(2, n).T.contiguous())[keep])  # [n, 2]
        order.append(acc.gather(torch.as_tensor(part, device=acc.device))[keep])  # dataset index of each row
    model.train()
    r_c, r_r, m = torch.cat(chosen), torch.cat(rejected), torch.cat(margins)
    lens, order = torch.cat(lengths).cpu().numpy(), torch.cat(order).cpu().numpy()
    stats = pair_stats(r_c, r_r)
    gap = (r_c - r_r)
    out = {M.ACCURACY: stats[M.ACCURACY], M.LOSS: float(bt_loss(r_c, r_r).mean()), M.REWARD_GAP: stats[M.REWARD_GAP],
           "n_pairs": int(len(r_c))}
    if cfg.loss.type == "aplot":
        sel = torch.randperm(len(gap), generator=torch.Generator().manual_seed(0))[:HIST_POINTS]
        out[M.MARGIN_MEAN] = float(m.mean())
        out[M.MARGIN_HIST] = [round(float(x), 4) for x in m[sel]]
        out[M.GAP_HIST] = [round(float(x), 4) for x in gap[sel]]
    # what the accuracy hides: length bias, calibration, and the pairs it gets most wrong
    rc_np, rr_np = r_c.cpu().numpy(), r_r.cpu().numpy()
    out.update(D.diagnostics(rc_np, rr_np, lens[:, 0], lens[:, 1]))
    hard = D.hard_pair_records([pairs[i] for i in order], rc_np, rr_np,
                               m.cpu().numpy() if cfg.loss.type == "aplot" else None, k=cfg.eval.hard_pairs,
                               len_c=lens[:, 0], len_r=lens[:, 1]) if cfg.eval.hard_pairs else []
    return out, hard


def compute_margin_eval(cfg, r_c, r_r, h_c, h_r, texts, encoder):
    """The margin the loss would give these pairs (per eval batch, no gather: diagnostics only)."""
    e_c, e_r = representations(cfg.loss.aplot, h_c, h_r, texts, encoder)
    return aplot_margin(r_c, r_r, e_c, e_r, cfg.loss.aplot)


def run_evals(ctx, model, eval_sets, eval_pairs, pad_id, encoder, step) -> dict[str, dict]:
    results = {}
    for name, ds in eval_sets.items():
        results[name], hard = evaluate(ctx, model, ds, eval_pairs[name], pad_id, encoder)
        ctx.log(step, M.eval_split(name), results[name])
        if ctx.is_main and hard:
            D.append_hard_pairs(ctx.paths.hard_pairs, step, name, hard)
    return results


# ---------------------------------------------------------------------------- main


def train(ctx: RunContext) -> tuple[str, dict]:
    cfg, acc = ctx.cfg, ctx.accelerator
    say = acc.print

    # 1. data, tokenizer, model
    train_pairs, eval_pairs, hashes, skipped = load_data(cfg)
    texts = [p.prompt + p.chosen for p in train_pairs[:5000]] + [p.rejected for p in train_pairs[:5000]]
    tokenizer = load_tokenizer(cfg.model, texts, save_dir=ctx.paths.dir / "tokenizer") if acc.is_main_process \
        else None
    acc.wait_for_everyone()
    if tokenizer is None:
        tokenizer = load_tokenizer(cfg.model, texts, save_dir=ctx.paths.dir / "tokenizer")
    model = build_reward_model(cfg.model, tokenizer, seed=cfg.seed)
    train_ds = PairDataset(train_pairs, tokenizer, cfg.model.max_length)
    eval_sets = {k: PairDataset(v, tokenizer, cfg.model.max_length) for k, v in eval_pairs.items()}
    pad_id = tokenizer.pad_token_id
    encoder = SentenceEncoder(cfg.loss.aplot.encoder) if (
        cfg.loss.type == "aplot" and cfg.loss.aplot.embedding == "encoder") else None

    # 2. derived sizes, computed once and frozen into the manifest
    resolved = config_mod.resolve(cfg, len(train_ds), acc.num_processes)
    resolved.update({"n_params": n_params(model), "skipped_empty_pairs": skipped,
                     **{f"n_eval_{k}": len(v) for k, v in eval_sets.items()}})
    total, accum, bs = resolved["total_steps"], cfg.optim.grad_accum, cfg.optim.batch_size

    # 3. optimizer and schedule
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.optim.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.optim.lr)
    scheduler = get_scheduler(cfg.optim.scheduler, optimizer, num_warmup_steps=resolved["warmup_steps"],
                              num_training_steps=total)
    model, optimizer, scheduler = acc.prepare(model, optimizer, scheduler)
    share = False
    if cfg.model.share_prompt:  # one packed [prompt | chosen | rejected] row per pair instead of two rows
        share, why = shared_prompt_supported(model, cfg.model.max_length)
        say("[aplot] model.share_prompt: " + ("on" if share else f"plain two-row forward ({why})"))
    resolved["share_prompt"] = share

    # 4. resume
    best = {"accuracy": -1.0, "step": 0}
    start_step = 1
    state = ctx.resume_state()
    if state is not None:
        start_step = state["step"] + 1
        best = state.get("best", best)
    ctx.start(resolved, hashes)
    say(f"[aplot] {resolved['n_params']:,} params, {len(train_ds)} train pairs, "
        f"eval sets {[f'{k}:{len(v)}' for k, v in eval_sets.items()]}, {total} steps "
        f"of {resolved['effective_batch']} pairs on {acc.num_processes} process(es)")

    def checkpoint(step: int) -> None:
        ctx.save(step, {"best": best})

    def maybe_best(step: int, results: dict) -> None:
        if not results:
            return
        name = M.HELDOUT if M.HELDOUT in results else next(iter(results))
        if results[name][M.ACCURACY] > best["accuracy"]:
            best.update(accuracy=results[name][M.ACCURACY], step=step, set=name)
            ctx.export_model(model, tokenizer, "best")

    # 5. the loop
    model.train()
    step, results, last_train = start_step - 1, {}, {}
    for step in range(start_step, total + 1):
        t0 = time.perf_counter()
        rc_all, rr_all, losses, mstats, n_tokens = [], [], [], [], 0
        grad_norm, skipped = None, False
        for k in range(accum):
            idx = micro_batch_indices(step, k, resolved, cfg.seed, acc.process_index, bs)
            batch = collate_pairs([train_ds[i] for i in idx], pad_id)
            n = len(idx)
            with acc.accumulate(model), acc.autocast():
                if share:
                    packed = pack_pairs(batch, pad_id, 16 if acc.device.type == "cuda" else 1)
                    rewards, hidden = shared_prompt_forward(model, packed)            # [2n], [2n, H]
                else:
                    rewards, hidden = model(batch["input_ids"].to(acc.device),
                                            batch["attention_mask"].to(acc.device))  # [2n], [2n, H]
                r_c, r_r = rewards[:n].float(), rewards[n:].float()                  # [n], [n]
                pair_texts = ([train_pairs[i].chosen for i in idx], [train_pairs[i].rejected for i in idx])
                margin, stats = compute_margin(ctx, step, r_c, r_r, hidden[:n], hidden[n:], pair_texts, encoder)
                loss, _ = rm_loss(cfg.loss, r_c, r_r, dataset_margin=batch["margin"].to(acc.device),
                                  aplot_margin=margin)
                if ctx.nonfinite(loss, step, optimizer):
                    skipped = True
                    break
                acc.backward(loss)
                if acc.sync_gradients:
                    params = [p for p in model.parameters() if p.requires_grad]
                    if cfg.optim.max_grad_norm > 0:
                        grad_norm = acc.clip_grad_norm_(params, cfg.optim.max_grad_norm)
                    else:
                        grad_norm = torch.norm(torch.stack([p.grad.norm() for p in params if p.grad is not None]))
                optimizer.step()
                if acc.sync_gradients:
                    scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            rc_all.append(r_c.detach())
            rr_all.append(r_r.detach())
            losses.append(loss.detach())
            mstats.append(stats)
            n_tokens += int(batch["n_tokens"])

        # metrics: gathered over ranks, written by the main process only
        if skipped:  # no made-up values: the step is marked, its numbers are absent
            ctx.log(step, M.TRAIN, {M.SKIPPED_NONFINITE: 1, M.LEARNING_RATE: scheduler.get_last_lr()[0]})
        elif step % cfg.log.every == 0 or step == total:
            r_c = acc.gather(torch.cat(rc_all)) if rc_all else torch.zeros(1)
            r_r = acc.gather(torch.cat(rr_all)) if rr_all else torch.zeros(1)
            loss_mean = acc.reduce(torch.stack(losses).mean(), reduction="mean") if losses else torch.tensor(0.0)
            tokens = acc.reduce(torch.tensor(float(n_tokens), device=acc.device), reduction="sum")
            dt = time.perf_counter() - t0
            data = {M.LOSS: float(loss_mean), **pair_stats(r_c, r_r),
                    M.GRAD_NORM: float(grad_norm) if grad_norm is not None else float("nan"),
                    M.LEARNING_RATE: scheduler.get_last_lr()[0],
                    M.SAMPLES_PER_S: len(r_c) / dt, M.TOKENS_PER_S: float(tokens) / dt,
                    M.EPOCH: round((step * accum) / resolved["micro_batches_per_epoch"], 4)}
            if mstats and mstats[0]:
                data.update({k: float(np.mean([s[k] for s in mstats])) for k in mstats[0]})
            ctx.log(step, M.TRAIN, data)
            last_train = data

        if cfg.eval.every and step % cfg.eval.every == 0 and step != total and eval_sets:
            results = run_evals(ctx, model, eval_sets, eval_pairs, pad_id, encoder, step)
            maybe_best(step, results)
        if ctx.stop_requested:
            checkpoint(step)
            return "stopped", summarize(step, results, best, last_train)
        if cfg.checkpoint.every and step % cfg.checkpoint.every == 0 and step != total:
            checkpoint(step)

    # 6. the end: final eval, resumable state, exported model
    if eval_sets:
        results = run_evals(ctx, model, eval_sets, eval_pairs, pad_id, encoder, step)
        maybe_best(step, results)
    checkpoint(step)
    ctx.export_model(model, tokenizer, "final")
    return "completed", summarize(step, results, best, last_train, completed=True)


def summarize(step: int, results: dict, best: dict, last_train: dict, completed: bool = False) -> dict:
    """[summary]: last train values, last eval values, the best checkpoint and the exported model."""
    out: dict = {"step": step}
    if completed:
        out["final_model"] = "checkpoints/final"
    for key in (M.LOSS, M.ACCURACY, M.REWARD_GAP, M.MARGIN_MEAN):
        if key in last_train:
            out[f"train/{key}"] = last_train[key]
    for name, r in results.items():
        out[f"eval/{name}/accuracy"] = r[M.ACCURACY]
        out[f"eval/{name}/loss"] = r[M.LOSS]
    if best["step"]:
        out.update(best_checkpoint="checkpoints/best", best_step=best["step"], best_accuracy=best["accuracy"])
    return out


def main() -> None:
    run_main(train)


if __name__ == "__main__":
    main()
