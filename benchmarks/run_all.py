"""Run the quick benchmarks one after another (what ``make bench`` does) and print their numbers.

    .venv/bin/python benchmarks/run_all.py [--only encoders decoder ...] [--list]

Each benchmark is its own script run as a subprocess with its default arguments (or the short ones
given below), so one failing does not stop the rest; the exit status is non-zero when any failed.
The slow ones (automatic masks on a 32×32 grid, the browser, a retraining round, the round-recipe
experiment) are not in this list: run them by hand, their docstrings say how.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

QUICK: dict[str, list[str]] = {
    "encoders": ["bench_encoders.py"],
    "decoder": ["bench_decoder.py"],
    "embedding_format": ["bench_embedding_format.py"],
    "worker": ["bench_worker.py", "--images", "4"],
    "ingest_export": ["bench_ingest_export.py"],
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", choices=sorted(QUICK), help="run only these")
    ap.add_argument("--list", action="store_true", help="print the benchmarks and exit")
    args = ap.parse_args()
    if args.list:
        for name, argv in QUICK.items():
            print(f"{name}: {' '.join(argv)}")
        return 0
    failed = []
    for name in args.only or list(QUICK):
        argv = QUICK[name]
        print(f"\n=== {name}: {' '.join(argv)}", flush=True)
        start = time.perf_counter()
        rc = subprocess.call([sys.executable, str(HERE / argv[0]), *argv[1:]])
        print(f"=== {name}: exit {rc}, {time.perf_counter() - start:.0f} s", flush=True)
        if rc != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
