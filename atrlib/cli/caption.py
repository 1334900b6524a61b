"""``python -m atrlib caption``: caption a folder (or CSV list) of clips with a trained
captioner, an ensemble of several, or a Q-Former run's ATG head; write ``predictions.csv``
(``file_name,caption_predicted``) and, given references, ``metrics.json`` beside it.

    python -m atrlib caption --system reports/demo/07_captioning --audio sounds/ --out predictions.csv
    python -m atrlib caption --system A --system B --audio refs.csv --out p.csv --references refs.csv
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    from atrlib.cli import add_input_options

    p.add_argument("--system", action="append", required=True, metavar="FOLDER",
                   help="a trained captioner (or a 07_captioning folder), or a run with a Q-Former (its ATG head); "
                        "repeat for an ensemble that averages log-probabilities at every step")
    p.add_argument("--audio", required=True, help="a folder of audio files, or a CSV with a file_name column")
    p.add_argument("--out", required=True, help="the predictions CSV to write (file_name,caption_predicted)")
    p.add_argument("--beam-size", type=int, default=3, help="beam width (1 = greedy); default 3, as Xiaomi")
    p.add_argument("--length-penalty", type=float, default=1.0,
                   help="beam score = log-probability / length ** this (0: raw log-probability)")
    p.add_argument("--max-tokens", type=int, default=30, help="longest caption in word pieces")
    p.add_argument("--references", help="a references CSV (file_name,caption_1..caption_N): also score the "
                                        "captions and write metrics.json beside --out")
    p.add_argument("--no-java", action="store_true", help="skip the Java tools (PTB tokenizer, METEOR, SPICE)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--overwrite", action="store_true", help="move an earlier predictions CSV at --out aside")
    add_input_options(p, "an --audio CSV")


def _claim(out: Path, overwrite: bool, inputs) -> None:
    """--out may be new; an earlier predictions CSV only with --overwrite (moved aside)."""
    from atrlib.errors import OutputExistsError
    from atrlib.files import check_writable, move_aside

    for inp in inputs:
        if inp and Path(inp).exists() and os.path.realpath(inp) == os.path.realpath(out):
            raise OutputExistsError(f"--out {out} is an input of this command; choose another --out")
    if out.is_dir():
        raise OutputExistsError(f"--out {out} is a folder; it names the CSV file to write")
    if out.exists():
        head = out.read_text(encoding="utf-8", errors="replace").split("\n", 1)[0].strip()
        if head != "file_name,caption_predicted":
            raise OutputExistsError(f"--out {out} already exists and is not a predictions CSV; choose another --out")
        if not overwrite:
            raise OutputExistsError(f"--out {out} already holds predictions; pass --overwrite to move it aside")
        print(f"moved the previous predictions {out} -> {move_aside(out)}")
    check_writable(out, "--out")


def _claim_metrics(path: Path, overwrite: bool) -> None:
    """metrics.json beside --out: new, or an earlier caption scoring moved aside with --overwrite."""
    import json

    from atrlib.errors import OutputExistsError
    from atrlib.files import move_aside

    if not path.exists():
        return
    try:
        ours = {"tokenizer", "n_clips", "missing"} <= set(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        ours = False
    if not ours:
        raise OutputExistsError(f"{path} exists and is not a caption scoring; --references writes metrics.json "
                                "beside --out: choose an --out in another folder")
    if not overwrite:
        raise OutputExistsError(f"{path} already holds a caption scoring; pass --overwrite to move it aside")
    print(f"moved the previous metrics {path} -> {move_aside(path)}")


def main(args) -> int:
    from atrlib.captioning.config import resolve_device
    from atrlib.captioning.decode import generate
    from atrlib.captioning.features import ClipList
    from atrlib.captioning.files import match, read_references, score_files, write_caption_metrics, write_predictions
    from atrlib.captioning.sources import caption_source, find_system
    from atrlib.retrieval.search import list_audio

    # 1. everything typed is checked before any audio is read
    if args.beam_size < 1 or args.max_tokens < 1:
        raise ValueError("--beam-size and --max-tokens must be at least 1")
    out = Path(args.out)
    _claim(out, args.overwrite, [args.audio, args.references, *args.system])
    if args.references:
        _claim_metrics(out.parent / "metrics.json", args.overwrite)
    for s in args.system:
        find_system(s)
    refs = read_references(args.references) if args.references else None

    # 2. the clips (unreadable ones skipped with --on-error skip), their names as the challenge writes them
    skipped: list = []
    paths = list_audio(args.audio, args.on_error, args.encoding, skipped)
    if args.on_error == "skip":
        from atrlib.audio.io import audio_info
        from atrlib.errors import AudioError

        kept = []
        for p in paths:
            try:
                audio_info(p)
                kept.append(p)
            except AudioError as e:
                skipped.append(str(e))
        paths = kept
    for msg in skipped:
        print(f"skipped: {msg}", file=sys.stderr)
    base = Path(args.audio) if Path(args.audio).is_dir() else Path(args.audio).parent
    names = [Path(os.path.relpath(p, base)).as_posix() for p in paths]

    # 3. caption, write, score
    source = caption_source(args.system, ClipList(paths), resolve_device(args.device))
    captions = generate(source, args.beam_size, args.length_penalty, args.max_tokens)
    write_predictions(out, names, captions)
    print(f"{len(captions)} captions -> {out}")
    if refs is not None:
        match(dict(zip(names, captions)), refs, out, args.references)
        scores = score_files(out, args.references, java=not args.no_java)
        path = write_caption_metrics(out.parent / "metrics.json", scores, systems=list(args.system),
                                     beam_size=args.beam_size, length_penalty=args.length_penalty)
        print(scores.table().to_string())
        print(f"metrics -> {path}")
    return 0
