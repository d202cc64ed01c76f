"""Reward-model diagnostics: what an eval accuracy hides.

A MiniLM RM trained on HH-RLHF harmless reached 0.61 in distribution and, out of distribution,
agreed with the rule "the shorter response wins". These pure functions make that visible at
every eval: accuracy split by which response is longer, the accuracy of the two length rules on
the same pairs, the reward-length correlation, calibration (ECE) and the hardest pairs.

NumPy only, no torch: the trainer passes tensors through `np.asarray` (call `.cpu()` first) and
the TUI imports the length buckets and the hard-pairs reader from here without loading torch. The
`diag/` names are `engine.metrics`' (imported here, so `bias_checks.ECE` is `metrics.ECE`).

Conventions (the same as `engine.rm.losses.pair_stats`): the chosen response is always the true
winner; the model is right on a pair when r⁺ > r⁻ strictly, so a reward tie counts as wrong.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engine import metrics as M
from engine.metrics import (  # the diag/ names, merged into each eval record (split `eval/<set>`)
    ACC_CHOSEN_LONGER,
    ACC_CHOSEN_SHORTER,
    ACC_SIMILAR,
    ECE,
    LENGTH_THRESHOLD,
    LONGER_WINS_ACC,
    N_CHOSEN_LONGER,
    N_CHOSEN_SHORTER,
    N_SIMILAR,
    RELIABILITY_ACC,
    RELIABILITY_CONF,
    RELIABILITY_COUNT,
    REWARD_LENGTH_CORR,
    SHORTER_WINS_ACC,
)

BUCKETS = ("chosen_shorter", "similar", "chosen_longer")
BUCKET_ACC = dict(zip(BUCKETS, (ACC_CHOSEN_SHORTER, ACC_SIMILAR, ACC_CHOSEN_LONGER), strict=True))
BUCKET_N = dict(zip(BUCKETS, (N_CHOSEN_SHORTER, N_SIMILAR, N_CHOSEN_LONGER), strict=True))
SCALAR_KEYS = (ACC_CHOSEN_SHORTER, ACC_SIMILAR, ACC_CHOSEN_LONGER, N_CHOSEN_SHORTER, N_SIMILAR,
               N_CHOSEN_LONGER, SHORTER_WINS_ACC, LONGER_WINS_ACC, REWARD_LENGTH_CORR, ECE,
               LENGTH_THRESHOLD)

MIN_THRESHOLD_TOKENS = 5.0
REL_THRESHOLD = 0.10
ECE_BINS = 10
HARD_PAIRS_K = 8
HARD_PAIR_MAX_CHARS = 2000

# the length-bias warning: accuracy within WARN_ACC_POINTS of a length rule that is itself at
# least WARN_RULE_POINTS from chance, or a reward-length correlation beyond WARN_CORR in size
WARN_ACC_POINTS = 0.02
WARN_RULE_POINTS = 0.05
WARN_CORR = 0.5


# ---------------------------------------------------------------------------- metrics


def _f(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).reshape(-1)


def _num(x: float) -> float | None:
    """A JSON-ready number: a Python float, None for NaN (an empty bucket, a constant vector)."""
    x = float(x)
    return x if math.isfinite(x) else None


def length_threshold(len_c, len_r, min_tokens: float = MIN_THRESHOLD_TOKENS,
                     rel: float = REL_THRESHOLD) -> float:
    """max(min_tokens, rel · mean length of all 2n responses).

    Five tokens is below what a reader notices as "longer"; 10 % of the mean scales the band to
    data sets with long answers (HH ≈ 60 tokens ⇒ 6, OASST ≈ 200 ⇒ 20).
    """
    lengths = np.concatenate([_f(len_c), _f(len_r)])  # [2n]
    return max(float(min_tokens), rel * float(lengths.mean())) if lengths.size else float(min_tokens)


def length_buckets(len_c, len_r, threshold: float | None = None) -> np.ndarray:
    """Bucket of each pair by d = len⁺ − len⁻ (tokens): d < −t "chosen_shorter", |d| ≤ t
    "similar", d > t "chosen_longer". t defaults to `length_threshold`."""
    t = length_threshold(len_c, len_r) if threshold is None else float(threshold)
    diff = _f(len_c) - _f(len_r)  # [n]
    out = np.full(diff.shape, "similar", dtype=object)  # [n]
    out[diff < -t] = "chosen_shorter"
    out[diff > t] = "chosen_longer"
    return out


def length_rule_accuracy(len_c, len_r, prefer: str = "shorter") -> float:
    """Accuracy of the rule "the shorter (or longer) response wins"; equal lengths count half."""
    diff = _f(len_c) - _f(len_r)  # [n]
    if diff.size == 0:
        return math.nan
    sign = -1.0 if prefer == "shorter" else 1.0
    score = np.where(sign * diff > 0, 1.0, np.where(diff == 0, 0.5, 0.0))  # [n]
    return float(score.mean())


def pearson(x, y) -> float:
    """Pearson correlation; NaN when either side is constant (no linear relation to speak of)."""
    x, y = _f(x), _f(y)
    if x.size < 2:
        return math.nan
    dx, dy = x - x.mean(), y - y.mean()
    denom = math.sqrt(float((dx * dx).sum()) * float((dy * dy).sum()))
    return float((dx * dy).sum()) / denom if denom > 0 else math.nan


def reward_length_corr(r_c, r_r, len_c, len_r) -> float:
    """Over all 2n responses, chosen and rejected pooled: does a longer answer get more reward?"""
    return pearson(np.concatenate([_f(r_c), _f(r_r)]), np.concatenate([_f(len_c), _f(len_r)]))


def reliability(gap, bins: int = ECE_BINS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-label reliability bins of a pairwise preference model (Guo et al. 2017, eq. 3).

    p = σ(r⁺ − r⁻) is the model's probability that chosen wins. The model predicts chosen
    iff gap > 0, with confidence c = max(p, 1 − p) = σ(|gap|), and is right iff gap > 0 (chosen
    is always the true winner, so scoring p against "chosen won" alone would reward a model
    that says 0.99 everywhere). Bins are `bins` equal-width intervals [b/B, (b+1)/B) over
    [0, 1], the last one closed; since c ≥ 0.5 only the upper half is ever filled.
    Returns per-bin mean confidence and accuracy (NaN where empty) and counts, each [bins].
    """
    g = _f(gap)  # [n]
    conf = 1.0 / (1.0 + np.exp(-np.abs(g)))  # [n]
    correct = (g > 0).astype(np.float64)  # [n]
    idx = np.minimum((conf * bins).astype(np.int64), bins - 1)  # [n]
    count = np.bincount(idx, minlength=bins).astype(np.int64)  # [bins]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(idx, weights=conf, minlength=bins) / count  # [bins]
        acc = np.bincount(idx, weights=correct, minlength=bins) / count  # [bins]
    return mean_conf, acc, count


