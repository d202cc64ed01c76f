"""The metric vocabulary (names, splits, keys, the key metrics of each run kind, the loss label)
and the JSONL stream. The engine writes these names and every reader (CLI, TUI, report) reads
them from here; nothing else spells a key.

Names follow TRL where TRL has one. A *key* names one series across splits: a train metric is
its bare name (`loss`), an eval metric `eval/<set>/<name>` (`eval/heldout/accuracy`). The stream is `metrics.jsonl`: one object per line,
`{"time", "step", "split", "data"}`, appended and flushed per event. Readers follow it by
byte offset and tolerate a torn last line (a writer killed mid-line). Torch-free.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any

import msgspec

# ---- splits
TRAIN = "train"
EVAL_PREFIX = "eval/"
EVERY_EVAL = EVAL_PREFIX + "*/"  # a pattern, not a key: `eval/*/accuracy` is that metric of every eval set
HELDOUT = "heldout"
WIN = "win"  # PPO's win-rate eval set
SAMPLES_SPLIT = "samples"  # PPO's generated samples, one record per eval

# ---- reward-model training
LOSS = "loss"
ACCURACY = "accuracy"
REWARD_GAP = "reward_gap"
CHOSEN_REWARD = "chosen_reward"
REJECTED_REWARD = "rejected_reward"
MIN_REWARD = "min_reward"
MAX_REWARD = "max_reward"
MARGIN_MEAN = "margin/mean"
MARGIN_STD = "margin/std"
MARGIN_MAX = "margin/max"
MARGIN_GAP_CORR = "margin/gap_corr"
OT_COST = "ot/cost"
OT_ITERATIONS = "ot/iterations"
# loss.length: the global batch's reward–length correlation ρ, the penalty λρ², and under
# balance the weight of chosen-longer pairs and their share of the batch
LENGTH_CORR = "length/reward_corr"
LENGTH_PENALTY = "length/penalty"
LENGTH_LONGER_WEIGHT = "length/longer_weight"
LENGTH_LONGER_SHARE = "length/longer_share"
GRAD_NORM = "grad_norm"
LEARNING_RATE = "learning_rate"
SAMPLES_PER_S = "samples_per_s"
SKIPPED_NONFINITE = "skipped_nonfinite"  # a step (RM) or minibatches (PPO) dropped for a non-finite loss
TOKENS_PER_S = "tokens_per_s"
# where an RL step's time goes, in seconds, phase by phase (verl's `timing_s/` family): the policy's
# log-probs (and values) of the fresh samples, the reference's, the reward models' scores, the updates
TIME_GENERATE = "timing_s/generate"
TIME_LOGPROBS = "timing_s/logprobs"
TIME_REF = "timing_s/ref_logprobs"
TIME_SCORE = "timing_s/score"
TIME_UPDATE = "timing_s/update"
TIME_STEP = "timing_s/step"
# read off the wall clock: never the same in two runs of one config, so left out where runs are matched
CLOCK_KEYS = frozenset({SAMPLES_PER_S, TOKENS_PER_S, TIME_GENERATE, TIME_LOGPROBS, TIME_REF, TIME_SCORE, TIME_UPDATE,
                        TIME_STEP})
EPOCH = "epoch"
N_PAIRS = "n_pairs"
# an N-way eval set (one prompt, one correct against k incorrect completions): `accuracy` is per item
# (RewardBench 2's rule), the pairs' own accuracy is kept beside it
N_ITEMS = "n_items"
PAIR_ACCURACY = "pair_accuracy"
# eval-only: accuracy per `subset` label and per section of a sections file (RewardBench's way)
SUBSET_PREFIX = "subset/"
SECTION_PREFIX = "section/"
SECTIONS_MEAN = "sections/mean"  # the mean of the section scores: RewardBench's headline number


def subset_key(name: str, metric: str) -> str:
    return f"{SUBSET_PREFIX}{name}/{metric}"


def section_key(name: str) -> str:
    return f"{SECTION_PREFIX}{name}/{ACCURACY}"


# eval-only: paired samples of (margin, reward gap) for the margin panel's scatter
MARGIN_HIST = "margin_hist"
GAP_HIST = "gap_hist"

# ---- diagnostics: what an eval accuracy hides (engine.analysis.bias_checks computes them and merges
# them into each eval record)
DIAG_PREFIX = "diag/"
ACC_CHOSEN_SHORTER = "diag/acc_chosen_shorter"
ACC_SIMILAR = "diag/acc_similar"
ACC_CHOSEN_LONGER = "diag/acc_chosen_longer"
N_CHOSEN_SHORTER = "diag/n_chosen_shorter"
N_SIMILAR = "diag/n_similar"
N_CHOSEN_LONGER = "diag/n_chosen_longer"
SHORTER_WINS_ACC = "diag/shorter_wins_acc"
LONGER_WINS_ACC = "diag/longer_wins_acc"
REWARD_LENGTH_CORR = "diag/reward_length_corr"
ECE = "diag/ece"
LENGTH_THRESHOLD = "diag/length_threshold"  # tokens: |len⁺ − len⁻| ≤ this is "similar"
# reliability diagram: per confidence bin, mean confidence, accuracy (None where empty) and count
RELIABILITY_CONF = "diag/reliability_conf"
RELIABILITY_ACC = "diag/reliability_acc"
RELIABILITY_COUNT = "diag/reliability_count"

# ---- PPO (TRL's names)
KL = "objective/kl"
ENTROPY = "objective/entropy"
NON_SCORE_REWARD = "objective/non_score_reward"
RLHF_REWARD = "objective/rlhf_reward"
SCORES = "objective/scores"
GOLD_SCORE = "objective/gold_score"
KL_COEF = "objective/kl_coef"
APPROXKL = "policy/approxkl_avg"
CLIPFRAC = "policy/clipfrac_avg"
POLICY_LOSS = "loss/policy_avg"
VALUE_LOSS = "loss/value_avg"
VALUE_CLIPFRAC = "val/clipfrac_avg"
RESPONSE_LENGTH = "response_length"
ADVANTAGE_MEAN = "advantages/mean"
ADVANTAGE_STD = "advantages/std"
# the critic-free methods (ppo.advantage = grpo | rloo), TRL's GRPO names where it has them
KL_LOSS = "loss/kl_avg"  # grpo: the mean k3 KL term that β multiplies in the loss
REWARD_STD = "reward_std"  # the mean over prompts of the std of their k samples' rewards
FRAC_REWARD_ZERO_STD = "frac_reward_zero_std"  # prompts whose k samples all scored the same (no signal)
WIN_RATE = "win_rate"
WIN_RATE_SE = "win_rate_se"
WIN_RATE_N = "win_rate_n"
BON_SPLIT = "bon"  # one record: the reference's best-of-n curve (engine.rl.best_of_n), one list per field:
BON_N = "n"  # n = 1, 2, 4, …
BON_KL = "kl"  # the KL of the best of n to the reference (nats a response)
BON_PROXY = "proxy"  # the RM's (proxy's) mean score of the pick
BON_GOLD = "gold"  # the judge's mean score of the pick
BON_WIN = "win"  # the judge's win-rate of the pick against a plain sample
# ppo.ensemble (engine.rl.ensemble): the members' rewards, at every rollout and every win-rate eval
ENSEMBLE_MEAN = "ensemble/mean_reward"  # the members' mean reward over the samples
ENSEMBLE_STD = "ensemble/std"  # disagreement: the std of the members' rewards (over members), mean over samples
ENSEMBLE_STD_PER_LENGTH = "ensemble/std_per_token"  # that std ÷ the response's length in tokens, mean over samples
ENSEMBLE_SIGN_DISAGREE = "ensemble/sign_disagreement"  # share of samples the members put on both sides of the reference's
ENSEMBLE_KEYS = (ENSEMBLE_MEAN, ENSEMBLE_STD, ENSEMBLE_STD_PER_LENGTH, ENSEMBLE_SIGN_DISAGREE)
# the over-optimisation view: series whose x is the KL to the reference (nats a response), not a step
VS_KL = "vs_kl/"
GOLD_VS_KL_RL = VS_KL + "gold of the RL run"
GOLD_VS_KL_BON = VS_KL + "gold of best-of-n"
SAMPLES = "samples"  # the samples record's field: a list of {prompt, response, score}

# ---- DPO (TRL's DPOTrainer names): the implicit reward β·log(π/π_ref) of each side, and the summed
# log-probs of each response under the policy; eval sets add ACCURACY (implicit-reward accuracy) and LOSS,
# the win-rate eval adds KL (to the reference, on held-out prompts), GOLD_SCORE and RESPONSE_LENGTH
REWARDS_CHOSEN = "rewards/chosen"
REWARDS_REJECTED = "rewards/rejected"
REWARDS_ACCURACIES = "rewards/accuracies"
REWARDS_MARGINS = "rewards/margins"
LOGPS_CHOSEN = "logps/chosen"
LOGPS_REJECTED = "logps/rejected"

# metrics where lower is better (beside every loss); the rest are judged higher-is-better
LOWER_IS_BETTER = (LOSS, KL, APPROXKL, GRAD_NORM, LENGTH_PENALTY, ECE)


def eval_split(name: str) -> str:
    """The split of an eval set: `heldout` → `eval/heldout`."""
    return EVAL_PREFIX + name


def is_eval(split: str) -> bool:
    return split.startswith(EVAL_PREFIX)


def eval_set(split: str) -> str:
    """The set an eval split is about: `eval/heldout` → `heldout` (a train split → "")."""
    return split[len(EVAL_PREFIX):] if is_eval(split) else ""


def eval_set_order(names: Iterable[str]) -> list[str]:
    """Eval sets in the order every view lists them: `heldout` (the share of the run's own data) first,
    then the rest by name, so the run screen's curves, the comparison and its statistics agree."""
    return sorted(set(names), key=lambda s: (s != HELDOUT, s))


EVAL_LINE_KEYS = (ACCURACY, LOSS, WIN_RATE)  # what train.log's line per eval says


def eval_line(step: int, split: str, data: dict) -> str:
    """`[aplot] eval heldout @ step 100: accuracy 0.7602 · loss 0.47`: the trainer's line in train.log
    for each eval record it writes, so the log (the TUI's pane, `aplot logs`) says each eval."""
    parts = [f"{name} {value:.4g}" for name in EVAL_LINE_KEYS
             if isinstance(value := data.get(name), (int, float)) and not isinstance(value, bool)]
    return f"[aplot] eval {eval_set(split)} @ step {step}: " + (" · ".join(parts) or "done")


def end_line(status: str, step: int | None) -> str:
    """train.log's last aplot line: how the run ended, and where."""
    return f"[aplot] {status}" + (f" at step {step}" if step is not None else "")


def metric_key(split: str, name: str) -> str:
    """One series' key: `loss` for train, `eval/heldout/accuracy` for an eval set."""
    return name if split == TRAIN else f"{split}/{name}"


def split_key(key: str) -> tuple[str, str]:
    """`eval/heldout/accuracy` → (`eval/heldout`, `accuracy`); `objective/kl` → (`train`, `objective/kl`)."""
    if is_eval(key):
        set_name, _, name = key[len(EVAL_PREFIX):].partition("/")
        return eval_split(set_name), name
    return TRAIN, key


def higher_is_better(key: str) -> bool:
    name = split_key(key)[1]
    return not (name in LOWER_IS_BETTER or name.startswith("loss/") or name.endswith("loss"))


# which way an eval metric improves, for a "best": the rest of a run's series get none. A train metric
# is one batch's value (a 16-pair batch's accuracy of 1) or a cost and a setting (KL, the learning
# rate); the length rules' accuracies are baselines the model is held against; counts, reward scales,
# margins and a standard error describe and do not rank.
HIGHER, LOWER, NEARER_ZERO = "higher", "lower", "nearer 0"
NEARER_ZERO_IS_BETTER = (REWARD_LENGTH_CORR,)  # a reward that tracks length is worse whichever its sign
NO_BEST = (SHORTER_WINS_ACC, LONGER_WINS_ACC, LENGTH_THRESHOLD, N_CHOSEN_SHORTER, N_SIMILAR, N_CHOSEN_LONGER,
           N_PAIRS, N_ITEMS, WIN_RATE_SE, WIN_RATE_N, CHOSEN_REWARD, REJECTED_REWARD, MIN_REWARD, MAX_REWARD, MARGIN_MEAN,
           MARGIN_STD, MARGIN_MAX, MARGIN_GAP_CORR, EPOCH, LEARNING_RATE, SAMPLES_PER_S, TOKENS_PER_S,
           RELIABILITY_CONF, RELIABILITY_ACC, RELIABILITY_COUNT, REWARDS_CHOSEN, REWARDS_REJECTED, LOGPS_CHOSEN,
           LOGPS_REJECTED, *ENSEMBLE_KEYS)


def direction(key: str) -> str | None:
    """HIGHER, LOWER or NEARER_ZERO is better for the key's best; None where a best means nothing."""
    split, name = split_key(key)
    if split == TRAIN or name in NO_BEST:
        return None
    if name in NEARER_ZERO_IS_BETTER:
        return NEARER_ZERO
    return HIGHER if higher_is_better(key) else LOWER


def best(key: str, values: Iterable[float]) -> float | None:
    """The best of `values` by the key's direction (None without one, or with no finite value)."""
    way, finite = direction(key), [v for v in values if math.isfinite(v)]
    if way is None or not finite:
        return None
    if way == NEARER_ZERO:
        return min(finite, key=abs)
    return max(finite) if way == HIGHER else min(finite)


# the metrics a run of each kind is judged by at a glance (`aplot ls`, the runs table), as keys
KEY_METRICS = {
    "rm": (LOSS, ACCURACY, metric_key(eval_split(HELDOUT), ACCURACY)),
    "ppo": (SCORES, KL, metric_key(eval_split(WIN), WIN_RATE)),
    "dpo": (LOSS, REWARDS_ACCURACIES, metric_key(eval_split(HELDOUT), ACCURACY)),
    "eval": (metric_key(eval_split(HELDOUT), ACCURACY),),
}
# each key metric's short column label
KEY_LABELS = {LOSS: "loss", ACCURACY: "acc", metric_key(eval_split(HELDOUT), ACCURACY): "acc",
              SCORES: "score", KL: "kl", metric_key(eval_split(WIN), WIN_RATE): "win", REWARDS_ACCURACIES: "acc"}


def against(x_steps, x_values, y_steps, y_values) -> tuple[list[float], list[float]]:
    """y against x at the steps both logged: (x values, y values), in y's step order. The
    over-optimisation view plots the gold score against the KL this way."""
    x_at = dict(zip(x_steps, x_values, strict=True))
    pairs = [(x_at[s], y) for s, y in zip(y_steps, y_values, strict=True) if s in x_at]
    return [x for x, _ in pairs], [y for _, y in pairs]


def keyed(split: str, data: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The given metrics of one record, by key: what a run's [summary] holds."""
    return {metric_key(split, n): data[n] for n in names if n in data}


RL_LABELS = {"gae": "ppo", "grpo": "grpo", "rloo": "rloo"}  # ppo.advantage → the method's usual name


def loss_label(kind: str, config: dict) -> str:
    """What a run trains with, as listings show it: the RM loss (`aplot`, `bt`, …), the RL method
    (`ppo`, `grpo`, `rloo`) or the DPO loss (`sigmoid`, `ipo`, `simpo`, …)."""
    if kind == "rm":
        return config.get("loss", {}).get("type", "")
    if kind == "ppo":
        return RL_LABELS.get(config.get("ppo", {}).get("advantage", "gae"), kind)
    if kind == "dpo":
        return config.get("dpo", {}).get("type", "sigmoid")
    return kind


class Record(msgspec.Struct):
    """One line of the stream. A msgspec struct, so a long run's lines decode in C: opening a
    100,000-line run is dominated by this parse."""

    time: float
    step: int
    split: str
    data: dict[str, Any]


_decoder = msgspec.json.Decoder(Record)
_decode, _decode_lines = _decoder.decode, _decoder.decode_lines


class RawRecord(msgspec.Struct, gc=False):
    """A line with its data left as JSON text, for a reader that needs a few fields of many lines
    (`DataFields` decodes only those): the run screen opens a 100,000-line run this way in about
    a quarter of the time a full decode and a walk over every dict take."""

    time: float
    step: int
    split: str
    data: msgspec.Raw


_raw_decoder = msgspec.json.Decoder(RawRecord)


def raw_record(rec: Record) -> RawRecord:
    return RawRecord(rec.time, rec.step, rec.split, msgspec.Raw(msgspec.json.encode(rec.data)))


def data_dict(rec: RawRecord) -> dict[str, Any]:
    """All of a raw record's data, for the rare record read whole (samples, best-of-n)."""
    return msgspec.json.decode(rec.data)


class DataFields:
    """Decodes a record's data to only `names`: a struct with one attribute each, None where a
    record lacks it. Every other key is skipped by the C parser without building a value."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = tuple(dict.fromkeys(names))
        attrs = [f"f{i}" for i in range(len(self.names))]  # names such as "margin/mean" are not identifiers
        struct = msgspec.defstruct("Data", [(a, Any, None) for a in attrs],
                                   rename=dict(zip(attrs, self.names, strict=True)), gc=False)
        self.decode = msgspec.json.Decoder(struct).decode
        self.get = {name: attrgetter(a) for a, name in zip(attrs, self.names, strict=True)}


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: write them as null so every reader can parse the line."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class MetricsWriter:
    """Appends records and flushes each to the OS, so a killed run loses no finished line."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - held for the run
        self._repair_torn_tail()

    def _repair_torn_tail(self) -> None:
        """A writer killed mid-line leaves a fragment; start the next record on a fresh line."""
        size = self.path.stat().st_size
        if size:
            with open(self.path, "rb") as fh:
                fh.seek(size - 1)
                if fh.read(1) != b"\n":
                    self._fh.write("\n")
                    self._fh.flush()

    def write(self, step: int, split: str, data: dict[str, Any]) -> None:
        line = json.dumps({"time": round(time.time(), 3), "step": int(step), "split": split,
                           "data": _clean(data)}, ensure_ascii=False)
        self._fh.write(line + "\n")
        self._fh.flush()

    def sync(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> MetricsWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def parse_line(line: bytes | str) -> Record | None:
    try:
        return _decode(line)
    except msgspec.DecodeError:  # not strict JSON of the usual shape: the tolerant, slower reading
        pass
    try:
        obj = json.loads(line)
        return Record(float(obj["time"]), int(obj["step"]), str(obj["split"]), dict(obj["data"]))
    except (ValueError, KeyError, TypeError):
        return None


def file_size(path: Path | str) -> int:
    """Bytes in a file, 0 where there is none yet (a run that has not written it)."""
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


@dataclass
class LineTail:
    """Follows a file by byte offset: each `read_lines()` returns only the complete lines appended.

    A final line without its newline is held back for the next call (it may still be being
    written); a file that shrank (truncated or replaced) is read again from the start.
    """

    path: Path
    offset: int = 0
    _pending: bytes = field(default=b"", repr=False)

    def read_block(self, max_bytes: int) -> bytes:
        """The complete lines appended since the last call, as one block (b"" when none)."""
        try:
            size = os.path.getsize(self.path)
        except OSError:
            return b""
        if size < self.offset:
            self.offset, self._pending = 0, b""
        if size == self.offset:
            return b""
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            chunk = fh.read(min(size - self.offset, max_bytes))
        self.offset += len(chunk)
        block = self._pending + chunk
        end = block.rfind(b"\n") + 1
        self._pending = block[end:]  # b"" when the chunk ended with a newline
        return block[:end]

    def read_lines(self, max_bytes: int) -> list[bytes]:
        block = self.read_block(max_bytes)
        return block.split(b"\n")[:-1] if block else []


@dataclass
class MetricsTail(LineTail):
    """The metrics stream, parsed: complete lines that do not parse are counted in `skipped`."""

    skipped: int = 0
    raw: bool = False  # RawRecords (data left as JSON text) rather than Records

    def read_new(self, max_bytes: int = 64 << 20) -> list[Record] | list[RawRecord]:
        block = self.read_block(max_bytes)
        try:  # every line well formed (the usual case): one C call
            return _raw_decoder.decode_lines(block) if self.raw else _decode_lines(block)
        except msgspec.DecodeError:
            pass
        out = []
        for line in block.split(b"\n"):
            if not line.strip():
                continue
            rec = parse_line(line)
            if rec is None:
                self.skipped += 1
            else:
                out.append(raw_record(rec) if self.raw else rec)
        return out


def read_all(path: Path | str) -> list[Record]:
    """Every complete, parseable record (a torn last line is ignored)."""
    tail = MetricsTail(Path(path))
    out: list[Record] = []
    while True:
        batch = tail.read_new()
        if not batch:
            break
        out.extend(batch)
    if tail._pending:
        rec = parse_line(tail._pending)
        if rec is not None:
            out.append(rec)
    return out


def series(records: list[Record], split: str, name: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for r in records:
        if r.split == split and isinstance(r.data.get(name), (int, float)):
            xs.append(r.step)
            ys.append(float(r.data[name]))
    return xs, ys
