"""``python -m atrlib bench``: run every ``benchmarks/bench_*.py`` script (or those named)
and let each print its table. Speed and memory targets live here, never in timed tests."""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from atrlib.paths import REPO_ROOT


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="*", help="benchmarks to run, e.g. features metrics (default: all)")
    p.add_argument("--dir", default=str(REPO_ROOT / "benchmarks"), help="folder of bench_*.py scripts")


def main(args) -> int:
    scripts = sorted(Path(args.dir).glob("bench_*.py"))
    if args.names:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in args.names]
    if not scripts:
        print(f"no benchmark scripts in {args.dir}" + (f" matching {args.names}" if args.names else ""), file=sys.stderr)
        return 2
    rc = 0
    for s in scripts:
        print(f"== {s.name}", flush=True)
        rc |= subprocess.call([sys.executable, str(s)])
    return rc
