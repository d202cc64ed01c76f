"""Which half of the demo (`demo-rm`, then `demo-ppo` against it) each command-line override goes to.

A table only one half reads goes there (`ppo.*` to PPO; `loss`, `data`, `eval` to the reward model);
`rm:` or `ppo:` in front of an override picks a half; everything else goes to both, and a field that
means something different in each (`optim.max_steps`: RM steps, then PPO steps) is said out loud.
"""

from __future__ import annotations

HALVES = ("rm", "ppo")
ONLY = {"ppo": "ppo", "loss": "rm", "data": "rm", "eval": "rm"}  # top-level table -> the one half that reads it
SAME_IN_BOTH = ("seed", "launch", "log", "tags", "notes")  # the same meaning in both halves: no word needed


def split(overrides: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """({"rm": [...], "ppo": [...]}, notes): each override in the half (or halves) it goes to, and a
    line for each one that went to both halves where the field means two things."""
    out: dict[str, list[str]] = {h: [] for h in HALVES}
    notes = []
    for item in overrides:
        half, colon, rest = item.partition(":")
        if colon and half in HALVES and "=" not in half:
            out[half].append(rest)
            continue
        key = item.partition("=")[0].strip()
        top = key.split(".")[0]
        if top in ONLY:
            out[ONLY[top]].append(item)
            continue
        for h in HALVES:
            out[h].append(item)
        if top not in SAME_IN_BOTH:
            notes.append(f"{key}: set in both halves of the demo (rm and ppo); write rm:{item} or ppo:{item} "
                         "for one")
    return out, notes
