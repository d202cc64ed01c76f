"""What a power cut leaves: a reader trusts a marker (the manifest, a checkpoint's `done`, an export's
folder name) only once what it vouches for is on disk. Data is on disk when the file was fsynced; its
name is when the folder holding it was fsynced after it appeared. The tests record every fsync and
rename, in order, and check that each marker was made durable after what it marks, never before."""

from __future__ import annotations

import json
import os
import runpy
from pathlib import Path

from _cli import aplot

from engine.runs import store as mf

LOG_ENV = "APLOT_TEST_SYNC_LOG"
# Loaded by every Python process of the run (the CLI, accelerate launch, the trainer) through PYTHONPATH:
# os.fsync and os.replace log what they did, after doing it, one line per call.
HOOK = f'''
import json, os
_log = os.environ.get("{LOG_ENV}")
if _log:
    _fsync, _replace = os.fsync, os.replace

    def _note(*event):
        fd = os.open(_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (json.dumps(event) + "\\n").encode())
        finally:
            os.close(fd)

    def fsync(fd):
        _fsync(fd)
        fd = fd if isinstance(fd, int) else fd.fileno()
        _note("fsync", os.readlink(f"/proc/self/fd/{{fd}}"))

    def replace(src, dst, **kwargs):
        _replace(src, dst, **kwargs)
        _note("replace", os.path.realpath(src), os.path.realpath(dst))

    os.fsync, os.replace = fsync, replace
'''


class Events:
    """The recorded calls, in order: ("fsync", path) and ("replace", src, dst)."""

    def __init__(self, events: list[list[str]]):
        self.events = events

    def fsyncs(self, path: Path, after: int = -1, before: int | None = None) -> list[int]:
        end = len(self.events) if before is None else before
        return [i for i, e in enumerate(self.events[:end]) if i > after and e[0] == "fsync" and e[1] == str(path)]

    def next_replace(self, after: int) -> int:
        """The first rename after event `after` (the next marker some reader trusts), or the end."""
        return next((i for i, e in enumerate(self.events) if i > after and e[0] == "replace"), len(self.events))

    def replaces_onto(self, dst: Path) -> list[int]:
        return [i for i, e in enumerate(self.events) if e[0] == "replace" and e[2] == str(dst)]

    def content_synced(self, path: Path, before: int) -> int | None:
        """When the data at `path` by event `before` was fsynced: written in place and fsynced before
        it, or written to a temp file, fsynced, then renamed onto `path` (by `before` itself, perhaps).
        None if it never was."""
        at = self.fsyncs(path, before=before)
        for j in (j for j in self.replaces_onto(path) if j <= before):
            src = Path(self.events[j][1])
            if self.fsyncs(src, before=j):
                at.append(self.fsyncs(src, before=j)[-1])
        return max(at) if at else None


def record(monkeypatch, log: Path) -> None:
    """The hook, in this process."""
    monkeypatch.setenv(LOG_ENV, str(log))
    hook = log.with_name("fsync_hook.py")
    hook.write_text(HOOK)
    saved = os.fsync, os.replace
    runpy.run_path(str(hook))
    patched = os.fsync, os.replace
    os.fsync, os.replace = saved
    monkeypatch.setattr(os, "fsync", patched[0])
    monkeypatch.setattr(os, "replace", patched[1])


def read_events(log: Path) -> Events:
    return Events([json.loads(line) for line in log.read_text().splitlines()])


def test_a_manifest_write_syncs_the_file_then_renames_then_syncs_the_folder(tmp_path, monkeypatch):
    paths = mf.RunPaths(tmp_path / "run")
    paths.dir.mkdir()
    log = tmp_path / "sync.log"
    record(monkeypatch, log)
    mf.write_atomic(paths.manifest, 'status = "running"\n')
    events = read_events(log)
    (moved,) = events.replaces_onto(paths.manifest.resolve())
    assert events.content_synced(paths.manifest.resolve(), moved) is not None  # the data before its name
    assert events.fsyncs(paths.dir.resolve(), after=moved)  # then the name


def test_a_checkpoint_is_done_only_after_its_weights_are_on_disk(tiny_config, tmp_path, runs_dir):
    hook, log = tmp_path / "hook", tmp_path / "sync.log"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HOOK)
    env = {**os.environ, LOG_ENV: str(log),
           "PYTHONPATH": os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH")) if p)}
    proc = aplot("run", tiny_config, "-q", runs_dir=runs_dir, env=env)
    assert proc.returncode == 0, proc.stderr
    ((paths, manifest),) = mf.list_runs(runs_dir)
    assert manifest["status"] == "completed"
    events = read_events(log)
    ckpts = paths.checkpoints.resolve()

    steps = sorted(ckpts.glob("step-*"))
    assert [d.name for d in steps] == ["step-3", "step-6"]
    for d in steps:
        done = d / "done"
        (marked,) = events.replaces_onto(done)  # `done` appears in one rename, whole
        assert events.content_synced(done, marked) is not None, d.name
        synced = {f.name: events.content_synced(f, marked) for f in d.iterdir() if f.name != "done"}
        assert {"model.safetensors", "optimizer.bin", "trainer_state.json"} <= synced.keys()
        assert None not in synced.values(), (d.name, synced)  # every file's data was on disk before `done` existed
        assert events.fsyncs(d, after=max(synced.values()), before=marked), d.name  # and their names
        then = events.next_replace(marked)  # the manifest's last_checkpoint: by then `done` must be on disk
        assert events.fsyncs(d, after=marked, before=then), d.name  # then `done`'s own name
        assert events.fsyncs(ckpts, after=marked, before=then), d.name  # and step-N's

    for name in ("best", "final"):  # an export is written to a temp folder and renamed: the name is the marker
        export = ckpts / name
        *earlier, moved = events.replaces_onto(export)
        tmp = Path(events.events[moved][1])
        since = earlier[-1] if earlier else -1
        synced = {f.name: events.fsyncs(tmp / f.name, after=since, before=moved) for f in export.iterdir()}
        assert "model.safetensors" in synced and all(synced.values()), (name, synced)
        assert events.fsyncs(tmp, after=max(max(v) for v in synced.values()), before=moved), name
        assert events.fsyncs(ckpts, after=moved, before=events.next_replace(moved)), name
