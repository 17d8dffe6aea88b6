"""How many idle long polls one hipush server holds, and its memory per parked poll (hipush only).

    .venv/bin/python bench/parked_polls.py --polls 5000 --workers 1

Kept for its old command line; it runs the parked-polls scenario of the benchmark package
(`python -m bench --scenarios parked`, see bench/__init__.py) on the embedded default (SQLite and
hipush's own redis-server in a temporary directory) and prints its table. Nchan is not started.
"""
import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--polls", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=1, choices=[1, 2])
    args = parser.parse_args()
    sys.path[0] = str(ROOT)  # run as a script, this file's own folder would come first
    from bench.__main__ import main as bench_main

    out = Path("/tmp") / "hipush-parked-polls"
    return bench_main(["--name", "parked-polls", "--out", str(out), "--no-charts", "--quick",
                       "--systems", f"hipush-{args.workers}w", "--scenarios", "parked", "--database", "sqlite",
                       "--redis-url", "", "--parked-levels", str(args.polls), "--hold-seconds", "10"])


if __name__ == "__main__":
    sys.exit(main())
