"""``python -m atrlib search``: rank a folder (or CSV list) of audio clips for text queries."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from atrlib.search import list_audio, rank, resolve_retriever


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="registered retriever (default tagbridge) or a trained run directory")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--audio", help="a folder of audio files, or a CSV with a file_name column")
    src.add_argument("--index", help="an embedding store built by `atrlib index build` (its model by default)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--query", action="append", help="a sentence (repeatable)")
    g.add_argument("--queries", help="a text file with one query per line")
    p.add_argument("--top", type=int, default=10, help="clips to list per query")
    p.add_argument("--out", help="write the ranking as CSV (query, rank, file, score) instead of printing")


def main(args) -> int:
    queries = args.query or [l.strip() for l in Path(args.queries).read_text(encoding="utf-8").splitlines() if l.strip()]
    if args.index:
        from atrlib.index import search_index

        table = search_index(args.index, queries, top=args.top, retriever=resolve_retriever(args.model) if args.model else None)
    else:
        table = rank(resolve_retriever(args.model or "tagbridge"), queries, list_audio(args.audio), top=args.top,
                     progress=sys.stderr.isatty())
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        table.drop(columns="path").to_csv(args.out, index=False)
        print(args.out)
    else:
        for q, g in table.groupby("query", sort=False):
            print(f"\n{q}")
            for _, r in g.iterrows():
                print(f"  {r['rank']:>3}  {r['score']:+.4f}  {r['file']}")
    return 0
