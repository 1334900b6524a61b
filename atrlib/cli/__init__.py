"""Command-line front ends, one module per command (``python -m atrlib <command>``).

Each module exposes ``add_arguments(parser)`` and ``main(args) -> int``; :mod:`atrlib.__main__`
only dispatches. The library they call never imports them. The options several commands share
are declared once here, so they mean the same everywhere.
"""
from __future__ import annotations

import argparse


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
    p.add_argument("--rerank", type=int, default=0, metavar="K", help=rerank_help)
    p.add_argument("--rerank-weight", default="head", metavar="W", help=weight_help)
