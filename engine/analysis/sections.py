"""Sections of an evaluation, the way RewardBench reports (Chat, Chat Hard, Safety, Reasoning).

A sections file is TOML, one entry per section: a list of subsets (each weighted by its pair count,
so the section score is the accuracy over all its pairs), or a table of subset = weight:

    Chat = ["alpacaeval-easy", "mt-bench-easy"]
    Safety = { refusals-dangerous = 1.0, donotanswer = 2.0 }

A section's score is the weighted mean of its subsets' accuracies; the headline is the plain mean of
the section scores. Torch-free: the CLI checks the file before a run is created.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from engine import metrics as M
from engine.analysis import rewardbench as RB
from engine.config import ConfigError


def read_sections(path: str | Path) -> dict[str, dict[str, float | None]]:
    """section -> {subset: weight, or None for "by pair count"}; one line per problem. The name
    `rewardbench` (no such file needed) is RewardBench v1's own table (`engine.analysis.rewardbench`)."""
    where = str(path)
    if where == RB.SUITE_V1 and not Path(where).exists():
        return RB.v1_table()
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError([f"eval.sections: no such file {where!r}"]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([f"eval.sections: cannot read {where!r} ({e})"]) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([f"{where}: malformed TOML: {e}"]) from None
    out: dict[str, dict[str, float | None]] = {}
    problems = []
    for name, value in data.items():
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            out[name] = dict.fromkeys(value)
        elif isinstance(value, dict) and value and all(
                isinstance(w, (int, float)) and not isinstance(w, bool) and w > 0 for w in value.values()):
            out[name] = {k: float(w) for k, w in value.items()}
        else:
            problems.append(f"{where}: section {name!r}: expected a list of subsets or a table of "
                            f"subset = positive weight, got {value!r}")
    if not out and not problems:
        problems.append(f"{where}: no sections")
    if problems:
        raise ConfigError(problems)
    return out


def section_scores(result: dict, sections: dict[str, dict[str, float | None]]) -> dict[str, float]:
    """Section scores and their mean from one eval record's per-subset accuracies and counts.
    A subset the data does not have is an error: a silently missing subset would move the score."""
    out: dict[str, float] = {}
    for name, subsets in sections.items():
        total = weight_sum = 0.0
        for subset, weight in subsets.items():
            acc = result.get(M.subset_key(subset, M.ACCURACY))
            if acc is None:
                raise ValueError(f"eval.sections: section {name!r} names subset {subset!r}, which the eval set "
                                 "does not have")
            w = weight if weight is not None else float(result[M.subset_key(subset, M.N_PAIRS)])
            total += w * acc
            weight_sum += w
        out[M.section_key(name)] = total / weight_sum
    out[M.SECTIONS_MEAN] = sum(out.values()) / len(sections)
    return out
