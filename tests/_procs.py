"""Process helpers for tests that start real runs: find a run's processes, kill them and wait for
their exit (a pidfd turns readable when a process exits, reaped or not: no sleep, no guess), and end
every process a test left behind."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from engine.runs import liveness

# Like the trainer, it hears SIGINT even when the test runner was started with SIGINT ignored.
STAND_IN = "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); sys.stdin.read()"


def fake_trainer(run_dir: Path, *args: str) -> subprocess.Popen:
    """A process standing in for a run's trainer, in a session of its own: it holds the run's liveness
    lock from its first instant (handed over as the supervisor does) and waits until its stdin closes.
    `args` land on its command line (a run id, say)."""
    fd = liveness.hold(run_dir, inheritable=True)
    try:
        return subprocess.Popen([sys.executable, "-c", STAND_IN, *args], stdin=subprocess.PIPE, start_new_session=True,
                                pass_fds=(fd,))
    finally:
        os.close(fd)


def wait_for(predicate, timeout: float, what: str, poll: float = 0.02):
    """Poll `predicate` until it returns something true (returned), or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _stat(pid: int | str) -> tuple[str, int] | None:
    """(state, process group) from /proc/<pid>/stat, or None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[2])


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group `pgid`."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (info := _stat(entry.name)) and info[0] != "Z" and info[1] == pgid:
            out.append(int(entry.name))
    return out


def is_zombie(pid: int) -> bool:
    info = _stat(pid)
    return info is not None and info[0] == "Z"


def wait_exited(pids: list[int], timeout: float = 60.0) -> None:
    """Block until every pid has exited (zombies count as exited: their locks and files are released)."""
    fds = []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            fds.append(os.pidfd_open(pid))
    deadline = time.monotonic() + timeout
    try:
        pending = list(fds)
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{len(pending)} process(es) still running after {timeout:.0f}s")
            ready, _, _ = select.select(pending, [], [], left)
            pending = [fd for fd in pending if fd not in ready]
    finally:
        for fd in fds:
            os.close(fd)


def stop_group(pgid: int, timeout: float = 30.0) -> None:
    """SIGSTOP a process group and return once every member is stopped: the signal takes effect only
    when a process next leaves the kernel (after an fsync, say), and until then it still runs and
    still takes its other signals."""
    os.killpg(pgid, signal.SIGSTOP)
    wait_for(lambda: all((_stat(pid) or ("T",))[0] in "Tt" for pid in group_members(pgid)), timeout,
             f"process group {pgid} to stop", poll=0.001)


def kill_group(pgid: int, timeout: float = 60.0) -> None:
    """SIGKILL a whole process group (frozen members too) and return once every member has exited."""
    members = group_members(pgid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    wait_exited(members, timeout)


def run_processes_under(root: Path) -> dict[int, int]:
    """pid → process group of the live processes whose command line names a run folder under `root`."""
    needle = str(Path(root).resolve()).encode()
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"--run-dir" in cmdline and needle in cmdline and (info := _stat(entry.name)) and info[0] != "Z":
            out[int(entry.name)] = info[1]
    return out


def end_runs_under(root: Path) -> list[int]:
    """Kill every run process left under `root` (its whole group, unless that is the test runner's own
    group, as for a trainer started without a session of its own); the pids found."""
    found = run_processes_under(root)
    own = os.getpgid(0)
    for pgid in sorted(set(found.values()) - {own}):
        with contextlib.suppress(AssertionError):
            kill_group(pgid, timeout=30)
    strays = [pid for pid, pgid in found.items() if pgid == own]
    for pid in strays:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(AssertionError):
        wait_exited(strays, timeout=30)
    return sorted(found)


def write_results(acc, path, results: dict) -> None:
    """A distributed test worker's answer: rank 0 writes it as JSON, every rank waits for that, then
    ends its process group as a run does (`end_training`): a rank that exits with gloo's threads still
    up can abort ("terminate called without an active exception"), failing a launch that worked."""
    import json

    if acc.is_main_process:
        with open(path, "w") as fh:
            json.dump(results, fh)
    acc.wait_for_everyone()
    acc.end_training()
