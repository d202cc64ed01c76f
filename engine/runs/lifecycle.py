"""A run's life, from the checks before it exists to its end: the one service every caller uses.

    preflight ─▶ create ─▶ spawn ─▶ watch / reap ─▶ stop ─▶ resume        (+ engine.runs.status)

The CLI (`aplot run`, `eval`, the demo chain, `stop`, `resume`), the TUI (new-run form, stop and
resume keys), the sweep scheduler and the Slurm job's after-job step all come here, so a missing data
file or an unknown reward-model run fails the same way everywhere: in one line, before any folder or
process exists. Following a run's progress stays with the caller (the CLI draws a progress bar, the
TUI opens the run screen, the scheduler only counts).

A run is spawned as `python -m engine.launch <accelerate launch flags> -m engine.<kind>.train
--run-dir runs/<id>` from an argument list (never a shell string), in a new session so it outlives the
terminal, the TUI and an SSH drop; its stdout and stderr go to `train.log`. The manifest's `pid` is
that session's leader and every rank is in its process group, which is what `stop` signals; whether
the run is alive is the liveness lock's answer (`engine.runs.liveness`), never the pid's. Torch-free,
and never textual.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from engine import config as config_mod
from engine.errors import EXIT_FAILED
from engine.runs import launch, liveness, slurm
from engine.runs import status as S
from engine.runs import store as mf

POLL_S = 0.1
SLURM_POLL_S = 1.0


# ---------------------------------------------------------------------------- preflight


@dataclass
class Checked:
    """A config that passed the preflight, with what the launch needs from it: `cfg` with `[launch]`
    merged with its accelerate file (planned once, here), the runs a PPO config names as the new run's
    `[links]` by whole id, and what the data checks counted."""

    cfg: config_mod.Config
    links: dict[str, str | list[str]] = field(default_factory=dict)  # a list: ppo.ensemble's members
    data: dict[str, dict] = field(default_factory=dict)


def preflight(cfg: config_mod.Config, root: Path | None = None) -> Checked:
    """Every check that would otherwise fail minutes later inside the subprocess, all at once, before
    any folder exists: the launch plan (an accelerate file that contradicts `[launch]`, a cluster setting
    Slurm would refuse), data files, trackers, an eval's model folder and sections, and — with the run
    store `root` — a PPO run's reward model, judge and opponent, which must be completed runs of the
    right kind with an exported model."""
    from engine import trackers
    from engine.data import sets as data_sets

    problems = []
    prompts = cfg.ppo.prompts if cfg.kind == "ppo" else ""
    if prompts and prompts != "synthetic" and not os.path.isfile(prompts):  # never raises, unlike Path.is_file
        what = "not a regular file" if os.path.exists(prompts) else "no such data file"
        problems.append(f"ppo.prompts: {what} {prompts!r}")
    data: dict[str, dict] = {}
    try:  # every train and eval set read in full, in this process; the trainer reads back the row cache
        data = data_sets.check(cfg, root)
    except config_mod.ConfigError as e:
        problems += e.problems
    if cfg.launch.accelerate_config and not os.path.isfile(cfg.launch.accelerate_config):
        problems.append(f"launch.accelerate_config: no such file {cfg.launch.accelerate_config!r}")
    problems += trackers.problems(cfg.log.trackers)
    if cfg.kind != "eval" and (why := model_problem(cfg.model.name, cfg.model.gguf_file)):
        problems.append(why)
    if cfg.kind == "eval":
        if not os.path.isfile(os.path.join(cfg.model.name, "config.json")):
            problems.append(f"model.name: {cfg.model.name!r} is not a model folder (no config.json)")
        if cfg.eval.sections:
            from engine.analysis.sections import read_sections

            try:
                read_sections(cfg.eval.sections)
            except config_mod.ConfigError as e:
                problems += e.problems
    links: dict[str, str | list[str]] = {}
    if cfg.kind == "ppo" and root is not None:
        links, found = named_runs(cfg.ppo, Path(root))
        problems += found
    if problems:
        raise config_mod.ConfigError(problems)
    launch.plan(cfg)  # the one merge of [launch] with its accelerate file; a contradiction fails here
    if "train" in data:  # a batch the train set cannot fill even on one node's ranks (the trainer's own rule)
        config_mod.resolve(cfg, data["train"]["pairs"], cfg.launch.num_processes)
    slurm.preflight(cfg)
    return Checked(cfg, links, data)


def model_problem(name: str, gguf_file: str = "") -> str:
    """Why a base model name cannot load, caught before any folder exists: it must be `tiny`, a
    local model folder, or a hub id in the local cache (offline: HF_HUB_OFFLINE) or of hub shape
    (online, the trainer downloads it). Otherwise the trainer fails ~10 s in, in a folder left behind.
    A local folder with `model.gguf_file` needs that file, not a config.json (a GGUF carries its own)."""
    if name == "tiny" or os.path.isfile(os.path.join(name, "config.json")):
        return ""
    if gguf_file and os.path.isdir(name):
        if os.path.isfile(os.path.join(name, gguf_file)):
            return ""
        return f"model.gguf_file: no {gguf_file!r} in the model folder {name!r}"
    if os.path.exists(name) or name.startswith((".", "/", "~")):
        return f"model.name: {name!r} is not a model folder (no config.json)"
    from huggingface_hub import constants, try_to_load_from_cache
    from huggingface_hub.utils import HFValidationError

    try:
        cached = try_to_load_from_cache(name, "config.json")
    except HFValidationError:
        return f"model.name: {name!r} is neither `tiny`, a model folder nor a hub id (org/name)"
    if isinstance(cached, str) or not constants.is_offline_mode():
        return ""
    return f"model.name: {name!r} is not a model folder and not in the local hub cache (HF_HUB_OFFLINE is set)"


def named_runs(p: config_mod.PPOSection, root: Path) -> tuple[dict[str, str | list[str]], list[str]]:
    """The runs a PPO config names, as links (whole run ids, or resolved model folders), and the
    problems with them."""
    named = [("ppo.reward_model_run", "reward_model_run", p.reward_model_run, "rm")] if p.reward_model_run else []
    # (field, link, ref, kind)
    if p.judge not in ("rm", "gold"):
        named.append(("ppo.judge", "judge_run", p.judge, "rm"))
    if p.opponent != "reference":
        named.append(("ppo.opponent", "opponent_run", p.opponent, "ppo"))
    links, problems = {}, []
    for field_name, link, ref, kind in named:
        try:
            links[link] = find_model_run(root, ref, kind, field_name)[1]
        except mf.RunError as e:
            problems.append(str(e))
    if p.ensemble.members:
        links["ensemble_members"], found = ensemble_members(p.ensemble.members, root)
        problems += found
    return links, problems


SWEEP_REF = "sweep:"  # a member reference standing for every run of one sweep
TOKENIZER_FILE = "tokenizer_config.json"


def ensemble_members(refs: list[str], root: Path) -> tuple[list[str], list[str]]:
    """(each member as a whole run id or folder, the problems): every member a completed RM run with an
    exported model that carries its own tokenizer (a member scores its own tokenisation of the policy's
    text), none named twice; `sweep:ID` stands for every run of that sweep, in the sweep's order."""
    members, problems = [], []
    for i, ref in enumerate(refs):
        field_name = f"ppo.ensemble.members[{i}]"
        try:
            expanded = sweep_members(root, ref.removeprefix(SWEEP_REF)) if ref.startswith(SWEEP_REF) else [ref]
        except mf.RunError as e:
            problems.append(f"{field_name}: {e}")
            continue
        for one in expanded:
            try:
                folder, member = find_model_run(root, one, "rm", field_name)
            except mf.RunError as e:
                problems.append(str(e))
                continue
            if not (folder / TOKENIZER_FILE).is_file():
                problems.append(f"{field_name}: {member}'s export {folder} carries no tokenizer ({TOKENIZER_FILE}); "
                                "a member scores its own tokenisation, so its export must hold it")
            elif member in members:
                problems.append(f"{field_name}: {member} is already a member; name each reward model once")
            else:
                members.append(member)
    return members, problems


