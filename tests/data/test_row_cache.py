"""The row cache: what the preflight parsed, read back exactly, under a key that changes with
anything the parse depends on."""

import json
import math

from engine.data import row_cache
from engine.data.rows import LoadResult, Pair
from engine.data.sources import load_pairs


def odd_pairs() -> LoadResult:
    pairs = [Pair("", "a", "b"), Pair("π ≠ 3 \U0001f600", " lone \ud800 surrogate", "\x00\u2028", 1.5, "chat"),
             Pair("p", "c", "d", math.nan, ""), Pair("p", "e", "f", -math.inf, None), Pair("q", "g", "h", 0.0)]
    return LoadResult(pairs, 2, "x.jsonl", "ab" * 32, "standard+hh", {"subset": "kind"}, ["chosen", "prompt"])


def test_a_stored_set_reads_back_exactly(tmp_path):
    original = odd_pairs()
    assert row_cache.store(tmp_path, "k", original)
    back = row_cache.load(tmp_path, "k", "y.jsonl")
    assert (back.skipped_empty, back.sha256, back.format, back.path) == (2, "ab" * 32, "standard+hh", "y.jsonl")
    assert (back.absent, back.columns) == ({"subset": "kind"}, ["chosen", "prompt"])
    assert [(p.prompt, p.chosen, p.rejected, p.subset) for p in back.pairs] == \
        [(p.prompt, p.chosen, p.rejected, p.subset) for p in original.pairs]
    assert [p.margin for p in back.pairs][:2] == [None, 1.5] and math.isnan(back.pairs[2].margin)
    assert [p.margin for p in back.pairs][3:] == [-math.inf, 0.0]  # 0.0 is a margin, not a missing one
    assert row_cache.load(tmp_path, "other", "y.jsonl") is None


def test_the_key_changes_with_the_source_its_bytes_the_mapping_and_the_parser(monkeypatch):
    base = row_cache.key("a.jsonl", "f" * 64, {"prompt": "q", "chosen": "c"})
    assert base == row_cache.key("a.jsonl", "f" * 64, {"chosen": "c", "prompt": "q"})  # order of the mapping
    assert len({base, row_cache.key("b.jsonl", "f" * 64, {"prompt": "q", "chosen": "c"}),
                row_cache.key("a.jsonl", "e" * 64, {"prompt": "q", "chosen": "c"}),
                row_cache.key("a.jsonl", "f" * 64, {"prompt": "q"})}) == 4
    monkeypatch.setattr(row_cache, "code_digest", lambda: "an edited parser")
    assert row_cache.key("a.jsonl", "f" * 64, {"prompt": "q", "chosen": "c"}) != base


def test_a_store_that_cannot_be_written_or_an_entry_that_cannot_be_read_is_a_miss(tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder would go")
    assert not row_cache.store(blocked, "k", odd_pairs())
    assert blocked.read_text().startswith("a file")
    (tmp_path / "k").mkdir()
    (tmp_path / "k" / row_cache.ROWS).write_bytes(b"half an entry")
    assert row_cache.load(tmp_path, "k", "x.jsonl") is None


def test_load_pairs_reads_a_cached_parse_only_for_the_same_bytes(tmp_path, monkeypatch):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}) + "\n")
    parsed = load_pairs(str(path))
    stored = LoadResult([Pair("from", "the", "cache")], 0, str(path), parsed.sha256, "standard")
    row_cache.store(tmp_path / "c", row_cache.key(str(path), parsed.sha256, None), stored)
    assert load_pairs(str(path), None, tmp_path / "c").pairs == [Pair("from", "the", "cache")]
    assert load_pairs(str(path), {"prompt": "prompt"}, tmp_path / "c").pairs == parsed.pairs  # another mapping
    path.write_text(path.read_text() + json.dumps({"prompt": "p", "chosen": "x", "rejected": "y"}) + "\n")
    assert len(load_pairs(str(path), None, tmp_path / "c").pairs) == 2  # other bytes: parsed
