"""Reward-model training: Bradley-Terry and its variants, or APLOT's optimal-transport margin.

Started by the run service (`engine.runs.lifecycle`) (never by hand, though it can be):

    accelerate launch [--multi_gpu] [--num_processes N] [--mixed_precision bf16] \
        [--config_file ds_or_fsdp.yaml] -m engine.rm.train --run-dir runs/<id> [--resume]

Reads top to bottom: data → tokenizer and model → resolved sizes → loop (forward chosen and
rejected together, margin, loss, step) → eval → checkpoint. Data order is a pure function of
(seed, step): micro-batch k of the run is slice k of epoch k // per_epoch's seeded permutation,
and rank r takes its share of it. That makes resume exact without pickled sampler state.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from engine import config as config_mod
from engine import metrics as M
from engine.analysis import bias_checks as D
from engine.analysis import predictions
from engine.analysis import rewardbench as RB
from engine.data import sets as data_sets
from engine.data import token_cache
from engine.data.pairs import PairDataset, collate_pairs
from engine.data.rows import DataError
from engine.lr_schedule import adamw, lr_scheduler
from engine.models import SentenceEncoder, build_reward_model, load_tokenizer, n_params
from engine.packing import row_multiple
from engine.rm.losses import bt_loss, length_terms, pair_stats, rm_loss
from engine.rm.ot_margin import aplot_margin, global_margin
from engine.rm.shared_prompt import pack_pairs, shared_prompt_forward, shared_prompt_supported
from engine.runs import status as S
from engine.runs import store as mf
from engine.runtime import RunContext, StopDuringEval, TrainingError, run_process

HIST_POINTS = 256  # (margin, gap) pairs kept per eval set for the margin panel


# ---------------------------------------------------------------------------- data


def load_data(cfg: config_mod.Config, runs_root=None):
    """Train pairs, named eval sets, the sha256 of every source read (for provenance), and the rows
    skipped for an empty response, per data set. No train source (an eval run) gives no train pairs.
    The preflight read every set before the run existed; with the run store `runs_root` its parse is
    read back from the row cache."""
    try:
        data = data_sets.read(cfg, runs_root)
    except DataError as e:
        raise TrainingError(str(e)) from None
    return data.train, data.evals, data.hashes, data.skipped


def pair_datasets(ctx: RunContext, tokenizer, named: dict[str, list]) -> dict[str, PairDataset]:
    """Every data set tokenised (or read back from the store's token cache), with its truncation
    counts said at start and frozen into [resolved] by the caller."""
    m = ctx.cfg.model
    cache = token_cache.cache_root(ctx.paths.dir.parent)
    out = {name: PairDataset(pairs, tokenizer, m.max_length, m.prompt_share, cache) for name, pairs in named.items()}
    for name, ds in out.items():
        ctx.accelerator.print(f"[aplot] data {name}: {len(ds)} pairs, {ds.truncated} truncated to "
                              f"{m.max_length} tokens ({ds.no_prompt} with no prompt left)"
                              + (", tokens from the cache" if ds.cached else ""))
    return out


def data_counts(datasets: dict[str, PairDataset], skipped: dict[str, int]) -> dict:
    """Per data set: pairs truncated to max_length, pairs left with no prompt, rows skipped as empty."""
    return {"truncated_pairs": {k: int(v.truncated) for k, v in datasets.items()},
            "no_prompt_pairs": {k: int(v.no_prompt) for k, v in datasets.items()},
            "skipped_empty_pairs": dict(skipped)}


def micro_batch_indices(step: int, k: int, resolved: dict, seed: int, rank: int, bs: int) -> np.ndarray:
    """Dataset indices of micro-batch k of optimizer step `step` (1-based) on `rank`."""
    per_epoch = resolved["micro_batches_per_epoch"]
    global_idx = (step - 1) * (resolved["effective_batch"] // resolved["pairs_per_micro_batch"]) + k
    epoch, pos = divmod(global_idx, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(resolved["n_train_pairs"])
    start = pos * resolved["pairs_per_micro_batch"] + rank * bs
    # the epoch's last micro-batch is topped up from the epoch's start: every rank holds `bs` pairs
    return order[np.arange(start, start + bs) % resolved["n_train_pairs"]]


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


def length_debias(ctx: RunContext, r_c, r_r, lengths):
    """`loss.length` for this micro-batch: (penalty surrogate, pair weights, stats), each None/{}
    when off. Global scope sums over all ranks with one all-reduce, as the margin gathers."""
    cfg, acc = ctx.cfg.loss.length, ctx.accelerator
    if cfg.scope == "global" and acc.num_processes > 1:
        return length_terms(cfg, r_c, r_r, lengths, lambda x: acc.reduce(x, reduction="sum"), acc.num_processes)
    return length_terms(cfg, r_c, r_r, lengths)


# ---------------------------------------------------------------------------- eval


def eval_loader(acc, dataset: PairDataset, batch_size: int, pad_id: int):
    """This rank's share of an eval set, for any world size and any set size (even one pair).

    Accelerate's even batches: every rank runs the same number of same-sized forwards (the last global
    batch is topped up from the set's start, so DDP, FSDP and DeepSpeed collectives line up), and
    `gather_for_metrics` drops the top-up again, leaving every pair exactly once, in set order.
    """
    from accelerate.data_loader import prepare_data_loader
    from torch.utils.data import DataLoader

    def collate(idx: list[int]):
        return collate_pairs([dataset[i] for i in idx], pad_id), torch.tensor(idx)

    loader = DataLoader(range(len(dataset)), batch_size=batch_size, shuffle=False, collate_fn=collate)
    return prepare_data_loader(loader, acc.device, acc.num_processes, acc.process_index, put_on_device=True,
                               even_batches=True)


@torch.no_grad()
def evaluate(ctx: RunContext, model, dataset: PairDataset, pairs: list, pad_id: int, encoder, *,
             name: str | None = None, step: int | None = None, share: bool = False) -> tuple[dict, list[dict]]:
    """(accuracy, BT loss, reward gap and diagnostics; the hardest pairs) over one eval set, every
    pair counted once.

    The same on any number of ranks: the gathered rewards are put back in set order before anything
    is computed from them, including the margin, which is solved on fixed chunks of that order.
    With `share` each rank packs its own batch into [prompt | chosen | rejected] rows (as training
    does), so the sharding and the numbers are the plain forward's, at about half the tokens.
    Given the set's `name` and the `step`, the main process also keeps every pair's rewards
    (`engine.analysis.predictions`), so runs can later be compared pair by pair.
    """
    acc, cfg = ctx.accelerator, ctx.cfg
    aplot = cfg.kind == "rm" and cfg.loss.type == "aplot"  # an eval run scores; it has no margin to show
    model.eval()
    parts: list[tuple] = []
    for batch, idx in eval_loader(acc, dataset, cfg.eval.batch_size, pad_id):
        ctx.stop_between_eval_batches()
        n = len(idx)
        with acc.autocast():
            if share:
                packed = pack_pairs(batch, pad_id, row_multiple(acc.device))
                rewards, hidden = shared_prompt_forward(model, packed)  # [2n], [2n, H]
            else:
                rewards, hidden = model(batch["input_ids"], batch["attention_mask"])  # [2n], [2n, H]
        lens = batch["lengths"].view(2, n).T.contiguous()  # [n, 2]: chosen, rejected
        mine = (rewards[:n].float(), rewards[n:].float(), lens, idx)
        if aplot:
            mine += (hidden[:n].float(), hidden[n:].float())
        parts.append(acc.gather_for_metrics(mine))
    model.train()
    cols = [torch.cat(c) for c in zip(*parts, strict=True)]
    order = cols[3].cpu()
    if not torch.equal(order.sort().values, torch.arange(len(dataset))):  # never a dropped or doubled pair
        raise TrainingError(f"eval: gathered {len(order)} rows for {len(dataset)} pairs on "
                            f"{acc.num_processes} ranks")
    sort = order.argsort()
    cols = [c[sort.to(c.device)] for c in cols]
    r_c, r_r, lens = cols[0].cpu(), cols[1].cpu(), cols[2].cpu().numpy()
    try:
        nway = RB.nway_metrics(pairs, r_c.numpy(), r_r.numpy()) if pairs and pairs[0].item is not None else None
    except ValueError as e:  # RewardBench 2's Ties subset with ids it cannot pair
        raise TrainingError(f"eval {name}: {e}") from None
    if name is not None and step is not None and ctx.is_main:
        if nway:  # an N-way set is compared item by item: one outcome an item
            predictions.write_items(ctx.paths.dir, name, step, *RB.item_columns(nway[1]))
        else:
            predictions.write(ctx.paths.dir, name, step, r_c.numpy(), r_r.numpy(), order[sort].numpy())
        labels = [i.subset for i in nway[1]] if nway else [p.subset for p in pairs]
        if any(label is not None for label in labels):  # so compare can give each subset its interval
            predictions.write_labels(ctx.paths.dir, name, labels)
    stats = pair_stats(r_c, r_r)
    gap = r_c - r_r
    out = {M.ACCURACY: stats[M.ACCURACY], M.LOSS: float(bt_loss(r_c, r_r).mean()), M.REWARD_GAP: stats[M.REWARD_GAP],
           M.N_PAIRS: int(len(r_c))}
    m = None
    if aplot:
        m = eval_margins(cfg, r_c, r_r, cols[4].cpu(), cols[5].cpu(), pairs, encoder)
        sel = torch.randperm(len(gap), generator=torch.Generator().manual_seed(0))[:HIST_POINTS]
        out[M.MARGIN_MEAN] = float(m.mean())
        out[M.MARGIN_HIST] = [round(float(x), 4) for x in m[sel]]
        out[M.GAP_HIST] = [round(float(x), 4) for x in gap[sel]]
    # what the accuracy hides: length bias, calibration, and the pairs it gets most wrong
    rc_np, rr_np = r_c.numpy(), r_r.numpy()
    out.update(D.diagnostics(rc_np, rr_np, lens[:, 0], lens[:, 1]))
    out.update(D.subset_accuracy([p.subset for p in pairs], rc_np, rr_np))
    if nway:  # accuracy is per item (RewardBench 2's rule), per subset too; the pairs' own beside it
        out[M.PAIR_ACCURACY] = out[M.ACCURACY]
        out.update(nway[0])
    hard = D.hard_pair_records(pairs, rc_np, rr_np, m.numpy() if m is not None else None, k=cfg.eval.hard_pairs,
                               len_c=lens[:, 0], len_r=lens[:, 1],
                               truncated=[item["truncated"] for item in dataset.items]) \
        if cfg.eval.hard_pairs and ctx.is_main else []
    return out, hard


def eval_margins(cfg, r_c, r_r, h_c, h_r, pairs: list, encoder) -> torch.Tensor:
    """The margin the loss would give each eval pair (a diagnostic), solved on consecutive chunks of
    `eval.batch_size` pairs in set order, so it does not depend on how the set was sharded."""
    bs, out = cfg.eval.batch_size, []
    for s in range(0, len(r_c), bs):
        chunk = slice(s, s + bs)
        texts = ([p.chosen for p in pairs[chunk]], [p.rejected for p in pairs[chunk]])
        e_c, e_r = representations(cfg.loss.aplot, h_c[chunk], h_r[chunk], texts, encoder)
        out.append(aplot_margin(r_c[chunk], r_r[chunk], e_c.to(r_c.device), e_r.to(r_c.device), cfg.loss.aplot)[0])
    return torch.cat(out).float()


def due(eval_sets: dict, final_only: list, final: bool) -> dict:
    """The sets an eval at this point scores: every one at the end, the others in between (a curve drawn
    on a small set every few steps, the large test sets once)."""
    return eval_sets if final else {k: v for k, v in eval_sets.items() if k not in final_only}


def run_evals(ctx, model, eval_sets, eval_pairs, pad_id, encoder, step, share: bool = False,
              final: bool = False) -> dict[str, dict]:
    scored = {name: evaluate(ctx, model, ds, eval_pairs[name], pad_id, encoder, name=name, step=step, share=share)
              for name, ds in due(eval_sets, ctx.cfg.eval.final_only, final).items()}
    for name, (result, hard) in scored.items():  # logged once every set is scored: a stopped eval leaves no trace
        ctx.log(step, M.eval_split(name), result)
        if ctx.is_main and hard:
            D.append_hard_pairs(ctx.paths.hard_pairs, step, name, hard)
    return {name: result for name, (result, _) in scored.items()}


# ---------------------------------------------------------------------------- main


def train(ctx: RunContext) -> tuple[str, dict]:
    cfg, acc = ctx.cfg, ctx.accelerator
    say = acc.print

    # 1. data, tokenizer, model
    train_pairs, eval_pairs, hashes, skipped = load_data(cfg, ctx.paths.dir.parent)
    texts = [p.prompt + p.chosen for p in train_pairs[:5000]] + [p.rejected for p in train_pairs[:5000]]
    tokenizer = load_tokenizer(cfg.model, texts, save_dir=ctx.paths.dir / "tokenizer") if acc.is_main_process \
        else None
    acc.wait_for_everyone()
    if tokenizer is None:
        tokenizer = load_tokenizer(cfg.model, texts, save_dir=ctx.paths.dir / "tokenizer")
    model = build_reward_model(cfg.model, tokenizer, seed=cfg.seed)
    eval_sets = pair_datasets(ctx, tokenizer, {"train": train_pairs, **eval_pairs})
    train_ds = eval_sets.pop("train")
    pad_id = tokenizer.pad_token_id
    encoder = SentenceEncoder(cfg.loss.aplot.encoder) if (
        cfg.loss.type == "aplot" and cfg.loss.aplot.embedding == "encoder") else None

    # 2. derived sizes, computed once and frozen into the manifest
    saved = ctx.saved_state()
    if saved is not None:
        rebatch_for_resume(ctx, saved)
    resolved = config_mod.resolve(cfg, len(train_ds), acc.num_processes)
    resolved.update({"n_params": n_params(model), **data_counts({"train": train_ds, **eval_sets}, skipped),
                     **{f"n_eval_{k}": len(v) for k, v in eval_sets.items()}})
    total, accum, bs = resolved["total_steps"], cfg.optim.grad_accum, cfg.optim.batch_size

    # 3. optimizer and schedule
    optimizer = adamw(model, cfg.optim.weight_decay, cfg.optim.lr)
    scheduler = lr_scheduler(cfg.optim.scheduler, optimizer, resolved["warmup_steps"], total)
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

    def checkpoint(step: int, eval_pending: bool = False) -> None:
        ctx.save(step, {"best": best, "effective_batch": resolved["effective_batch"], "eval_pending": eval_pending})

    def evals(step: int, final: bool = False) -> dict | None:
        """The evals of `step`, or None when a stop arrived during them (then checkpointed as pending)."""
        try:
            out = run_evals(ctx, model, eval_sets, eval_pairs, pad_id, encoder, step, share, final=final)
        except StopDuringEval:
            say(f"[aplot] stop during the eval at step {step}: checkpointed; the eval runs first on resume")
            checkpoint(step, eval_pending=True)
            return None
        maybe_best(step, out)
        return out

    def maybe_best(step: int, results: dict) -> None:
        if not results:
            return
        name = M.HELDOUT if M.HELDOUT in results else next(iter(results))
        if results[name][M.ACCURACY] > best["accuracy"]:
            best.update(accuracy=results[name][M.ACCURACY], step=step, set=name)
            ctx.export_model(model, tokenizer, "best")

    # 5. the loop (first the eval a stop interrupted, if any; the final one is the end's)
    model.train()
    step, results, last_train = start_step - 1, {}, {}
    if state is not None and state.get("eval_pending") and step < total:
        if (results := evals(step)) is None:
            return S.STOPPED, summarize(step, {}, best, last_train)  # nothing scored since the resume
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
                    packed = pack_pairs(batch, pad_id, row_multiple(acc.device))
                    rewards, hidden = shared_prompt_forward(model, packed)            # [2n], [2n, H]
                else:
                    rewards, hidden = model(batch["input_ids"].to(acc.device),
                                            batch["attention_mask"].to(acc.device))  # [2n], [2n, H]
                r_c, r_r = rewards[:n].float(), rewards[n:].float()                  # [n], [n]
                pair_texts = ([train_pairs[i].chosen for i in idx], [train_pairs[i].rejected for i in idx])
                margin, stats = compute_margin(ctx, step, r_c, r_r, hidden[:n], hidden[n:], pair_texts, encoder)
                penalty, weights, length_stats = length_debias(ctx, r_c, r_r, batch["lengths"])  # [], [n]
                stats = {**stats, **length_stats}
                loss, _ = rm_loss(cfg.loss, r_c, r_r, dataset_margin=batch["margin"].to(acc.device),
                                  aplot_margin=margin, pair_weights=weights, length_penalty=penalty)
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
            if (scored := evals(step)) is None:
                return S.STOPPED, summarize(step, results, best, last_train)
            results = scored
        if ctx.stop_requested:
            checkpoint(step)
            return S.STOPPED, summarize(step, results, best, last_train)
        if cfg.checkpoint.every and step % cfg.checkpoint.every == 0 and step != total:
            checkpoint(step)

    # 6. the end: final eval, resumable state, exported model
    if eval_sets:
        if (scored := evals(step, final=True)) is None:
            return S.STOPPED, summarize(step, results, best, last_train)
        results = scored
    checkpoint(step)
    ctx.export_model(model, tokenizer, "final")
    return S.COMPLETED, summarize(step, results, best, last_train, completed=True)


def rebatch_for_resume(ctx: RunContext, saved: dict) -> None:
    """Resume on another number of ranks (a node lost, a bigger box found): keep the effective batch
    and the data order, and give each rank `effective_batch / (ranks × grad_accum)` pairs.

    The continuation sees the same pairs in the same steps, but the sums run in another order (and a
    local OT margin sees other batches), so it is no longer bit-exact; the manifest says so.
    """
    acc, optim = ctx.accelerator, ctx.cfg.optim
    was, now = saved.get("world_size", acc.num_processes), acc.num_processes
    effective = saved.get("effective_batch") or ctx.manifest.get("resolved", {}).get("effective_batch")
    if effective == optim.batch_size * now * optim.grad_accum:
        return  # the same shape as the checkpoint (or as an earlier rebatched resume)
    per_rank, rest = divmod(effective or 0, now * optim.grad_accum)
    if not effective or rest or per_rank == 0:
        raise TrainingError(f"resume: the checkpoint was trained on {was} ranks with {effective} pairs a step, "
                            f"which {now} ranks × grad_accum {optim.grad_accum} cannot split evenly; resume "
                            f"with launch.num_processes={was} (`aplot resume RUN launch.num_processes={was}`)")
    note = (f"step {saved['step'] + 1}: resumed on {now} ranks (was {was}), batch_size {optim.batch_size} → "
            f"{per_rank} per rank, same {effective} pairs a step; not bit-exact from here")
    if was == now:  # a later resume of a run already rebatched: same shape again, nothing new to say
        optim.batch_size = per_rank
        return
    acc.print(f"[aplot] warning: {note}")
    if ctx.is_main:
        mf.update(ctx.paths, world_size_changes=[*ctx.manifest.get("world_size_changes", []), note])
    optim.batch_size = per_rank


def summarize(step: int, results: dict, best: dict, last_train: dict, completed: bool = False) -> dict:
    """[summary]: last train values, last eval values, the best checkpoint and the exported model."""
    out: dict = {"step": step}
    if completed:
        out["final_model"] = "checkpoints/final"
    out.update(M.keyed(M.TRAIN, last_train, (M.LOSS, M.ACCURACY, M.REWARD_GAP, M.MARGIN_MEAN)))
    for name, r in results.items():
        out.update(M.keyed(M.eval_split(name), r, (M.ACCURACY, M.LOSS)))
    if best["step"]:
        out.update(best_checkpoint="checkpoints/best", best_step=best["step"], best_accuracy=best["accuracy"])
    return out


def main() -> None:
    with run_process() as ctx:
        ctx.outcome = train(ctx)


if __name__ == "__main__":
    main()
