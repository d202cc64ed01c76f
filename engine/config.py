"""The run configuration: one typed field per setting, each with its default and one line of help.

That help string is the only copy: `aplot init`'s comments, the CLI's `aplot fields` listing and the
TUI's form labels are all generated from it. This module is torch-free so the UI can validate configs.
Derived values (world size, effective batch, total steps) are computed once in `resolve()` by the
trainer and frozen into the manifest's `[resolved]` table; nothing else recomputes them.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import glob
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_origin, get_type_hints

import tomli_w

from engine.errors import AplotError

PRESETS_DIR = Path(__file__).parent / "presets"
DATA_COLUMNS = ("prompt", "chosen", "rejected", "margin", "subset")  # what `[data] columns` maps onto


def f(default: Any, help: str, *, choices: tuple | None = None, gt: float | None = None,
      ge: float | None = None, le: float | None = None, lt: float | None = None) -> Any:
    """A config field: default, one-line help, and the simple checks validation applies."""
    meta = {"help": help, "choices": choices, "gt": gt, "ge": ge, "le": le, "lt": lt}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def sub(cls: type, help: str) -> Any:
    return field(default_factory=cls, metadata={"help": help})


# --------------------------------------------------------------------------- tables


@dataclass
class TinyModelConfig:
    hidden_size: int = f(64, "hidden width of the tiny model built from config", gt=0)
    num_layers: int = f(2, "transformer layers of the tiny model", gt=0)
    num_heads: int = f(4, "attention heads of the tiny model (must divide hidden_size)", gt=0)
    vocab_size: int = f(512, "vocabulary size of the tokenizer trained locally on the training text", ge=64)


@dataclass
class LoraConfig:
    r: int = f(0, "LoRA rank; 0 trains all weights", ge=0)
    alpha: int = f(16, "LoRA scaling alpha", gt=0)
    dropout: float = f(0.0, "LoRA dropout", ge=0, lt=1)
    target_modules: list = f([], "module names to adapt; empty = peft's default for the architecture")


@dataclass
class ModelSection:
    name: str = f("tiny", 'hub id, local path, or "tiny" (a small model built from config)')
    max_length: int = f(256, "tokens per prompt+response; the prompt is cut from the left", gt=8)
    prompt_share: float = f(0.25, "share of max_length the prompt keeps (if it is that long): longer responses "
                            "lose their end first; 0 = the prompt gets only what the responses leave", ge=0, le=0.9)
    tokenizer: str = f("", "tokenizer to load; empty = the model's own (or trained locally for tiny)")
    gguf_file: str = f("", "GGUF file inside the model folder, loaded through transformers' gguf_file")
    trust_remote_code: bool = f(False, "allow custom modelling code shipped with a checkpoint")
    gradient_checkpointing: bool = f(False, "recompute activations in backward to save memory")
    share_prompt: bool = f(True, "decoder RMs: encode each prompt once for both responses (falls back with a log line)")
    dropout: float = f(0.0, "dropout of the tiny model (ignored for pretrained checkpoints)", ge=0, lt=1)
    tiny: TinyModelConfig = sub(TinyModelConfig, "shape of the model built when name = \"tiny\"")
    lora: LoraConfig = sub(LoraConfig, "parameter-efficient fine-tuning with peft")
    init_seed: int = f(-1, "seed of a reward model's random initial weights (all of tiny, a checkpoint's new head), "
                           "apart from the run's seed: members that share their start; -1 = the run's seed",
                       ge=-1, lt=2**32)


@dataclass
class DataSection:
    train: str = f("synthetic", 'training pairs: .jsonl/.json(.gz), .parquet (or a glob), a save_to_disk folder, '
                   'hf:REPO[:CONFIG][@SPLIT] (local cache), or "synthetic" for the demo task')
    columns: dict = f({}, "your column names, aplot's name = yours (prompt, chosen, rejected, margin, subset)")
    eval_fraction: float = f(0.1, "share of train held out as the eval set `heldout`; 0 = none", ge=0, lt=1)
    eval: dict = f({}, "more named eval sets, name = source, any form train takes (e.g. ood = \"other.jsonl\")")
    max_train_pairs: int = f(0, "use at most this many training pairs (after the split); 0 = all", ge=0)
    max_eval_pairs: int = f(0, "use at most this many pairs of each eval set; 0 = all", ge=0)
    synthetic_pairs: int = f(2000, "pairs generated when train = \"synthetic\"", gt=0)
    label_noise: float = f(0.1, "share of synthetic pairs whose label the gold rule flips", ge=0, lt=0.5)
    length_bias: float = f(0.0, "share of synthetic pairs labelled \"longer wins\" instead of by the gold rule: a "
                                "rater's length bias that a reward model can learn and gold never pays", ge=0, le=1)


@dataclass
class AplotSection:
    semantic_weight: float = f(0.1, "λ: weight of the semantic cost against the reward cost", ge=0, le=1)
    epsilon: float = f(0.1, "ε: entropic regularisation of Sinkhorn", gt=0)
    margin_scale: float = f(1.0, "γ: the margin is γ·n·Σⱼ Pᵢⱼ Cᵢⱼ", ge=0)
    solver: str = f("sinkhorn", "optimal-transport solver", choices=("sinkhorn", "emd"))
    max_iter: int = f(50, "Sinkhorn iterations at most", gt=0)
    reward_cost: str = f("abs", "reward cost 1−σ(|Δ|) (abs) or 1−σ(Δ) (signed)", choices=("abs", "signed"))
    reward_temperature: float = f(1.0, "τ: the reward cost reads σ(Δ/τ)", gt=0)
    normalize_costs: str = f("none", "per-batch normalisation of each cost term",
                             choices=("none", "minmax", "rank"))
    relative_margin: bool = f(False, "subtract the batch mean from the margin (only its spread acts)")
    warmup_steps: int = f(0, "plain BT for this many steps before the margin switches on", ge=0)
    embedding: str = f("hidden", "representations: the RM's pooled hidden state or a sentence encoder",
                       choices=("hidden", "encoder"))
    encoder: str = f("", "sentence encoder for embedding = \"encoder\" (path); empty = the MiniLM package")
    ot_scope: str = f("global", "solve OT over the batch gathered from all ranks, or per rank",
                      choices=("global", "local"))


@dataclass
class LengthSection:
    penalty: float = f(0.0, "λ: adds λ·ρ², ρ the batch's correlation of rewards with response length in tokens; "
                       "0 = off", ge=0)
    balance: bool = f(False, "weight pairs so chosen-longer and chosen-shorter pairs carry equal weight in each "
                      "batch (ties keep weight 1)")
    scope: str = f("global", "compute ρ and the balance counts over the batch of all ranks, or per rank",
                   choices=("global", "local"))


@dataclass
class LossSection:
    type: str = f("aplot", "reward-model loss", choices=("bt", "bt_margin", "label_smoothing", "aplot"))
    center_rewards: float = f(0.0, "c: adds c·mean((r⁺+r⁻)²) to keep rewards centred", ge=0)
    label_smoothing: float = f(0.1, "ε of the label_smoothing loss", ge=0, lt=0.5)
    aplot: AplotSection = sub(AplotSection, "the optimal-transport adaptive margin")
    length: LengthSection = sub(LengthSection, "length debiasing, for every loss type: so rewards learn less of "
                                "response length")


@dataclass
class EnsembleSection:
    members: list = f([], 'reward models scored together instead of ppo.reward_model_run: completed RM run ids, '
                      'export folders, or "sweep:ID" (every run of that sweep); empty = off')
    aggregate: str = f("mean", "the proxy from the members' rewards: their mean, the worst (minimum) member, or uwo "
                       "(the mean minus uwo_lambda times their variance; Coste et al. 2024)",
                       choices=("mean", "worst", "uwo"))
    uwo_lambda: float = f(0.5, "λ of uwo: how much the members' variance (population, over members) costs", ge=0)
    warn_window: int = f(5, "the over-optimisation warning's window W: logged points whose mean proxy and "
                         "disagreement are set against the W points before", gt=0)
    warn_ratio: float = f(1.5, "the warning holds where the window's disagreement exceeds this times its running "
                          "baseline (the mean of every point before the window)", ge=0)
    warn_patience: int = f(2, "points in a row the warning's rule must hold before it fires", gt=0)


@dataclass
class PPOSection:
    reward_model_run: str = f("", "a completed RM run id, or a checkpoint folder")
    ensemble: EnsembleSection = sub(EnsembleSection, "several RM runs as one proxy, and their disagreement logged")
    prompts: str = f("synthetic", 'prompts file (.jsonl with "prompt"), or "synthetic" for the demo')
    eval_prompts: int = f(256, "held-out prompts for the win-rate", gt=0)
    sft_steps: int = f(0, "supervised steps on reference completions before PPO (the demo's reference)", ge=0)
    rollout_batch: int = f(32, "prompts per rollout, per process", gt=0)
    advantage: str = f("gae", 'the baseline: "gae" (PPO: a value head and GAE), "grpo" (the group\'s mean and '
                       'std, KL as a loss term) or "rloo" (the mean of the prompt\'s other samples, KL in the '
                       'reward); the group methods train no value head', choices=("gae", "grpo", "rloo"))
    samples_per_prompt: int = f(1, "responses sampled for each prompt of a rollout (k; the group of grpo and "
                                "rloo, at least 2 there)", gt=0)
    minibatch_size: int = f(16, "rollout samples per PPO minibatch", gt=0)
    pack_groups: bool = f(False, "grpo/rloo: each group's prompt computed once for its k samples (one packed row "
                                 "[prompt | sample 1 | … | sample k], falls back with a log line where the model "
                                 "cannot), and minibatches of whole groups instead of shuffled samples")
    max_new_tokens: int = f(16, "tokens generated per response", gt=0)
    temperature: float = f(1.0, "sampling temperature of rollouts", gt=0)
    kl_coef: float = f(0.05, "β of the per-token KL penalty against the reference", ge=0)
    kl_target: float = f(0.0, "adaptive KL control target (Ziegler et al.); 0 = fixed β", ge=0)
    kl_horizon: int = f(10000, "adaptive KL controller horizon in samples", gt=0)
    ppo_epochs: int = f(4, "passes over each rollout", gt=0)
    clip_range: float = f(0.2, "policy ratio clip ε", gt=0)
    clip_range_value: float = f(0.2, "value clip range (gae only: the group methods have no value head)", gt=0)
    vf_coef: float = f(0.1, "weight of the value loss (gae only)", ge=0)
    gamma: float = f(1.0, "discount (gae only)", gt=0, le=1)
    lam: float = f(0.95, "GAE λ", ge=0, le=1)
    whiten_advantages: bool = f(True, "normalise advantages over each rollout, as TRL (gae only: grpo normalises per group, rloo not at all)")
    whiten_rewards: bool = f(False, "normalise the RM scores per rollout (gae only)")
    missing_eos_penalty: float = f(0.0, "subtract this from the score of responses with no EOS", ge=0)
    win_rate_every: int = f(10, "steps between win-rate evals (and at the end)", gt=0)
    judge: str = f("rm", 'win-rate judge: "rm" (the run\'s RM), "gold" (synthetic task), or an RM run id')
    opponent: str = f("reference", 'win-rate opponent: "reference" or another PPO run id')
    samples_logged: int = f(4, "sample completions written at each eval", ge=0)
    bon_samples: int = f(0, "best-of-n curve of the reference at the start: samples per held-out prompt, n = 1, 2, "
                            "4 … this (a power of two); picked by the run's RM, scored by the judge; 0 = off", ge=0)


@dataclass
class DPOSection:
    type: str = f("sigmoid", 'preference loss on the implicit reward β·log(π/π_ref): "sigmoid" (DPO), "ipo", "offset" '
                  "(ODPO: the data's margin column as the offset), \"aplot\" (the OT margin of [loss.aplot]) or "
                  '"simpo" (length-normalised, no reference)', choices=("sigmoid", "ipo", "offset", "aplot", "simpo"))
    beta: float = f(0.1, "β: the implicit reward's scale (IPO: the target gap is 1/(2β))", gt=0)
    label_smoothing: float = f(0.0, "ε: the label is trusted with probability 1−ε (cDPO; sigmoid only)", ge=0, lt=0.5)
    simpo_gamma: float = f(0.5, "γ: SimPO's target margin between the length-normalised rewards", ge=0)
    sft_steps: int = f(0, "supervised steps on the synthetic reference completions first (the demo's reference; "
                       "that fit is the start and the frozen reference)", ge=0)
    pairs: str = f("data", 'training pairs: "data" (data.train, as an RM run reads it) or "reference" (two samples '
                   "of the reference per synthetic prompt, labelled by the task's rater: data.label_noise and "
                   "data.length_bias)", choices=("data", "reference"))
    judge: str = f("none", 'win-rate against the reference on held-out prompts: "gold" (synthetic task) or "none"',
                   choices=("none", "gold"))
    eval_prompts: int = f(256, "held-out prompts for the win-rate and the KL to the reference", gt=0)
    max_new_tokens: int = f(16, "tokens generated per response (win-rate, reference pairs)", gt=0)
    temperature: float = f(1.0, "sampling temperature (win-rate, reference pairs)", gt=0)


@dataclass
class OptimSection:
    lr: float = f(2e-5, "peak learning rate (AdamW)", gt=0)
    batch_size: int = f(16, "pairs per process per step", gt=0)
    grad_accum: int = f(1, "micro-batches per optimizer step", gt=0)
    max_steps: int = f(0, "optimizer steps; 0 = run `epochs` epochs", ge=0)
    epochs: int = f(1, "passes over the training set when max_steps = 0", gt=0)
    warmup_ratio: float = f(0.03, "share of steps with linear warm-up", ge=0, lt=1)
    scheduler: str = f("linear", "learning-rate decay after warm-up", choices=("linear", "cosine", "constant"))
    weight_decay: float = f(0.0, "AdamW weight decay", ge=0)
    max_grad_norm: float = f(1.0, "gradient clipping norm; 0 = off", ge=0)
    skip_nonfinite: bool = f(False, "skip a batch whose loss is not finite instead of failing")


@dataclass
class EvalSection:
    every: int = f(50, "steps between evals; also evaluated at the end", ge=0)
    final_only: list = f([], "eval sets scored only at the end, not every `every` steps: large test sets beside a "
                             "small one that draws the learning curve")
    batch_size: int = f(32, "pairs per eval batch", gt=0)
    hard_pairs: int = f(20, "hardest pairs (most negative reward gap) written at each eval", ge=0)
    sections: str = f("", "kind = eval: a TOML file of sections (section = [subsets], or {subset = weight}), or "
                      "`rewardbench` (RewardBench v1's own, weighted as upstream); scores per section and their mean")


@dataclass
class CheckpointSection:
    every: int = f(50, "steps between checkpoints; a resumable state is also saved at the end", ge=0)
    keep: int = f(2, "newest step checkpoints kept, besides `best`", gt=0)


@dataclass
class SlurmSection:
    partition: str = f("", "Slurm partition (-p); empty = the cluster's default")
    nodes: int = f(1, "nodes; one `accelerate launch` per node", gt=0)
    tasks_per_node: int = f(1, "accelerate launches per node (more than 1 only to stand in for several machines)",
                            gt=0)
    gpus_per_node: int = f(0, "GPUs per node (--gpus-per-node); 0 = none asked", ge=0)
    cpus_per_task: int = f(0, "CPUs per launch (--cpus-per-task); 0 = Slurm's default", ge=0)
    mem: str = f("", 'memory per node (--mem), e.g. "64G"; empty = Slurm\'s default')
    time: str = f("", 'wall-clock limit (--time), e.g. "08:00:00"; empty = the partition\'s')
    account: str = f("", "account to charge (--account)")
    qos: str = f("", "quality of service (--qos)")
    signal_before_end: int = f(300, "seconds before the time limit when Slurm sends SIGINT: the run checkpoints "
                               "and ends stopped; 0 = no signal", ge=0)
    auto_resume: int = f(0, "resubmit a run stopped by its time limit or preempted, up to this many times", ge=0)
    setup: list = f([], "shell lines run before the launch (e.g. module load cuda), copied verbatim")
    extra: list = f([], 'more #SBATCH options, each starting with "--" (e.g. "--constraint=h100")')


@dataclass
class LaunchSection:
    num_processes: int = f(1, "processes in all (GPUs, or CPU ranks when cpu = true)", gt=0)
    mixed_precision: str = f("no", "autocast precision through Accelerate", choices=("no", "bf16", "fp16"))
    cpu: bool = f(False, "force CPU even where a GPU exists")
    accelerate_config: str = f("", "an accelerate config file: DeepSpeed, FSDP, multi-node")
    threads: int = f(0, "torch threads per process; 0 = cores / processes", ge=0)
    scheduler: str = f("local", "where the run starts: a local subprocess, or a Slurm job", choices=("local", "slurm"))
    slurm: SlurmSection = sub(SlurmSection, "the Slurm job (launch.scheduler = \"slurm\")")


@dataclass
class LogSection:
    every: int = f(1, "steps between train metric lines", gt=0)
    trackers: list = f([], 'passed to Accelerate: "tensorboard", "wandb", "mlflow", "trackio", ...')
    project: str = f("", "the trackers' project (W&B, trackio, MLflow's experiment, TensorBoard's folder); "
                     "empty: the run id")
    entity: str = f("", "W&B's entity (team or user); empty: W&B's default")
    run_name: str = f("", "the run's name in W&B, trackio and MLflow; empty: the run id")


@dataclass
class Config:
    kind: str = f("rm", "what the run does: train a reward model, a PPO or DPO policy, or score a reward "
                  "model (model.name = its folder) on data.eval", choices=("rm", "ppo", "dpo", "eval"))
    name: str = f("run", "a human name; part of the run id")
    seed: int = f(0, "seed of data order, initialisation and sampling", ge=0, lt=2**32)
    tags: list = f([], "free labels shown in `aplot ls` and the runs screen")
    notes: str = f("", "free text kept in the manifest")
    model: ModelSection = sub(ModelSection, "the reward model or policy")
    data: DataSection = sub(DataSection, "preference pairs")
    loss: LossSection = sub(LossSection, "reward-model loss (kind = rm)")
    ppo: PPOSection = sub(PPOSection, "PPO settings (kind = ppo)")
    dpo: DPOSection = sub(DPOSection, "DPO settings (kind = dpo)")
    optim: OptimSection = sub(OptimSection, "optimizer and schedule")
    eval: EvalSection = sub(EvalSection, "evaluation")
    checkpoint: CheckpointSection = sub(CheckpointSection, "checkpoints")
    launch: LaunchSection = sub(LaunchSection, "accelerate launch settings")
    log: LogSection = sub(LogSection, "logging")


# --------------------------------------------------------------------------- errors


class ConfigError(AplotError):
    """Every problem with a config at once; each line names the dotted field and the file."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))

    def lines(self) -> list[str]:
        return list(self.problems)


