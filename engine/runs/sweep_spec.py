"""Sweep files: a base config plus axes of values, expanded into one validated config per run.

    [sweep]
    name = "losses"
    base = "tiny.toml"              # a config file, relative to this file (optional)
    seeds = [0, 1, 2]               # every point of the grid once per seed
    [sweep.axes]                    # crossed: every combination
    "optim.lr" = [1e-4, 2e-4]
    [sweep.zip]                     # zipped: value i of every list together (crossed with the axes)
    "loss.type" = ["bt", "aplot"]
    "loss.aplot.normalize_costs" = ["none", "minmax"]
    [config]                        # inline config, applied over `base`
    optim.max_steps = 6

Everything is checked before any run exists: an unknown field, an empty axis, zipped lists of
different lengths, a value the config rejects each fail in one line naming the axis and the value.
Torch-free: the CLI and the sweep scheduler read it.
"""

from __future__ import annotations

import copy
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import config as config_mod
from engine.runs import store as mf

SWEEP_KEYS = {"name", "base", "seeds", "axes", "zip", "max_parallel"}


@dataclass(frozen=True)
class Point:
    """One run of the sweep: its axis values (dotted field → value), seed, and validated config."""

    index: int
    values: dict[str, Any]
    seed: int
    cfg: config_mod.Config

    @property
    def label(self) -> str:
        return "-".join(_short(v) for v in self.values.values()) or "base"


@dataclass
class Sweep:
    name: str
    source: Path
    points: list[Point] = field(default_factory=list)
    axes: dict[str, list] = field(default_factory=dict)
    zipped: dict[str, list] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=list)
    max_parallel: int = 1
    text: str = ""

    @property
    def scheduler(self) -> str:
        return self.points[0].cfg.launch.scheduler if self.points else "local"


def _short(value: Any) -> str:
    return mf.slug(str(value), 16) if not isinstance(value, float) else f"{value:g}"


def _fail(where: Path, line: str) -> config_mod.ConfigError:
    return config_mod.ConfigError([f"{where}: {line}"])


def _leaf_fields() -> tuple[set[str], set[str]]:
    """Dotted leaf fields, and those among them that are tables of free keys (data.eval)."""
    leaves, free = set(), set()
    for path, _fld, tp, is_table in config_mod.iter_fields():
        if not is_table:
            leaves.add(path)
            if tp is dict or getattr(tp, "__origin__", None) is dict:
                free.add(path)
    return leaves, free


def _check_field(where: Path, table: str, key: str) -> None:
    leaves, free = _leaf_fields()
    if key == "seed":
        raise _fail(where, f"[sweep.{table}] seed: list the seeds in [sweep] seeds = [...], not as an axis")
    if key not in leaves and not any(key.startswith(f + ".") and key.count(".") == f.count(".") + 1 for f in free):
        near = config_mod.nearest_field(key)
        hint = f"; did you mean {near}?" if near else ""
        raise _fail(where, f"[sweep.{table}] {key}: unknown config field{hint}")


def _set(data: dict, dotted: str, value: Any) -> None:
    node = data
    *parents, last = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def _axis_lists(where: Path, table: str, raw: Any) -> dict[str, list]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _fail(where, f"[sweep.{table}]: expected a table of field = [values]")
    out = {}
    for key, values in _flatten(raw).items():
        _check_field(where, table, key)
        if not isinstance(values, list):
            raise _fail(where, f"[sweep.{table}] {key}: expected a list of values, got {values!r}")
        if not values:
            raise _fail(where, f"[sweep.{table}] {key}: empty axis (give at least one value)")
        out[key] = values
    return out


