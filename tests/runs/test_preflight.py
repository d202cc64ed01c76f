"""Bad data is refused at the door: exit 2, one `aplot:` line naming the file and its line, row or
column, and no run folder, through every launch path (`aplot run`, a sweep file, `aplot eval`, a
Slurm submit, the TUI form). The trainer never sees it."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest
from _cli import aplot, one_line_error
from data.test_sources import fake_hub_cache, hub_env, write_parquet

from engine import config as C
from engine.data import sets
from engine.runs import lifecycle
from engine.runs import store as mf

GOOD = {"prompt": "\n\nHuman: hi?\n\nAssistant:", "chosen": " hello there", "rejected": " go away"}


def jsonl(path: Path, *rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def good_rows(n: int = 40) -> list[dict]:
    return [{**GOOD, "prompt": f"\n\nHuman: question {i}?\n\nAssistant:"} for i in range(n)]


# Each case writes its data under `tmp` and gives (overrides, the line it must produce, env or None).
def bad_json(tmp):
    p = jsonl(tmp / "pairs.jsonl", *good_rows(3), "{broken", GOOD)
    return [f'data.train="{p}"'], f"data.train: {p}:4: invalid JSON (Expecting property name enclosed in double " \
                                  "quotes: column 2)", None


def missing_field(tmp):
    p = jsonl(tmp / "pairs.jsonl", GOOD, {"prompt": "p", "chosen": "a"})
    return [f'data.train="{p}"'], f"data.train: {p}:2: expected fields prompt/chosen/rejected, or chosen/rejected " \
                                  "transcripts, or message lists; got keys ['chosen', 'prompt']", None


def null_field(tmp):
    p = jsonl(tmp / "pairs.jsonl", GOOD, GOOD, {**GOOD, "rejected": None})
    return [f'data.train="{p}"'], f"data.train: {p}:3: rejected is null; expected text or a message list", None


def null_prompt(tmp):  # a null prompt is a missing value, never an implicit common-prefix prompt
    p = jsonl(tmp / "pairs.jsonl", GOOD, {**GOOD, "prompt": None})
    return [f'data.train="{p}"'], (f"data.train: {p}:2: prompt is null; expected text or a message list "
                                   "(leave the column out for an implicit prompt)"), None


def wrong_type(tmp):
    p = jsonl(tmp / "pairs.jsonl", GOOD, {**GOOD, "margin": "big"})
    return [f'data.train="{p}"'], f"data.train: {p}:2: margin must be a number, got 'big'", None


def empty_file(tmp):
    p = tmp / "pairs.jsonl"
    p.write_text("\n\n")
    return [f'data.train="{p}"'], f"data.train: {p}: no rows (the data set is empty)", None


def bad_column_mapping(tmp):
    p = jsonl(tmp / "pairs.jsonl", *good_rows())
    return [f'data.train="{p}"', 'data.columns.prompt="nope"'], \
        f"data.train: {p}:1: no column 'nope' (data.columns.prompt); columns found: chosen, prompt, rejected", None


def bad_margin_mapping(tmp):  # an optional column: a set may lack it, but not every set of the config
    p = jsonl(tmp / "pairs.jsonl", *good_rows())
    return [f'data.train="{p}"', 'data.columns.margin="scroe"'], \
        f"data.columns.margin: no column 'scroe' in any row of {p}; columns found: chosen, prompt, rejected", None


def corrupt_gzip(tmp):
    p = tmp / "pairs.jsonl.gz"
    packed = bytearray(gzip.compress(json.dumps(GOOD).encode() * 50))
    p.write_bytes(bytes(packed[: len(packed) // 2]))  # cut short: the stream ends early
    return [f'data.train="{p}"'], f"data.train: {p}: not a readable gzip file (Compressed file ended before the " \
                                  "end-of-stream marker was reached)", None


def bad_eval_line(tmp):
    p = jsonl(tmp / "ood.jsonl", GOOD, "[1,", GOOD)
    return [f'data.eval.ood="{p}"'], f"data.eval.ood: {p}:2: invalid JSON (Expecting value: column 4)", None


def parquet_without_a_column(tmp):
    p = write_parquet(tmp / "pairs.parquet", [{"prompt": r["prompt"], "chosen": r["chosen"]} for r in good_rows()])
    return [f'data.train="{p}"'], f"data.train: {p}: row 1: expected fields prompt/chosen/rejected, or " \
                                  "chosen/rejected transcripts, or message lists; got keys ['chosen', 'prompt']", None


def dataset_dict_without_a_split(tmp):
    from datasets import Dataset, DatasetDict

    DatasetDict({"train": Dataset.from_list(good_rows()), "test": Dataset.from_list(good_rows(5))}).save_to_disk(
        str(tmp / "dd"))
    return [f'data.train="{tmp / "dd"}"'], \
        f"data.train: {tmp / 'dd'}: a DatasetDict with splits ['test', 'train']; point at one split's folder", None


def unknown_hf_split(tmp):
    fake_hub_cache(tmp / "hf", "someone/prefs", good_rows())
    return ['data.train="hf:someone/prefs@nosuch"'], ("data.train: hf:someone/prefs@nosuch: cannot load from the "
                                                      "local cache (Unknown split \"nosuch\". Should be one of "
                                                      "['test'].)"), hub_env(tmp / "hf")


KINDS = [bad_json, missing_field, null_field, null_prompt, wrong_type, empty_file, bad_column_mapping,
         bad_margin_mapping, corrupt_gzip, bad_eval_line, parquet_without_a_column, dataset_dict_without_a_split,
         unknown_hf_split]
# the three each other launch path is tried with: a JSON line, a column mapping, a file `datasets`' side reads
ACROSS_PATHS = [bad_json, bad_column_mapping, parquet_without_a_column]


def refused(proc, expected: str, runs_dir: Path, before: list[str] | None = None) -> None:
    assert one_line_error(proc) == f"aplot: {expected}", proc.stderr
    assert proc.returncode == 2
    assert sorted(p.name for p in runs_dir.iterdir()) == (before or [])  # no run, sweep or cache folder


@pytest.mark.parametrize("case", KINDS, ids=lambda c: c.__name__)
def test_aplot_run_refuses_bad_data_before_any_folder(case, tiny_config, tmp_path, runs_dir):
    overrides, expected, env = case(tmp_path)
    refused(aplot("run", tiny_config, *overrides, "-q", runs_dir=runs_dir, env=env), expected, runs_dir)


@pytest.mark.parametrize("case", ACROSS_PATHS, ids=lambda c: c.__name__)
def test_a_sweep_file_refuses_bad_data_before_any_folder(case, tiny_config, tmp_path, runs_dir):
    overrides, expected, _ = case(tmp_path)
    sweep = tmp_path / "sweep.toml"
    overrides_as_toml = "\n".join(overrides)  # `a.b="x"` is a TOML dotted key as it stands
    sweep.write_text(f'[sweep]\nbase = "{tiny_config.name}"\n[sweep.axes]\n"loss.type" = ["bt", "aplot"]\n'
                     f"[config]\n{overrides_as_toml}\n")
    proc = aplot("sweep", sweep, runs_dir=runs_dir)
    refused(proc, f"{sweep}: run 0 (sweep-bt-s0): {expected}", runs_dir)


def model_to_score(tmp_path: Path, runs_dir: Path, kind: str) -> str:
    """What `aplot eval` is pointed at: a reward-model run of the store (its best model), or a model
    folder. Only what the preflight asks of it exists: the trainer that would load it is never reached."""
    if kind == "run":
        paths = mf.run_paths(runs_dir, mf.new_run_id("scored", "rm", "bt"))
        mf.create(paths, name="scored", kind="rm", config=C.to_dict(C.Config()))
        folder, ref = paths.checkpoints / "best", paths.id
    else:
        folder = ref = tmp_path / "model"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    return str(ref)


@pytest.mark.parametrize("case, model", [(bad_json, "run"), (bad_column_mapping, "folder"),
                                         (parquet_without_a_column, "run")], ids=lambda c: getattr(c, "__name__", c))
def test_aplot_eval_refuses_a_bad_data_set_before_any_folder(case, model, tmp_path, runs_dir):
    overrides, expected, _ = case(tmp_path)
    source = overrides[0].split("=", 1)[1].strip('"')
    ref = model_to_score(tmp_path, runs_dir, model)
    before = sorted(p.name for p in runs_dir.iterdir())
    proc = aplot("eval", ref, "--data", f"ood={source}", *overrides[1:], "-q", runs_dir=runs_dir)
    refused(proc, expected.replace("data.train: ", "data.eval.ood: "), runs_dir, before)


@pytest.mark.parametrize("case", ACROSS_PATHS, ids=lambda c: c.__name__)
def test_a_slurm_launch_refuses_bad_data_before_sbatch_is_called(case, tiny_config, tmp_path, runs_dir):
    overrides, expected, _ = case(tmp_path)
    bin_dir, called = tmp_path / "bin", tmp_path / "sbatch-called"
    bin_dir.mkdir()
    for tool in ("sbatch", "squeue", "sinfo", "sacct", "scancel"):  # a cluster whose every command leaves a mark
        (bin_dir / tool).write_text(f"#!/bin/sh\necho {tool} >> {called}\necho 1\n")
        (bin_dir / tool).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    proc = aplot("run", tiny_config, 'launch.scheduler="slurm"', *overrides, "-q", runs_dir=runs_dir, env=env)
    refused(proc, expected, runs_dir)
    assert not called.exists()


def test_the_tui_form_says_each_data_problem_in_one_line_and_creates_nothing(tmp_path, monkeypatch):
    from tui.helpers import drive, wait_for

    from aplot_tui.app import AplotApp
    from aplot_tui.screens.new_run import NewRunScreen

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    monkeypatch.setattr(lifecycle.subprocess, "Popen", lambda *a, **k: pytest.fail("a process was started"))
    cases = []
    for case in ACROSS_PATHS:
        (tmp_path / case.__name__).mkdir()
        overrides, expected, _ = case(tmp_path / case.__name__)
        values = {k: v.strip('"') for k, v in (o.split("=", 1) for o in overrides)}
        columns = {k.removeprefix("data.columns."): v for k, v in values.items() if k.startswith("data.columns.")}
        cases.append((values["data.train"], columns, expected))
    said: list[str] = []

    def failures() -> list[str]:
        return [m for m in said if m.startswith("launch failed")]

    async def launch(pilot, screen, train: str, columns: dict) -> None:
        screen.form.control("data.train").value = train
        screen.form.control("data.columns").value = columns
        await wait_for(pilot, lambda: screen.cfg is not None and (screen.cfg.data.train, screen.cfg.data.columns)
                       == (train, columns))
        before = len(failures())
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: len(failures()) > before, what="the refusal")

    async def script(pilot):
        app = pilot.app
        real_notify = app.notify
        app.notify = lambda message, **kw: said.append(str(message)) or real_notify(message, **kw)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, NewRunScreen))
        app.screen.form.control("launch.cpu").value = True
        for train, columns, _ in cases:
            await launch(pilot, app.screen, train, columns)
            assert isinstance(app.screen, NewRunScreen)  # the form stays, with its values

    drive(AplotApp(runs_dir=Path("runs"), poll_s=0.1), script)
    assert failures() == [f"launch failed: {expected}" for _, _, expected in cases]
    assert list((tmp_path / "runs").iterdir()) == []


# ---------------------------------------------------------------------------- in process


def test_every_set_is_checked_and_each_problem_is_one_line(tmp_path):
    bad, empty = jsonl(tmp_path / "bad.jsonl", GOOD, "{"), jsonl(tmp_path / "empty.jsonl")
    good = jsonl(tmp_path / "good.jsonl", *good_rows())
    cfg = C.from_dict({"data": {"train": str(good), "eval": {"a": str(bad), "b": str(empty), "c": str(good)}}})
    with pytest.raises(C.ConfigError) as err:
        sets.check(cfg, tmp_path / "runs")
    assert err.value.problems == [
        f"data.eval.a: {bad}:2: invalid JSON (Expecting property name enclosed in double quotes: column 2)",
        f"data.eval.b: {empty}: no rows (the data set is empty)"]
    assert not (tmp_path / "runs").exists()  # a refusal writes nothing, not even the good sets' cache


def test_a_batch_the_train_set_cannot_fill_is_refused_before_any_folder(tmp_path):
    cfg = C.from_dict({"data": {"train": str(jsonl(tmp_path / "t.jsonl", *good_rows(12))), "eval_fraction": 0.25},
                       "optim": {"batch_size": 5}, "launch": {"num_processes": 2}})
    with pytest.raises(C.ConfigError) as err:  # 9 train pairs after the split, 10 a micro-batch
        lifecycle.preflight(cfg, tmp_path / "runs")
    assert err.value.problems == ["optim.batch_size: 9 training pairs cannot fill one micro-batch of 10 pairs "
                                  "(batch_size × processes)"]
    cfg.launch.num_processes = 1
    assert lifecycle.preflight(cfg, tmp_path / "runs").data["train"]["pairs"] == 9


def test_sections_over_sets_without_subsets_are_refused_before_any_folder(tmp_path):
    sections = tmp_path / "sections.toml"
    sections.write_text('chat = ["a"]\n')
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    ood = jsonl(tmp_path / "o.jsonl", *good_rows(4))
    cfg = C.from_dict({"kind": "eval", "model": {"name": str(model)}, "data": {"train": "", "eval": {"ood": str(ood)}},
                       "eval": {"sections": str(sections)}})
    with pytest.raises(C.ConfigError) as err:
        lifecycle.preflight(cfg, tmp_path / "runs")
    assert err.value.problems == ["eval.sections: no eval set has a subset column (map yours with data.columns.subset)"]
    jsonl(ood, *[{**r, "subset": "a"} for r in good_rows(4)])
    assert lifecycle.preflight(cfg, tmp_path / "runs").data["ood"]["pairs"] == 4


def test_the_preflight_counts_what_the_trainer_will_have(tmp_path):
    rows = good_rows(40) + [{**GOOD, "chosen": " "}] * 3
    cfg = C.from_dict({"data": {"train": str(jsonl(tmp_path / "t.jsonl", *rows)), "eval_fraction": 0.25,
                                "eval": {"ood": str(jsonl(tmp_path / "o.jsonl", *good_rows(7)))}}})
    counts = lifecycle.preflight(cfg, tmp_path / "runs").data
    data = sets.read(cfg, tmp_path / "runs")
    assert counts == {"train": {"pairs": 30, "skipped_empty": 3}, "heldout": {"pairs": 10, "skipped_empty": 0},
                      "ood": {"pairs": 7, "skipped_empty": 0}}
    assert (len(data.train), len(data.evals["heldout"]), len(data.evals["ood"])) == (30, 10, 7)


def test_the_trainer_reads_back_what_the_preflight_parsed(tmp_path, monkeypatch):
    """The parent parses each set once; the trainer (and the next launch) reads the row cache."""
    from engine.data import rows as rows_mod
    from engine.data import sources

    path = jsonl(tmp_path / "t.jsonl", *good_rows(), {**GOOD, "margin": 1.5, "subset": "chat"})
    cfg = C.from_dict({"data": {"train": str(path), "eval_fraction": 0.2}})
    parsed = []
    monkeypatch.setattr(sources, "collect", lambda *a, **k: parsed.append(a[1]) or rows_mod.collect(*a, **k))
    lifecycle.preflight(cfg, tmp_path / "runs")
    assert parsed == [str(path)]
    again = sets.read(cfg, tmp_path / "runs")
    lifecycle.preflight(cfg, tmp_path / "runs")  # a second launch of the same file
    assert parsed == [str(path)]  # neither parsed it again
    assert again == sets.read(cfg)  # the same pairs as a fresh parse, margins and subsets included
    path.write_text(path.read_text().replace("question 3", "question three"))
    sets.read(cfg, tmp_path / "runs")  # changed bytes: another entry, parsed anew
    assert parsed == [str(path), str(path), str(path)]
