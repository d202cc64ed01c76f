"""Rows and summaries of the runs in a store, for `aplot ls`/`show` and the runs screen.

Reads manifests and, for runs still going, only the tail of their metrics stream: listing a
store of many long runs must stay fast. Torch-free, textual-free.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine import metrics as M
from engine.runs import slurm
from engine.runs import status as S
from engine.runs import store as mf


@dataclass
class RunRow:
    id: str
    name: str
    kind: str
    loss: str
    status: str
    step: int
    total_steps: int
    metrics: dict[str, float] = field(default_factory=dict)
    age_s: float = 0.0
    tags: list[str] = field(default_factory=list)
    created_at: str = ""
    error: str = ""
    path: str = ""
    job: str = ""  # the Slurm job id of a scheduled run
    reason: str = ""  # why it is queued, or how its job ended without the trainer's word
    sweep: str = ""  # the id of the sweep that made it

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def last_records(path: Path, max_bytes: int = 65536) -> list[M.Record]:
    """The complete records in the last `max_bytes` of a metrics file (no full read)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            chunk = fh.read()
    except OSError:
        return []
    lines = chunk.split(b"\n")
    if size > max_bytes:
        lines = lines[1:]  # the first line is probably cut
    return [r for r in (M.parse_line(line) for line in lines if line.strip()) if r is not None]


def latest_values(records: list[M.Record]) -> tuple[int, dict[str, float]]:
    """Latest step and the latest value of each metric, by key (`loss`, `eval/heldout/accuracy`)."""
    step, out = 0, {}
    for r in records:
        step = max(step, r.step)
        for k, v in r.data.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out[M.metric_key(r.split, k)] = float(v)
    return step, out


def row(paths: mf.RunPaths, manifest: dict) -> RunRow:
    cfg = manifest.get("config", {})
    kind = manifest.get("kind", cfg.get("kind", "rm"))
    summary = manifest.get("summary", {})
    status, reason = S.with_reason(paths, manifest)
    step, values = latest_values(last_records(paths.metrics))
    metrics = {}
    keys = M.KEY_METRICS.get(kind, ())
    if kind == "eval":  # every scored set: its accuracy, and the sections' mean where there is one
        keys = [k for k in {**summary, **values} if k.startswith(M.EVAL_PREFIX)
                and k.endswith(("/" + M.ACCURACY, "/" + M.SECTIONS_MEAN)) and "/subset/" not in k
                and "/section/" not in k]
    for key in keys:
        if key in values:
            metrics[key] = values[key]
        elif key in summary:
            metrics[key] = summary[key]
    return RunRow(
        id=paths.id, name=manifest.get("name", ""), kind=kind,
        loss=M.loss_label(kind, cfg),
        status=status, step=step or int(summary.get("step", 0) or 0),
        total_steps=int(manifest.get("resolved", {}).get("total_steps", 0) or 0),
        metrics=metrics, age_s=mf.age(manifest), tags=list(manifest.get("tags", [])),
        created_at=manifest.get("created_at", ""), error=manifest.get("error", ""), path=str(paths.dir),
        job=slurm.job_of(manifest), reason=reason, sweep=str(manifest.get("sweep", {}).get("id", "")),
    )


def list_rows(root: Path) -> list[RunRow]:
    runs = mf.list_runs(Path(root))
    slurm.job_states([slurm.job_of(m) for _, m in runs if m.get("status") not in S.FINAL])  # one squeue for all
    return [row(p, m) for p, m in runs]


def filter_rows(rows: list[RunRow], text: str = "", status: str = "", kind: str = "", tag: str = "",
                sweep: str = "") -> list[RunRow]:
    """Case-insensitive substring match over id, name, loss and tags, plus exact field filters
    (`sweep` matches any part of the sweep id, so its name is enough)."""
    text = text.lower().strip()
    out = []
    for r in rows:
        hay = " ".join([r.id, r.name, r.loss, r.kind, r.status, *r.tags]).lower()
        if text and text not in hay:
            continue
        if status and r.status != status:
            continue
        if kind and r.kind != kind:
            continue
        if tag and tag not in r.tags:
            continue
        if sweep and (not r.sweep or sweep not in r.sweep):
            continue
        out.append(r)
    return out


def sweep_progress(rows: list[RunRow]) -> dict[str, dict[str, int]]:
    """sweep id → runs per status (and `total`), from rows already listed: no extra reads."""
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        if r.sweep:
            counts = out.setdefault(r.sweep, {"total": 0})
            counts["total"] += 1
            counts[r.status] = counts.get(r.status, 0) + 1
    return out


def format_progress(sweep_id: str, counts: dict[str, int]) -> str:
    """`sweep study-a 2/6 done, 2 running, 2 queued` (the id's date and hash left out)."""
    name = "-".join(sweep_id.split("-")[3:-1]) or sweep_id
    rest = [f"{counts[k]} {k}" for k in (S.RUNNING, S.CREATED, S.QUEUED, S.STOPPED, S.FAILED, S.CRASHED) if counts.get(k)]
    return f"sweep {name} {counts.get('completed', 0)}/{counts['total']} done" + "".join(f", {x}" for x in rest)


SORT_KEYS = ("created", "name", "status", "kind", "loss", "step", "metric")


def sort_rows(rows: list[RunRow], key: str = "created", reverse: bool = False) -> list[RunRow]:
    def metric(r: RunRow) -> float:
        return next(iter(r.metrics.values()), float("-inf"))

    keyfun = {"created": lambda r: r.id, "name": lambda r: r.name, "status": lambda r: r.status,
              "kind": lambda r: r.kind, "loss": lambda r: r.loss, "step": lambda r: r.step,
              "metric": metric}[key]
    return sorted(rows, key=keyfun, reverse=reverse)


def format_age(seconds: float) -> str:
    s = int(max(seconds, 0))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"