def sweep_members(root: Path, ref: str) -> list[str]:
    """The run ids of one sweep (its whole id, or a part only it has), in the sweep's order, read from the
    runs' own manifests (each records the sweep that made it)."""
    runs = [(m["sweep"].get("id", ""), m["sweep"].get("index", 0), p.id) for p, m in mf.list_runs(root)
            if isinstance(m.get("sweep"), dict)]
    ids = sorted({s for s, _, _ in runs if s == ref}) or sorted({s for s, _, _ in runs if ref and ref in s})
    if not ids:
        raise mf.RunError(f"{SWEEP_REF}{ref}: no runs of such a sweep in {root}")
    if len(ids) > 1:
        raise mf.RunError(f"{SWEEP_REF}{ref}: ambiguous, matches the sweeps {', '.join(ids[:4])}")
    return [run for _, _, run in sorted(r for r in runs if r[0] == ids[0])]


KIND_PHRASE = {"rm": "an RM", "ppo": "a PPO", "dpo": "a DPO", "eval": "an eval"}  # a run kind as a message says it


def find_model_run(root: Path, ref: str, kind: str, field: str) -> tuple[Path, str]:
    """(exported model folder, run id or path) of a completed run of `kind` ("rm", "ppo") in the store,
    or of a model folder given by path; `field` (the config field that named it) leads the error."""
    if Path(ref).is_dir() and (Path(ref) / "config.json").exists():
        return Path(ref), str(Path(ref).resolve())
    try:
        paths = mf.find_run(root, ref)
        manifest = mf.read(paths)
    except mf.RunError as e:
        raise mf.RunError(f"{field}: {e}") from None
    status, what = S.effective(paths, manifest), manifest.get("kind")
    if what != kind or status != S.COMPLETED:
        raise mf.RunError(f"{field}: run {paths.id} is {KIND_PHRASE.get(what, f'a {what}') + ' run' if what != kind else repr(status)}"
                       f", not a completed {kind.upper()} run")
    try:
        folder = mf.exported_model(root, paths.id)
    except mf.RunError as e:
        raise mf.RunError(f"{field}: {e}") from None
    return folder, paths.id


