"""Evaluate any reward model on named preference sets: a run of kind `eval`.

Started like training, by the run service (`aplot eval` builds the config):

    accelerate launch [...] -m engine.rm.evaluate --run-dir runs/<id>

`model.name` is an HF sequence-classification folder (a run's `checkpoints/best|final`, an `aplot
export`, or anyone's reward model). Each set goes through the RM trainer's own evaluation
(`engine.rm.train.evaluate`: sharded over the ranks, gathered, put back in set order), so an eval run
scores exactly as the training run's evals did and gives the same numbers on any world size.
A `subset` column adds accuracy per subset; `eval.sections` adds section scores and their mean.
"""

from __future__ import annotations

from engine import metrics as M
from engine.analysis import bias_checks as D
from engine.analysis import rewardbench as RB
from engine.analysis.sections import read_sections, section_scores
from engine.models import load_reward_model, n_params
from engine.rm.shared_prompt import shared_prompt_supported
from engine.rm.train import data_counts, evaluate, load_data, pair_datasets
from engine.runs import status as S
from engine.runtime import RunContext, TrainingError, run_process


def run_eval(ctx: RunContext) -> tuple[str, dict]:
    cfg, acc = ctx.cfg, ctx.accelerator
    sections = read_sections(cfg.eval.sections) if cfg.eval.sections else None
    _, eval_pairs, hashes, skipped = load_data(cfg, ctx.paths.dir.parent)
    if not eval_pairs:
        raise TrainingError("eval: no pairs to evaluate (data.eval is empty, or every set is)")
    if sections and not any(p.subset is not None for pairs in eval_pairs.values() for p in pairs):
        raise TrainingError("eval.sections: no eval set has a subset column (map yours with data.columns.subset)")
    try:
        model, tokenizer = load_reward_model(cfg.model.name, device=acc.device)
    except (OSError, ValueError) as e:
        raise TrainingError(f"model.name: cannot load a sequence-classification model from {cfg.model.name} "
                            f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if tokenizer.pad_token_id is None:  # someone else's decoder RM: pad with eos, pooling reads the mask
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    eval_sets = pair_datasets(ctx, tokenizer, eval_pairs)
    resolved = {"world_size": acc.num_processes, "n_params": n_params(model), "total_steps": 0,
                **data_counts(eval_sets, skipped), **{f"n_eval_{k}": len(v) for k, v in eval_sets.items()}}
    share = False
    if cfg.model.share_prompt:  # score each pair as one packed [prompt | chosen | rejected] row, as training does
        share, why = shared_prompt_supported(model, cfg.model.max_length)
        acc.print("[aplot] model.share_prompt: " + ("on" if share else f"plain two-row forward ({why})"))
    resolved["share_prompt"] = share
    ctx.start(resolved, hashes)
    summary: dict = {"step": 0}
    for name, ds in eval_sets.items():
        out, hard = evaluate(ctx, model, ds, eval_pairs[name], tokenizer.pad_token_id, None, name=name, step=0,
                             share=share)
        if sections and any(p.subset is not None for p in eval_pairs[name]):
            try:  # `rewardbench`: upstream's sections and weights, on the sets with its subsets (and no N-way rows)
                if cfg.eval.sections != RB.SUITE_V1:
                    out.update(section_scores(out, sections))
                elif RB.is_v1(eval_pairs[name]):
                    out.update(RB.v1_metrics(out))
            except ValueError as e:
                raise TrainingError(f"{e} ({name})") from None
        ctx.log(0, M.eval_split(name), out)
        if ctx.is_main and hard:
            D.append_hard_pairs(ctx.paths.hard_pairs, 0, name, hard)
        over = f"{out[M.N_ITEMS]} items ({out[M.N_PAIRS]} pairs)" if M.N_ITEMS in out else f"{out[M.N_PAIRS]} pairs"
        acc.print(f"[aplot] {name}: accuracy {out[M.ACCURACY]:.4f} over {over}"
                  + (f", sections mean {out[M.SECTIONS_MEAN]:.4f}" if M.SECTIONS_MEAN in out else ""))
        for key in (M.ACCURACY, M.LOSS, M.SECTIONS_MEAN):
            if key in out:
                summary[M.metric_key(M.eval_split(name), key)] = out[key]
    return S.COMPLETED, summary


def main() -> None:
    with run_process() as ctx:
        ctx.outcome = run_eval(ctx)


if __name__ == "__main__":
    main()
