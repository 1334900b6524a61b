"""``python -m atrlib index``: an embedding store with a faiss index for large collections
(see :mod:`atrlib.retrieval.store`); search it with ``python -m atrlib search --index STORE``.

    python -m atrlib index build --model M --audio DIR_OR_CSV [--audio ...] --index STORE [--kind auto]
    python -m atrlib index info STORE
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = sub.add_parser("build", help="create or update a store (only new or changed clips are embedded)")
    b.add_argument("--model", "--system", dest="model", default="tagbridge",
                   help="registered retriever (tagbridge) or a trained run directory (--system: as in search)")
    b.add_argument("--audio", action="append", required=True, help="a folder of audio files or a CSV with a file_name "
                                                                   "column (repeatable)")
    b.add_argument("--index", required=True, type=Path, help="the store folder (created or updated)")
    b.add_argument("--kind", default="auto", choices=["auto", "exact", "ivf", "ivfpq", "hnsw"],
                   help="index kind; auto: by collection size")
    b.add_argument("--target-recall", type=float, default=0.95, help="recall@10 the approximate index is tuned to")
    b.add_argument("--batch-size", type=int, default=256, help="clips embedded per batch")
    i = sub.add_parser("info", help="print a store's size, model and index report")
    i.add_argument("index", type=Path, help="the store folder")


def main(args) -> int:
    from atrlib.retrieval.index import IndexConfig
    from atrlib.retrieval.store import EmbeddingStore, build_store, model_identity

    if args.action == "info":
        s = EmbeddingStore(args.index)
        print(json.dumps({k: s.info[k] for k in ("count", "dim", "dtype", "updated", "model", "index")}, indent=2))
        return 0
    from atrlib.errors import StoreError
    from atrlib.files import check_output, output_kind
    from atrlib.retrieval.search import list_audio, resolve_retriever

    if output_kind(args.index) != "store":  # before any model is loaded: never a run or a folder of the user's
        check_output(args.index, "store", what="--index", error=StoreError, inputs=args.audio)
    retriever = resolve_retriever(args.model)
    source = str(Path(args.model).resolve()) if Path(args.model).is_dir() else args.model
    identity = dict(model_identity(retriever), source=source)
    paths = [p for src in args.audio for p in list_audio(src)]
    progress = sys.stderr.isatty()
    rep = build_store(args.index, paths, lambda ps: retriever.embed_audio(ps, progress=False), identity,
                      IndexConfig(kind=args.kind, target_recall=args.target_recall), batch_size=args.batch_size,
                      progress=progress)
    ix = rep.index
    print(f"{rep.clips} clips: {rep.embedded} embedded, {rep.reused} reused, {rep.removed} removed "
          f"({rep.hashed} files hashed) in {rep.seconds:.1f} s")
    if ix.get("kind") == "exact":
        print("index: exact inner product (recall 1)")
    else:
        print(f"index: {ix['kind']}, breadth {ix['breadth']}, recall@10 {ix['recall@10']:.3f} on {ix['queries']} held-out "
              f"clips, {ix['ms_per_query']:.3f} ms/query (exact {ix['exact_ms_per_query']:.3f}), built in {ix['build_s']:.1f} s")
        if ix.get("note"):
            print("note:", ix["note"])
    print(args.index)
    return 0