# --------------------------------------------------------------------------- provenance


@dataclass
class Origins:
    """Where each part of a raw config came from, so that a problem names what set the bad value.

    `base` is the file, preset or other source of everything not recorded in `keys`; `keys` maps a
    dotted key (a leaf, or a whole table) to the override or sweep axis that set it last.
    """

    base: str
    keys: dict[str, str] = field(default_factory=dict)

    def set(self, key: str, source: str) -> None:
        """`key` now comes from `source`, and so does all below it: a table set whole replaces its keys."""
        for old in [k for k in self.keys if k.startswith(key + ".")]:
            del self.keys[old]
        self.keys[key] = source

    def of(self, path: str) -> str:
        """The source of the value at `path`: its own, an enclosing table's, else one that set a key
        below it (`optim.lr.x=1` makes `optim.lr` a table), else the base."""
        parts = path.split(".")
        for i in range(len(parts), 0, -1):
            if (src := self.keys.get(".".join(parts[:i]))) is not None:
                return src
        below = [src for key, src in self.keys.items() if key.startswith(path + ".")]
        return below[0] if below else self.base

    def of_all(self, *paths: str) -> str:
        """A check across fields: whatever set any of them apart from the base (the change that broke a
        valid base), else the base."""
        set_by = dict.fromkeys(src for p in paths if (src := self.of(p)) != self.base)
        return "; ".join(set_by) or self.base


