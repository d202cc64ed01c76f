"""How much the run screen absorbs while staying responsive, and how fast a long run opens.

1. Open: a run with 100,000 train lines (16 metrics each) — seconds from pushing the run
   screen until every record is in its series and the panels have drawn (target < 1 s).
2. New-run form: seconds from pushing the new-run screen until it has drawn (target < 0.5 s).
3. Follow: a writer process appends metric lines at a fixed rate while keys are pressed every
   0.1 s: `tab` (focus moves: a partial repaint, the common case) and `l` (the log toggle: every
   panel is laid out and drawn again). For each rate: the key → repaint latency
   (p50/p95) and how far behind the screen is when the writer stops. The sustainable rate is
   the highest whose focus-move p95 is under 100 ms and whose backlog clears within a second
   (target: 2,000 lines/s).

    .venv/bin/python bench/tui_bench.py [--rates 500,2000,8000,20000] [--seconds 3] [--repeat 3]

Each timing is repeated `--repeat` times and the median is reported (the machine may be shared).
The open and form timings also report the process's CPU seconds (all threads): on a machine
other jobs load, wall time stretches by the contention while CPU time stays near the idle figure.

Prints a table, then one JSON object as its last line. Headless (Textual's test driver).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aplot_tui.app import AplotApp  # noqa: E402
from engine import config as config_mod  # noqa: E402
from engine import metrics as M  # noqa: E402
from engine.runs import store as mf  # noqa: E402

SIZE = (160, 48)
# the fields of an aplot-loss RM's train record, each line of a fake run carries them all
TRAIN_KEYS = (M.LOSS, M.ACCURACY, M.REWARD_GAP, M.CHOSEN_REWARD, M.REJECTED_REWARD, M.MIN_REWARD, M.MAX_REWARD,
              M.MARGIN_MEAN, M.MARGIN_STD, M.MARGIN_MAX, M.OT_COST, M.OT_ITERATIONS, M.GRAD_NORM,
              M.LEARNING_RATE, M.SAMPLES_PER_S, M.TOKENS_PER_S)


def make_run(root: Path, run_id: str, lines: int, total: int) -> mf.RunPaths:
    paths = mf.RunPaths(root / run_id)
    cfg = config_mod.to_dict(config_mod.Config())
    mf.create(paths, name="bench", kind="rm", config=cfg)
    mf.update(paths, status="completed", resolved={"total_steps": total})
    with open(paths.metrics, "w") as fh:
        for step in range(1, lines + 1):
            fh.write(train_line(step, 1.0e9 + step))
    paths.log.write_text("bench\n")
    return paths


_rng = random.Random(0)  # noqa: S311 - seeded fake metric values, not a secret


def train_line(step: int, t: float) -> str:
    data = {k: round(_rng.random(), 5) for k in TRAIN_KEYS}
    return json.dumps({"time": t, "step": step, "split": M.TRAIN, "data": data}) + "\n"


async def open_time(root: Path, run_id: str, n: int) -> tuple[float, float]:
    """(wall, CPU) seconds until every record is in and the panels have drawn."""
    app = AplotApp(runs_dir=root, poll_s=1.0, follow_s=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        t0, c0 = time.perf_counter(), time.process_time()
        app.open_run(run_id)
        while getattr(app.screen, "records_seen", 0) < n:
            await pilot.pause(0.01)
        await pilot.pause()  # the panels draw
        return time.perf_counter() - t0, time.process_time() - c0


async def form_time() -> tuple[float, float]:
    """(wall, CPU) seconds from pushing the new-run screen until its first paint."""
    root = Path(tempfile.mkdtemp())
    app = AplotApp(runs_dir=root, poll_s=1.0, follow_s=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        t0, c0 = time.perf_counter(), time.process_time()
        app.new_run()
        painted = asyncio.get_running_loop().create_future()
        while type(app.screen).__name__ != "NewRunScreen":
            await asyncio.sleep(0.001)
        app.screen.call_after_refresh(lambda: painted.set_result(None))
        await painted
        return time.perf_counter() - t0, time.process_time() - c0


WRITER = """
import json, random, sys, time
path, rate, seconds, step = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
keys = sys.argv[5].split(",")
rng, written = random.Random(0), 0
with open(path, "a") as fh:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        due = int((time.perf_counter() - t0) * rate) - written
        for _ in range(max(due, 0)):
            step += 1
            data = {k: round(rng.random(), 5) for k in keys}
            fh.write(json.dumps({"time": 2e9 + step, "step": step, "split": "train", "data": data}) + "\\n")
        written += max(due, 0)
        fh.flush()  # a trainer flushes every line; 20 ms slices keep this writer cheap
        time.sleep(0.02)
