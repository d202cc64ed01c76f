"""An eval record's sections and subsets as text (RewardBench's table): `aplot show` and the TUI's
diagnostics screen print it. The numbers are the eval's own (`engine.analysis.rewardbench`,
`engine.analysis.sections`); this module only lays them out."""

from __future__ import annotations

from typing import Any

from engine import metrics as M

from .textfmt import fmt


def _named(record: dict[str, Any], prefix: str, metric: str) -> dict[str, Any]:
    """name -> value of the keys `<prefix><name>/<metric>`, in the record's order."""
    tail = "/" + metric
    return {k[len(prefix):-len(tail)]: v for k, v in record.items() if k.startswith(prefix) and k.endswith(tail)}


def score_lines(record: dict[str, Any]) -> list[str]:
    """The overall score, each section's, and each subset's accuracy with its count (items for an
    N-way set, else pairs); nothing for a record without subsets or sections."""
    sections = _named(record, M.SECTION_PREFIX, M.ACCURACY)
    subsets = _named(record, M.SUBSET_PREFIX, M.ACCURACY)
    if not sections and not subsets:
        return []
    lines = []
    if M.SECTIONS_MEAN in record:
        lines.append(f"  overall (mean of the {len(sections)} sections)  {fmt(record[M.SECTIONS_MEAN], '.4f')}")
    width = max(map(len, [*sections, *subsets]))
    lines += [f"    {name:<{width}}  {fmt(value, '.4f')}" for name, value in sections.items()]
    if subsets:
        unit = "items" if M.N_ITEMS in record else "pairs"
        lines.append(f"  subsets: accuracy ({unit})")
        for name, value in sorted(subsets.items()):
            n = record.get(M.subset_key(name, M.N_ITEMS), record.get(M.subset_key(name, M.N_PAIRS)))
            lines.append(f"    {name:<{width}}  {fmt(value, '.4f')}  ({fmt(n, 'd')})")
    return lines


def compact_lines(name: str, record: dict[str, Any]) -> list[str]:
    """At most two lines for a table: the overall and each section's score, then each subset's accuracy."""
    sections = _named(record, M.SECTION_PREFIX, M.ACCURACY)
    subsets = _named(record, M.SUBSET_PREFIX, M.ACCURACY)
    lines = []
    if sections:
        overall = f"overall {fmt(record.get(M.SECTIONS_MEAN))} · " if M.SECTIONS_MEAN in record else ""
        lines.append(f"{name}: {overall}" + " · ".join(f"{k} {fmt(v)}" for k, v in sections.items()))
    if subsets and set(subsets) != set(sections):  # RewardBench 2's subsets are its sections
        lines.append(f"{name} subsets: " + " · ".join(f"{k} {fmt(v)}" for k, v in sorted(subsets.items())))
    return lines
