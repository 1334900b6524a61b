"""``python -m atrlib moments``: audio moment retrieval (DCASE 2026 Task 6) at the command line.

    moments evaluate --pred P.jsonl --gt G.jsonl --out metrics.json
        R1@0.5, R1@0.7, mAP, mAP@0.5, mAP@0.75 (percent, the Moment-DETR / Lighthouse evaluator's
        definitions) into metrics.json (exactly those keys); a table with 95 % jackknife CIs and
        two chance baselines (the whole recording; 10 random windows, seed 0) on stdout; notes
        about the predictions (clipped windows, missing queries) on stderr.
    moments generate --source DATASET_OR_FOLDER --out DIR --n N --duration 60 --snr 10 --seed 0
        Clotho-Moment-style recordings from a registered dataset (``synth``, ``clotho`` ...) or a
        folder of audio files with a captions.csv: {vid}.wav + annotations.jsonl in DIR.
    moments predict --system S --audio DIR --queries Q.jsonl --out P.jsonl
        ranked windows [start, end, score] (at most 10) for every query of Q.jsonl (qid, query,
        vid; a ground-truth file works too), each recording read from DIR/{vid}.* in streamed
        windows. S: tagbridge (zero-shot, the default), a trained run folder (a dual encoder,
        window by window) or a moment-head folder (atrlib.moments.head_train). A query naming a
        missing vid, a recording shorter than one window, a duration that disagrees with the
        audio: one message naming the line.

A bad file is one message naming the file and the line, and exit code 2. An existing --out is
replaced only with --overwrite, and then only when it is an earlier output of the same
subcommand (it is moved aside to <out>.prev-<time>), never an input or a user's own file.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="moments_command", metavar="SUBCOMMAND", required=True)
    e = sub.add_parser("evaluate", help="score predictions against ground truth (R1@IoU, mAP)",
                       description="score a predictions JSONL against a ground-truth JSONL")
    e.add_argument("--pred", required=True, help="predictions JSONL: qid, query, vid, pred_relevant_windows")
    e.add_argument("--gt", required=True, help="ground-truth JSONL: qid, query, vid, duration, relevant_windows")
    e.add_argument("--out", required=True, help="metrics.json to write (the five metrics, percent)")
    e.add_argument("--duration-slack", type=float, default=0.0, metavar="S",
                   help="seconds a ground-truth window may end after its duration (CASTELLA: 1)")
    e.add_argument("--overwrite", action="store_true", help="move an existing --out aside (<out>.prev-<time>)")
    g = sub.add_parser("generate", help="make long recordings with annotated events from a clip collection",
                       description="Clotho-Moment-style recordings: a quiet bed, 1-3 events at a given SNR")
    g.add_argument("--source", required=True, metavar="DATASET_OR_FOLDER",
                   help="a registered dataset (synth, clotho, ...) or a folder with audio and captions.csv")
    g.add_argument("--root", default=None, help="dataset folder, for registered datasets that need one")
    g.add_argument("--split", default=None, help="split of the source (default: the loader's)")
    g.add_argument("--size", default="demo", help="synth only: tiny, smoke or demo")
    g.add_argument("--out", required=True, help="folder for {vid}.wav and annotations.jsonl")
    g.add_argument("--n", type=int, default=10, help="number of recordings")
    g.add_argument("--duration", type=float, default=60.0, help="seconds per recording")
    g.add_argument("--snr", type=float, default=10.0, help="event RMS over background RMS, dB")
    g.add_argument("--seed", type=int, default=0, help="the same seed gives the same files")
    g.add_argument("--sample-rate", type=int, default=32000, help="Hz of the written recordings")
    g.add_argument("--background", default=None, metavar="FILE", help="an audio file looped as the bed (default: noise)")
    g.add_argument("--bed-db", type=float, default=-35.0, help="RMS of the bed, dBFS")
    g.add_argument("--max-events", type=int, default=3, help="events per recording: 1 to this")
    g.add_argument("--overwrite", action="store_true", help="move an existing --out aside (<out>.prev-<time>)")
    r = sub.add_parser("predict", help="find the moments: ranked windows for every query of a JSONL file",
                       description="ranked windows [start, end, score] for every query, recordings read in windows")
    r.add_argument("--system", default="tagbridge",
                   help="tagbridge (zero-shot, default), a trained run folder, or a moment-head folder")
    r.add_argument("--audio", required=True, help="folder holding {vid}.wav (or .flac, .ogg, .mp3) per recording")
    r.add_argument("--queries", required=True, help="JSONL: qid, query, vid (duration optional; a ground-truth file works)")
    r.add_argument("--out", required=True, help="predictions JSONL to write (qid, query, vid, pred_relevant_windows)")
    r.add_argument("--window", type=float, default=None, metavar="S",
                   help="analysis window in seconds (default: the system's; tagbridge 3, a run its clip length)")
    r.add_argument("--device", default="cpu", help="torch device for the models (cpu, cuda)")
    r.add_argument("--overwrite", action="store_true", help="move an existing --out aside (<out>.prev-<time>)")


def _table(ci: dict, chance: dict) -> str:
    """The metrics with their CIs and the chance baselines, as aligned text."""
    head = ("metric", "value", "95 % CI (jackknife)", "whole recording", "random windows")
    rows = [head]
    for k, v in ci.items():
        rows.append((k, f"{v['value']:.2f}", "—" if math.isnan(v["low"]) else f"{v['low']:.2f} – {v['high']:.2f}",
                     f"{chance['whole'][k]:.2f}", f"{chance['random'][k]:.2f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _is_moment_metrics(path: Path) -> bool:
    """Is ``path`` a metrics.json written by ``moments evaluate`` (a JSON object of exactly the five keys)?"""
    from atrlib.files import read_json
    from atrlib.moments.metrics import METRICS

    try:
        data = read_json(path)
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and set(data) == set(METRICS)


def _is_generated(folder: Path) -> bool:
    """Does ``folder`` hold nothing but what ``moments generate`` writes (annotations.jsonl + wavs)?"""
    from atrlib.moments.generate import ANNOTATIONS

    names = [c.name for c in folder.iterdir()]
    return ANNOTATIONS in names and all(n == ANNOTATIONS or n.endswith(".wav") for n in names)


def _claim(out: Path, overwrite: bool, inputs, earlier: bool, noun: str, as_folder: bool) -> bool:
    """The --overwrite rule of every atrlib command, for these two outputs: a new path (or an empty
    folder) is fine; an existing one only with --overwrite, and then only when it is an ``earlier``
    output of this subcommand (``noun``), never an input or a user's own file; True: move it aside."""
    from atrlib.errors import OutputExistsError
    from atrlib.files import check_writable

    real = out.resolve()
    for inp in inputs:
        if not inp:
            continue
        src = Path(inp).resolve()
        if src == real or real in src.parents:
            raise OutputExistsError(f"--out {out} is or holds {inp}, an input of this command; choose another --out")
    if out.exists() and out.is_dir() != as_folder:
        shape = "a file; it names the folder to write into" if as_folder else "a folder; it names the file to write"
        raise OutputExistsError(f"--out {out} is {shape}. Choose another --out")
    if not out.exists() or (as_folder and not any(out.iterdir())):
        check_writable(out, "--out")
        return False
    if not earlier:
        raise OutputExistsError(f"--out {out} already exists and is not {noun}; --overwrite only moves aside an earlier "
                                f"output of this command, never a file or folder of your own. Choose another --out")
    if not overwrite:
        raise OutputExistsError(f"--out {out} already holds {noun}; pass --overwrite to move it aside to "
                                f"{out.name}.prev-<time>, or choose another --out")
    return True