print(written)
"""


async def key_to_repaint(app: AplotApp, key: str, changed) -> float:
    """Seconds from a key event to the next paint after its action ran. (Pilot's own waits
    need the process to go idle, which a screen following a streaming run never is.)"""
    before = changed()
    t = time.perf_counter()
    app.simulate_key(key)
    while changed() == before:
        if time.perf_counter() - t > 5:
            raise RuntimeError(f"key {key!r} changed nothing")
        await asyncio.sleep(0.001)
    painted = asyncio.get_running_loop().create_future()
    app.call_after_refresh(lambda: painted.set_result(None))
    await painted
    return time.perf_counter() - t


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 1)


async def follow(root: Path, run_id: str, rate: int, seconds: float) -> dict:
    """A separate writer process streams lines (as a trainer would) while keys are pressed."""
    paths = mf.RunPaths(root / run_id)
    app = AplotApp(runs_dir=root, poll_s=1.0, follow_s=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.open_run(run_id)
        screen = app.screen
        while not getattr(screen, "caught_up", False):
            await pilot.pause(0.01)
        base = screen.records_seen
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(paths.metrics), str(rate), str(seconds),
                                   str(base), ",".join(TRAIN_KEYS)], stdout=subprocess.PIPE, text=True)
        toggle, focus = [], []
        while writer.poll() is None:
            toggle.append(await key_to_repaint(app, "l", lambda: screen.has_class("log-only")) * 1000)
            await asyncio.sleep(0.1)
            focus.append(await key_to_repaint(app, "tab", lambda: app.focused) * 1000)
            await asyncio.sleep(0.1)
        written = int(writer.communicate()[0])
        t_stop = time.perf_counter()
        while screen.records_seen - base < written and time.perf_counter() - t_stop < 30:
            await pilot.pause(0.01)
        lag = time.perf_counter() - t_stop
    return {"rate": rate, "written": written, "toggle_p50_ms": _pct(toggle, 0.5), "toggle_p95_ms": _pct(toggle, 0.95),
            "focus_p50_ms": _pct(focus, 0.5), "focus_p95_ms": _pct(focus, 0.95), "catch_up_s": round(lag, 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--rates", default="0,500,2000,8000,20000")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        big = make_run(root, "20260101-000000-rm-big-0001", args.points, args.points)
        opens = [asyncio.run(open_time(root, big.id, args.points)) for _ in range(args.repeat)]
        t_open, c_open = (statistics.median(x) for x in zip(*opens, strict=True))
        print(f"open a {args.points}-point run: {t_open:.2f} s wall, {c_open:.2f} s CPU (median of {args.repeat})")
        forms = [asyncio.run(form_time()) for _ in range(args.repeat)]
        t_form, c_form = (statistics.median(x) for x in zip(*forms, strict=True))
        print(f"open the new-run form: {t_form:.2f} s wall, {c_form:.2f} s CPU (median of {args.repeat})")
        results = []
        for rate in (int(r) for r in args.rates.split(",")):
            runs = []
            for i in range(args.repeat):
                live = make_run(root, f"20260101-0{len(results)}{i}000-rm-live-0002", 100, 10**9)
                runs.append(asyncio.run(follow(root, live.id, rate, args.seconds)))
            res = {k: (statistics.median(r[k] for r in runs) if k != "rate" else rate) for k in runs[0]}
            results.append(res)
            print(f"{rate:>7} lines/s: key→repaint p50/p95 ms: focus move {res['focus_p50_ms']}/"
                  f"{res['focus_p95_ms']}, layout toggle {res['toggle_p50_ms']}/{res['toggle_p95_ms']}; "
                  f"caught up {res['catch_up_s']} s after the writer stopped")
    ok = [r["rate"] for r in results if r["focus_p95_ms"] < 100 and r["catch_up_s"] < 1.0]
    print(json.dumps({"open_points": args.points, "open_s": round(t_open, 3), "open_cpu_s": round(c_open, 3),
                      "form_s": round(t_form, 3), "form_cpu_s": round(c_form, 3),
                      "load_avg_1m": os.getloadavg()[0],
                      "sustained_lines_per_s": max(ok, default=0), "follow": results}))


if __name__ == "__main__":
    main()
