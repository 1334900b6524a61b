"""``python -m atrlib sweep SPEC.yaml``: many runs of a profile on Ray (see :mod:`atrlib.runs.sweep`).

``python -m atrlib sweep SPEC.yaml [--out DIR] [--address auto] [--num-cpus N]
[--cpus-per-trial C] [--gpus-per-trial G] [--retry-failed] [--force] [--executor ray|serial] [--list]``.
Re-running the same command resumes the sweep.
"""
from __future__ import annotations

import sys
from pathlib import Path

from atrlib.errors import SweepError
from atrlib.runs.sweep import EXECUTORS, run_sweep
from atrlib.runs.sweep_spec import load_spec


def add_arguments(p) -> None:
    p.add_argument("spec", type=Path, help="sweep spec (YAML): profile, stages, parameters, trials, grid, seeds, folds, "
                                           "select, resources")
    p.add_argument("--out", type=Path, help="sweep folder (default reports/sweeps/<spec name>); re-running resumes it")
    p.add_argument("--executor", choices=sorted(EXECUTORS), default="ray", help="ray (default) or serial (no Ray)")
    p.add_argument("--address", help="join a Ray cluster: 'auto' or ray://HOST:10001 (default: a local Ray)")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")
    p.add_argument("--num-gpus", type=int, help="GPUs of the local Ray (default: detected)")
    p.add_argument("--cpus-per-trial", type=float, help="CPUs each trial requests (overrides the spec's resources)")
    p.add_argument("--gpus-per-trial", type=float, help="GPUs each trial requests (overrides the spec's resources)")
    p.add_argument("--retry-failed", action="store_true", help="run failed trials again (ok ones are always skipped)")
    p.add_argument("--force", action="store_true", help="take over the folder's lock (sweep.lock) when you know the "
                                                        "sweep holding it is gone, e.g. its machine died; a sweep "
                                                        "still running on this host keeps its lock")
    p.add_argument("--list", action="store_true", help="list the trials and exit")


def main(args) -> int:
    """Run or resume a sweep; exit 0 when every trial is ok, 1 when some failed, 2 on a bad spec."""
    from atrlib.runs.profiles import default_reports_dir

    try:
        sp = load_spec(args.spec)
        if args.list:
            stages = f", stages {', '.join(sp.stages)}" if sp.stages else ""
            print(f"{len(sp.trials)} trials of profile {sp.profile}{stages}")
            for t in sp.trials:
                print(f"  {t.id}: {t.overrides}")
            return 0
        out = args.out or default_reports_dir() / "sweeps" / args.spec.stem
        res = run_sweep(sp, out, executor=args.executor, address=args.address, num_cpus=args.num_cpus,
                        num_gpus=args.num_gpus, retry_failed=args.retry_failed, force=args.force,
                        resources={"num_cpus": args.cpus_per_trial, "num_gpus": args.gpus_per_trial})
    except SweepError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    c = res.counts()
    print(f"{c['ok']} ok, {c['failed']} failed ({len(res.ran)} run now, {len(res.skipped)} finished earlier)")
    if res.chosen:
        print(f"chosen on validation ({res.select_metric}): {res.records[res.chosen]['label']}")
    print(res.index)
    return 0 if res.ok else 1
