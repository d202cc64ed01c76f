"""A real one-node Slurm cluster for tests: munged, slurmctld and slurmd started from a scratch folder.

Tests that submit real jobs need real daemons: a fake squeue cannot tell whether our sbatch scripts,
job states and cancellations behave as Slurm does. Everything but munged lives in the scratch folder
(config, state, spool, logs) and both daemons listen on free ports picked at start, so a cluster leaves
nothing behind and a crashed earlier one (a port still in TIME_WAIT) is no obstacle.

    with slurm_cluster(tmp_path) as cluster:
        subprocess.run(["sbatch", "--wrap", "true"], env=cluster.env, check=True)
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

COMMANDS = ("slurmctld", "slurmd", "sbatch", "squeue", "scancel", "scontrol", "sinfo", "munged", "munge", "unmunge")
MUNGE_KEY = Path("/etc/munge/munge.key")
MUNGE_DIRS = (Path("/run/munge"), Path("/var/log/munge"), Path("/var/lib/munge"), MUNGE_KEY.parent)
START_TIMEOUT = 30.0
# In the environment of both daemons, hence of every slurmstepd they spawn: stop() finds strays by it.
MARK = "APLOT_SLURM_CLUSTER"


_PRCTL = ctypes.CDLL(None, use_errno=True).prctl  # resolved here: the forked child only calls it
PR_SET_PDEATHSIG = 1


def _die_with_this_process() -> None:
    """A daemon's preexec: SIGTERM it when the test process that started it dies, even by SIGKILL (no
    finalizer runs then, and a cluster left running outlives the suite)."""
    _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)


def available() -> str | None:
    """None when a cluster can be started here, else why not (one line, for pytest.skip)."""
    for cmd in COMMANDS:
        if shutil.which(cmd) is None:
            return f"{cmd} not installed"
    if os.geteuid() != 0:
        return "a test Slurm cluster needs root (SlurmUser=root, munged run as user munge)"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "no user munge"
    return None


@dataclass
class Cluster:
    """A running cluster. Run every Slurm command with `env`: it points SLURM_CONF at `conf`."""

    scratch: Path
    conf: Path
    env: dict[str, str] = field(repr=False)
    node: str
    partition: str
    cpus: int
    procs: list[subprocess.Popen] = field(default_factory=list)  # slurmd, slurmctld, and munged if ours
    munged: subprocess.Popen | None = None

    def slurm(self, *args: str, check: bool = True) -> str:
        """Run a Slurm command against this cluster and return its stdout."""
        return subprocess.run(list(args), env=self.env, check=check, capture_output=True, text=True,
                              timeout=30).stdout

    def stop(self) -> None:
        """Cancel every job, then end the daemons (and munged if we started it), then any job process
        that escaped: afterwards nothing this cluster started is left running. Safe to call twice."""
        if any(p.poll() is None for p in self.procs if p is not self.munged):
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                self._cancel_all()
        for proc in self.procs:  # slurmd, slurmctld, munged: each outlives its users
            _terminate(proc)
        for pid in _marked_pids(self.scratch):  # steps slurmd left (cancel failed or timed out)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        left = _wait_gone(_marked_pids(self.scratch), 10)
        self.procs.clear()
        if left:
            raise RuntimeError(f"processes of the test Slurm cluster survived stop(): {sorted(left)}")

    def cancel_all(self) -> None:
        """Cancel every job and wait until none is left: what one test leaves must not hold up the next."""
        self._cancel_all()

    def _cancel_all(self) -> None:
        """scancel all jobs and wait (up to KillWait and a bit) until none is left running or completing."""
        self.slurm("scancel", f"--partition={self.partition}", check=False)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            states = self.slurm("squeue", "-h", "-t", "all", "-o", "%T", check=False).split()
            if not {"RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "STOPPED"} & set(states):
                # A cancelled job's processes may outlive its state change by a moment. Those in a
                # daemon's process group (slurmctld's slurmscriptd) are not a job's.
                groups = {p.pid for p in self.procs}
                _wait_gone({p for p in _marked_pids(self.scratch) if _pgid(p) not in groups}, 5)
                return
            time.sleep(0.2)


def start_cluster(scratch: Path) -> Cluster:
    """Start munged (unless one answers), slurmctld and slurmd; return once the node is idle.
    On failure, stop what was started and raise RuntimeError with the tail of the daemon logs."""
    scratch = Path(scratch).resolve()
    for sub in ("state", "spool", "log"):
        (scratch / sub).mkdir(parents=True, exist_ok=True)
    node = subprocess.run(["hostname", "-s"], check=True, capture_output=True, text=True).stdout.strip()
    cpus = len(os.sched_getaffinity(0))  # what nproc says
    conf = _write_conf(scratch, node, cpus)
    env = {**os.environ, "SLURM_CONF": str(conf)}
    cluster = Cluster(scratch, conf, env, node, "debug", cpus)
    started = time.monotonic()
    try:
        if not _munge_works():
            cluster.munged = _start_munged(scratch)
            cluster.procs.append(cluster.munged)
        daemon_env = {**env, MARK: str(scratch)}
        for daemon in ("slurmctld", "slurmd"):  # slurmd registers with slurmctld, so that one goes first
            with open(scratch / "log" / f"{daemon}.out", "wb") as log:
                cluster.procs.insert(0, subprocess.Popen([daemon, "-D", "-f", str(conf)], env=daemon_env,
                                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                                         start_new_session=True, preexec_fn=_die_with_this_process))
        _wait_idle(cluster, started + START_TIMEOUT)
    except BaseException as exc:
        logs = _log_tails(scratch)
        cluster.stop()
        if isinstance(exc, Exception):
            raise RuntimeError(f"test Slurm cluster did not start: {exc}\n{logs}") from exc
        raise
    return cluster


@contextlib.contextmanager
def slurm_cluster(scratch: Path) -> Iterator[Cluster]:
    """A started cluster for the body; stopped afterwards, whether the body returns or raises."""
    cluster = start_cluster(scratch)
    try:
        yield cluster
    finally:
        cluster.stop()


def _free_ports(n: int) -> list[int]:
    """n distinct TCP ports nobody listens on now (the kernel picks them, so none is in TIME_WAIT)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _write_conf(scratch: Path, node: str, cpus: int) -> Path:
    """slurm.conf (and an empty cgroup.conf beside it): small timeouts, no accounting, no cgroups."""
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal:"))
    ctld_port, d_port = _free_ports(2)
    settings = {
        "ClusterName": "aplot-test",
        "SlurmctldHost": node,
        "SlurmUser": "root",
        "SlurmdUser": "root",
        "SlurmctldPort": ctld_port,
        "SlurmdPort": d_port,
        "AuthType": "auth/munge",
        "CredType": "cred/munge",
        "ProctrackType": "proctrack/linuxproc",
        "TaskPlugin": "task/none",
        "SelectType": "select/cons_tres",
        "SelectTypeParameters": "CR_Core",
        "SchedulerType": "sched/backfill",
        "SchedulerParameters": "batch_sched_delay=0",
        "ReturnToService": 2,
        "StateSaveLocation": scratch / "state",
        "SlurmdSpoolDir": scratch / "spool",
        "SlurmctldPidFile": scratch / "slurmctld.pid",
        "SlurmdPidFile": scratch / "slurmd.pid",
        "SlurmctldLogFile": scratch / "log" / "slurmctld.log",
        "SlurmdLogFile": scratch / "log" / "slurmd.log",
        "MailProg": "/bin/true",  # the default /bin/mail is rarely installed; slurmctld logs an error
        "KillWait": 5,  # seconds between a cancelled job's SIGTERM and SIGKILL
        "MinJobAge": 300,  # finished jobs stay in squeue for five minutes
        "InactiveLimit": 0,
        "OverTimeLimit": 0,
        "JobAcctGatherType": "jobacct_gather/none",
        "AccountingStorageType": "accounting_storage/none",
    }
    lines = [f"{key}={value}" for key, value in settings.items()]
    lines += [f"NodeName={node} CPUs={cpus} RealMemory={mem_kb * 3 // 4 // 1024} State=UNKNOWN",
              "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP"]
    conf = scratch / "slurm.conf"
    conf.write_text("\n".join(lines) + "\n")
    return conf


