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
    notes: str = ""
    archived: bool = False  # hidden from `aplot ls` and the runs table unless asked for

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


@dataclass
class _Scanned:
    """What a metrics file held up to `offset` (a line's end): its latest step and values, by key."""

    inode: int
    offset: int
    step: int
    values: dict[str, float]


_SCANNED: dict[str, _Scanned] = {}  # by path: a refresh reads only what was appended since the last
COLD_CHUNK = 65536
COLD_LIMIT = 64 << 20  # a first look reads back at most this far for the newest eval (one RM eval is ~10 KB)


def latest_metrics(path: Path) -> tuple[int, dict[str, float]]:
    """The latest step and each metric's latest value in a metrics file, the newest eval included.

    The first look reads back from the end until it holds the newest eval round whole (an eval line
    can be longer than a whole tail window of train lines); later looks read only the lines appended
    since. A resume rewrites the file (the lines past its checkpoint move out): a new inode or a
    shorter file, so it is looked at afresh and never shows the lines that went."""
    try:
        st = os.stat(path)
    except OSError:
        _SCANNED.pop(str(path), None)
        return 0, {}
    seen = _SCANNED.get(str(path))
    if seen is None or seen.inode != st.st_ino or st.st_size < seen.offset:
        seen = _cold(path, st.st_ino)
    elif st.st_size > seen.offset:
        seen = _appended(path, seen)
    if seen is None:
        return 0, {}
    _SCANNED[str(path)] = seen
    return seen.step, dict(seen.values)


def _cold(path: Path, inode: int) -> _Scanned | None:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            end = fh.tell()
            fh.seek(0)
            data = b""
            start = end
            while True:  # back a doubling window at a time until the newest eval round is inside
                start = max(0, end - max(COLD_CHUNK, 2 * (end - start)))
                fh.seek(start)
                data = fh.read(end - start)
                cut = data.rfind(b"\n") + 1
                lines = data[:cut].split(b"\n")
                if start > 0:
                    lines = lines[1:]  # the first line is probably cut
                records = [r for r in (M.parse_line(x) for x in lines if x.strip()) if r is not None]
                if start == 0 or end - start >= COLD_LIMIT or _has_whole_eval(records):
                    break
    except OSError:
        return None
    step, values = latest_values(records)
    return _Scanned(inode, start + cut, step, values)


def _has_whole_eval(records: list[M.Record]) -> bool:
    """Whether the newest eval step's records are all there: a record of an earlier step precedes them."""
    evals = [r.step for r in records if M.is_eval(r.split)]
    if not evals:
        return False
    first = next(i for i, r in enumerate(records) if M.is_eval(r.split) and r.step == evals[-1])
    return any(r.step < evals[-1] for r in records[:first])


def _appended(path: Path, seen: _Scanned) -> _Scanned | None:
    try:
        with open(path, "rb") as fh:
            fh.seek(seen.offset)
            data = fh.read()
    except OSError:
        return None
    cut = data.rfind(b"\n") + 1  # a line still being written waits for the next look
    step, values = latest_values([r for r in (M.parse_line(x) for x in data[:cut].split(b"\n") if x.strip())
                                  if r is not None])
    return _Scanned(seen.inode, seen.offset + cut, max(seen.step, step), {**seen.values, **values})


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
    step, values = latest_metrics(paths.metrics)
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
        notes=str(manifest.get("notes", "")), archived=bool(manifest.get("archived", False)),
    )


def list_rows(root: Path, archived: bool = False) -> list[RunRow]:
    """A row per run of the store, oldest first; archived runs only with `archived`."""
    runs = [(p, m) for p, m in mf.list_runs(Path(root)) if archived or not m.get("archived")]
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
    """By a column, by `metric` (each row's first key metric) or by a named metric
    (`eval/heldout/accuracy`): rows without that metric go last either way."""
    if key not in SORT_KEYS:
        have = [r for r in rows if key in r.metrics]
        return sorted(have, key=lambda r: r.metrics[key], reverse=reverse) + [r for r in rows if key not in r.metrics]
    if key == "metric":
        have = [r for r in rows if r.metrics]
        return (sorted(have, key=lambda r: next(iter(r.metrics.values())), reverse=reverse)
                + [r for r in rows if not r.metrics])
    keyfun = {"created": lambda r: r.id, "name": lambda r: r.name, "status": lambda r: r.status,
              "kind": lambda r: r.kind, "loss": lambda r: r.loss, "step": lambda r: r.step}[key]
    return sorted(rows, key=keyfun, reverse=reverse)


def format_age(seconds: float) -> str:
    s = int(max(seconds, 0))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"
