"""``python -m atrlib evaluate``: score a retriever or a trained run on a dataset split and
write ``sim_<split>.npz`` (the :mod:`atrlib.retrieval.simfile` format) and ``metrics.json``.

An output folder that already holds an evaluation (its ``metrics.json`` is marked
``"atrlib_output": "evaluation"``) is refused unless ``--overwrite``, which moves it aside to
``<out>.prev-<time>``: a folder never mixes two evaluations. ``--overwrite`` never moves
anything else (:func:`atrlib.files.check_output`): not the ``--system`` run or the dataset it
reads, not a training run, not a folder of the user's own. ``--on-error skip`` leaves out (and
lists) clips that cannot be read.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from atrlib.cli import add_input_options, add_scoring_options, report, require_matching_head
from atrlib.retrieval.scoring import score_split, split_metrics
from atrlib.retrieval.search import resolve_retriever


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--system", "--model", dest="model", default="tagbridge", metavar="SYSTEM",
                   help="what is scored: a registered retriever or a trained run folder (--model: older name)")
    p.add_argument("--dataset", default="synth", help="registered dataset")
    p.add_argument("--root", default=None, help="dataset folder")
    p.add_argument("--split", default="test")
    p.add_argument("--size", default="demo", help="synth only")
    p.add_argument("--out", required=True, help="folder for sim_<split>.npz and metrics.json")
    p.add_argument("--overwrite", action="store_true", help="move an existing --out folder aside (<out>.prev-<time>)")
    add_input_options(p, "the caption CSV")
    add_scoring_options(
        p, rerank_help="also re-rank each caption's top K clips with the run's matching head: rerank.json holds "
                       "metrics without / with, a paired test and the cost (0 = off)",
        weight_help="how the top K are re-ordered: 'head' (by the matching head alone, as Lingban), a number w "
                    "(similarity + w x match probability, as BLIP), or 'val' (w chosen on the dataset's "
                    "validation split, 0 included, so re-ranking that does not help there is switched off)")
    p.add_argument("--relevance", default="", metavar="FILE",
                   help="a DCASE 2025 relevance file (query,audio_filenames): also score the 2025 protocol "
                        "(several relevant clips per caption, mAP@16) beside the one-clip-per-caption one")
    p.add_argument("--relevance-missing", choices=("raise", "skip"), default="raise",
                   help="a relevance-file query or clip that is not in the split: raise (stop, naming the line) or "
                        "skip (leave it out and list it)")


def main(args) -> int:
    from atrlib.data import AudioCaptionDataset, load_dataset
    from atrlib.errors import DatasetError
    from atrlib.files import OUTPUT_MARKER, check_output, move_aside, write_metrics
    from atrlib.errors import DiskWriteError
    from atrlib.retrieval.search import embed_audio_checked
    from atrlib.retrieval.simfile import save_similarity

    out = Path(args.out)
    # 1. the output folder: writable, and never mixed with an earlier evaluation
    try:
        earlier = check_output(out, "evaluation", args.overwrite, inputs=[args.model, args.root, args.relevance])
        # 2. the data (bad rows / clips: an error naming the line, or skipped with --on-error skip)
        kw = {"size": args.size} if args.dataset == "synth" else {"encoding": args.encoding}
        ds = load_dataset(args.dataset, root=args.root, split=args.split, on_error=args.on_error, **kw)
        val_ds = None
        if args.rerank and str(args.rerank_weight).strip().lower() == "val":
            val_ds = load_dataset(args.dataset, root=args.root, split="val", on_error=args.on_error, **kw)
        elif args.rerank:
            from atrlib.retrieval.rerank import parse_weight

            parse_weight(args.rerank_weight)  # a typo is refused before any scoring
    except (OSError, ValueError, DatasetError) as e:
        print(report(e), file=sys.stderr)
        return 2
    try:
        retriever = resolve_retriever(args.model, **({"score": args.score} if args.score != "dual" else {}))
        if args.rerank:
            require_matching_head(retriever, args.rerank, args.model)
    except (OSError, ValueError) as e:
        print(report(e), file=sys.stderr)
        return 2
    if earlier:  # everything checked: only now is the earlier evaluation moved aside
        print(f"moved the previous evaluation {out} -> {move_aside(out)}")
    skipped = list(ds.skipped)
    if args.on_error == "skip":  # clips whose header reads but whose audio does not decode
        _, kept, bad = embed_audio_checked(retriever, ds.audio_paths, "skip", progress=sys.stderr.isatty())
        if bad:
            skipped += bad
            ds = AudioCaptionDataset(ds.name, ds.split, ds.root, [ds.items[i] for i in kept], skipped)
    # 3. score, write
    system = str(args.model) + (":qformer" if args.score == "qformer" else "")
    sm = score_split(retriever, ds, system=system)
    both = split_metrics(sm, ds)
    both["skipped_clips"] = skipped
    both[OUTPUT_MARKER] = "evaluation"  # what --overwrite recognises as this command's own output
    if args.relevance:  # the 2025 protocol beside the 2024 one (atrlib.retrieval.protocol2025)
        from atrlib.retrieval.protocol2025 import both_protocols, protocol_metrics

        try:
            protocols = both_protocols(sm, ds, args.relevance, on_missing=args.relevance_missing)
            both.update(protocol_metrics(protocols))
            for note in protocols.attrs.get("skipped", []) if hasattr(protocols, "attrs") else []:
                print(f"note: {note}", file=sys.stderr)
        except (OSError, ValueError) as e:
            print(report(e), file=sys.stderr)
            return 2
    try:
        save_similarity(out / f"sim_{ds.split}.npz", sm)
        write_metrics(out, both, params={k: v for k, v in vars(args).items() if not k.startswith("_")},
                      key_metrics=["t2a/mAP@10", "t2a/R@1", "a2t/mAP@10"]
                      + (["protocol_2025/mAP@16"] if args.relevance else []))
    except DiskWriteError as e:
        print(report(e), file=sys.stderr)
        return 1
    if args.rerank:
        from atrlib.retrieval.rerank import evaluate_rerank, format_summary

        print(format_summary(evaluate_rerank(retriever, ds, sm, args.rerank, out, weight=args.rerank_weight,
                                            val_dataset=val_ds)))
    for msg in skipped:
        print(f"skipped: {msg}", file=sys.stderr)
    print(f"{system} on {ds.name}/{ds.split}: t2a mAP@10 {both['t2a']['mAP@10']:.4f}, "
          f"R@1 {both['t2a']['R@1']:.4f}; a2t mAP@10 {both['a2t']['mAP@10']:.4f} -> {out}"
          + (f" ({len(skipped)} clip(s) skipped)" if skipped else ""))
    if args.relevance:
        p25 = both["protocol_2025"]
        print(f"2025 protocol ({int(p25['queries'])} annotated captions, {p25['relevant_per_query']:.2f} relevant clips "
              f"each): mAP@16 {p25['mAP@16']:.4f} (95 % CI {p25['mAP@16_low']:.4f}-{p25['mAP@16_high']:.4f}); "
              f"2024 protocol: mAP@10 {both['protocol_2024']['mAP@10']:.4f}")
    return 0