def expected_calibration_error(gap, bins: int = ECE_BINS) -> float:
    """ECE = Σ_b (n_b / n) · |acc_b − conf_b| over the bins of `reliability`."""
    conf, acc, count = reliability(gap, bins)
    n = count.sum()
    if n == 0:
        return math.nan
    filled = count > 0
    return float((count[filled] / n * np.abs(acc[filled] - conf[filled])).sum())


def hardest_pairs(gap, k: int) -> np.ndarray:
    """Indices of the k smallest reward gaps r⁺ − r⁻, most negative first (stable on ties).

    When the model gets every pair right these are still the pairs it separates least."""
    g = _f(gap)  # [n]
    return np.argsort(g, kind="stable")[: max(int(k), 0)]  # [min(k, n)]


def diagnostics(r_c, r_r, len_c, len_r, threshold: float | None = None) -> dict[str, Any]:
    """Every `diag/*` metric of one eval set; flat keys, JSON-ready values (None for NaN).

    r_c, r_r: [n] rewards of chosen and rejected; len_c, len_r: [n] response lengths in tokens
    (without the prompt). Empty input gives an empty dict.
    """
    r_c, r_r, len_c, len_r = _f(r_c), _f(r_r), _f(len_c), _f(len_r)
    if not (r_c.shape == r_r.shape == len_c.shape == len_r.shape):
        raise ValueError(f"diagnostics: shapes differ: r_c {r_c.shape}, r_r {r_r.shape}, "
                         f"len_c {len_c.shape}, len_r {len_r.shape}")
    if r_c.size == 0:
        return {}
    t = length_threshold(len_c, len_r) if threshold is None else float(threshold)
    gap = r_c - r_r  # [n]
    correct = gap > 0  # [n]
    buckets = length_buckets(len_c, len_r, t)  # [n]
    out: dict[str, Any] = {LENGTH_THRESHOLD: t}
    for name in BUCKETS:
        sel = buckets == name
        out[BUCKET_N[name]] = int(sel.sum())
        out[BUCKET_ACC[name]] = _num(correct[sel].mean()) if sel.any() else None
    out[SHORTER_WINS_ACC] = length_rule_accuracy(len_c, len_r, "shorter")
    out[LONGER_WINS_ACC] = length_rule_accuracy(len_c, len_r, "longer")
    out[REWARD_LENGTH_CORR] = _num(reward_length_corr(r_c, r_r, len_c, len_r))
    out[ECE] = expected_calibration_error(gap)
    conf, acc, count = reliability(gap)
    out[RELIABILITY_CONF] = [_num(round(x, 4)) for x in conf]
    out[RELIABILITY_ACC] = [_num(round(x, 4)) for x in acc]
    out[RELIABILITY_COUNT] = [int(c) for c in count]
    return out