def _evaluate(args) -> int:
    from atrlib.files import move_aside, write_json
    from atrlib.moments.baselines import baseline_predictions
    from atrlib.moments.formats import aligned_windows, read_ground_truth, read_predictions
    from atrlib.moments.metrics import METRICS, metrics_with_ci, moment_scores

    out = Path(args.out)
    earlier = out.is_file() and _is_moment_metrics(out)
    move = _claim(out, args.overwrite, (args.pred, args.gt), earlier, "a metrics file of `atrlib moments evaluate`",
                  as_folder=False)
    # 1. the files (every problem: one error naming the file and the line)
    gt = read_ground_truth(args.gt, duration_slack=args.duration_slack)
    predictions, notes = read_predictions(args.pred, gt)
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    # 2. the scores, their intervals, the chance baselines
    scores = moment_scores(*aligned_windows(gt, predictions))
    summary = scores.summary()
    if len(scores) >= 2:
        ci = metrics_with_ci(scores)
        for k in METRICS:
            ci[k]["value"] = summary[k]
    else:
        ci = {k: {"value": summary[k], "low": float("nan"), "high": float("nan")} for k in METRICS}
    chance = {}
    for name in ("whole", "random"):
        base = {p.qid: p for p in baseline_predictions(gt, name, seed=0)}
        chance[name] = moment_scores(*aligned_windows(gt, base)).summary()
    # 3. metrics.json (exactly the five keys) and the table
    if move:
        print(f"moved the earlier {out} -> {move_aside(out)}")
    write_json(out, {k: summary[k] for k in METRICS})
    print(f"{len(gt)} queries, {len(predictions)} with a prediction line; {args.pred} against {args.gt}")
    print(_table(ci, chance))
    print(f"wrote {out}")
    return 0