def _origins(where: str | Origins) -> Origins:
    return where if isinstance(where, Origins) else Origins(where)


@functools.cache
def _known_paths() -> tuple[str, ...]:
    return tuple(path for path, *_ in iter_fields())


def nearest_field(path: str) -> str | None:
    """The known dotted field (or table) a misspelt one most likely meant: a sibling spelt alike or
    begun the same (`ppo.kl` -> `ppo.kl_coef`), else a field of that name in another table (`lr` ->
    `optim.lr`), else, under a table that does not exist, any path spelt alike (`los.type`)."""
    known = _known_paths()
    parent, _, name = path.rpartition(".")
    siblings = {p.rpartition(".")[2]: p for p in known if p.rpartition(".")[0] == parent}
    if close := difflib.get_close_matches(name, list(siblings), n=1):
        return siblings[close[0]]
    if begun := [p for n, p in siblings.items() if len(name) > 1 and n.startswith(name)]:
        return begun[0]
    if same := [p for p in known if p.rpartition(".")[2] == name]:
        return same[0]
    if parent and parent in known:  # the table is right: a whole-path match would only match its name
        return None
    close = difflib.get_close_matches(path, known, n=1)
    return close[0] if close else None


# --------------------------------------------------------------------------- schema walking


def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def iter_fields(cls: type = Config, prefix: str = ""):
    """Yield (dotted_path, dataclass field, type, is_table) depth-first, in declaration order."""
    hints = _hints(cls)
    for fld in dataclasses.fields(cls):
        tp = hints[fld.name]
        path = f"{prefix}{fld.name}"
        if dataclasses.is_dataclass(tp):
            yield path, fld, tp, True
            yield from iter_fields(tp, path + ".")
        else:
            yield path, fld, tp, False


