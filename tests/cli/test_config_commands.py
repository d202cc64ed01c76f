"""`aplot init` and `aplot fields` (choices listed, overrides taken, a PPO preset written without its RM
run), and `sweep ls/show --json`."""

from __future__ import annotations

import json

from _cli import aplot, one_line_error

from engine import config as C
from engine.runs import status as S
from engine.runs import store as mf


def test_init_writes_a_ppo_preset_with_overrides_and_leaves_the_rm_run_to_the_launch(tmp_path):
    out = tmp_path / "g.toml"
    proc = aplot("init", out, "--preset", "demo-grpo", "optim.max_steps=7")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"wrote {out}; run it with: aplot run {out} ppo.reward_model_run=RUN"
    expected = C.load(None, ["optim.max_steps=7", 'ppo.reward_model_run="x"'], preset="demo-grpo")
    written = C.load(out, ['ppo.reward_model_run="x"'])
    assert C.diff(C.to_dict(written), C.to_dict(expected)) == {}
    line = one_line_error(aplot("init", tmp_path / "h.toml", "ppo.kl_coef=-1", "--preset", "demo-grpo"))
    assert line == "aplot: ppo.kl_coef: must be >= 0, got -1.0 (command line: ppo.kl_coef=-1, over preset demo-grpo)"
    assert not (tmp_path / "h.toml").exists()


def test_init_and_fields_list_every_choice_fields_choices(tmp_path):
    choice_fields = {path: fld.metadata["choices"] for path, fld, _tp, table in C.iter_fields()
                     if not table and fld.metadata.get("choices")}
    assert "loss.type" in choice_fields and "kind" in choice_fields
    listed = {r["path"]: r for r in map(json.loads, aplot("fields", "--json").stdout.splitlines())}
    assert {p: tuple(r["choices"]) for p, r in listed.items() if r["choices"]} == choice_fields
    assert listed["optim.lr"]["default"] == C.Config().optim.lr and listed["optim.lr"]["help"]
    text = aplot("fields").stdout
    aplot("init", tmp_path / "a.toml")
    template = (tmp_path / "a.toml").read_text()
    for path, choices in choice_fields.items():
        shown = f"(one of: {' | '.join(map(str, choices))})"
        assert any(line.startswith(f"{path} = ") and line.endswith(shown) for line in text.splitlines()), path
        name = path.rpartition(".")[2]
        assert any(line.startswith(f"{name} = ") and shown in line for line in template.splitlines()), path


def test_sweep_ls_and_show_as_json(tiny_config, runs_dir):
    from engine.runs import sweep_spec, sweeps

    sweep_file = tiny_config.parent / "s.toml"
    sweep_file.write_text(f'[sweep]\nname = "grid"\nbase = "{tiny_config.name}"\nseeds = [0, 1]\n'
                          '[sweep.axes]\n"loss.type" = ["bt", "aplot"]\n')
    sweep_id = sweeps.create(sweep_spec.load(sweep_file), runs_dir)  # queued; no scheduler started
    (listed,) = [json.loads(line) for line in aplot("sweep", "ls", "--json", runs_dir=runs_dir).stdout.splitlines()]
    assert listed["id"] == sweep_id and listed["counts"] == {"total": 4, S.QUEUED: 4}
    shown = json.loads(aplot("sweep", "show", "grid", "--json", runs_dir=runs_dir).stdout)
    assert shown["id"] == sweep_id and shown["name"] == "grid" and len(shown["runs"]) == 4
    assert sorted((r["axes"]["loss.type"], r["seed"]) for r in shown["runs"]) == [
        ("aplot", 0), ("aplot", 1), ("bt", 0), ("bt", 1)]
    assert {r["id"] for r in shown["runs"]} == {p.id for p, _ in mf.list_runs(runs_dir)}


def test_rm_refuses_a_queued_run_while_its_sweeps_scheduler_runs(tiny_config, runs_dir):
    import fcntl

    from engine.runs import sweep_spec, sweeps

    sweep_file = tiny_config.parent / "s.toml"
    sweep_file.write_text(f'[sweep]\nname = "q"\nbase = "{tiny_config.name}"\n[sweep.axes]\n"loss.type" = ["bt"]\n')
    sweep_id = sweeps.create(sweep_spec.load(sweep_file), runs_dir)
    ((paths, _),) = mf.list_runs(runs_dir)
    with open(sweeps.sweep_dir(runs_dir, sweep_id) / sweeps.LOCK, "a") as lock:  # as a live scheduler holds it
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = aplot("rm", "--yes", paths.id, runs_dir=runs_dir)
        assert one_line_error(proc).endswith(f"whose scheduler is running; stop it first (aplot sweep stop {sweep_id})")
        assert proc.returncode == 2 and paths.dir.exists()
    assert aplot("rm", "--yes", paths.id, runs_dir=runs_dir).returncode == 0 and not paths.dir.exists()
    assert json.loads(aplot("sweep", "show", sweep_id, "--json", runs_dir=runs_dir).stdout)["runs"] == []
