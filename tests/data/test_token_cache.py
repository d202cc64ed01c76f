"""The token cache beside the run store, and truncation that keeps a floor of prompt."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.data import token_cache
from engine.data.pairs import PairDataset, encode_pairs
from engine.data.rows import Pair
from engine.data.sources import synthetic_pairs

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tok():
    from engine.models import train_tokenizer

    return train_tokenizer([p.prompt + p.chosen + p.rejected for p in synthetic_pairs(200, 0, 0.1).pairs], 300)


def same_items(a: PairDataset, b: PairDataset) -> bool:
    return all(np.array_equal(x["chosen_ids"], y["chosen_ids"]) and np.array_equal(x["rejected_ids"], y["rejected_ids"])
               and all(x[k] == y[k] for k in (*token_cache.FLAGS, "margin")) for x, y in zip(a.items, b.items, strict=True))


def test_a_second_dataset_reads_the_cache_and_gets_the_same_items(tmp_path, tok):
    pairs = synthetic_pairs(200, 0, 0.1).pairs
    first = PairDataset(pairs, tok, 32, 0.25, tmp_path)
    again = PairDataset(pairs, tok, 32, 0.25, tmp_path)
    plain = PairDataset(pairs, tok, 32, 0.25)
    assert not first.cached and again.cached and not plain.cached
    assert same_items(first, plain) and same_items(again, plain)
    assert again.truncated == plain.truncated > 0
    assert len([p for p in tmp_path.iterdir()]) == 1
    # any change to what the ids depend on is another entry
    assert not PairDataset(pairs, tok, 33, 0.25, tmp_path).cached
    assert not PairDataset(pairs, tok, 32, 0.5, tmp_path).cached
    edited = [Pair(p.prompt, p.chosen + ("!" if i == 7 else ""), p.rejected, p.margin) for i, p in enumerate(pairs)]
    assert not PairDataset(edited, tok, 32, 0.25, tmp_path).cached
    assert len([p for p in tmp_path.iterdir()]) == 4



def test_a_cache_that_cannot_be_written_costs_the_run_nothing(tmp_path, tok, capsys):
    """A full disk or a read-only store must not fail a run over an optimisation."""
    pairs = synthetic_pairs(50, 0, 0.1).pairs
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder would go")
    ds = PairDataset(pairs, tok, 32, 0.25, blocked)
    assert not ds.cached and same_items(ds, PairDataset(pairs, tok, 32, 0.25))
    assert "token cache not written" in capsys.readouterr().err
    assert blocked.read_text().startswith("a file")  # nothing half-written in its place
    assert not PairDataset(pairs, tok, 32, 0.25, blocked).cached  # and nothing to read back

RACE = """
import sys, pickle
from engine.data.pairs import PairDataset
from engine.data.sources import synthetic_pairs
from engine.models import train_tokenizer
pairs = synthetic_pairs(3000, 1, 0.1).pairs
tok = train_tokenizer([p.prompt + p.chosen + p.rejected for p in pairs[:200]], 300)
print("ready", flush=True)
sys.stdin.readline()
ds = PairDataset(pairs, tok, 32, 0.25, sys.argv[1])
sys.stdout.write(str(sum(int(i["chosen_ids"].sum()) + int(i["rejected_ids"].sum()) for i in ds.items)))
"""


def test_two_runs_racing_for_one_entry_both_get_it_whole(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", RACE, str(tmp_path)], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    for p in procs:  # released together
        p.stdin.write("go\n")
        p.stdin.flush()
    sums = [p.communicate(timeout=120)[0] for p in procs]
    assert sums[0] == sums[1] and int(sums[0]) > 0
    assert [p.name for p in tmp_path.iterdir()] and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert len(list(tmp_path.iterdir())) == 1


def test_the_prompt_keeps_its_floor_and_the_responses_lose_their_end(tok):
    prompt = "\n\nHuman: " + " ".join(f"w{i}" for i in range(40)) + " final question?\n\nAssistant:"
    pair = Pair(prompt, " " + "long answer " * 30, " short")
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    c = tok(pair.chosen, add_special_tokens=False)["input_ids"]
    old = encode_pairs(tok, [pair], 64, 0.0)[0]
    assert old["prompt_len"] == 0 and old["no_prompt"]  # the long answer left nothing for the prompt
    new = encode_pairs(tok, [pair], 64, 0.25)[0]
    floor = 16  # 0.25 × 64
    assert new["prompt_len"] == floor and not new["no_prompt"]
    assert new["chosen_ids"][:floor] == p[-floor:]  # the prompt's end: the turn being answered
    assert new["chosen_ids"][floor:-1] == c[: 64 - 1 - floor]  # the response keeps its start
    assert new["truncated"] and len(new["chosen_ids"]) == 64
    short = encode_pairs(tok, [Pair("hi?", " " + "long " * 80, " no")], 64, 0.25)[0]  # under the floor: kept whole
    assert 0 < short["prompt_len"] == len(tok("hi?", add_special_tokens=False)["input_ids"]) < floor
    assert short["chosen_len"] == 63 - short["prompt_len"]


def test_a_pair_with_an_empty_prompt_counts_as_one_with_no_prompt(tok):
    """`no_prompt_pairs` counts every pair the model sees without context, not only those cut to none."""
    ds = PairDataset([Pair("", " plum fig", " dog"), Pair("fruit: dog red plum.", " fig", " cat")], tok, 32)
    assert [item["no_prompt"] for item in ds.items] == [True, False] and ds.no_prompt == 1
