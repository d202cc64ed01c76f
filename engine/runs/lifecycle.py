"""The one way a run is launched: checks first, then the run folder, then the process.

The CLI (`aplot run`, the demo chain), the TUI's new-run screen and the sweep scheduler all come
here, so a missing data file or an unknown reward-model run fails the same way everywhere: in one
line, before any folder or process exists. Following a run's progress stays with the caller (the
CLI draws a progress bar, the TUI opens the run screen, the scheduler only counts).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from engine import config as config_mod
from engine.runs import store as mf
from engine.runs import supervisor


def preflight(cfg: config_mod.Config, root: Path | None = None) -> dict | None:
    """Checks that cost nothing and would otherwise fail minutes later inside the subprocess. With
    the run store `root`, a PPO run's reward model, judge and opponent must be completed runs of the
    right kind with an exported model; they are returned as the new run's [links] (None: no links)."""
    from engine import trackers
    from engine.data import sources

    problems = []
    files = [("data.train", cfg.data.train)] + [(f"data.eval.{k}", v) for k, v in cfg.data.eval.items()]
    if cfg.kind == "ppo":
        files = [("ppo.prompts", cfg.ppo.prompts)]
    for field, path in files:
        if not path or path == "synthetic":
            continue
        if cfg.kind == "ppo":
            if not os.path.isfile(path):  # never raises, unlike Path.is_file
                what = "not a regular file" if os.path.exists(path) else "no such data file"
                problems.append(f"{field}: {what} {path!r}")
        elif (why := sources.check_source(path)) is not None:
            problems.append(f"{field}: {why}")
    if cfg.launch.accelerate_config and not os.path.isfile(cfg.launch.accelerate_config):
        problems.append(f"launch.accelerate_config: no such file {cfg.launch.accelerate_config!r}")
    problems += trackers.problems(cfg.log.trackers)
    if cfg.kind == "eval":
        if not os.path.isfile(os.path.join(cfg.model.name, "config.json")):
            problems.append(f"model.name: {cfg.model.name!r} is not a model folder (no config.json)")
        if cfg.eval.sections:
            from engine.analysis.sections import read_sections

            try:
                read_sections(cfg.eval.sections)
            except config_mod.ConfigError as e:
                problems += e.problems
    links = None
    if cfg.kind == "ppo" and root is not None:
        links, found = named_runs(cfg.ppo, Path(root))
        problems += found
    if problems:
        raise config_mod.ConfigError(problems)
    return links


def named_runs(p: config_mod.PPOSection, root: Path) -> tuple[dict[str, str], list[str]]:
    """The runs a PPO config names, as links (run ids, or resolved model folders), and the problems
    with them."""
    named = [("ppo.reward_model_run", "reward_model_run", p.reward_model_run, "rm")]  # (field, link, ref, kind)
    if p.judge not in ("rm", "gold"):
        named.append(("ppo.judge", "judge_run", p.judge, "rm"))
    if p.opponent != "reference":
        named.append(("ppo.opponent", "opponent_run", p.opponent, "ppo"))
    links, problems = {}, []
    for field, link, ref, kind in named:
        try:
            links[link] = mf.find_model_run(root, ref, kind, field)[1]
        except mf.RunError as e:
            problems.append(str(e))
    return links, problems


def create(cfg: config_mod.Config, root: Path, *, links: dict | None = None) -> mf.RunPaths:
    """Preflight, then the run folder (status `created`); nothing is started."""
    named = preflight(cfg, root)
    return supervisor.create_run(cfg, root, links=links if links is not None else named)


def launch(cfg: config_mod.Config, root: Path, *, links: dict | None = None
           ) -> tuple[mf.RunPaths, subprocess.Popen | supervisor.SlurmJob]:
    """Preflight, create and spawn: the run and its process, for a caller that follows it (the CLI)."""
    paths = create(cfg, root, links=links)
    return paths, supervisor.spawn(paths)


def start(cfg: config_mod.Config, root: Path, *, links: dict | None = None) -> mf.RunPaths:
    """Preflight, create and spawn for a long-lived caller (the TUI): a reaper thread waits on it."""
    paths, proc = launch(cfg, root, links=links)
    supervisor.watch(paths, proc)
    return paths


def demo_rm_config(overrides: list[str]) -> config_mod.Config:
    """The demo's first half: an APLOT reward model on the synthetic task (non-`ppo.` overrides)."""
    return config_mod.load(None, [o for o in overrides if not o.startswith("ppo.")], preset="demo-rm")


def demo_ppo_config(overrides: list[str], rm_run: str) -> config_mod.Config:
    """The demo's second half: PPO against the reward model run `rm_run` just made."""
    ppo_over = [o for o in overrides if o.startswith(("ppo.", "seed"))]
    return config_mod.load(None, [*ppo_over, f'ppo.reward_model_run="{rm_run}"'], preset="demo-ppo")
