"""`aplot show RUN --diagnostics`: the latest reward-model diagnostics of a run as plain text.

Reads only the run folder (metrics.jsonl, hard_pairs.jsonl); the numbers come from
`engine.analysis.bias_checks` at each eval, so this module formats and never recomputes. Torch-free.
"""

from __future__ import annotations

from typing import Any

from engine import metrics as M
from engine.analysis import bias_checks as D
from engine.analysis.bias_checks import latest_diagnostics
from engine.runs.store import RunPaths

from .textfmt import fmt, shorten

SHOW_PAIRS = 5


def reliability_line(data: dict[str, Any]) -> str:
    """The filled bins of the reliability diagram, as `[lo,hi) conf→acc (n)`."""
    conf, acc, count = (data.get(k) or [] for k in (M.RELIABILITY_CONF, M.RELIABILITY_ACC,
                                                     M.RELIABILITY_COUNT))
    bins = len(count)
    parts = [f"[{b / bins:.1f},{(b + 1) / bins:.1f}) {fmt(conf[b], '.2f')}→{fmt(acc[b], '.2f')} ({n})"
             for b, n in enumerate(count) if n and b < len(conf) and b < len(acc)]
    return "  ".join(parts)


def render_set(name: str, step: int, data: dict[str, Any]) -> list[str]:
    n = sum(int(data.get(D.BUCKET_N[b]) or 0) for b in D.BUCKETS)
    lines = [f"{M.eval_split(name)} @ step {step}   ({n} pairs; 'similar' = |len⁺ − len⁻| ≤ "
             f"{fmt(data.get(M.LENGTH_THRESHOLD), '.1f')} tokens)",
             f"  accuracy              {fmt(data.get(M.ACCURACY))}",
             f"  rule 'shorter wins'   {fmt(data.get(M.SHORTER_WINS_ACC))}",
             f"  rule 'longer wins'    {fmt(data.get(M.LONGER_WINS_ACC))}",
             "  by length difference   pairs  accuracy"]
    for b in D.BUCKETS:
        lines.append(f"    {b.replace('_', ' '):<20} {int(data.get(D.BUCKET_N[b]) or 0):>5}  "
                     f"{fmt(data.get(D.BUCKET_ACC[b]))}")
    lines += [f"  ECE ({len(data.get(M.RELIABILITY_COUNT) or []) or D.ECE_BINS} bins)         "
              f"{fmt(data.get(M.ECE))}",
              f"  reward-length corr    {fmt(data.get(M.REWARD_LENGTH_CORR), '+.3f')}"]
    if data.get(M.RELIABILITY_COUNT):
        lines.append(f"  reliability           {reliability_line(data)}")
    warning = D.length_bias_warning(data.get(M.ACCURACY), data)
    if warning:
        lines.append(f"  ! {warning}")
    return lines


def render_pairs(entry: dict, limit: int = SHOW_PAIRS) -> list[str]:
    lines = ["", f"  hardest pairs @ step {entry['step']} (of {len(entry['pairs'])} kept)"]
    for rank, p in enumerate(entry["pairs"][:limit], 1):
        lens = (f"  len {p['chosen_len']}/{p['rejected_len']}"
                if "chosen_len" in p and "rejected_len" in p else "")
        lines += [f"  {rank:>2}. #{p.get('index', '?')}  gap {fmt(p.get('gap'), '+.3f')}  "
                  f"r⁺ {fmt(p.get('chosen_reward'))}  r⁻ {fmt(p.get('rejected_reward'))}  "
                  f"margin {fmt(p.get('margin'))}{lens}",
                  f"      prompt:   {shorten(p.get('prompt', ''))}",
                  f"      chosen:   {shorten(p.get('chosen', ''))}",
                  f"      rejected: {shorten(p.get('rejected', ''))}"]
    return lines


def render_diagnostics(paths: RunPaths) -> str:
    """Per eval set: accuracy against the two length rules, the length-bucket table, ECE,
    reward-length correlation, a length-bias warning if due, and the hardest pairs."""
    latest = latest_diagnostics(M.read_all(paths.metrics))
    hard = D.latest_hard_pairs(D.read_hard_pairs(paths.hard_pairs))
    if not latest and not hard:
        return (f"{paths.id}: no reward-model diagnostics yet "
                "(a reward-model run writes them with each eval)")
    out = [f"reward-model diagnostics · {paths.id}"]
    for name in list(latest) + [s for s in hard if s not in latest]:
        out.append("")
        if name in latest:
            out += render_set(name, *latest[name])
        else:
            out.append(f"{M.eval_split(name)}: no diagnostics in the metrics stream")
        if name in hard and hard[name]["pairs"]:
            out += render_pairs(hard[name])
    return "\n".join(out)
