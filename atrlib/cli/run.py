"""``python -m atrlib run``: a profile's stage notebooks with papermill into reports/<run>/.

``python -m atrlib run --profile NAME|FILE.yaml [--out DIR] [-p key=value ...] [--stages a,b]
[--overwrite | --resume] [--list]``. The runner is :func:`atrlib.runs.batch.run_profile`; the profile format
is :mod:`atrlib.runs.profiles`.
"""
from __future__ import annotations

import sys
from pathlib import Path

from atrlib.errors import DiskWriteError, ProfileError, RunExistsError
from atrlib.runs.batch import run_profile
from atrlib.runs.profiles import default_reports_dir, list_profiles, load_profile, parse_overrides, resolve_parameters, select_stages


def add_arguments(parser) -> None:
    """Arguments of ``python -m atrlib run``."""
    parser.add_argument("--profile", help="profile name in notebooks/params/ or path to a YAML file")
    parser.add_argument("--out", type=Path, help="run folder (default reports/<profile>)")
    parser.add_argument("-p", "--param", dest="params", action="append", default=[], metavar="KEY=VALUE",
                        help="override a parameter (YAML value); 'stage.key=value' for one stage; repeatable")
    parser.add_argument("--stages", action="append", metavar="A,B",
                        help="run only these stages (comma-separated, repeatable); needed stages must be included")
    parser.add_argument("--overwrite", action="store_true",
                        help="move an existing run folder aside to <out>.prev-<time> instead of refusing")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out: keep stages that finished ok, re-run the others "
                             "(a killed training continues from its checkpoint)")
    parser.add_argument("--list", action="store_true",
                        help="list the profiles, or with --profile its stages and resolved parameters, and exit")
    parser.add_argument("--notebooks", type=Path, help="folder of the stage notebooks (default notebooks/)")
    parser.add_argument("--kernel", help="jupyter kernel name (default: one running this python)")
    parser.add_argument("--cell-progress", action="store_true", help="show papermill's per-cell progress bar")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--executor", choices=["ray"], help="hand stages whose needs are met to Ray, side by side "
                                                            "(pip install ray); default: one after another")
    parser.add_argument("--address", help="with --executor ray: a Ray cluster ('auto', ray://HOST:10001); default local")


def _print_listing(args) -> int:
    if not args.profile:
        names = list_profiles(args.notebooks)
        print("profiles:", ", ".join(names) if names else "(none)")
        return 0
    prof = load_profile(args.profile, args.notebooks)
    ov = parse_overrides(args.params)
    out = (args.out or default_reports_dir() / prof.name).resolve()
    chosen = select_stages(prof, args.stages)
    resolved = resolve_parameters(prof, ov, out)
    print(f"profile {prof.name} ({prof.path})" + (f": {prof.description}" if prof.description else ""))
    print(f"run folder: {out}")
    for s in chosen:
        needs = f"  (needs {', '.join(s.needs)})" if s.needs else ""
        print(f"- {s.name}: {s.notebook.name}{needs}")
        for k, v in resolved[s.name].items():
            print(f"    {k} = {v!r}")
    return 0


def main(args) -> int:
    """Run a profile's stage notebooks with papermill and write reports/<run>/index.html."""
    try:
        if args.list:
            return _print_listing(args)
        if not args.profile:
            print("error: --profile is required (see --list)", file=sys.stderr)
            return 2
        if args.resume and args.overwrite:
            print("error: --resume continues a run, --overwrite moves it aside: give one of them", file=sys.stderr)
            return 2
        result = run_profile(
            args.profile,
            out=args.out,
            overrides=args.params,
            stages=args.stages,
            notebooks_dir=args.notebooks,
            overwrite=args.overwrite,
            kernel_name=args.kernel,
            progress=not args.no_progress,
            cell_progress=args.cell_progress,
            resume=args.resume,
            executor=args.executor,
            address=args.address,
        )
    except (ProfileError, RunExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except DiskWriteError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    c = result.counts()
    print(f"{c['ok']} ok, {c['failed']} failed, {c['skipped']} skipped in {result.duration_s:.1f} s")
    for s in result.stages:
        if s.status == "failed" and s.error:
            print(f"  {s.name} failed: {s.error.get('ename')}: {s.error.get('evalue')}  -> {s.html or s.output_notebook}")
    print(result.index)
    return 0 if result.ok else 1