def field_help(path: str) -> str:
    for p, fld, _tp, _table in iter_fields():
        if p == path:
            return fld.metadata.get("help", "")
    raise KeyError(path)


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is not None:
        return origin.__name__
    return getattr(tp, "__name__", str(tp))


_INVALID = object()


def _coerce(value: Any, tp: Any, path: str, problems: list[str], where: str) -> Any:
    """Check one leaf's type; ints are accepted for floats."""
    base = get_origin(tp) or tp
    ok = False
    if base is bool:
        ok = isinstance(value, bool)
    elif base is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        if ok and not -(2**32) < value < 2**32:  # no count, step, size or seed of a run is that large
            problems.append(f"{path}: out of range, got an integer of {len(str(abs(value)))} digits ({where})")
            return _INVALID
    elif base is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            try:
                value = float(value)
            except OverflowError:
                problems.append(f"{path}: must be finite, got an integer of {len(str(value))} digits ({where})")
                return _INVALID
    elif base is str:
        ok = isinstance(value, str)
    elif base is list:
        ok = isinstance(value, list)
    elif base is dict:
        ok = isinstance(value, dict)
    if ok and base is list and not all(isinstance(v, str) for v in value):
        problems.append(f"{path}: expected a list of strings, got {value!r} ({where})")
        return _INVALID
    if not ok:
        problems.append(f"{path}: expected {_type_name(tp)}, got {value!r} ({where})")
        return _INVALID
    return value