def length_bias_warning(accuracy: float | None, diag: dict[str, Any]) -> str | None:
    """One line when the eval looks like a length rule, else None.

    Flags (a) accuracy within 2 points of either length rule, when that rule is at least 5 points
    from chance (matching a coin-flip rule says nothing about length; and a model that learned
    "shorter wins" scores like that rule even where the *longer* answer usually wins, e.g. 0.30
    on OASST), and (b) a reward-length correlation above 0.5 in size.
    """
    reasons = []
    if isinstance(accuracy, (int, float)):
        for key, name in ((SHORTER_WINS_ACC, "shorter wins"), (LONGER_WINS_ACC, "longer wins")):
            rule = diag.get(key)
            if isinstance(rule, (int, float)) and abs(rule - 0.5) >= WARN_RULE_POINTS - 1e-9 \
                    and abs(accuracy - rule) <= WARN_ACC_POINTS + 1e-9:
                reasons.append(f"accuracy {accuracy:.3f} is within {WARN_ACC_POINTS * 100:.0f} points "
                               f"of the '{name}' rule ({rule:.3f})")
    corr = diag.get(REWARD_LENGTH_CORR)
    if isinstance(corr, (int, float)) and abs(corr) > WARN_CORR:
        reasons.append(f"reward-length correlation {corr:+.2f}")
    if not reasons:
        return None
    return "this reward model may mostly have learned length: " + "; ".join(reasons)


# ---------------------------------------------------------------------------- hard pairs


def _field(pair: Any, name: str) -> str:
    value = pair.get(name) if isinstance(pair, dict) else getattr(pair, name, None)
    return "" if value is None else str(value)


def _cut(text: str, max_chars: int, keep_end: bool = False) -> tuple[str, bool]:
    if len(text) <= max_chars:
        return text, False
    return ("…" + text[-(max_chars - 1):], True) if keep_end else (text[: max_chars - 1] + "…", True)