# ---------------------------------------------------------------------------- create, spawn


def create(checked: Checked | config_mod.Config, root: Path) -> mf.RunPaths:
    """The run folder with its manifest (status `created`); nothing is started. A bare Config is
    preflighted first; a `Checked` one (a sweep checks all its points before it makes any) is not
    checked again."""
    checked = checked if isinstance(checked, Checked) else preflight(checked, root)
    cfg = checked.cfg
    loss = cfg.loss.type if cfg.kind == "rm" else cfg.dpo.type if cfg.kind == "dpo" else None
    run_id = mf.new_run_id(cfg.name, cfg.kind, loss)
    paths = mf.run_paths(Path(root), run_id)
    mf.create(paths, name=cfg.name, kind=cfg.kind, config=config_mod.to_dict(cfg), tags=cfg.tags,
              notes=cfg.notes, links=checked.links or None)
    launch.keep_accelerate_file(cfg, paths.dir)
    return paths


def launch_run(cfg: config_mod.Config, root: Path, links: dict[str, str] | None = None
               ) -> tuple[mf.RunPaths, subprocess.Popen | SlurmJob]:
    """Preflight, create and spawn: the run and its process, for a caller that follows it (the CLI).
    `links` adds to the ones the preflight finds (an eval names the run it scores)."""
    checked = preflight(cfg, root)
    checked.links.update(links or {})
    paths = create(checked, root)
    return paths, spawn(paths, cfg=checked.cfg)


