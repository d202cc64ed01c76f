"""How fast `aplot compare`'s statistics are, and what per-pair predictions cost on disk.

The paired bootstrap (10,000 resamples) and the exact McNemar p over 100,000 pairs, timed over
repeats (median quoted); the index bootstrap it replaces is timed on a tenth of the resamples for
the ratio. Then the bytes a pair of one predictions file (`engine.analysis.predictions`) takes.

    .venv/bin/python bench/stats_speed.py [--pairs 100000] [--resamples 10000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import study_report as R  # noqa: E402
from engine.analysis import predictions, stats  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=100_000)
    ap.add_argument("--resamples", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    r_pos_a, r_pos_b = rng.normal(0.3, 1, args.pairs), rng.normal(0.35, 1, args.pairs)
    a, b = r_pos_a > 0, r_pos_b > 0
    times = []
    for i in range(args.repeats):
        t0 = time.perf_counter()
        res = stats.paired(a, b, n_resamples=args.resamples, seed=i)
        times.append(time.perf_counter() - t0)
    fast = statistics.median(times)
    sub = max(1, args.resamples // 10)
    t0 = time.perf_counter()
    for _ in range(sub):  # the textbook bootstrap: resample pair indices, recount
        idx = rng.integers(0, args.pairs, args.pairs)
        _ = b[idx].mean() - a[idx].mean()
    slow = (time.perf_counter() - t0) * args.resamples / sub
    with tempfile.TemporaryDirectory() as tmp:
        path = predictions.write(Path(tmp), "heldout", 1, r_pos_a, -r_pos_a)
        size = path.stat().st_size
    print(f"paired bootstrap, {args.pairs:,} pairs × {args.resamples:,} resamples: median {fast:.3f} s "
          f"(of {args.repeats}); the index bootstrap would take ≈ {slow:.1f} s ({slow / fast:.0f}× longer)")
    print(f"  B − A = {res.diff:+.4f} [{res.low:+.4f}, {res.high:+.4f}], McNemar p = {res.p:.3g}")
    print(f"predictions file: {size:,} bytes for {args.pairs:,} pairs = {size / args.pairs:.2f} bytes a pair")
    R.emit({"bench": "stats_speed", "pairs": args.pairs, "resamples": args.resamples, "median_s": round(fast, 4),
            "index_bootstrap_s": round(slow, 2), "bytes_per_pair": round(size / args.pairs, 3)})


if __name__ == "__main__":
    main()
