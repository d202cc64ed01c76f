"""The path of one `aplot run CONFIG`, from the CLI to the trainer's first metrics line, measured.

Why: a restructuring moves code between modules; whether the launch path got shorter (fewer hops
between project modules, fewer modules on it) or does the same work fewer times (configs built,
launches planned, named runs resolved) is a question for a tracer, not for reading the code.

How: a `sitecustomize.py` put first on PYTHONPATH installs `sys.setprofile` (and `threading.setprofile`)
in every Python process of the run when APLOT_TRACE_DIR is set: the CLI, the `engine.launch` process
and the trainer. The launch's `env()` keeps PYTHONPATH entries after its own root, so each child loads
it too. Only functions whose file is under the measured tree's engine/ or aplot_tui/ are recorded (a
cached per-file test): each entry into a different project module than the last (a hop), and every
entry into a few named functions (config builds, plan, find_model_run, the metrics write, the CLI's
follow). The trainer stops tracing at its first `MetricsWriter.write` and saves at once; the other
processes save at exit. Module and class bodies are not function entries; functions called while a
module body runs (an import) are, and the "run time" figures leave those out. Only the main thread's
entries make the path. Beside the entry-level hops the tracer keeps a stack of open project frames per
thread and records each call from one project module into another (a crossing) and whether the module
called is already open lower on the stack (a re-entry: A -> B -> A, a callback or an inverted main).
"Each module once" is measured as no re-entries: a module the walk enters is left before it is entered
again. The CLI is cut where it starts following the run (`follow`); its polls until
the trainer's first line depend on timing and are reported apart.

    .venv/bin/python bench/run_path.py --tree /path/to/checkout [--ppo] [--json out.json]

The measured tree is imported through PYTHONPATH with cwd in it (the bench checks that `engine`
resolves there), so one virtual environment serves two checkouts.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

# The tiny RM config of the tests (read from this checkout's tests/conftest.py, so every tree measured
# gets the same one), cut to two steps.
CONFTEST = Path(__file__).resolve().parents[1] / "tests" / "conftest.py"
RM_OVERRIDES = ["optim.max_steps=2"]


def tiny_rm() -> str:
    for node in ast.parse(CONFTEST.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "TINY_RM" for t in node.targets):
            return ast.literal_eval(node.value)
    sys.exit(f"{CONFTEST}: no TINY_RM")


# A PPO run of the demo preset shrunk to a few seconds, against the RM run above by its name.
PPO_OVERRIDES = ["ppo.reward_model_run=tiny", "ppo.sft_steps=0", "ppo.rollout_batch=4", "ppo.minibatch_size=4",
                 "ppo.eval_prompts=8", "ppo.bon_samples=0", "ppo.ppo_epochs=1", "ppo.max_new_tokens=4",
                 "ppo.win_rate_every=100", "optim.max_steps=2"]

TRACER = r'''
"""Installed by bench/run_path.py: records project-module hops of this process (see there)."""
import os

if os.environ.get("APLOT_TRACE_DIR"):
    import atexit
    import json
    import sys
    import threading
    import time

    _dir, _root = os.environ["APLOT_TRACE_DIR"], os.path.realpath(os.environ["APLOT_TRACE_ROOT"])
    _prefixes = tuple(os.path.join(_root, p) + os.sep for p in ("engine", "aplot_tui"))
    _watched = {"from_dict", "load", "plan", "find_model_run", "write", "follow"}
    _newlocals = 0x2  # CO_NEWLOCALS: a function's frame, not a module or class body
    _modules = {}  # co_filename -> dotted module name, or None outside the tree
    _last = {}  # thread id -> (module, during an import?) of the last project function entered
    _importing = {}  # thread id -> module bodies being executed (imports) open on its stack
    _depth = {}  # (thread id, co_name) -> watched frames of that name open
    _open = set()  # ids of watched code objects entered, to see their returns
    _stacks = {}  # thread id -> modules of the project frames open on its stack, innermost last
    _state = {"start": time.time(), "hops": [], "calls": [], "crossings": [], "first_write": None, "done": False}

    def _module(filename):
        real = os.path.realpath(filename)
        if not real.startswith(_prefixes):
            return None
        rel = os.path.relpath(real, _root)[:-3].split(os.sep)
        return ".".join(rel[:-1] if rel[-1] == "__init__" else rel)

    def _save():
        if _state.get("saved"):
            return
        _state["saved"] = True
        main = sys.modules.get("__main__")
        spec = getattr(main, "__spec__", None)
        out = {"pid": os.getpid(), "ppid": os.getppid(), "argv": sys.argv, "main": spec.name if spec else None,
               "main_thread": threading.main_thread().ident, **_state}
        with open(os.path.join(_dir, f"{os.getpid()}.json"), "w") as fh:
            json.dump(out, fh)

    def _stop():
        _state["done"] = True
        sys.setprofile(None)
        threading.setprofile(None)
        _save()

    def _profile(frame, event, arg):
        code = frame.f_code
        if event == "call":
            if not code.co_flags & _newlocals:
                if code.co_name == "<module>" and frame.f_globals.get("__name__") != "__main__":
                    tid = threading.get_ident()
                    _importing[tid] = _importing.get(tid, 0) + 1
                return
            try:
                mod = _modules[code.co_filename]
            except KeyError:
                mod = _modules[code.co_filename] = _module(code.co_filename)
            if mod is None or _state["done"]:
                return
            tid = threading.get_ident()
            now = time.time()
            at_import = _importing.get(tid, 0) > 0
            stack = _stacks.setdefault(tid, [])
            if stack and stack[-1] != mod:  # a call from one project module into another
                _state["crossings"].append((now, tid, stack[-1], mod, code.co_qualname, at_import, mod in stack))
            stack.append(mod)
            if _last.get(tid) != (mod, at_import):
                _last[tid] = (mod, at_import)
                _state["hops"].append((now, tid, mod, code.co_qualname, at_import))
            name = code.co_name
            if name in _watched:
                key = (tid, name)
                depth = _depth.get(key, 0)
                _depth[key] = depth + 1
                _open.add(id(code))
                _state["calls"].append((now, tid, mod, code.co_qualname, depth, at_import))
                if code.co_qualname == "MetricsWriter.write" and _state["first_write"] is None:
                    _state["first_write"] = now
                    _stop()
        elif event == "return":
            if not code.co_flags & _newlocals:
                if code.co_name == "<module>" and frame.f_globals.get("__name__") != "__main__":
                    tid = threading.get_ident()
                    # never below 0: site's and this module's own bodies return without a call seen
                    _importing[tid] = max(_importing.get(tid, 0) - 1, 0)
                return
            if _modules.get(code.co_filename) is not None:
                stack = _stacks.get(threading.get_ident())
                if stack:
                    stack.pop()
            if id(code) in _open:
                key = (threading.get_ident(), code.co_name)
                _depth[key] = max(_depth.get(key, 1) - 1, 0)

    atexit.register(_save)
    threading.setprofile(_profile)
    sys.setprofile(_profile)
'''

# table row -> (module, or its last part(s); "" for any module; function name). Calls nested in one of
# the same name (a wrapper's inner call) are left out.
COUNTED = {
    "Config built (config.from_dict)": ("engine.config", "from_dict"),
    "config.load": ("engine.config", "load"),
    "launch planned (launch.plan)": ("launch", "plan"),
    "named run resolved (find_model_run)": ("", "find_model_run"),
}


def _matches(mod: str, want: str) -> bool:
    return not want or mod == want or mod.endswith("." + want)


def trace_run(tree: Path, runs: Path, args: list[str], tag: str) -> tuple[list[dict], float]:
    """Run `aplot run ARGS` in `tree` under the tracer; the per-process traces and the wall time."""
    trace_dir = Path(tempfile.mkdtemp(prefix=f"trace-{tag}-", dir=runs.parent))
    site = runs.parent / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(TRACER)
    env = dict(os.environ, HF_HUB_OFFLINE="1", APLOT_RUNS_DIR=str(runs),
               PYTHONPATH=os.pathsep.join([str(site), str(tree)]))
    where = subprocess.run([sys.executable, "-c", "import engine, aplot_tui; print(engine.__file__, aplot_tui.__file__)"],
                           cwd=tree, env=env, capture_output=True, text=True, check=True).stdout.split()
    if not all(Path(p).resolve().is_relative_to(tree.resolve()) for p in where):
        sys.exit(f"engine/aplot_tui resolve to {where}, not under {tree}")
    env.update(APLOT_TRACE_DIR=str(trace_dir), APLOT_TRACE_ROOT=str(tree))
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "aplot_tui.cli", "run", *args, "-q"], cwd=tree, env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode:
        sys.exit(f"aplot run {' '.join(args)} exited {done.returncode} in {tree}:\n{done.stderr[-3000:]}")
    return [json.loads(p.read_text()) for p in sorted(trace_dir.glob("*.json"))], wall


def role(proc: dict) -> str:
    if proc["first_write"] is not None:
        return "trainer"
    if (proc["main"] or "").startswith("aplot_tui.cli"):
        return "cli"
    if proc["main"] == "engine.launch":
        return "launcher"
    return f"other({proc['main']})"


def collapse(mods: list[str]) -> list[str]:
    """Consecutive entries into one module merged: the module path."""
    return [m for i, m in enumerate(mods) if i == 0 or m != mods[i - 1]]


def summarize(procs: list[dict]) -> dict:
    """Per process (CLI, launcher, trainer, in start order): hops, modules and counted calls up to the
    trainer's first metrics line (the CLI up to `follow`, its polls apart), over all function entries
    and over those made outside imports (`run time`)."""
    trainers = [p for p in procs if p["first_write"] is not None]
    if len(trainers) != 1:
        sys.exit(f"expected one process to write metrics, got {len(trainers)}")
    t_first = trainers[0]["first_write"]
    out = {}
    for proc in sorted(procs, key=lambda p: p["start"]):
        name = role(proc)
        main_tid = proc["main_thread"]
        hops = [h for h in proc["hops"] if h[0] <= t_first]
        calls = [c for c in proc["calls"] if c[0] <= t_first]
        polls = None
        if name == "cli":
            follow = next((c[0] for c in calls if c[3] == "follow"), t_first)
            polls = len(collapse([h[2] for h in hops if h[0] >= follow and h[1] == main_tid])) - 1
            hops = [h for h in hops if h[0] < follow]
            calls = [c for c in calls if c[0] <= follow]
        crossings = [c for c in proc.get("crossings", []) if c[0] <= (follow if name == "cli" else t_first)
                     and c[1] == main_tid and not c[5]]
        path = collapse([h[2] for h in hops if h[1] == main_tid])
        run_path = collapse([h[2] for h in hops if h[1] == main_tid and not h[4]])
        out[name] = {
            "hops": max(len(path) - 1, 0),
            "modules": sorted(set(path)),
            "path": path,
            "run_hops": max(len(run_path) - 1, 0),
            "run_modules": sorted(set(run_path)),
            "run_path": run_path,
            "crossings": len(crossings),
            "reentries": [f"{c[2]} -> {c[3]}.{c[4]}" for c in crossings if c[6]],
            "other_thread_entries": sum(1 for h in hops if h[1] != main_tid),
            "follow_poll_hops": polls,
            "counts": {row: sum(1 for c in calls if c[3].split(".")[-1] == fn and _matches(c[2], mod) and not c[4])
                       for row, (mod, fn) in COUNTED.items()},
            "find_model_run_by_function": dict(Counter(f"{c[2]}.{c[3]}" + (" (nested)" if c[4] else "")
                                                       for c in calls if c[3].endswith("find_model_run"))),
        }
    return out


def show(label: str, summary: dict, wall: float) -> None:
    print(f"\n== {label}  (wall {wall:.1f} s, traced)")
    for name, s in summary.items():
        polls = f"; then follow() polls: {s['follow_poll_hops']} hops" if name == "cli" else ""
        print(f"  {name}: {s['hops']} hops over {len(s['modules'])} modules (run time: {s['run_hops']} hops, "
              f"{len(s['run_modules'])} modules){polls}")
        print(f"    run time: {s['crossings']} calls across modules; {len(s['reentries'])} re-entries (a call into a "
              f"module already open lower on the stack)" + "".join(f"\n      {r}" for r in s["reentries"]))
        print("    counts: " + ", ".join(f"{k} {v}" for k, v in s["counts"].items()))
        if s["find_model_run_by_function"]:
            print(f"    find_model_run: {s['find_model_run_by_function']}")
        print("    path: " + " > ".join(s["path"]))
        print("    run-time path: " + " > ".join(s["run_path"]))
    every = set().union(*(s["modules"] for s in summary.values()))
    print(f"  all processes: {sum(s['hops'] for s in summary.values())} hops, {len(every)} distinct modules; "
          f"run time: {sum(s['run_hops'] for s in summary.values())} hops, "
          f"{len(set().union(*(s['run_modules'] for s in summary.values())))} modules")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", type=Path, default=Path(__file__).resolve().parents[1], help="checkout to measure")
    ap.add_argument("--ppo", action="store_true", help="then a tiny PPO run against the RM run, by name")
    ap.add_argument("--json", type=Path, help="write the summaries here")
    a = ap.parse_args()
    tree = a.tree.resolve()
    git = ["git", "-C", str(tree)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = len(subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True).stdout.splitlines())
    print(f"{tree}: HEAD {head or '?'}, {dirty} tracked files changed")
    results: dict = {"tree": str(tree), "head": head, "changed_files": dirty}
    with tempfile.TemporaryDirectory(prefix="run-path-") as tmp:
        runs = Path(tmp) / "runs"
        config = Path(tmp) / "tiny.toml"
        config.write_text(tiny_rm())
        jobs = [("rm", [str(config), *RM_OVERRIDES])] + ([("ppo", ["--preset", "demo-ppo", *PPO_OVERRIDES])] if a.ppo else [])
        for tag, args in jobs:
            procs, wall = trace_run(tree, runs, args, tag)
            results[tag] = {"wall_s": round(wall, 2), "processes": summarize(procs)}
            show(f"{tree}  aplot run {' '.join(args)}", results[tag]["processes"], wall)
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
