"""A config's data sets, read in full: the launch preflight's data check and the trainer's pairs.

Bad data must be refused at the door (exit 2, one line, no run folder), not found minutes later
inside the trainer, so `check` reads every train and eval set of an rm or eval config in full, in
the parent, before anything exists; every launch path (the CLI, the TUI form, sweeps, `aplot eval`,
Slurm submits) reaches it through `engine.runs.lifecycle.preflight`. The trainer's `read` goes
through the same sources and the same split, so the counts the preflight returns are the ones the
run will have, and with the run store's row cache (`engine.data.row_cache`) it reads back what the
preflight parsed instead of parsing it again. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engine import config as config_mod
from engine import metrics as M
from engine.analysis.rewardbench import ties_problem
from engine.data import row_cache, sources
from engine.data.rows import DataError, LoadResult, Pair, split_eval

SYNTHETIC = "synthetic"


@dataclass
class Sets:
    """A run's pairs: train, the named eval sets (the held-out share first; empty ones dropped), and
    per set read the fingerprint of its source and the rows skipped for an empty response."""

    train: list[Pair] = field(default_factory=list)
    evals: dict[str, list[Pair]] = field(default_factory=dict)
    hashes: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, dict[str, int]]:
        """Per set, what a launch can know before the trainer starts: its pairs (train after the
        held-out split and the caps) and the rows its file had with an empty response."""
        named = ({"train": self.train} if "train" in self.skipped else {}) | self.evals
        return {name: {"pairs": len(pairs), "skipped_empty": self.skipped.get(name, 0)}
                for name, pairs in named.items()}


def named(cfg: config_mod.Config) -> list[tuple[str, str, str]]:
    """(config field, set name, source) of every set an rm or eval config reads; none for PPO."""
    if cfg.kind == "ppo":
        return []
    out = [("data.train", "train", cfg.data.train)] if cfg.data.train else []
    return out + [(f"data.eval.{k}", k, v) for k, v in cfg.data.eval.items()]


def load(cfg: config_mod.Config, spec: str, runs_root: Path | None = None) -> LoadResult:
    """One set in full; the demo's synthetic pairs are generated from the config."""
    d = cfg.data
    if spec == SYNTHETIC:
        return sources.synthetic_pairs(d.synthetic_pairs, cfg.seed, d.label_noise, d.length_bias)
    cache = None if runs_root is None else row_cache.cache_root(runs_root)
    return sources.load_pairs(spec, d.columns, cache)


def assemble(cfg: config_mod.Config, results: dict[str, LoadResult]) -> Sets:
    """Loaded sets (by set name) to a run's pairs: the seeded, prompt-grouped held-out split of
    train, then the `max_*_pairs` caps."""
    d, out = cfg.data, Sets()
    evals: dict[str, list[Pair]] = {}
    for name, res in results.items():
        if name == "train":
            out.train, heldout = split_eval(res.pairs, d.eval_fraction, cfg.seed)
            if heldout:
                evals[M.HELDOUT] = heldout
        else:
            evals[name] = res.pairs
        out.hashes[name], out.skipped[name] = res.sha256, res.skipped_empty
    if d.max_train_pairs:
        out.train = out.train[: d.max_train_pairs]
    if d.max_eval_pairs:
        evals = {k: whole_items(v, d.max_eval_pairs) for k, v in evals.items()}
    out.evals = {k: v for k, v in evals.items() if v}
    return out


def whole_items(pairs: list[Pair], cap: int) -> list[Pair]:
    """The first `cap` pairs, less the pairs of an N-way item the cap would cut: half an item would be
    scored as if its other completions did not exist."""
    out = pairs[:cap]
    if len(pairs) > cap and pairs[cap].item is not None:
        while out and out[-1].item == pairs[cap].item:
            out.pop()
    return out


def read(cfg: config_mod.Config, runs_root: Path | None = None) -> Sets:
    """The trainer's pairs; the first problem is a DataError (the preflight has already said it)."""
    return assemble(cfg, {name: load(cfg, spec, runs_root) for _field, name, spec in named(cfg)})


def check(cfg: config_mod.Config, runs_root: Path | None = None) -> dict[str, dict[str, int]]:
    """Every set of an rm or eval config read in full through the row layer: one problem line per
    set that cannot be used, naming the config field and the file with its line, row or column, as
    a ConfigError; else the counts of `Sets.counts`. The sets read are kept in the row cache of the
    run store `runs_root`, where the trainer finds them. The synthetic task is generated, not read:
    its counts are the trainer's to say."""
    results, problems = {}, []
    for fld, name, spec in named(cfg):
        if spec == SYNTHETIC:
            continue
        why = sources.check_source(spec)  # no file, or not a kind we read: said without reading anything
        if why is None:
            try:
                results[name] = load(cfg, spec, runs_root)
                if problem := ties_problem(results[name].pairs):  # RewardBench 2's Ties rows must pair up by id
                    why = f"{spec}: {problem}"
            except DataError as e:
                why = str(e)
        if why is not None:
            problems.append(f"{fld}: {why}")
    if not problems:  # said only once every set was read: a set that failed may have the column
        problems = _absent_everywhere(cfg, list(results.values()))
    if not problems and cfg.kind == "eval" and cfg.eval.sections and results and not any(
            p.subset is not None for res in results.values() for p in res.pairs):
        problems = ["eval.sections: no eval set has a subset column (map yours with data.columns.subset)"]
    if problems:  # nothing is written before every set passed: a refused launch leaves nothing behind
        raise config_mod.ConfigError(problems)
    if runs_root is not None:
        for res in results.values():  # an entry already there (the set was read back) is kept as it is
            row_cache.store(row_cache.cache_root(runs_root), row_cache.key(res.path, res.sha256, cfg.data.columns), res)
    return assemble(cfg, results).counts()


def _absent_everywhere(cfg: config_mod.Config, results: list[LoadResult]) -> list[str]:
    """A mapped margin or subset column that no set read has: a typo, since one `[data.columns]`
    serves every set and any one set may lack margins or subsets."""
    out = []
    for ours, theirs in cfg.data.columns.items():
        if results and all(ours in r.absent for r in results):
            found = sorted(set().union(*(r.columns for r in results)))
            out.append(f"data.columns.{ours}: no column {theirs!r} in any row of {', '.join(r.path for r in results)}; "
                       f"columns found: {', '.join(found)}")
    return out
