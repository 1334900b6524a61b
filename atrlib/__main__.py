"""The command line: ``python -m atrlib <command> ...`` (also installed as ``atrlib``).

Each command lives in its own module, which exposes ``add_arguments(parser)`` (fill in the
command's argparse sub-parser) and ``main(args) -> int`` (the exit code). To add one, add a
line to :data:`COMMANDS`::

    "search": ("atrlib.cli.search:main", "rank a folder of audio against a text query"),

Only the chosen command's module is imported, so a slow import (torch) in one command
never slows down, or breaks, the others.

A user's mistake is printed as one message naming the path and the fix, without a traceback,
and the exit code is 2; ``--debug`` (before the command) shows the traceback too. User
mistakes are any :class:`atrlib.errors.AtrlibError` (a bad file, value or folder) and the
well-known OS-level ones — a missing file, a folder for a file, a permission, a full disk, a
read-only file system, a text file in another encoding (:func:`atrlib.cli.user_error_message`).
Anything else that escapes is a bug and keeps its traceback.
"""
import atrlib  # noqa: F401  (first: thread settings before anything imports torch)

import argparse
import importlib
import sys
import traceback
from typing import Callable, Optional, Sequence

from atrlib.cli import user_error_message

# command name -> ("module:function", one-line help). The module also has add_arguments(parser).
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("atrlib.cli.run:main", "run a profile's stage notebooks with papermill into reports/<run>/"),
    "search": ("atrlib.cli.search:main", "rank a folder of audio clips for text queries"),
    "evaluate": ("atrlib.cli.evaluate:main", "score a retriever or trained run on a dataset split"),
    "train": ("atrlib.cli.train:main", "train a dual encoder from a YAML config (same as notebook 02)"),
    "bench": ("atrlib.cli.bench:main", "run the benchmark scripts and print their tables"),
    "sweep": ("atrlib.cli.sweep:main", "run a grid of trials of a profile on Ray (resumable) into one sweep index"),
    "index": ("atrlib.cli.index:main", "build an embedding store with a faiss index for large collections"),
    "caption": ("atrlib.cli.caption:main", "caption clips with a trained captioner (DCASE task 6a): predictions.csv, metrics.json"),
    "moments": ("atrlib.cli.moments:main", "audio moment retrieval: predict windows for queries, evaluate them (R1@IoU, mAP), generate recordings"),
}


def _load(target: str):
    """``"pkg.mod:func"`` -> (module, func)."""
    module_name, _, func_name = target.partition(":")
    module = importlib.import_module(module_name)
    return module, getattr(module, func_name or "main")


def build_parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    """The top-level parser; only ``command``'s module is imported to fill in its arguments."""
    parser = argparse.ArgumentParser(
        prog="python -m atrlib",
        description="atrlib: a workbench for language-based audio retrieval.",
    )
    parser.add_argument("--version", action="version", version=f"atrlib {atrlib.__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of a user error too")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (target, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            module, func = _load(target)
            module.add_arguments(p)
            p.set_defaults(_main=func)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # key=value overrides after an option (`train a=1 --overwrite b=2`) are overrides too
            if isinstance(getattr(args, "overrides", None), list) and all("=" in x and not x.startswith("-") for x in extra):
                args.overrides = args.overrides + extra
            else:
                parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as e:  # a usage error (exit 2, argparse printed it) or --help / --version (0)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    func: Optional[Callable] = getattr(args, "_main", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except Exception as e:
        message = user_error_message(e)
        if message is None:
            raise  # a bug: its traceback is the report
        if args.debug:
            traceback.print_exc()
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