def _munge_works() -> bool:
    """Whether a munged answers on the default socket: a credential made by munge decodes."""
    try:
        cred = subprocess.run(["munge", "-n"], capture_output=True, timeout=5)
        return cred.returncode == 0 and subprocess.run(["unmunge"], input=cred.stdout, capture_output=True,
                                                       timeout=5).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _start_munged(scratch: Path) -> subprocess.Popen:
    """munged in the foreground as user munge, with the key and directories it insists on; the key is
    made (1024 random bytes, mode 0400) only if there is none."""
    user = pwd.getpwnam("munge")
    for d in MUNGE_DIRS:
        d.mkdir(mode=0o700 if d == MUNGE_KEY.parent else 0o755, parents=True, exist_ok=True)
        os.chown(d, user.pw_uid, user.pw_gid)
    if not MUNGE_KEY.exists():
        fd = os.open(MUNGE_KEY, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(1024))
        os.chown(MUNGE_KEY, user.pw_uid, user.pw_gid)
    with open(scratch / "log" / "munged.out", "wb") as log:
        proc = subprocess.Popen(["munged", "--foreground"], user=user.pw_uid, group=user.pw_gid, extra_groups=[],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                                preexec_fn=_die_with_this_process)
    deadline = time.monotonic() + 10
    while not _munge_works():
        if proc.poll() is not None or time.monotonic() > deadline:
            _terminate(proc)
            raise RuntimeError(f"munged did not start (exit {proc.returncode})")
        time.sleep(0.1)
    return proc