def _generate(args) -> int:
    from atrlib.data import DATASETS, load_dataset
    from atrlib.errors import DatasetError
    from atrlib.files import move_aside
    from atrlib.moments.generate import ANNOTATIONS, generate_moments
    from atrlib.registry import name_or_path

    out = Path(args.out)
    try:
        kind, what = name_or_path(args.source, DATASETS.names(), "dataset")
    except FileNotFoundError as e:
        raise DatasetError(f"--source: {e}; give a registered dataset or a folder with audio files and a "
                           "captions.csv") from None
    earlier = out.is_dir() and _is_generated(out)
    move = _claim(out, args.overwrite, (what if kind == "path" else None, args.background), earlier,
                  f"recordings written by `atrlib moments generate` ({ANNOTATIONS} and wavs)", as_folder=True)
    if kind == "path":
        clips = load_dataset("folder", root=what, **({} if args.split is None else {"split": args.split}))
    else:
        kw = {"size": args.size} if what == "synth" else {}
        clips = load_dataset(what, root=args.root, **({} if args.split is None else {"split": args.split}), **kw)
    if move:
        print(f"moved the earlier {out} -> {move_aside(out)}")
    queries = generate_moments(clips, out, n=args.n, duration=args.duration, snr_db=args.snr, seed=args.seed,
                               sample_rate=args.sample_rate, background=args.background, bed_db=args.bed_db,
                               max_events=args.max_events)
    print(f"wrote {args.n} recordings of {args.duration:g} s with {len(queries)} queries from "
          f"{clips.name}/{clips.split} ({len(clips)} clips) to {out}/ ({ANNOTATIONS} beside the wavs)")
    return 0


def _is_predictions(path: Path) -> bool:
    """Is ``path`` a predictions JSONL (every line an object with pred_relevant_windows), as
    ``moments predict`` writes?"""
    import json

    try:
        lines = [l for l in path.read_text(encoding="utf-8").splitlines() if l.strip()]
        return bool(lines) and all("pred_relevant_windows" in json.loads(l) for l in lines)
    except (OSError, ValueError, TypeError, AttributeError):
        return False


def _predict(args) -> int:
    from atrlib.files import move_aside
    from atrlib.moments.formats import read_queries, write_predictions
    from atrlib.moments.predict import find_recordings, predict_queries, resolve_moment_system

    out = Path(args.out)
    earlier = out.is_file() and _is_predictions(out)
    move = _claim(out, args.overwrite, (args.queries, args.audio, args.system), earlier,
                  "a predictions file of `atrlib moments predict`", as_folder=False)
    # 1. everything a person wrote is checked before any audio is scored
    queries = read_queries(args.queries)
    if args.window is not None and not (math.isfinite(args.window) and args.window > 0):
        from atrlib.errors import ConfigError

        raise ConfigError(f"--window must be a number of seconds > 0, got {args.window}")
    system = resolve_moment_system(args.system, window=args.window, device=args.device)
    audio = find_recordings(queries, args.audio, args.queries, system.window)
    # 2. one streamed pass per recording
    preds = predict_queries(system, queries, audio, progress=sys.stderr.isatty(), queries_path=args.queries)
    if move:
        print(f"moved the earlier {out} -> {move_aside(out)}")
    write_predictions(out, preds)
    print(f"{len(preds)} queries over {len(audio)} recordings answered by {system.name}; wrote {out}")
    return 0


def main(args) -> int:
    return {"evaluate": _evaluate, "generate": _generate, "predict": _predict}[args.moments_command](args)
