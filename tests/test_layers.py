"""The package layout as contracts: import-linter's (pyproject's [tool.importlinter]), no import circles
between modules, and no name used outside the module that owns it (a private name, or a name a module
only imported from elsewhere)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "aplot_tui")


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def test_the_import_contracts_hold():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    proc = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "0 broken" in proc.stdout


def imports_of(name: str, tree: ast.AST, known: dict[str, Path]) -> set[str]:
    """The project modules `name` imports anywhere in its file (lazy imports included)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:  # relative: from . / .. of this package
                pkg = name.split(".")[: -node.level] if not known[name].name == "__init__.py" else name.split(".")
                if known[name].name == "__init__.py" and node.level > 1:
                    pkg = pkg[: -(node.level - 1)]
                base = ".".join([*pkg, node.module]) if node.module else ".".join(pkg)
            for a in node.names:
                full = f"{base}.{a.name}"
                out.add(full if full in known else base)
    return {m for m in out if m in known and m != name}


def test_no_import_circles_between_modules():
    known = modules()
    graph = {name: imports_of(name, ast.parse(path.read_text()), known) for name, path in known.items()}
    for name in graph:  # a package's __init__ being imported on the way to a submodule is not a circle
        graph[name] = {m for m in graph[name] if not name.startswith(m + ".")}
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, cycles


def defined_names(tree: ast.Module) -> set[str]:
    """Names a module defines itself (functions, classes, assignments), not the ones it imports."""
    out = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                out |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.If, ast.Try)):
            out |= defined_names(ast.Module(body=node.body, type_ignores=[]))
    return out


def test_no_name_is_used_outside_the_module_that_owns_it():
    known = modules()
    trees = {name: ast.parse(path.read_text()) for name, path in known.items()}
    owned = {name: defined_names(tree) for name, tree in trees.items()}
    wrong = []
    for name, tree in trees.items():
        aliases = {}  # local name -> project module, for `import x.y as z` / `from x import y as z`
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for a in node.names:
                    full = f"{node.module}.{a.name}"
                    if full in known:
                        aliases[a.asname or a.name] = full
                    elif node.module in known and a.name.startswith("_"):
                        wrong.append(f"{name}: from {node.module} import {a.name}")
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name in known and a.asname:
                        aliases[a.asname] = a.name
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
                target = aliases[node.value.id]
                attr = node.attr
                if attr.startswith("_") and not attr.startswith("__"):
                    wrong.append(f"{name}: {node.value.id}.{attr} (private to {target})")
                elif attr not in owned[target] and f"{target}.{attr}" not in known:
                    wrong.append(f"{name}: {node.value.id}.{attr} ({target} only imports it)")
    assert not wrong, "\n".join(sorted(set(wrong)))
