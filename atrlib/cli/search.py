"""``python -m atrlib search``: rank a folder (or CSV list) of audio clips for text queries."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from atrlib.cli import add_input_options, add_scoring_options
from atrlib.retrieval.search import list_audio, prepare_output, rank, read_queries, resolve_retriever


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--system", "--model", dest="model", metavar="SYSTEM",
                   help="what ranks: a registered retriever (default tagbridge) or a trained run folder "
                        "(--model is the older name of this option)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--audio", help="a folder of audio files, or a CSV with a file_name column")
    src.add_argument("--index", help="an embedding store built by `atrlib index build` (its model by default)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--query", action="append", help="a sentence (repeatable)")
    g.add_argument("--queries", help="a text file with one query per line")
    g.add_argument("--like", action="append", metavar="FILE",
                   help="query by example: rank the clips by similarity to this sound (repeatable)")
    p.add_argument("--explain", action="store_true",
                   help="add a 'why' column: the classes that contributed most to each score (tag-bridge)")
    p.add_argument("--top", type=int, default=10, help="clips to list per query")
    p.add_argument("--out", help="write the ranking as CSV (query, rank, file, score) instead of printing")
    p.add_argument("--overwrite", action="store_true", help="move an existing --out aside (<out>.prev-<time>)")
    add_input_options(p, "an --audio CSV")
    add_scoring_options(
        p, rerank_help="a trained run with a matching head re-orders each query's top K clips (0 = off)",
        weight_help="'head': the top K ordered by the matching head alone; a number w: by similarity + w x "
                    "match probability (choose w on validation: atrlib evaluate --rerank K --rerank-weight val)")

def main(args) -> int:
    try:  # everything a person typed is checked before any audio is read
        queries = [] if args.like else read_queries(args.query, args.queries)
        for f in args.like or []:
            if not Path(f).is_file():
                raise ValueError(f"--like {f}: no such audio file")
        if args.top < 1:
            raise ValueError(f"--top must be at least 1, got {args.top}")
        if args.out:  # only an earlier ranking CSV is ever moved aside, never an input or a file of the user's
            prepare_output(args.out, args.overwrite,
                           inputs=[args.audio, args.index, args.queries, args.model, *(args.like or [])])
        if args.rerank:
            from atrlib.retrieval.rerank import parse_weight

            weight = parse_weight(args.rerank_weight)
        if args.score == "qformer" and (args.index or args.like):
            raise ValueError("--score qformer ranks clips by several query vectors each; --index and --like need "
                             "the dual score (one vector per clip)")
        score_kw = {"score": args.score} if args.score != "dual" else {}
        retriever = resolve_retriever(args.model or "tagbridge", **score_kw) if (args.model or not args.index) else None
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    skipped: list = []
    if args.index:
        from atrlib.retrieval.store import search_index

        table = search_index(args.index, queries, top=args.top, retriever=retriever)
    else:
        try:
            files = list_audio(args.audio, on_error=args.on_error, encoding=args.encoding, skipped=skipped)
        except (ValueError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        if args.like:
            from atrlib.retrieval.explain import rank_like

            table = rank_like(retriever, args.like, files, top=args.top)
        elif args.rerank:
            from atrlib.retrieval.rerank import rank_reranked

            table, cost = rank_reranked(retriever, queries, files, args.top, args.rerank,
                                        weight=weight)
            print(f"re-ranked the top {cost['k']}: {cost['pairs']} matching-head evaluations, "
                  f"{1000 * cost['seconds_per_query']:.1f} ms per query", file=sys.stderr)
        else:
            table = rank(retriever, queries, files, top=args.top,
                         progress=sys.stderr.isatty(), on_error=args.on_error, skipped=skipped)
    for msg in skipped:
        print(f"skipped: {msg}", file=sys.stderr)
    if args.explain:
        from atrlib.retrieval.explain import add_why

        table = add_why(table, retriever, examples=args.like or ())
    if args.out:
        from atrlib.files import write_text_atomic

        write_text_atomic(args.out, table.drop(columns="path").to_csv(index=False))
        print(args.out)
    else:
        for q, g in table.groupby("query", sort=False):
            print(f"\n{q}")
            for _, r in g.iterrows():
                print(f"  {r['rank']:>3}  {r['score']:+.4f}  {r['file']}" + (f"   [{r['why']}]" if r.get("why") else ""))
    return 0
