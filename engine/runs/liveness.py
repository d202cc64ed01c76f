"""Is a run alive? One rule for `aplot ls`, `show`, the TUI, `stop` and `resume`, with no pid in it.

A pid cannot answer: a killed rank that nobody reaped is a zombie and still answers `kill(pid, 0)`,
a pid can be reused, and a run on another machine that shares the run store has no pid here at all.
So every process of a run holds a shared `flock` on `runs/<id>/.alive.lock` for its whole life: the
run service takes it before it spawns the launcher and hands the open file over (the launcher keeps
it), and each rank takes its own when it starts. The kernel drops a process's locks the instant it
exits, zombie or not, so "nobody holds the lock" means "no process of this run is left on this host".

A watcher on another host cannot see those locks (and `flock` over a network file system is not to
be trusted), so rank 0 also writes a heartbeat, `runs/<id>/heartbeat`, every `HEARTBEAT_S` seconds.
A run recorded on another host is alive while its newest beat is younger than `STALE_AFTER`
intervals. Torch-free: the UI uses it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import threading
import time
from pathlib import Path

ALIVE_LOCK = ".alive.lock"
HEARTBEAT = "heartbeat"
HEARTBEAT_S = 5.0  # seconds between beats
STALE_AFTER = 6  # a remote run is crashed once its newest beat is this many intervals old (30 s)


def this_host() -> str:
    return socket.gethostname()


def hold(run_dir: Path, inheritable: bool = False) -> int:
    """Take a shared hold on the run's liveness lock; the open fd (closing it, or exiting, lets go).

    Shared, so the launcher and every rank can hold it at once; a checker asks for it exclusively.
    """
    fd = os.open(Path(run_dir) / ALIVE_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    fcntl.flock(fd, fcntl.LOCK_SH)  # waits only for a checker's instant exclusive probe
    os.set_inheritable(fd, inheritable)
    return fd


def lock_held(path: Path) -> bool:
    """Whether any live process on this host holds the lock file `path` (a run's liveness lock, a
    sweep's scheduler lock): an exclusive probe that fails while anyone holds it. The kernel drops a
    lock when its last holder exits, zombie or not, so this never trusts a pid."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing also releases the probe's own lock
    return False


def held_here(run_dir: Path) -> bool:
    """Whether a process of the run is alive on this host."""
    return lock_held(Path(run_dir) / ALIVE_LOCK)


def beat(run_dir: Path, now: float | None = None) -> None:
    """Write one heartbeat: the time and the host, replaced atomically."""
    path = Path(run_dir) / HEARTBEAT
    tmp = path.with_name(f".{HEARTBEAT}.{os.getpid()}.tmp")
    tmp.write_text(f"{time.time() if now is None else now:.3f} {this_host()}\n")
    os.replace(tmp, path)


def last_beat(run_dir: Path) -> float | None:
    """Unix time of the newest heartbeat, or None when there is none (yet)."""
    try:
        return float((Path(run_dir) / HEARTBEAT).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class Heartbeat:
    """A daemon thread that beats every `interval` seconds until `stop()` (or the process dies)."""

    def __init__(self, run_dir: Path, interval: float = HEARTBEAT_S):
        self.run_dir, self.interval = Path(run_dir), interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="aplot-heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        beat(self.run_dir)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(OSError):  # a full disk must not kill training; the beat goes stale
                beat(self.run_dir)

    def stop(self) -> None:
        self._stop.set()


def alive(run_dir: Path, manifest: dict, now: float | None = None) -> bool:
    """The one rule: on this host, the lock; on another host, a heartbeat fresher than STALE_AFTER."""
    host = manifest.get("host")
    if not host or host == this_host():
        return held_here(run_dir)
    seen = last_beat(run_dir)
    if seen is None:  # launched there but not beating yet: the launch time stands in for a first beat
        seen = _launch_time(manifest)
    return seen is not None and (time.time() if now is None else now) - seen < STALE_AFTER * HEARTBEAT_S


def _launch_time(manifest: dict) -> float | None:
    from datetime import datetime

    try:
        return datetime.fromisoformat(manifest["launched_at"]).timestamp()
    except (KeyError, ValueError, TypeError):
        return None


def processes_of(run_dir: Path) -> list[int]:
    """The live processes on this host whose command line names the run folder (`--run-dir DIR`): its
    launcher and every rank. A signal to the run's process group does not reach the ranks of a
    multi-process run, since torch's elastic agent starts each rank in a session of its own; the agent
    forwards SIGINT and SIGTERM to them, but a SIGKILL of the agent leaves them training, orphaned."""
    needle = b"--run-dir\0" + str(Path(run_dir).resolve()).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle + b"\0" in cmdline + b"\0" and state != "Z":
            found.append(int(entry.name))
    return found