def _wait_idle(cluster: Cluster, deadline: float) -> None:
    """Poll sinfo until the node is idle; resume it once if it registered down or drained."""
    resumed = False
    state = "?"
    while time.monotonic() < deadline:
        for proc in cluster.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        state = cluster.slurm("sinfo", "-h", "-n", cluster.node, "-o", "%T", check=False).strip()
        if state == "idle":
            return
        if not resumed and state.rstrip("*~#!%$@^-") in ("down", "drained", "draining"):
            cluster.slurm("scontrol", "update", f"nodename={cluster.node}", "state=resume", check=False)
            resumed = True
        time.sleep(0.1)
    raise RuntimeError(f"node {cluster.node} not idle after {START_TIMEOUT:.0f} s (state {state!r})")


def _terminate(proc: subprocess.Popen) -> None:
    """SIGTERM the process group, SIGKILL it after 10 s; reap the leader."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(wait)
    with contextlib.suppress(ProcessLookupError):  # what the leader left in its group
        os.killpg(proc.pid, signal.SIGKILL)


def _marked_pids(scratch: Path) -> set[int]:
    """Live processes of this cluster, found by their environment: the daemons and the slurmstepds
    they spawned carry MARK; job processes carry SLURM_CONF (slurmstepd sets it, even with
    --export=NONE) and SLURM_JOB_ID. A test's own process run with `env` has no SLURM_JOB_ID: spared."""
    mark, conf = f"{MARK}={scratch}".encode(), f"SLURM_CONF={scratch / 'slurm.conf'}".encode()
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        ours = mark in environ or (conf in environ and any(v.startswith(b"SLURM_JOB_ID=") for v in environ))
        if ours and _alive(int(entry.name)):
            pids.add(int(entry.name))
    return pids


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _wait_gone(pids: set[int], timeout: float) -> set[int]:
    """Wait until none of pids is alive (zombies count as gone); return those still alive."""
    deadline = time.monotonic() + timeout
    while True:
        alive = {p for p in pids if _alive(p)}
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _log_tails(scratch: Path, lines: int = 20) -> str:
    """The last lines of every daemon log, for a start-up failure's message."""
    out = []
    for log in sorted((scratch / "log").glob("*")):
        with contextlib.suppress(OSError):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {log.name}\n" + "\n".join(tail))
    return "\n".join(out)
