"""Load: many tiny RM runs at once in one store, with `aplot ls --json` polled while they train.

    .venv/bin/python bench/load_runs.py [--runs 20] [--steps 60] [--stop 3] [--store DIR]

Starts `--runs` runs through the run service at once (each an `accelerate launch` subprocess in its own
session, one torch thread each), then until every run has ended: times `aplot ls --json` (the whole
command, interpreter start-up included, beside a bare `python -c pass` to show how much of it is
CPU starvation) and the in-process listing the runs screen refreshes with,
and checks the statuses it reports. Once `--stop` runs are training they are stopped with
`lifecycle.stop` (SIGINT → checkpoint → `stopped`), then resumed, so every run must still reach
`completed`. At the end each run's stream must hold every train step exactly once and its newest
checkpoint must be complete: nothing lost.

Last line: one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from aplot_tui.views import listing as store  # noqa: E402
from engine import config as config_mod  # noqa: E402
from engine import metrics as M  # noqa: E402
from engine.runs import (  # noqa: E402
    lifecycle,  # noqa: E402
    )
from engine.runs import status as S  # noqa: E402
from engine.runs import store as mf  # noqa: E402

TINY = ['name="load"', "model.max_length=48", "model.tiny.hidden_size=32", "model.tiny.num_layers=1",
        "model.tiny.num_heads=2", "model.tiny.vocab_size=256", "data.synthetic_pairs=240", "optim.batch_size=8",
        "optim.lr=1e-3", "optim.warmup_ratio=0.0", "eval.every=0", "launch.cpu=true", "launch.threads=1"]


def time_ls(root: Path) -> tuple[float, dict[str, str]]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "aplot_tui.cli", "ls", "--json", "--runs-dir", str(root)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    dt = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"aplot ls failed: {out.stderr.strip()}")
    return dt, {r["id"]: r["status"] for r in json.loads(out.stdout)}


def time_bare_python() -> float:
    """A bare interpreter start under the same load: how much of `ls`'s time is CPU starvation."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - t0


def group_members(pgid: int) -> list[int]:
    """Processes of one run's process group (the launcher and its ranks), from /proc."""
    out = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2]) == pgid:
                out.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def mem_available_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--stop", type=int, default=3, help="runs stopped mid-training, then resumed")
    ap.add_argument("--store", type=Path, default=None, help="run store (default: a fresh temp folder)")
    ap.add_argument("--mb-per-run", type=int, default=550, help="memory one run takes (launcher + trainer, PSS)")
    args = ap.parse_args()
    need, avail = args.runs * args.mb_per_run + 2048, mem_available_mb()
    if avail < need:  # a shared machine: never push other people's processes into the OOM killer
        raise SystemExit(f"{args.runs} runs need about {need} MB; only {avail} MB available")
    root = args.store or Path(tempfile.mkdtemp(prefix="aplot-load-")) / "runs"
    cfg = config_mod.load(None, [*TINY, f"optim.max_steps={args.steps}", f"checkpoint.every={args.steps // 4}"])

    t_start = time.perf_counter()
    procs: dict[str, subprocess.Popen] = {}
    for _ in range(args.runs):
        paths = lifecycle.create(cfg, root)
        procs[paths.id] = lifecycle.spawn(paths)
    print(f"started {len(procs)} runs in {time.perf_counter() - t_start:.1f}s into {root}", flush=True)

    ls_times, bare_times, list_times, bad_status, peak_rss = [], [], [], [], 0.0
    stoppers: list[threading.Thread] = []
    stopped: dict[str, str] = {}
    while True:
        dt, statuses = time_ls(root)
        ls_times.append(dt)
        bare_times.append(time_bare_python())
        t0 = time.perf_counter()
        rows = store.list_rows(root)
        list_times.append(time.perf_counter() - t0)
        bad_status += [f"{i}: {s}" for i, s in statuses.items() if s not in ("created", "running", "completed",
                                                                               "stopped")]
        peak_rss = max(peak_rss, rss_mb([m for p in procs.values() for m in group_members(p.pid)]))
        training = [r.id for r in rows if r.status == "running" and r.step >= 2 and r.id not in stopped]
        for run_id in training[: max(0, args.stop - len(stopped))]:
            stopped[run_id] = "…"
            paths = mf.run_paths(root, run_id)

            def stop(run_id=run_id, paths=paths):
                try:
                    stopped[run_id] = lifecycle.stop(paths, proc=procs[run_id])
                except mf.RunError as e:  # it ended before the signal landed
                    stopped[run_id] = f"not stopped: {e}"

            stoppers.append(threading.Thread(target=stop))
            stoppers[-1].start()
        for p in procs.values():
            p.poll()  # reap finished launchers
        if all(s in S.FINAL for s in statuses.values()) and len(statuses) == args.runs and \
                not any(t.is_alive() for t in stoppers):
            break
        time.sleep(0.5)
    t_all_ended = time.perf_counter() - t_start
    print(f"all {args.runs} runs ended after {t_all_ended:.1f}s; stopped: {stopped}", flush=True)

    resumed = 0
    for run_id, status in stopped.items():  # the stopped runs carry on to completion
        if status == "stopped":
            proc = lifecycle.resume(mf.run_paths(root, run_id))
            procs[run_id] = proc
            resumed += 1
    for run_id in stopped:
        lifecycle.wait_exit(mf.run_paths(root, run_id), 300, procs[run_id])
        procs[run_id].wait()

    lost, completed = [], 0
    for paths, manifest in mf.list_runs(root):
        status = S.effective(paths, manifest)
        completed += status == "completed"
        steps = [r.step for r in M.read_all(paths.metrics) if r.split == M.TRAIN]
        if status != "completed":
            lost.append(f"{paths.id}: {status} {manifest.get('error', '')}")
        elif steps != list(range(1, args.steps + 1)):
            lost.append(f"{paths.id}: train steps {steps[:3]}…{steps[-3:]}")
        elif mf.checkpoint_steps(paths)[-1:] != [args.steps]:
            lost.append(f"{paths.id}: checkpoints {mf.checkpoint_steps(paths)}")
    result = {
        "runs": args.runs, "steps": args.steps, "completed": completed, "stopped_then_resumed": resumed,
        "stop_results": sorted(set(stopped.values())), "unexpected_statuses": bad_status[:5],
        "ls_json_s": {"median": round(statistics.median(ls_times), 3), "max": round(max(ls_times), 3),
                      "samples": len(ls_times)},
        "bare_python_s": {"median": round(statistics.median(bare_times), 3), "max": round(max(bare_times), 3)},
        "list_rows_s": {"median": round(statistics.median(list_times), 4), "max": round(max(list_times), 4)},
        "all_ended_s": round(t_all_ended, 1), "wall_s": round(time.perf_counter() - t_start, 1),
        "peak_rss_sum_mb": round(peak_rss),  # shared pages counted once per process "cpus": os.cpu_count(), "lost": lost,
    }
    print(f"aplot ls --json while {args.runs} runs trained: median {result['ls_json_s']['median']}s, "
          f"max {result['ls_json_s']['max']}s over {len(ls_times)} calls (a bare `python -c pass`: median "
          f"{result['bare_python_s']['median']}s); in-process listing median "
          f"{result['list_rows_s']['median']}s; {completed}/{args.runs} completed; lost: {lost or 'nothing'}")
    print(json.dumps(result))
    if lost or bad_status or completed != args.runs:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
