"""``python -m atrlib search``: rank a folder (or CSV list) of audio clips for text queries.

With ``--moments``, ``--audio`` is one long recording and the answer is *when* each query
happens in it: ranked windows (start–end, score) from :mod:`atrlib.moments` (the recording is
read in streamed windows); ``--explain`` then lists, per window, the AudioSet classes that match
the query (tag-bridge only)."""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from atrlib.cli import add_input_options, add_scoring_options, report, require_matching_head
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
    p.add_argument("--moments", action="store_true",
                   help="--audio is one long recording: list the windows (start-end, score) where each query happens")
    p.add_argument("--top", type=int, default=10, help="clips to list per query (with --moments: windows, at most 10)")
    p.add_argument("--out", help="write the ranking as CSV (query, rank, file, score) instead of printing")
    p.add_argument("--overwrite", action="store_true", help="move an existing --out aside (<out>.prev-<time>)")
    add_input_options(p, "an --audio CSV")
    add_scoring_options(
        p, rerank_help="a trained run with a matching head re-orders each query's top K clips (0 = off)",
        weight_help="'head': the top K ordered by the matching head alone; a number w: by similarity + w x "
                    "match probability (choose w on validation: atrlib evaluate --rerank K --rerank-weight val)")

def _check_like(files) -> None:
    """Each ``--like`` example is a readable audio file with finite samples (decoded and checked
    whole, before any ranking), else an error naming it."""
    from atrlib.audio.io import audio_info
    from atrlib.errors import AudioError
    from atrlib.retrieval.search import AUDIO_SUFFIXES

    for f in files:
        if not Path(f).is_file():
            raise AudioError(f"--like {f}: no such audio file")
        if Path(f).suffix.lower() not in AUDIO_SUFFIXES:
            raise AudioError(f"--like {f}: not an audio file ({', '.join(AUDIO_SUFFIXES)}); give an example sound")
        audio_info(f)  # decodes every sample: NaN / inf / undecodable -> AudioError naming the file


def _check_rerank(args, retriever) -> None:
    """``--rerank K`` needs a trained run with a matching head and clips to read (not a store)."""
    from atrlib.errors import ConfigError

    if args.index:
        raise ConfigError(f"--rerank {args.rerank} with --index {args.index}: re-ranking scores each query's top K "
                          "clips with the run's matching head over the clips' frames, and a store holds one pooled "
                          "vector per clip. Search the store without --rerank, or rank the folder with --audio "
                          "and --rerank")
    require_matching_head(retriever, args.rerank, args.model or "tagbridge")


def _moments(args) -> int:
    """``--moments``: ranked windows of one recording for each query (see the module text)."""
    from atrlib.errors import ConfigError
    from atrlib.moments.predict import resolve_moment_system
    from atrlib.moments.stream import recording_seconds

    try:  # everything a person typed is checked before any audio is scored
        refused = [o for o, v in (("--index", args.index), ("--like", args.like), ("--out", args.out),
                                  ("--rerank", args.rerank)) if v]
        if refused:
            raise ConfigError(f"--moments searches one recording for sentences and prints its windows; {', '.join(refused)} "
                              "do not apply (for a queries file use `atrlib moments predict`)")
        if args.score != "dual":
            raise ConfigError("--moments scores windows with the dual score; leave --score out")
        queries = read_queries(args.query, args.queries)
        if args.top < 1:
            raise ValueError(f"--top must be at least 1, got {args.top}")
        audio = Path(args.audio)
        if audio.is_dir() or audio.suffix.lower() == ".csv":
            raise ConfigError(f"--audio {audio}: with --moments give one recording (an audio file), not a folder or a list")
        seconds = recording_seconds(audio)  # an unreadable file: one message naming it, before any model loads
        system = resolve_moment_system(args.model or "tagbridge")
        if args.explain and getattr(getattr(system, "encoder", None), "name", "") != "tagbridge":
            raise ConfigError(f"--explain lists AudioSet classes per window: it needs the tag-bridge, not {system.name}")
    except (ValueError, OSError) as e:
        print(report(e), file=sys.stderr)
        return 2
    answers = system.retrieve(audio, queries, progress=sys.stderr.isatty())
    print(f"{audio.name}: {seconds:.1f} s, {system.name}")
    for q, windows in zip(queries, answers):
        windows = windows[:args.top]
        whys = system.explain(audio, q, windows) if args.explain else [()] * len(windows)
        print(f"\n{q}")
        for rank, ((s, e, score), why) in enumerate(zip(windows, whys), 1):
            from atrlib.retrieval.explain import format_why

            print(f"  {rank:>3}  {_clock(s)}–{_clock(e)}  {score:+.4f}" + (f"   [{format_why(why)}]" if why else ""))
    return 0


def _clock(seconds: float) -> str:
    """61.5 -> '1:01.5'; 3725 -> '1:02:05.0'."""
    h, rest = divmod(float(seconds), 3600)
    m, s = divmod(rest, 60)
    return (f"{int(h)}:{int(m):02d}:{s:04.1f}" if h else f"{int(m)}:{s:04.1f}")


def main(args) -> int:
    if args.moments:
        if not args.audio:
            print(report(ValueError("--moments needs --audio LONG.wav (one recording), not --index")), file=sys.stderr)
            return 2
        return _moments(args)
    try:  # everything a person typed is checked before any audio is read
        queries = [] if args.like else read_queries(args.query, args.queries)
        if args.top < 1:
            raise ValueError(f"--top must be at least 1, got {args.top}")
        _check_like(args.like or [])
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
        if args.rerank:
            _check_rerank(args, retriever)
    except (ValueError, OSError) as e:
        print(report(e), file=sys.stderr)
        return 2
    skipped: list = []
    if args.index:
        from atrlib.retrieval.store import search_index

        table = search_index(args.index, queries, top=args.top, retriever=retriever)
        for path in table.attrs.get("deleted", []):
            print(f"skipped: {path}: deleted since the store was built (rebuild it: atrlib index build)", file=sys.stderr)
        changed = sorted(set(table.loc[table["note"] != "", "path"]))
        for path in changed:
            print(f"note: {path}: changed since the store was built; its score is for the old content "
                  "(rebuild it: atrlib index build)", file=sys.stderr)
        if not changed:
            table = table.drop(columns="note")
    else:
        try:
            files = list_audio(args.audio, on_error=args.on_error, encoding=args.encoding, skipped=skipped)
        except (ValueError, OSError) as e:
            print(report(e), file=sys.stderr)
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
    if not table["score"].map(math.isfinite).all():
        from atrlib.errors import AudioError

        bad = table.loc[~table["score"].map(math.isfinite), "path"].tolist()
        raise AudioError(f"{bad[0]}: scored NaN or infinite against the query; the clip or the model is broken "
                         "(check the clip, or --on-error skip it)")
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
                print(f"  {r['rank']:>3}  {r['score']:+.4f}  {r['file']}" + (f"   [{r['why']}]" if r.get("why") else "")
                      + (f"   (note: {r['note']})" if r.get("note") else ""))
    return 0
