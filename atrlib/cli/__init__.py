"""Command-line front ends, one module per command (``python -m atrlib <command>``).

Each module exposes ``add_arguments(parser)`` and ``main(args) -> int``; :mod:`atrlib.__main__`
only dispatches. The library they call never imports them. The options several commands share
are declared once here, so they mean the same everywhere.
"""
from __future__ import annotations

import argparse
import errno
import os
from typing import Optional

# OS-level errors that are a user's mistake (a path typed wrong, a full disk), each with its fix;
# any other exception is a bug and keeps its traceback (atrlib.__main__.main)
_ERRNO_FIXES = {
    errno.ENOSPC: "the disk is full: free space, or write to another disk",
    errno.EDQUOT: "the disk quota is used up: free space, or write to another disk",
    errno.EROFS: "the file system is read-only: choose a writable folder",
}
_OS_FIXES = (
    (FileNotFoundError, "check the path: it does not exist"),
    (IsADirectoryError, "that is a folder: give a file"),
    (NotADirectoryError, "a part of the path is a file, not a folder: check the path"),
    (PermissionError, "check the permissions, or choose a path you may read and write"),
    (FileExistsError, "choose another path, or move the existing one away"),
)
_PATH_NAMES = ("path", "p", "file", "filename", "fname", "source", "src", "config", "spec")


def _path_in_traceback(exc: BaseException) -> Optional[str]:
    """The innermost file path a frame of ``exc``'s traceback was reading (a local named
    ``path``, ``file``, ...), for an error such as UnicodeDecodeError that does not carry one."""
    tb, found = exc.__traceback__, None
    while tb is not None:
        for name in _PATH_NAMES:
            v = tb.tb_frame.f_locals.get(name)
            if isinstance(v, (str, os.PathLike)) and str(v) and os.path.isfile(v):
                found = os.fspath(v)
                break
        tb = tb.tb_next
    return found


def user_error_message(exc: BaseException) -> Optional[str]:
    """One line for a user's mistake, naming the path and the fix; None for anything else (a bug).

    User errors: every :class:`atrlib.errors.AtrlibError`, and the well-known OS-level ones —
    a missing file or folder, a folder where a file was expected (or the reverse), a permission,
    an existing file, a full disk or quota, a read-only file system — and a text file that is
    not in the expected encoding (UnicodeDecodeError)."""
    from atrlib.errors import AtrlibError

    if isinstance(exc, AtrlibError):
        if isinstance(exc, OSError) and exc.errno is not None and exc.strerror:
            return exc.strerror  # DiskWriteError(errno, words): the words, without "[Errno 28]"
        return str(exc)
    if isinstance(exc, UnicodeDecodeError):
        where = _path_in_traceback(exc)
        return (f"{where or 'a text file'}: not valid {exc.encoding} text (byte {exc.start}: {exc.reason}); "
                "re-save it as UTF-8, or give its encoding (--encoding latin-1) where the command has one")
    if isinstance(exc, OSError):
        fix = _ERRNO_FIXES.get(exc.errno) or next((f for t, f in _OS_FIXES if isinstance(exc, t)), None)
        if fix is None:
            return None
        if exc.errno is None:  # raised with atrlib's own words (they name the path and the fix)
            return str(exc)
        if exc.filename is not None:
            where = os.fsdecode(exc.filename) + (f" -> {os.fsdecode(exc.filename2)}" if exc.filename2 else "")
            return f"{where}: {exc.strerror or type(exc).__name__}; {fix}"
        return f"{exc.strerror or exc}; {fix}"
    return None


def report(exc: BaseException) -> str:
    """The ``error: ...`` line a command prints for ``exc`` (its user message, else the text)."""
    return f"error: {user_error_message(exc) or exc}"


def nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0 (``--rerank -1`` is refused by the parser, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (0 = off), got {value}")
    return value


def add_input_options(p: argparse.ArgumentParser, what: str) -> None:
    """``--on-error`` and ``--encoding`` for commands that read clips listed in a CSV (``what``)."""
    p.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                   help="skip: leave out (and list) clips that cannot be read, instead of stopping")
    p.add_argument("--encoding", default="utf-8", help=f"text encoding of {what}, e.g. latin-1")


def add_scoring_options(p: argparse.ArgumentParser, rerank_help: str, weight_help: str) -> None:
    """``--score``, ``--rerank`` and ``--rerank-weight``: how a trained run ranks clips."""
    p.add_argument("--score", choices=("dual", "qformer"), default="dual",
                   help="dual: the run's dual-encoder cosine similarity; qformer: a run trained with the Q-Former "
                        "terms scores by its ATC similarity (max over queries of query . caption), as Lingban did")
    p.add_argument("--rerank", type=nonnegative_int, default=0, metavar="K", help=rerank_help)
    p.add_argument("--rerank-weight", default="head", metavar="W", help=weight_help)


def require_matching_head(retriever, k: int, system: str) -> None:
    """``--rerank K`` needs a trained run with a matching head: checked before any scoring."""
    from atrlib.errors import ConfigError

    model = getattr(retriever, "model", None)
    heads = getattr(model, "extra_heads", {}) if model is not None else {}
    if not any(h in heads for h in ("crossattn", "qformer")):
        raise ConfigError(f"--rerank {k}: {system} has no matching head (a trained run whose objective has one, "
                          "e.g. loss='infonce+acml' or 'infonce+atm'); drop --rerank or choose such a run")