def hard_pair_records(pairs: Sequence[Any], r_c, r_r, margin=None, k: int = HARD_PAIRS_K,
                      max_chars: int = HARD_PAIR_MAX_CHARS, len_c=None, len_r=None,
                      truncated: Sequence[bool] | None = None) -> list[dict]:
    """The k pairs with the most negative reward gap, hardest first, ready for hard_pairs.jsonl.

    One copy of each text, capped at `max_chars` so the file stays small over hundreds of evals
    (2,000 chars is the whole response for nearly every HH or OASST pair): the prompt keeps its
    end (the last turn is what the responses answer), the responses their start; `text_cut` says
    whether anything was cut for the file, `truncated` whether the model saw the pair cut to
    max_length (given per pair by the caller). Viewers shorten further for list rows. `pairs` holds objects or
    dicts with prompt/chosen/rejected; margin and lengths are optional [n] arrays.
    """
    r_c, r_r = _f(r_c), _f(r_r)
    gap = r_c - r_r  # [n]
    m = None if margin is None else _f(margin)  # [n]
    lens = None if len_c is None or len_r is None else (_f(len_c), _f(len_r))  # [n], [n]
    out = []
    for i in hardest_pairs(gap, k):
        i = int(i)
        prompt, cut_p = _cut(_field(pairs[i], "prompt"), max_chars, keep_end=True)
        chosen, cut_c = _cut(_field(pairs[i], "chosen"), max_chars)
        rejected, cut_r = _cut(_field(pairs[i], "rejected"), max_chars)
        rec = {"index": i, "prompt": prompt, "chosen": chosen, "rejected": rejected,
               "chosen_reward": round(float(r_c[i]), 4), "rejected_reward": round(float(r_r[i]), 4),
               "gap": round(float(gap[i]), 4),
               "margin": None if m is None else _num(round(float(m[i]), 4)),
               "truncated": bool(truncated[i]) if truncated is not None else False,
               "text_cut": cut_p or cut_c or cut_r}
        if lens is not None:
            rec["chosen_len"], rec["rejected_len"] = int(lens[0][i]), int(lens[1][i])
        out.append(rec)
    return out


def subset_accuracy(subsets: Sequence[str | None], r_c, r_r) -> dict[str, float]:
    """Accuracy and pair count per `subset` label (pairs without one are left out), in set order."""
    if not any(s is not None for s in subsets):
        return {}
    right = _f(r_c) > _f(r_r)  # [n]
    out: dict[str, float] = {}
    for name in sorted({s for s in subsets if s is not None}):
        mask = np.fromiter((s == name for s in subsets), dtype=bool, count=len(subsets))
        out[M.subset_key(name, M.ACCURACY)] = float(right[mask].mean())
        out[M.subset_key(name, M.N_PAIRS)] = int(mask.sum())
    return out


def append_hard_pairs(path: Path | str, step: int, set_name: str, records: list[dict]) -> None:
    """One line {step, set, pairs} appended and flushed; call on the main process only."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"step": int(step), "set": set_name, "pairs": records}, ensure_ascii=False)
    with open(path, "a+b") as fh:
        if fh.tell() > 0:  # a writer killed mid-line left a fragment: start on a fresh line
            fh.seek(-1, 2)
            if fh.read(1) != b"\n":
                fh.write(b"\n")
        fh.write(line.encode("utf-8") + b"\n")


def read_hard_pairs(path: Path | str) -> list[dict]:
    """Every well-formed {step, set, pairs} line in file order; torn or foreign lines skipped."""
    try:
        raw = Path(path).read_bytes()
    except OSError:
        return []
    out = []
    for line in raw.split(b"\n"):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and isinstance(obj.get("set"), str) and isinstance(obj.get("pairs"), list):
            out.append({"step": int(obj.get("step") or 0), "set": obj["set"],
                        "pairs": [p for p in obj["pairs"] if isinstance(p, dict)]})
    return out


def latest_hard_pairs(entries: Iterable[dict]) -> dict[str, dict]:
    """The last entry written for each eval set (after a resume, the newest line wins)."""
    out: dict[str, dict] = {}
    for entry in entries:
        out[entry["set"]] = entry
    return out


def latest_diagnostics(records: Iterable[M.Record]) -> dict[str, tuple[int, dict[str, Any]]]:
    """Eval set -> (step, data) of its last eval record that carries diagnostics, in the order
    the sets first appear (heldout, then the named sets as the trainer logs them)."""
    out: dict[str, tuple[int, dict[str, Any]]] = {}
    for r in records:
        if M.is_eval(r.split) and ECE in r.data:
            out[M.eval_set(r.split)] = (r.step, r.data)
    return out
