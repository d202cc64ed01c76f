"""Bad input, fuzzed: every config and data file gives a result or one clear, one-line error.

A config goes through `engine.config.load` (text) or `from_dict` (a parsed table); a data file through
`engine.data.sources.load_pairs` (.jsonl / .json, optionally .gz). The contract is the same for both: a
value, or `ConfigError` / `DataError` whose every line is a single line of text — never another
exception (which the CLI would show as "rerun with --debug"), never a hang (`deadline`).

Inputs that once escaped validation (huge integers, odd keys, non-UTF-8 files, bad list items,
over-long paths) are pinned by the regression test at the end.
"""

from __future__ import annotations

import atexit
import gzip
import json
import math
import os
import shutil
import tempfile
import tomllib
import zlib
from pathlib import Path

import pytest
import tomli_w
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from engine import config as C
from engine.data.rows import DataError
from engine.data.sources import load_pairs
from engine.runs import store as mf
from engine.runs.lifecycle import preflight

# 300 cases per property in the suite; APLOT_FUZZ_EXAMPLES=5000 for a deep run
FUZZ = settings(max_examples=int(os.environ.get("APLOT_FUZZ_EXAMPLES", 300)), deadline=2000,
                suppress_health_check=[HealthCheck.too_slow])
FIELDS = [p for p, _f, _t, table in C.iter_fields() if not table]
TABLES = [p for p, _f, _t, table in C.iter_fields() if table]
SCRATCH = Path(tempfile.mkdtemp(prefix="aplot-fuzz-"))  # hypothesis forbids function-scoped tmp_path
atexit.register(shutil.rmtree, SCRATCH, True)


def one_line_problems(e: C.ConfigError) -> None:
    assert e.problems, "a ConfigError must say what is wrong"
    for line in e.problems:
        assert line.strip() and len(line.splitlines()) == 1, repr(line)


# ------------------------------------------------------------------------------------------ config

# a key (or an override) is echoed raw in its problem line, so one holding a line break is a known hole
# (CONFIG_HOLES); values are echoed with repr() and may hold anything
plain = st.characters(blacklist_categories=("Cc", "Zl", "Zp", "Cs"))

# TOML-representable values; ints stay within TOML's 64 bits (a bigger one in a float field is a known
# hole, see CONFIG_HOLES) and strings stay under PATH_MAX.
scalars = st.one_of(
    st.booleans(), st.integers(-(2**63), 2**63), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40), st.sampled_from(["synthetic", "tiny", "aplot", "bt", "emd", "/dev/zero", "../x", ""]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(plain, max_size=8), inner, max_size=4), max_leaves=12)
keys = st.one_of(st.sampled_from(FIELDS + TABLES), st.text(plain, max_size=12))


def typed_value(path: str):
    """A value of the field's own type (and a valid choice, when it has choices), mostly in range."""
    fld = next(f for p, f, _t, _table in C.iter_fields() if p == path)
    default, choices = C.get(C.Config(), path), fld.metadata.get("choices")
    if choices:
        return st.sampled_from(choices)
    if isinstance(default, bool):
        return st.booleans()
    if isinstance(default, int):
        return st.integers(0, 64)
    if isinstance(default, float):
        return st.floats(0, 1, exclude_max=True)
    if isinstance(default, str):
        return st.text(plain, max_size=12)
    if isinstance(default, list):
        return st.lists(st.text(plain, max_size=6), max_size=3)
    return st.dictionaries(st.text(plain, min_size=1, max_size=6), st.text(plain, min_size=1, max_size=12),
                           max_size=2)