def _build(cls: type, data: dict, prefix: str, problems: list[str], origins: Origins) -> Any:
    hints = _hints(cls)
    names = {fl.name: fl for fl in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{prefix}{key}" if str(key).isprintable() else f"{prefix}{key!r}"  # errors stay one line
        where = origins.of(path)
        if key not in names:
            near = nearest_field(f"{prefix}{key}")
            problems.append(f"{path}: unknown field ({where})" + (f"; did you mean {near}?" if near else ""))
            continue
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                problems.append(f"{path}: expected a table, got {value!r} ({where})")
                continue
            kwargs[key] = _build(tp, value, path + ".", problems, origins)
        else:
            value = _coerce(value, tp, path, problems, where)
            if value is not _INVALID:
                kwargs[key] = value
    return cls(**kwargs)


def _check_leaf(path: str, fld: dataclasses.Field, value: Any, problems: list[str], where: str) -> None:
    m = fld.metadata
    if m.get("choices") and value not in m["choices"]:
        opts = " | ".join(m["choices"])
        problems.append(f"{path}: must be one of {opts}, got {value!r} ({where})")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            problems.append(f"{path}: must be finite, got {value!r} ({where})")
            return
        for key, op, word in (("gt", float.__gt__, ">"), ("ge", float.__ge__, ">="),
                              ("lt", float.__lt__, "<"), ("le", float.__le__, "<=")):
            bound = m.get(key)
            if bound is not None and not op(float(value), float(bound)):
                problems.append(f"{path}: must be {word} {bound:g}, got {value!r} ({where})")


def validate(cfg: Config, where: str | Origins = "config", problems: list[str] | None = None) -> None:
    """Raise ConfigError listing every bad field (with any `problems` found earlier), each naming the
    source that set it; a check across fields names whatever set any of them."""
    problems = list(problems or [])
    src = _origins(where)
    for path, fld, _tp, is_table in iter_fields():
        if is_table:
            continue
        _check_leaf(path, fld, get(cfg, path), problems, src.of(path))
    if cfg.model.tiny.hidden_size % max(cfg.model.tiny.num_heads, 1):
        problems.append(f"model.tiny.num_heads: must divide model.tiny.hidden_size ({cfg.model.tiny.hidden_size}), "
                        f"got {cfg.model.tiny.num_heads} ({src.of_all('model.tiny.num_heads', 'model.tiny.hidden_size')})")
    for name, path in cfg.data.eval.items():
        if not isinstance(path, str) or not path:
            problems.append(f"data.eval.{name}: expected a file path, got {path!r} ({src.of(f'data.eval.{name}')})")
        elif name == "heldout" and (cfg.data.train and cfg.data.eval_fraction > 0):
            problems.append(f"data.eval.heldout: the name is taken by eval_fraction's split "
                            f"({src.of_all('data.eval.heldout', 'data.eval_fraction')})")
    named = set(cfg.data.eval) | ({"heldout"} if cfg.data.train and cfg.data.eval_fraction > 0 else set())
    for name in cfg.eval.final_only:
        if name not in named:
            problems.append(f"eval.final_only: {name!r} is not an eval set (these are: {', '.join(sorted(named)) or 'none'}) "
                            f"({src.of_all('eval.final_only', 'data.eval', 'data.eval_fraction')})")
    for ours, theirs in cfg.data.columns.items():
        if ours not in DATA_COLUMNS:
            problems.append(f"data.columns.{ours}: not one of aplot's columns ({', '.join(DATA_COLUMNS)}) "
                            f"({src.of(f'data.columns.{ours}')})")
        elif not isinstance(theirs, str) or not theirs:
            problems.append(f"data.columns.{ours}: expected your column's name, got {theirs!r} "
                            f"({src.of(f'data.columns.{ours}')})")
    if cfg.kind == "eval" and not cfg.data.eval and not (cfg.data.train and cfg.data.eval_fraction > 0):
        problems.append(f"data.eval: an eval run needs at least one eval set "
                        f"({src.of_all('data.eval', 'kind', 'data.train', 'data.eval_fraction')})")
    if cfg.ppo.advantage != "gae" and cfg.ppo.samples_per_prompt < 2:
        problems.append(f"ppo.samples_per_prompt: {cfg.ppo.advantage} needs at least 2 samples per prompt (the "
                        f"other samples of a prompt are its baseline), got {cfg.ppo.samples_per_prompt} "
                        f"({src.of_all('ppo.samples_per_prompt', 'ppo.advantage')})")
    if cfg.ppo.pack_groups and (cfg.ppo.advantage == "gae" or cfg.ppo.minibatch_size % cfg.ppo.samples_per_prompt):
        problems.append(f"ppo.pack_groups: packs the groups of grpo or rloo, whose minibatches then hold whole groups, "
                        f"so minibatch_size must be a multiple of samples_per_prompt; got advantage "
                        f"{cfg.ppo.advantage!r}, minibatch_size {cfg.ppo.minibatch_size}, samples_per_prompt "
                        f"{cfg.ppo.samples_per_prompt} ({src.of_all('ppo.pack_groups', 'ppo.advantage', 'ppo.minibatch_size', 'ppo.samples_per_prompt')})")
    elif cfg.ppo.pack_groups and cfg.optim.grad_accum > cfg.ppo.minibatch_size // cfg.ppo.samples_per_prompt:
        problems.append(f"optim.grad_accum: with ppo.pack_groups a micro-batch holds at least one whole group, so at "
                        f"most minibatch_size / samples_per_prompt = {cfg.ppo.minibatch_size // cfg.ppo.samples_per_prompt}"
                        f" micro-batches, got {cfg.optim.grad_accum} "
                        f"({src.of_all('optim.grad_accum', 'ppo.pack_groups', 'ppo.minibatch_size', 'ppo.samples_per_prompt')})")
    if cfg.ppo.bon_samples and cfg.ppo.bon_samples & (cfg.ppo.bon_samples - 1):
        problems.append(f"ppo.bon_samples: the best-of-n curve doubles n up to it, so a power of two (2, 4 … 64), "
                        f"got {cfg.ppo.bon_samples} ({src.of('ppo.bon_samples')})")
    if cfg.kind == "ppo" and not cfg.ppo.reward_model_run and not cfg.ppo.ensemble.members:
        problems.append(f"ppo.reward_model_run: a PPO run needs a completed RM run id or path "
                        f"({src.of_all('ppo.reward_model_run', 'kind')})")
    if cfg.ppo.reward_model_run and cfg.ppo.ensemble.members:
        problems.append(f"ppo.ensemble.members: set either it or ppo.reward_model_run, not both (a single RM is "
                        f"members = [that run]) ({src.of_all('ppo.ensemble.members', 'ppo.reward_model_run')})")
    if cfg.kind == "ppo" and cfg.model.lora.r > 0:
        problems.append(f"model.lora.r: LoRA applies to rm and dpo runs; a ppo run trains every weight of its "
                        f"policy, got {cfg.model.lora.r} ({src.of_all('model.lora.r', 'kind')})")
    if cfg.kind == "ppo" and cfg.ppo.judge == "gold" and cfg.ppo.prompts != "synthetic":
        problems.append(f'ppo.judge: "gold" needs ppo.prompts = "synthetic", the only task with a gold rule '
                        f"({src.of_all('ppo.judge', 'ppo.prompts', 'kind')})")
    if cfg.kind == "dpo" and (cfg.dpo.judge == "gold" or cfg.dpo.pairs == "reference" or cfg.dpo.sft_steps) and \
            cfg.data.train != "synthetic":
        problems.append(f"data.train: dpo.judge = \"gold\", dpo.pairs = \"reference\" and dpo.sft_steps need the "
                        f"synthetic task, the only one with a gold rule, a rater and reference completions "
                        f"({src.of_all('data.train', 'dpo.judge', 'dpo.pairs', 'dpo.sft_steps')})")
    if cfg.kind == "dpo" and cfg.dpo.type == "offset" and (cfg.data.train == "synthetic" or cfg.dpo.pairs == "reference"):
        problems.append(f"dpo.type: offset reads each pair's `margin` column, which the synthetic task's pairs do not have "
                        f"({src.of_all('dpo.type', 'data.train', 'dpo.pairs')})")
    if cfg.dpo.label_smoothing and cfg.dpo.type != "sigmoid":
        problems.append(f"dpo.label_smoothing: cDPO's smoothing applies to dpo.type = \"sigmoid\", got "
                        f"{cfg.dpo.type!r} ({src.of_all('dpo.label_smoothing', 'dpo.type')})")
    if cfg.launch.mixed_precision != "no" and cfg.launch.cpu and cfg.launch.mixed_precision == "fp16":
        problems.append(f"launch.mixed_precision: fp16 needs a GPU; use bf16 or no with cpu = true "
                        f"({src.of_all('launch.mixed_precision', 'launch.cpu')})")
    slurm = cfg.launch.slurm
    for i, line in enumerate(slurm.extra):
        if not isinstance(line, str) or not line.startswith("--") or "\n" in line:
            problems.append(f"launch.slurm.extra[{i}]: an #SBATCH option starting with \"--\", got {line!r} "
                            f"({src.of('launch.slurm.extra')})")
    for i, line in enumerate(slurm.setup):
        if not isinstance(line, str) or "\n" in line:
            problems.append(f"launch.slurm.setup[{i}]: one shell line, got {line!r} ({src.of('launch.slurm.setup')})")
    machines = slurm.nodes * slurm.tasks_per_node
    if cfg.launch.scheduler == "slurm" and cfg.launch.num_processes % machines:
        set_by = src.of_all("launch.num_processes", "launch.slurm.nodes", "launch.slurm.tasks_per_node",
                            "launch.scheduler")
        problems.append(f"launch.num_processes: {cfg.launch.num_processes} processes do not split over {machines} "
                        f"machines (launch.slurm.nodes × tasks_per_node) ({set_by})")
    if problems:
        raise ConfigError(problems)


# --------------------------------------------------------------------------- access


def get(cfg: Any, path: str) -> Any:
    obj = cfg
    for part in path.split("."):
        obj = obj[part] if isinstance(obj, dict) else getattr(obj, part)
    return obj


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(data: dict, where: str | Origins = "config") -> Config:
    """Build and validate a raw config; `where` names its source (a string for all of it, or Origins)."""
    problems: list[str] = []
    origins = _origins(where)
    cfg = _build(Config, data, "", problems, origins)  # fields of the wrong type keep their default
    validate(cfg, origins, problems)
    return cfg


def _parse_value(text: str) -> Any:
    """Parse an override's right-hand side as a TOML value; bare words stay strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: dict, overrides: list[str], origins: Origins | None = None, *, over: str = "") -> dict:
    """Apply `a.b.c=value` overrides from the command line to a raw config dict (before validation),
    recording each key's override in `origins`; `over` names a base the user never wrote (a preset)."""
    problems = []
    for item in overrides:
        shown = item.strip() if item.isprintable() else repr(item)  # errors stay one line
        source = f"command line: {shown}" + (f", over {over}" if over else "")
        if "=" not in item:
            problems.append(f"{shown}: an override reads key.path=value ({source})")
            continue
        key, text = item.split("=", 1)
        key = key.strip()
        if not key.isprintable():
            problems.append(f"{key!r}: an override key must be a plain dotted path ({source})")
            continue
        parts = key.split(".")
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                problems.append(f"{key}: {part} is not a table ({source})")
                break
        else:
            node[parts[-1]] = _parse_value(text.strip())
            if origins is not None:
                origins.set(key, source)
    if problems:
        raise ConfigError(problems)
    return data


def read_toml(path: Path) -> dict:
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such config file"]) from None
    except OSError as e:
        raise ConfigError([f"{path}: cannot read ({e.strerror})"]) from None
    except UnicodeDecodeError as e:
        raise ConfigError([f"{path}: not UTF-8 text (byte {e.start}); TOML files are UTF-8"]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([f"{path}: malformed TOML: {e}"]) from None


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.toml"))


def preset_path(name: str) -> Path:
    path = PRESETS_DIR / f"{name}.toml"
    if not name.replace("-", "").replace("_", "").isalnum() or not path.exists():
        raise ConfigError([f"--preset {name}: no such preset; known: {', '.join(preset_names())}"])
    return path


def load(path: Path | str | None = None, overrides: list[str] | None = None, *,
         preset: str | None = None) -> Config:
    """Read a TOML config (or a shipped preset), apply dotted overrides, validate everything. A problem
    names what set the value: the file, the override, or the preset by name (its path is the package's)."""
    if preset:
        path = preset_path(preset)
    data = read_toml(Path(path)) if path is not None else {}
    origins = Origins(f"preset {preset}" if preset else str(path) if path is not None else "defaults")
    data = apply_overrides(data, overrides or [], origins, over=f"preset {preset}" if preset else "")
    cfg = from_dict(data, origins)
    base = Path(path).resolve().parent if path is not None and not preset else Path.cwd()
    resolve_paths(cfg, base)
    return cfg


def resolve_paths(cfg: Config, base: Path) -> None:
    """Data paths in a config are relative to the config file, like a Makefile's."""

    def fix(p: str) -> str:
        if not p or p == "synthetic" or p.startswith("hf:") or Path(p).is_absolute():
            return p
        if glob.has_magic(p):  # a parquet glob: relative to the config like any path
            return str(base / p)
        candidate = base / p
        return str(candidate.resolve()) if os.path.exists(candidate) else p  # never raises, even for odd names

    if cfg.model.name not in ("", "tiny") and not Path(cfg.model.name).is_absolute() and (
            cfg.model.name.startswith(".") or os.path.isdir(base / cfg.model.name)):
        cfg.model.name = fix(cfg.model.name)  # a local model folder, like the data; a hub id stays as it is
    cfg.data.train = fix(cfg.data.train)
    cfg.data.eval = {k: fix(v) for k, v in cfg.data.eval.items()}
    if cfg.eval.sections:
        cfg.eval.sections = fix(cfg.eval.sections)
    if cfg.kind == "eval":
        cfg.model.name = fix(cfg.model.name)
    if cfg.kind == "ppo" and cfg.ppo.prompts not in ("", "synthetic"):
        cfg.ppo.prompts = fix(cfg.ppo.prompts)
    if cfg.launch.accelerate_config:
        cfg.launch.accelerate_config = fix(cfg.launch.accelerate_config)


def dumps(cfg: Config) -> str:
    return tomli_w.dumps(to_dict(cfg))


def diff(a: dict, b: dict, prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """Fields that differ between two config dicts, by dotted path."""
    out: dict[str, tuple[Any, Any]] = {}
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        path = f"{prefix}{key}"
        if isinstance(va, dict) and isinstance(vb, dict):
            out.update(diff(va, vb, path + "."))
        elif va != vb:
            out[path] = (va, vb)
    return out


# --------------------------------------------------------------------------- `aplot init`


def _toml_value(value: Any) -> str:
    return tomli_w.dumps({"v": value}).split("=", 1)[1].strip()


def commented_template(cfg: Config | None = None) -> str:
    """A complete config with every field and its help as a comment (for `aplot init`)."""
    cfg = cfg or Config()
    lines = ["# aplot run configuration. Every field is optional; shown here with its default.",
             "# Run it with:  aplot run THIS_FILE [key.path=value ...]", ""]

    def emit(obj: Any, cls: type, prefix: str) -> None:
        hints = _hints(cls)
        tables = []
        for fld in dataclasses.fields(cls):
            tp = hints[fld.name]
            if dataclasses.is_dataclass(tp):
                tables.append(fld)
                continue
            value = getattr(obj, fld.name)
            if isinstance(value, dict):
                tables.append(fld)
                continue
            choices = fld.metadata.get("choices")
            lines.append(f"{fld.name} = {_toml_value(value)}".ljust(40) + f"# {fld.metadata['help']}"
                         + (f" (one of: {' | '.join(map(str, choices))})" if choices else ""))
        for fld in tables:
            path = f"{prefix}{fld.name}"
            lines.append("")
            lines.append(f"[{path}]".ljust(40) + f"# {fld.metadata['help']}")
            value = getattr(obj, fld.name)
            if isinstance(value, dict):
                for k, v in value.items():
                    lines.append(f"{k} = {_toml_value(v)}")
            else:
                emit(value, hints[fld.name], path + ".")

    emit(cfg, Config, "")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- derived values


def resolve(cfg: Config, n_train_pairs: int, world_size: int) -> dict[str, int]:
    """Every derived number of a run, computed once here and frozen into the manifest's [resolved].

    A micro-batch is `batch_size` pairs on each of `world_size` ranks; `grad_accum` micro-batches
    make one optimizer step. No pair is dropped: the last micro-batch of an epoch is topped up with
    pairs from the start of that epoch's order (as Accelerate's even batches do), so every rank always
    holds `batch_size` pairs (the global OT margin gathers equal shares, DDP never waits on a rank with
    nothing); `padded_pairs_per_epoch` says how many pairs are seen twice for it.
    """
    pairs_per_micro = cfg.optim.batch_size * world_size
    if n_train_pairs < pairs_per_micro:
        raise ConfigError([f"optim.batch_size: {n_train_pairs} training pairs cannot fill one micro-batch of "
                           f"{pairs_per_micro} pairs (batch_size × processes)"])
    micro_per_epoch = math.ceil(n_train_pairs / pairs_per_micro)
    steps_per_epoch = math.ceil(micro_per_epoch / cfg.optim.grad_accum)
    total_steps = cfg.optim.max_steps or math.ceil(cfg.optim.epochs * micro_per_epoch / cfg.optim.grad_accum)
    return {
        "world_size": world_size,
        "n_train_pairs": n_train_pairs,
        "pairs_per_micro_batch": pairs_per_micro,
        "effective_batch": pairs_per_micro * cfg.optim.grad_accum,
        "micro_batches_per_epoch": micro_per_epoch,
        "padded_pairs_per_epoch": micro_per_epoch * pairs_per_micro - n_train_pairs,
        "steps_per_epoch": steps_per_epoch,
        "total_steps": total_steps,
        "warmup_steps": math.ceil(cfg.optim.warmup_ratio * total_steps),
    }