def _flatten(table: dict, prefix: str = "") -> dict[str, Any]:
    """`{"loss": {"type": [...]}}` and `{"loss.type": [...]}` both mean the axis `loss.type`."""
    out = {}
    for k, v in table.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def load(path: Path | str, max_parallel: int | None = None) -> Sweep:
    """Read and expand a sweep file; every run's config validated, or one line naming the axis and value."""
    path = Path(path)
    data = config_mod.read_toml(path)
    head = data.get("sweep")
    if not isinstance(head, dict):
        raise _fail(path, "no [sweep] table (a sweep file has [sweep] with seeds and [sweep.axes] / [sweep.zip])")
    if unknown := sorted(set(head) - SWEEP_KEYS):
        raise _fail(path, f"[sweep] {unknown[0]}: unknown key (known: {', '.join(sorted(SWEEP_KEYS))})")
    if extra := sorted(set(data) - {"sweep", "config"}):
        raise _fail(path, f"[{extra[0]}]: unknown table (the base config goes under [config] or in sweep.base)")
    base_dir = path.resolve().parent
    base: dict = {}
    origins = config_mod.Origins("[config]")  # what a problem of the base names: the base file or [config]
    if head.get("base"):
        base_path = base_dir / str(head["base"])
        base = config_mod.read_toml(base_path)
        base_dir = base_path.resolve().parent
        origins = config_mod.Origins(str(base_path))
    for key in _flatten(data.get("config", {})):
        origins.set(key, "[config]")
    base = _merge(base, data.get("config", {}))
    seeds = head.get("seeds", [base.get("seed", 0)])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool)
                                                           and s >= 0 for s in seeds):
        raise _fail(path, f"[sweep] seeds: expected a non-empty list of integers >= 0, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise _fail(path, f"[sweep] seeds: {seeds!r} lists a seed twice")
    axes, zipped = _axis_lists(path, "axes", head.get("axes")), _axis_lists(path, "zip", head.get("zip"))
    if both := sorted(set(axes) & set(zipped)):
        raise _fail(path, f"{both[0]}: in both [sweep.axes] and [sweep.zip]")
    lengths = {k: len(v) for k, v in zipped.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{k} has {n}" for k, n in lengths.items())
        raise _fail(path, f"[sweep.zip]: zipped axes must have the same length ({shown})")
    parallel = max_parallel if max_parallel is not None else head.get("max_parallel", 1)
    if not isinstance(parallel, int) or isinstance(parallel, bool) or parallel < 1:
        raise _fail(path, f"max_parallel: expected an integer >= 1, got {parallel!r}")
    name = str(head.get("name") or path.stem)
    sweep = Sweep(name, path, axes=axes, zipped=zipped, seeds=list(seeds), max_parallel=parallel,
                  text=path.read_text(encoding="utf-8"))
    zip_rows = [dict(zip(zipped, row, strict=True)) for row in zip(*zipped.values(), strict=True)] or [{}]
    cross_rows = [dict(zip(axes, row, strict=True)) for row in itertools.product(*axes.values())]
    # seeds outermost: the runs start in this order, so a sweep stopped half-way (or still running)
    # already holds every method at the seeds it has done, ready to compare paired by seed
    for seed in seeds:
        for zrow, crow in itertools.product(zip_rows, cross_rows):
            sweep.points.append(_point(path, base, origins, base_dir, name, {**zrow, **crow}, seed,
                                       len(sweep.points)))
    return sweep


def _point(where: Path, base: dict, base_origins: config_mod.Origins, base_dir: Path, name: str, values: dict,
           seed: int, index: int) -> Point:
    data = copy.deepcopy(base)
    origins = copy.deepcopy(base_origins)
    for key, value in values.items():
        _set(data, key, value)
        origins.set(key, f"axis {key}")
    data["seed"] = seed
    label = "-".join(_short(v) for v in values.values())
    data["name"] = f"{name}-{label}-s{seed}" if label else f"{name}-s{seed}"
    try:
        cfg = config_mod.from_dict(data, origins)
    except config_mod.ConfigError as e:
        bad = _blame(e.problems, values)
        if bad is None:  # the base itself is wrong, whatever the axes say
            raise _fail(where, f"base config: {e.problems[0]}") from None
        key, value, problem = bad
        raise _fail(where, f"axis {key} = {json.dumps(value)}: {problem}") from None
    config_mod.resolve_paths(cfg, base_dir)
    return Point(index, dict(values), seed, cfg)


def _blame(problems: list[str], values: dict) -> tuple[str, Any, str] | None:
    """The first problem an axis value caused, by the source the config names (a check across fields
    names the axis that set any of them): (axis, value, the config's words less what the line repeats)."""
    for problem in problems:
        for key, value in values.items():
            if f"axis {key})" in problem or f"axis {key};" in problem:
                return key, value, problem.replace(f" (axis {key})", "").removeprefix(f"{key}: ")
    return None