def start(cfg: config_mod.Config, root: Path) -> mf.RunPaths:
    """Preflight, create and spawn for a long-lived caller (the TUI): a reaper thread waits on it."""
    paths, proc = launch_run(cfg, root)
    watch(paths, proc)
    return paths


class SlurmJob:
    """What a caller follows for a Slurm run in place of a `Popen`: `poll()` is None while the run's
    newest job is queued or running (a resubmitted job included), then the run's exit code."""

    def __init__(self, paths: mf.RunPaths):
        self.paths = paths

    def poll(self) -> int | None:
        manifest = mf.read(self.paths)
        job = slurm.job_of(manifest)
        state = slurm.job_states([job]).get(job, ("", ""))[0]
        if state in slurm.ACTIVE_STATES:
            return None
        if manifest.get("status") in S.FINAL:
            return int(manifest.get("exit_code", EXIT_FAILED))
        return None if state == "" and liveness.alive(self.paths.dir, manifest) else EXIT_FAILED

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired("slurm job", timeout)
            time.sleep(SLURM_POLL_S)
        return code


def spawn(paths: mf.RunPaths, resume: bool = False, cfg: config_mod.Config | None = None
          ) -> subprocess.Popen | SlurmJob:
    """Start the training subprocess (or submit the Slurm job) for an existing run folder; returns at once.
    `cfg` is the run's planned config when the caller has it (a launch); else it is read from the
    manifest (a resume, a sweep's queued run), whose `[launch]` was planned before it was written."""
    if cfg is None:
        cfg = config_mod.from_dict(mf.read(paths)["config"], str(paths.manifest))
    if cfg.launch.scheduler == "slurm":  # the job script is written anew: a resume may change [launch]
        slurm.write_job_script(cfg, paths.dir, launch.argv(cfg, paths.dir.resolve()))
        job = slurm.submit(paths, resume=resume)  # the script's `resume` argument adds --resume
        with open(paths.log, "ab") as log:
            log.write(f"\n[aplot] {'resume' if resume else 'launch'}: slurm job {job} ({slurm.JOB_SCRIPT})\n".encode())
        return SlurmJob(paths)
    argv = launch.argv(cfg, paths.dir.resolve(), resume=resume)
    # The liveness lock is taken here and its open file handed to the launcher, so the run counts as
    # alive from this instant on, through the launcher's start-up, until its last process is gone.
    alive = liveness.hold(paths.dir, inheritable=True)
    try:
        with open(paths.log, "ab") as log:
            log.write(f"\n[aplot] {'resume' if resume else 'launch'}: {' '.join(argv)}\n".encode())
            log.flush()
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,  # noqa: S603 - argv is a list built by launch.argv, never a shell string
                                    env=launch.env(cfg), start_new_session=True, close_fds=True, pass_fds=(alive,))
    finally:
        os.close(alive)
    mf.update(paths, pid=proc.pid, host=liveness.this_host(), launch_argv=argv, launched_at=mf.now_iso())
    return proc


def watch(paths: mf.RunPaths, proc: subprocess.Popen) -> threading.Thread:
    """Reap `proc` in the background: no zombie lingers, and a death the trainer could not record
    (an import error, an OOM kill) is still written to the manifest."""
    def run() -> None:
        try:
            reap(paths, proc)
        except (mf.RunError, OSError):
            proc.wait()  # the run folder was removed meanwhile: nothing left to record

    thread = threading.Thread(target=run, name=f"reap-{paths.id}", daemon=True)
    thread.start()
    return thread


