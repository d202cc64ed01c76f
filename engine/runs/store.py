"""The run folder and its manifest, the single source of truth about a run.

`manifest.toml` is written atomically (temp file in the same folder, fsync, rename) under an
advisory lock, so a reader never sees half a file and two writers (the run service and the
trainer) never lose each other's fields. Torch-free: the UI reads and writes it too.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import shutil
import tempfile
import time
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tomli_w

from engine.errors import AplotError

SCHEMA_VERSION = 1
MANIFEST = "manifest.toml"
METRICS = "metrics.jsonl"
LOG = "train.log"
CHECKPOINTS = "checkpoints"
HARD_PAIRS = "hard_pairs.jsonl"

RUN_ID_RE = re.compile(r"^[0-9]{8}-[0-9]{4,6}-[a-z0-9][a-z0-9-]{0,60}\Z")  # \Z: "$" allows a final \n


class RunError(AplotError):
    """A run that cannot be found, read or acted on; the message is one line for the user."""


def runs_root(cli_value: str | os.PathLike | None = None) -> Path:
    """--runs-dir, else $APLOT_RUNS_DIR, else ./runs."""
    return Path(cli_value or os.environ.get("APLOT_RUNS_DIR") or "runs")


def slug(text: str, limit: int = 24) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return (s[:limit].strip("-")) or "run"


def new_run_id(name: str, kind: str, loss: str | None = None, now: datetime | None = None) -> str:
    """Short, unique, sortable by creation time, readable: 20261129-211503-rm-aplot-k3f."""
    now = now or datetime.now()
    parts = [kind] + ([loss] if loss else []) + ([slug(name)] if name and name != "run" else [])
    tail = slug("-".join(parts), 40)
    return f"{now:%Y%m%d-%H%M%S}-{tail}-{secrets.token_hex(2)}"


def check_run_id(run_id: str) -> str:
    """Reject anything that is not a plain run id: no separators, no '..', no device names."""
    if not isinstance(run_id, str) or not RUN_ID_RE.match(run_id):
        raise RunError(f"{run_id!r}: not a run id (expected e.g. 20261129-211503-rm-aplot-k3f)")
    return run_id


@dataclass(frozen=True)
class RunPaths:
    dir: Path

    @property
    def id(self) -> str:
        return self.dir.name

    @property
    def manifest(self) -> Path:
        return self.dir / MANIFEST

    @property
    def metrics(self) -> Path:
        return self.dir / METRICS

    @property
    def log(self) -> Path:
        return self.dir / LOG

    @property
    def checkpoints(self) -> Path:
        return self.dir / CHECKPOINTS

    @property
    def hard_pairs(self) -> Path:
        return self.dir / HARD_PAIRS

    @property
    def lock(self) -> Path:
        return self.dir / ".manifest.lock"


def run_paths(root: Path, run_id: str) -> RunPaths:
    """The folder of a run inside `root`; the id is validated so it cannot escape the store."""
    check_run_id(run_id)
    root = Path(root)
    path = (root / run_id)
    if path.resolve().parent != root.resolve():
        raise RunError(f"{run_id!r}: resolves outside the run store {root}")
    return RunPaths(path)


def now_iso() -> str:
    return datetime.now(UTC).astimezone().isoformat(timespec="seconds")


def _strip_none(obj: Any) -> Any:
    """TOML has no null: drop None values (readers treat absent as None)."""
    if isinstance(obj, dict):
        return {k: _strip_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_strip_none(v) for v in obj if v is not None]
    return obj


def write_atomic(path: Path, text: str) -> None:
    write_atomic_bytes(path, text.encode("utf-8"))


def write_atomic_bytes(path: Path, data: bytes) -> None:
    """Temp file in the same folder, fsync, rename: readers see the old file or the new, never half."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def read(paths: RunPaths) -> dict:
    try:
        return tomllib.loads(paths.manifest.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{paths.dir}: no manifest.toml (not a run folder)") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise RunError(f"{paths.manifest}: unreadable manifest: {e}") from None


@contextlib.contextmanager
def _locked(paths: RunPaths):
    with open(paths.lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def write(paths: RunPaths, manifest: dict) -> None:
    paths.dir.mkdir(parents=True, exist_ok=True)
    with _locked(paths):
        write_atomic(paths.manifest, tomli_w.dumps(_strip_none(manifest)))


def _merge(base: dict, changes: dict) -> dict:
    out = dict(base)
    for k, v in changes.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def update(paths: RunPaths, **changes: Any) -> dict:
    """Read-modify-write under the lock; nested tables are merged, not replaced."""
    with _locked(paths):
        manifest = _merge(read(paths), changes)
        manifest["updated_at"] = now_iso()
        write_atomic(paths.manifest, tomli_w.dumps(_strip_none(manifest)))
    return manifest


def create(paths: RunPaths, *, name: str, kind: str, config: dict, tags: list[str] | None = None,
           notes: str = "", links: dict | None = None) -> dict:
    if paths.dir.exists() and paths.manifest.exists():
        raise RunError(f"{paths.id}: a run with this id already exists")
    paths.dir.mkdir(parents=True, exist_ok=True)
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "id": paths.id,
        "name": name,
        "kind": kind,
        "status": "created",
        "created_at": now_iso(),
        "updated_at": now_iso(),
        "tags": list(tags or []),
        "notes": notes,
        "config": config,
        "links": dict(links or {}),
    }
    write(paths, manifest)
    return manifest


def edit(paths: RunPaths, change) -> dict:
    """Read-modify-write of what a user keeps on a run (tags, notes, the archived flag) under the
    lock: `change(manifest)` edits it in place; the written manifest. The trainer's fields written
    meanwhile are never lost, and a half-written file is never seen."""
    with _locked(paths):
        manifest = read(paths)
        change(manifest)
        manifest["updated_at"] = now_iso()
        write_atomic(paths.manifest, tomli_w.dumps(_strip_none(manifest)))
    return manifest


def retag(paths: RunPaths, add: list[str], remove: list[str]) -> list[str]:
    """Add and remove tags (added in order, no duplicates); the run's tags after."""
    def change(m: dict) -> None:
        tags = [t for t in m.get("tags", []) if t not in remove]
        m["tags"] = tags + [t for t in dict.fromkeys(add) if t not in tags]

    return edit(paths, change)["tags"]


def set_notes(paths: RunPaths, text: str, append: bool = False) -> str:
    """Replace the run's notes, or add `text` as a new line; the notes after."""
    def change(m: dict) -> None:
        old = m.get("notes", "")
        m["notes"] = f"{old}\n{text}" if append and old else text

    return edit(paths, change)["notes"]


def set_archived(paths: RunPaths, archived: bool = True) -> None:
    """Hide a run from `aplot ls` and the runs table (shown again with --all), or bring it back."""
    edit(paths, lambda m: m.update(archived=archived))


def remove(paths: RunPaths) -> None:
    """Delete the run folder (the caller has made sure nothing of it is alive). The manifest goes
    first, under its lock, so a listing skips the folder from then on, whatever is left of it."""
    with _locked(paths):
        paths.manifest.unlink(missing_ok=True)
    shutil.rmtree(paths.dir)


def claim(paths: RunPaths, expect: str, *, fresh: bool = True, **changes: Any) -> bool:
    """Compare-and-set under the manifest lock: apply `changes` only if the run's status is still
    `expect` (and, with `fresh`, nothing was ever launched for it); whether it was. A sweep claims a
    queued run this way before it starts it, so no run is started twice, whoever else looks at the queue."""
    with _locked(paths):
        manifest = read(paths)
        if manifest.get("status") != expect or (fresh and launched(manifest)):
            return False
        manifest = _merge(manifest, changes)
        manifest["updated_at"] = now_iso()
        write_atomic(paths.manifest, tomli_w.dumps(_strip_none(manifest)))
    return True


def launched(manifest: dict) -> bool:
    """Whether a process was ever started for this run (a queued or new run has none)."""
    return bool(manifest.get("launched_at") or manifest.get("pid") or manifest.get("host"))


def list_runs(root: Path) -> list[tuple[RunPaths, dict]]:
    """Every readable run in the store, oldest first; unreadable folders are skipped."""
    root = Path(root)
    if not root.is_dir():
        return []
    out = []
    for child in sorted(root.iterdir()):
        # a link to a folder elsewhere is not a run of this store (run_paths refuses it by id too)
        if child.is_symlink() or not child.is_dir() or not RUN_ID_RE.match(child.name):
            continue
        paths = RunPaths(child)
        try:
            out.append((paths, read(paths)))
        except RunError:
            continue
    return out


def find_run(root: Path, ref: str) -> RunPaths:
    """A run by full id, by its name, or by any part of its id that only it has."""
    root = Path(root)
    if RUN_ID_RE.match(ref or "") and (root / ref / MANIFEST).exists():
        return run_paths(root, ref)
    if not ref or "/" in ref or "\\" in ref or ref.startswith("."):
        raise RunError(f"{ref!r}: not a run id")
    runs = list_runs(root)
    matches = [p for p, m in runs if m.get("name") == ref] or [p for p, _ in runs if ref in p.id]
    shown = ref if ref.isprintable() else repr(ref)  # the error stays one line whatever was typed
    if not matches:
        raise RunError(f"{shown}: no such run in {root}")
    if len(matches) > 1:
        more = f" and {len(matches) - 4} more" if len(matches) > 4 else ""
        raise RunError(f"{shown}: ambiguous, matches {len(matches)} runs: {', '.join(p.id for p in matches[:4])}{more}")
    return matches[0]


def exported_model(root: Path, ref: str) -> Path:
    """The exported model folder of a `[links]` entry: a run id of the store `root`, or a folder's path."""
    folder = Path(ref)
    if not RUN_ID_RE.match(ref):
        if not (folder / "config.json").exists():
            raise RunError(f"{ref}: not a model folder (no config.json)")
        return folder
    paths = run_paths(Path(root), ref)
    if not paths.manifest.is_file():
        raise RunError(f"{ref}: no such run in {root}")
    folder = paths.dir / read(paths).get("summary", {}).get("final_model", "checkpoints/final")
    if not (folder / "config.json").exists():
        raise RunError(f"run {ref} has no exported model at {folder}")
    return folder


def checkpoint_steps(paths: RunPaths) -> list[int]:
    """Steps of complete step checkpoints, ascending (an incomplete save has no `done` marker)."""
    out = []
    if paths.checkpoints.is_dir():
        for d in paths.checkpoints.iterdir():
            m = re.fullmatch(r"step-(\d+)", d.name)
            if m and (d / "done").exists():
                out.append(int(m.group(1)))
    return sorted(out)


def age(manifest: dict, now: float | None = None) -> float:
    try:
        t = datetime.fromisoformat(manifest["created_at"]).timestamp()
    except (KeyError, ValueError):
        return 0.0
    return (now or time.time()) - t
