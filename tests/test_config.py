import dataclasses
import tomllib

import pytest

from engine import config as C


def test_defaults_round_trip_through_toml():
    cfg = C.Config()
    again = C.from_dict(tomllib.loads(C.dumps(cfg)))
    assert again == cfg


def test_every_bad_field_is_reported_at_once_with_path_and_file(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text('[loss]\ntype = "bogus"\n[loss.aplot]\nepsilon = -1\n[optim]\nlr = "fast"\nbatch_size = 0\n')
    with pytest.raises(C.ConfigError) as e:
        C.load(p)
    lines = e.value.problems
    assert f"loss.aplot.epsilon: must be > 0, got -1.0 ({p})" in lines
    assert any(line.startswith("loss.type: must be one of bt | bt_margin | label_smoothing | aplot") for line in lines)
    assert any(line.startswith("optim.lr: expected float, got 'fast'") for line in lines)
    assert any(line.startswith("optim.batch_size: must be > 0") for line in lines)
    assert all(str(p) in line for line in lines)
    assert len(lines) == 4


def test_unknown_field_and_wrong_table_type():
    with pytest.raises(C.ConfigError) as e:
        C.from_dict({"optim": {"learning_rate": 1.0}, "model": 3})
    text = str(e.value)
    assert "optim.learning_rate: unknown field" in text
    assert "model: expected a table" in text


def test_malformed_toml_is_one_line(tmp_path):
    p = tmp_path / "x.toml"
    p.write_text("[optim\nlr = 1")
    with pytest.raises(C.ConfigError) as e:
        C.load(p)
    assert len(e.value.problems) == 1 and "malformed TOML" in e.value.problems[0]


def test_overrides_parse_toml_values_and_bare_strings():
    cfg = C.load(None, ["optim.lr=3e-5", "loss.type=bt", "log.trackers=['tensorboard']", "data.eval.ood=x.jsonl",
                        "launch.cpu=true"])
    assert cfg.optim.lr == 3e-5 and cfg.loss.type == "bt" and cfg.log.trackers == ["tensorboard"]
    assert cfg.data.eval == {"ood": "x.jsonl"} and cfg.launch.cpu is True
    with pytest.raises(C.ConfigError):
        C.load(None, ["optim.lr"])


def test_public_field_names_of_the_spec_exist():
    names = {p for p, *_ in C.iter_fields()}
    for path in ["kind", "name", "seed", "model.name", "model.max_length", "data.train", "data.eval_fraction",
                 "data.eval", "loss.type", "loss.center_rewards", "loss.aplot.semantic_weight",
                 "loss.aplot.epsilon", "loss.aplot.margin_scale", "loss.aplot.solver", "loss.aplot.reward_cost",
                 "loss.aplot.embedding", "loss.aplot.ot_scope", "optim.lr", "optim.batch_size", "optim.grad_accum",
                 "optim.max_steps", "optim.epochs", "optim.warmup_ratio", "optim.weight_decay", "eval.every",
                 "checkpoint.every", "checkpoint.keep", "launch.num_processes", "launch.mixed_precision",
                 "launch.cpu", "launch.accelerate_config", "log.every", "log.trackers", "ppo.reward_model_run",
                 "ppo.prompts", "ppo.rollout_batch", "ppo.max_new_tokens", "ppo.kl_coef", "ppo.ppo_epochs",
                 "ppo.clip_range", "ppo.win_rate_every"]:
        assert path in names, path


def test_every_field_has_one_line_help():
    for path, fld, _tp, _table in C.iter_fields():
        help_text = fld.metadata.get("help", "")
        assert help_text and "\n" not in help_text, path


def test_init_template_parses_back_to_the_defaults():
    text = C.commented_template()
    data = tomllib.loads(text)
    assert C.from_dict(data) == C.Config()
    assert "# ε: entropic regularisation of Sinkhorn" in text


def test_presets_ship_and_validate():
    names = C.preset_names()
    assert names
    for name in names:
        cfg = C.load(None, ['ppo.reward_model_run="some-rm-run"'], preset=name)
        assert cfg.name == name
    with pytest.raises(C.ConfigError):
        C.load(None, [], preset="../etc/passwd")


def test_data_paths_are_relative_to_the_config_file(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "pairs.jsonl").write_text("{}\n")
    p = tmp_path / "cfg.toml"
    p.write_text('[data]\ntrain = "d/pairs.jsonl"\n')
    assert C.load(p).data.train == str((tmp_path / "d" / "pairs.jsonl").resolve())


def test_diff_lists_only_differing_fields():
    a = C.to_dict(C.Config())
    b = C.to_dict(dataclasses.replace(C.Config(), seed=3))
    b["loss"]["aplot"]["epsilon"] = 0.5
    assert set(C.diff(a, b)) == {"seed", "loss.aplot.epsilon"}


def test_resolve_derives_sizes_once():
    cfg = C.load(None, ["optim.batch_size=8", "optim.grad_accum=2", "optim.epochs=2", "optim.warmup_ratio=0.1"])
    r = C.resolve(cfg, n_train_pairs=100, world_size=2)
    # 100 pairs in micro-batches of 16: 7 of them, the last topped up with 12 pairs from the epoch's start
    assert r["effective_batch"] == 32 and r["micro_batches_per_epoch"] == 7 and r["padded_pairs_per_epoch"] == 12
    assert r["steps_per_epoch"] == 4 and r["total_steps"] == 7 and r["warmup_steps"] == 1
    with pytest.raises(C.ConfigError):
        C.resolve(cfg, n_train_pairs=10, world_size=2)


def test_integers_beyond_any_run_size_are_refused_in_one_line():
    with pytest.raises(C.ConfigError) as err:
        C.load(None, ["optim.max_steps=1000000000000000000000000000000"])  # 31 digits
    assert err.value.problems == ["optim.max_steps: out of range, got an integer of 31 digits "
                                  "(command line: optim.max_steps=1000000000000000000000000000000)"]
    assert C.load(None, [f"seed={2**32 - 1}"]).seed == 2**32 - 1  # the largest seed still fits


def test_a_typo_in_an_override_names_the_command_line_and_the_nearest_field(tmp_path):
    p = tmp_path / "hh.toml"
    p.write_text("[optim]\nlr = 1e-4\n")
    with pytest.raises(C.ConfigError) as err:
        C.load(p, ["optim.lrr=1e-3"])
    assert err.value.problems == ["optim.lrr: unknown field (command line: optim.lrr=1e-3); did you mean optim.lr?"]
    with pytest.raises(C.ConfigError) as err:  # nothing near: no guess
        C.load(p, ["ppo.zzzz=1"])
    assert err.value.problems == ["ppo.zzzz: unknown field (command line: ppo.zzzz=1)"]


@pytest.mark.parametrize(("body", "field", "nearest"), [
    ("[loss.aplot]\nepsilom = 0.1\n", "loss.aplot.epsilom", "loss.aplot.epsilon"),  # three tables deep
    ("[optimm]\nlr = 1e-4\n", "optimm", "optim"),  # a misspelt table
    ("lr = 1e-4\n", "lr", "optim.lr"),  # the right name in the wrong table
    ("[ppo]\nkl = 0.1\n", "ppo.kl", "ppo.kl_coef"),  # a name cut short
])
def test_a_typo_in_a_file_names_the_file_and_the_nearest_field(tmp_path, body, field, nearest):
    p = tmp_path / "cfg.toml"
    p.write_text(body)
    with pytest.raises(C.ConfigError) as err:
        C.load(p)
    assert err.value.problems == [f"{field}: unknown field ({p}); did you mean {nearest}?"]


def test_each_problem_names_what_set_its_value(tmp_path):
    p = tmp_path / "cfg.toml"
    p.write_text('[optim]\nbatch_size = 0\n[data.eval]\nood = "ood.jsonl"\n')
    with pytest.raises(C.ConfigError) as err:
        C.load(p, ["optim.lr=-1", 'data.eval={ood = ""}', "model.tiny.num_heads=5"])
    assert err.value.problems == [
        "optim.lr: must be > 0, got -1.0 (command line: optim.lr=-1)",
        f"optim.batch_size: must be > 0, got 0 ({p})",
        "model.tiny.num_heads: must divide model.tiny.hidden_size (64), got 5 (command line: model.tiny.num_heads=5)",
        "data.eval.ood: expected a file path, got '' (command line: data.eval={ood = \"\"})",
    ]
    with pytest.raises(C.ConfigError) as err:
        C.load(p, ["optim.lr"])
    assert err.value.problems == ["optim.lr: an override reads key.path=value (command line: optim.lr)"]


def test_a_bad_override_of_a_preset_names_the_preset_not_its_file():
    with pytest.raises(C.ConfigError) as err:
        C.load(None, ['ppo.reward_model_run="rm"', "ppo.samples_per_prompt=1", "optim.lrr=1"], preset="demo-grpo")
    assert err.value.problems == [
        "optim.lrr: unknown field (command line: optim.lrr=1, over preset demo-grpo); did you mean optim.lr?",
        "ppo.samples_per_prompt: grpo needs at least 2 samples per prompt (the other samples of a prompt are its "
        "baseline), got 1 (command line: ppo.samples_per_prompt=1, over preset demo-grpo)",
    ]
    with pytest.raises(C.ConfigError) as err:  # a value the preset itself sets is the preset's
        C.load(None, [], preset="demo-grpo")
    assert err.value.problems == ["ppo.reward_model_run: a PPO run needs a completed RM run id or path (preset demo-grpo)"]
    with pytest.raises(C.ConfigError) as err:  # a check of two fields names the override that broke it
        C.load(None, ['ppo.reward_model_run="rm"', 'ppo.prompts="p.jsonl"'], preset="demo-grpo")
    assert err.value.problems == ['ppo.judge: "gold" needs ppo.prompts = "synthetic", the only task with a gold rule '
                                  '(command line: ppo.prompts="p.jsonl", over preset demo-grpo)']
    assert str(C.PRESETS_DIR) not in str(err.value)


def test_a_final_only_eval_set_must_be_one_the_run_has():
    cfg = C.load(None, ["data.eval.ood=o.jsonl", 'eval.final_only=["ood", "heldout"]'])
    assert cfg.eval.final_only == ["ood", "heldout"]
    with pytest.raises(C.ConfigError) as err:
        C.load(None, ["data.eval.ood=o.jsonl", "data.eval_fraction=0", 'eval.final_only=["odd"]'])
    assert err.value.problems == [
        "eval.final_only: 'odd' is not an eval set (these are: ood) (command line: eval.final_only=[\"odd\"]; "
        "command line: data.eval.ood=o.jsonl; command line: data.eval_fraction=0)"]


def test_lora_on_a_ppo_run_is_refused_not_ignored():
    assert C.load(None, ["kind=dpo", "model.lora.r=8"]).model.lora.r == 8
    with pytest.raises(C.ConfigError) as err:
        C.load(None, ["model.lora.r=8", 'ppo.reward_model_run="rm"'], preset="demo-ppo")
    assert err.value.problems[0].startswith("model.lora.r: LoRA applies to rm and dpo runs; a ppo run trains every "
                                            "weight of its policy, got 8 (command line: model.lora.r=8")


def test_pack_groups_needs_a_group_method_and_whole_groups_per_minibatch():
    assert C.load(None, ["ppo.advantage=grpo", "ppo.samples_per_prompt=4", "ppo.minibatch_size=8",
                         "ppo.pack_groups=true"]).ppo.pack_groups
    with pytest.raises(C.ConfigError) as err:
        C.load(None, ["ppo.advantage=grpo", "ppo.samples_per_prompt=4", "ppo.minibatch_size=6", "ppo.pack_groups=true"])
    assert err.value.problems[0].startswith("ppo.pack_groups: packs the groups of grpo or rloo, whose minibatches "
                                            "then hold whole groups, so minibatch_size must be a multiple of "
                                            "samples_per_prompt; got advantage 'grpo', minibatch_size 6")
    with pytest.raises(C.ConfigError) as err:
        C.load(None, ["ppo.advantage=grpo", "ppo.samples_per_prompt=4", "ppo.minibatch_size=8", "ppo.pack_groups=true",
                      "optim.grad_accum=3"])
    assert err.value.problems[0].startswith("optim.grad_accum: with ppo.pack_groups a micro-batch holds at least one "
                                            "whole group, so at most minibatch_size / samples_per_prompt = 2 "
                                            "micro-batches, got 3")