def resume(paths: mf.RunPaths, overrides: list[str] | None = None) -> subprocess.Popen | SlurmJob:
    """Continue a stopped, failed or crashed run from its newest complete checkpoint.

    `overrides` may change `[launch]` only (e.g. `launch.num_processes=3` after a node was lost): the
    trainer then keeps the effective batch and says in the manifest that the run is no longer
    bit-exact, or refuses in one line. Check and spawn happen under a lock on the run folder: two
    resumes pressed at once (a double key press, the TUI and a script) must not both see the run as
    crashed and start two trainers.
    """
    bad = [o for o in overrides or [] if not o.startswith("launch.")]
    if bad:
        raise config_mod.ConfigError([f"{bad[0].split('=')[0]}: a resume keeps the run's config; only launch.* "
                                      "settings can change"])
    with open(paths.dir / ".resume.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the loser waits, then finds the winner's live process
        manifest = mf.read(paths)
        status = S.effective(paths, manifest)
        if status in (S.RUNNING, S.CREATED, S.QUEUED) and mf.launched(manifest):
            raise mf.RunError(f"{paths.id}: is {status}; stop it before resuming")
        if status == S.COMPLETED:
            raise mf.RunError(f"{paths.id}: already completed; nothing to resume")
        steps = mf.checkpoint_steps(paths)
        if not steps:
            raise mf.RunError(f"{paths.id}: has no complete checkpoint to resume from")
        changes: dict = {}
        if overrides:
            data = config_mod.apply_overrides(manifest["config"], overrides)
            cfg = launch.plan(config_mod.from_dict(data, "resume overrides"))
            changes["config"] = {"launch": config_mod.to_dict(cfg)["launch"]}
        mark_resumed(paths, manifest, stop_requested_at="", **changes)
        return spawn(paths, resume=True)


def mark_resumed(paths: mf.RunPaths, manifest: dict, **changes) -> dict:
    """The manifest's resume bookkeeping, for `resume` and for a Slurm job's own resubmission alike."""
    return mf.update(paths, status=S.CREATED, resumed_at=mf.now_iso(),
                     resume_count=manifest.get("resume_count", 0) + 1, **changes)


def wait_exit(paths: mf.RunPaths, timeout: float, proc: subprocess.Popen | None = None) -> bool:
    """Wait until no process of the run is left on this host (its liveness lock is free); False on
    timeout."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None:
            proc.poll()  # reap our own child so it does not linger as a zombie
        if not liveness.held_here(paths.dir):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)


def stop(paths: mf.RunPaths, grace: float = 30.0, proc: subprocess.Popen | None = None) -> str:
    """SIGINT (the trainer checkpoints and exits), then SIGTERM, then SIGKILL; the final status.

    Each signal goes to the whole process group: one rank's trainer hears it there, and the ranks of a
    multi-process run hear SIGINT and SIGTERM from torch's elastic agent, which forwards them. SIGKILL
    cannot be forwarded, so it also goes to every process on this host that names the run folder (each
    rank sits in a session of its own). The trainer's own handlers make the stop work whatever
    dispositions the process that launched it had.
    """
    manifest = mf.read(paths)
    status, pid, host = S.effective(paths, manifest), manifest.get("pid"), manifest.get("host")
    if slurm.job_of(manifest) and status in (S.QUEUED, *S.GOING):
        return stop_job(paths, grace)
    if status not in S.GOING or not pid:
        raise mf.RunError(f"{paths.id}: is {status}, not running")
    if host and host != liveness.this_host():
        raise mf.RunError(f"{paths.id}: runs on {host}; stop it from there")
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        if sig == signal.SIGKILL:  # not forwarded by anyone: every process that names the run, ranks too
            for other in liveness.processes_of(paths.dir):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(other, sig)
        with contextlib.suppress(ProcessLookupError):  # the launcher gone, a rank may still hold the run
            os.killpg(pid, sig)
        if wait_exit(paths, wait, proc):
            break
    manifest = mf.read(paths)
    if manifest.get("status") in S.GOING:  # the trainer could not record it itself
        mf.update(paths, status=S.STOPPED, exit_code=-int(signal.SIGKILL), finished_at=mf.now_iso(),
                  error="stopped by signal before the trainer could record it")
    return mf.read(paths)["status"]


def stop_job(paths: mf.RunPaths, grace: float = 30.0) -> str:
    """A Slurm run: SIGINT to every task of the job (the trainer checkpoints), then the job cancelled
    after `grace`; a queued job is just cancelled. Marked as asked for, so the job's auto-resume
    leaves it stopped."""
    manifest = mf.update(paths, stop_requested_at=mf.now_iso())
    job = slurm.job_of(manifest)
    if S.effective(paths, manifest) == S.QUEUED:
        slurm.cancel(job)
        mf.update(paths, status=S.STOPPED, exit_code=S.exit_code(S.STOPPED), finished_at=mf.now_iso(),
                  error=f"slurm job {job} cancelled before it started")
        return S.STOPPED
    handle = SlurmJob(paths)
    slurm.cancel(job, signal="INT")
    try:
        handle.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        slurm.cancel(job)
        with contextlib.suppress(subprocess.TimeoutExpired):
            handle.wait(timeout=30)
    if mf.read(paths).get("status") in S.GOING:  # the trainer could not record it itself
        mf.update(paths, status=S.STOPPED, exit_code=-int(signal.SIGKILL), finished_at=mf.now_iso(),
                  error=f"slurm job {job} cancelled before the trainer could record the stop")
    return mf.read(paths)["status"]


def reap(paths: mf.RunPaths, proc: subprocess.Popen | SlurmJob) -> str:
    """After our own child exits: record a failure the trainer could not (import error, OOM kill).
    A Slurm job's end is the scheduler's word (`status.effective`), not recorded here."""
    code = proc.wait()
    if isinstance(proc, SlurmJob):
        return S.effective(paths)
    wait_exit(paths, 30.0)
    manifest = mf.read(paths)
    if manifest.get("status") in S.GOING:
        tail = last_log_line(paths)
        mf.update(paths, status=S.FAILED, exit_code=code, finished_at=mf.now_iso(),
                  error=f"training process exited with code {code}" + (f": {tail}" if tail else ""))
    return mf.read(paths)["status"]


def last_log_line(paths: mf.RunPaths) -> str:
    """The last meaningful line of train.log (an exception's message, usually)."""
    try:
        with open(paths.log, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 8192))
            lines = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        line = line.strip()
        if line and not line.startswith(("[aplot] launch", "[aplot] resume", "W", "  ")):
            return line[:300]
    return ""


# ---------------------------------------------------------------------------- after a Slurm job


def after_job(run_dir: Path) -> str | None:
    """Run by the job script once the launch returns: resubmit a run stopped by its time limit or by
    preemption (not by `aplot stop`) while `auto_resume` allows; the new job id, or None."""
    paths = mf.RunPaths(Path(run_dir))
    manifest = mf.read(paths)
    cfg = config_mod.from_dict(manifest["config"], str(paths.manifest))
    limit, used = cfg.launch.slurm.auto_resume, int(manifest.get("auto_resumes", 0))
    if manifest.get("status") != S.STOPPED or manifest.get("stop_requested_at") or used >= limit:
        return None
    if not mf.checkpoint_steps(paths):
        return None
    mark_resumed(paths, manifest, auto_resumes=used + 1)
    job = slurm.submit(paths, resume=True)
    print(f"[aplot] stopped by the scheduler: resubmitted as job {job} (auto_resume {used + 1}/{limit})", flush=True)
    return job


def main(argv: list[str] | None = None) -> None:
    """`python -m engine.runs.lifecycle after-job RUN_DIR`, the last line of every Slurm job script."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "after-job":
        sys.exit("usage: python -m engine.runs.lifecycle after-job RUN_DIR")
    try:
        after_job(Path(args[1]))
    except (mf.RunError, config_mod.ConfigError) as e:
        print(f"[aplot] after the job: {e}", file=sys.stderr, flush=True)
        sys.exit(EXIT_FAILED)


if __name__ == "__main__":
    main()