@st.composite
def config_dicts(draw) -> dict:
    """Real dotted paths (mostly) with values of their own type or of any type, nested as TOML tables."""
    out: dict = {}
    for _ in range(draw(st.integers(0, 8))):
        path = draw(keys)
        typed = path in FIELDS and draw(st.integers(0, 9)) < 8
        value = draw(typed_value(path) if typed else values)
        node, parts = out, path.split(".")
        for part in parts[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                break
            node = nxt
        else:
            node[parts[-1]] = value
    return out


def toml_value(v) -> str:
    """A TOML literal for any generated value (inline tables, not [headers], for dicts)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # JSON's escapes are TOML basic-string escapes
    if isinstance(v, list):
        return "[" + ", ".join(map(toml_value, v)) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + "}"


@st.composite
def toml_texts(draw) -> str:
    """TOML-ish text: real headers and keys with literals, and garbage lines mixed in."""
    lines = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["header", "pair", "dotted", "garbage"]))
        if kind == "header":
            lines.append(f"[{draw(st.sampled_from(TABLES + ['', 'x.y', 'optim']))}]")
        elif kind in ("pair", "dotted"):
            path = draw(st.sampled_from(FIELDS))
            value = draw(typed_value(path) if draw(st.booleans()) else values)
            lines.append(f"{path if kind == 'dotted' else path.rsplit('.', 1)[-1]} = {toml_value(value)}")
        else:
            lines.append(draw(st.text(max_size=30)))
    return "\n".join(lines)


def check_config(cfg: C.Config) -> None:
    """A config that validates must survive the manifest: TOML out, TOML in, the same config back."""
    assert isinstance(cfg, C.Config)
    text = tomli_w.dumps(mf._strip_none(C.to_dict(cfg)))
    assert C.from_dict(tomllib.loads(text), "manifest") == cfg


def builds_or_is_a_config_error(build) -> None:
    """`build()` gives a config that passes every check, or a ConfigError of one-line problems."""
    try:
        cfg = build()
    except C.ConfigError as e:
        event("ConfigError")
        one_line_problems(e)
    else:
        event("valid config")
        check_config(cfg)


@FUZZ
@given(st.one_of(toml_texts(), st.text(max_size=200)))
def test_any_config_text_loads_or_is_a_config_error(text):
    path = SCRATCH / "fuzz.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    builds_or_is_a_config_error(lambda: C.load(path))


@FUZZ
@given(config_dicts(), st.lists(st.text(plain, max_size=30), max_size=3))
def test_any_config_table_and_overrides_build_or_are_a_config_error(data, overrides):
    builds_or_is_a_config_error(
        lambda: C.from_dict(C.apply_overrides(json.loads(json.dumps(data, default=str)), overrides), "fuzz"))


# ------------------------------------------------------------------------------------------- data

texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)  # JSON can't carry lone surrogates
messages = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "x"]),
                                           "content": texts}), max_size=3)
margins = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.booleans(), texts,
                    st.integers(-(10**20), 10**20))
rows = st.one_of(
    st.fixed_dictionaries({"prompt": texts, "chosen": texts, "rejected": texts}, optional={"margin": margins}),
    st.fixed_dictionaries({"chosen": texts, "rejected": texts}),  # HH transcripts (mostly unsplittable)
    st.fixed_dictionaries({"chosen": messages, "rejected": messages}, optional={"prompt": messages}),
    st.dictionaries(st.sampled_from(["prompt", "chosen", "rejected", "margin", "role", "x"]), values, max_size=4),
    values,
)


def write_data(rows_or_bytes, suffix: str) -> Path:
    path = SCRATCH / f"fuzz{suffix}"
    if isinstance(rows_or_bytes, bytes):
        raw = rows_or_bytes
    elif suffix.removesuffix(".gz").endswith(".json"):
        raw = json.dumps(rows_or_bytes, ensure_ascii=False).encode()
    else:
        raw = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows_or_bytes).encode()
    path.write_bytes(gzip.compress(raw) if suffix.endswith(".gz") and not isinstance(rows_or_bytes, bytes)
                     else raw)
    return path


def load_or_data_error(path: Path):
    try:
        res = load_pairs(str(path))
    except DataError as e:
        event("DataError")
        msg = str(e)
        assert msg.strip() and "\n" not in msg and str(path) in msg, repr(msg)
        return None
    event("pairs loaded")
    for p in res.pairs:
        assert all(isinstance(t, str) for t in (p.prompt, p.chosen, p.rejected))
        assert p.chosen.strip() and p.rejected.strip()
        assert p.margin is None or isinstance(p.margin, float)
    return res


suffixes = st.sampled_from([".jsonl", ".json", ".jsonl.gz", ".json.gz"])


@FUZZ
@given(st.binary(max_size=400), suffixes)
def test_any_bytes_load_or_are_a_data_error(raw, suffix):
    load_or_data_error(write_data(raw, suffix))


def outcome(path: Path) -> tuple:
    """What loading gives, with the file's own name taken out so two files can be compared."""
    try:
        return "pairs", [(p.prompt, p.chosen, p.rejected, p.margin) for p in load_pairs(str(path)).pairs]
    except DataError as e:
        return "error", str(e).replace(str(path), "FILE")


@FUZZ
@given(st.binary(min_size=1, max_size=300), st.integers(0, 400), st.integers(0, 255))
def test_a_corrupted_gzip_is_a_gzip_error_unless_gzip_reads_it_whole(payload, at, xor):
    """One byte changed: the bytes gzip checks (the deflate data, its CRC-32 and length, the magic and
    method) make it "not a readable gzip file"; the few it never checks (mtime, OS, reserved flag
    bits, padding after the last block) leave the very payload, which loads as the intact file does."""
    raw = bytearray(gzip.compress(payload))
    raw[at % len(raw)] ^= xor or 1
    path = write_data(bytes(raw), ".jsonl.gz")
    try:
        readable = gzip.decompress(bytes(raw))
    except (OSError, EOFError, zlib.error):
        readable = None
    if readable is None:
        event("unreadable gzip")
        with pytest.raises(DataError) as e:
            load_pairs(str(path))
        assert str(e.value).startswith(f"{path}: not a readable gzip file (") and "\n" not in str(e.value)
    else:
        event("a byte gzip never checks")
        assert readable == payload  # CRC-32 catches every change of up to 32 bits in the data
        assert outcome(path) == outcome(write_data(payload, ".jsonl"))


@FUZZ
@given(st.lists(rows, max_size=6), suffixes)
def test_any_json_rows_load_or_are_a_data_error(data, suffix):
    load_or_data_error(write_data(data, suffix))


@FUZZ
@given(st.lists(st.tuples(texts, texts.filter(str.strip), texts.filter(str.strip)), min_size=1, max_size=5),
       st.booleans())
def test_valid_rows_come_back_exactly(triples, ascii_only):
    """Any text a JSON string can hold (U+2028, \\x85, form feeds, emoji…) round-trips through a .jsonl."""
    path = SCRATCH / "exact.jsonl"
    path.write_text("".join(json.dumps({"prompt": p, "chosen": c, "rejected": r}, ensure_ascii=ascii_only) + "\n"
                            for p, c, r in triples), encoding="utf-8")
    res = load_pairs(str(path))
    assert [(p.prompt, p.chosen, p.rejected) for p in res.pairs] == triples


def test_deeply_nested_and_huge_numbers_are_data_errors(tmp_path):
    for name, text in {"deep.json": "[" * 100_000, "digits.jsonl": "1" * 5000 + "\n",
                       "bigmargin.jsonl": json.dumps({"prompt": "p", "chosen": "a", "rejected": "b",
                                                      "margin": 10**400}) + "\n"}.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(DataError) as e:
            load_pairs(str(path))
        assert str(path) in str(e.value) and "\n" not in str(e.value)


# ----------------------------------------------------------- known holes in files this suite doesn't own


def write_latin1_config(tmp_path: Path) -> Path:
    path = tmp_path / "latin1.toml"
    path.write_bytes('name = "café"\n'.encode("latin-1"))
    return path


# Inputs that once escaped validation; each must be one ConfigError line.
CONFIG_HOLES = [
    pytest.param(lambda tmp: C.from_dict({"optim": {"lr": 10**400}}), id="huge-int-in-a-float-field"),  # float() overflows
    pytest.param(lambda tmp: preflight(C.load(None, ['data.train="' + "a" * 5000 + '"'])),
                 id="over-long-data-path"),  # ENAMETOOLONG: loads, then the CLI's preflight refuses it
    pytest.param(lambda tmp: C.from_dict({"optim": {"l\nr": 1}}), id="key-with-a-line-break"),  # echoed raw
    pytest.param(lambda tmp: C.load(write_latin1_config(tmp)), id="non-utf8-config-file"),  # UnicodeDecodeError
    pytest.param(lambda tmp: C.from_dict({"tags": [1]}), id="non-string-tag"),  # then `aplot ls` fails store-wide
    pytest.param(lambda tmp: C.from_dict({"seed": -1}), id="seed-outside-numpy-range"),  # fails at launch instead
]


@pytest.mark.parametrize("load", CONFIG_HOLES)
def test_former_config_holes_give_one_config_error(load, tmp_path):
    with pytest.raises(C.ConfigError) as e:
        load(tmp_path)
    one_line_problems(e.value)
