"""The JSONL files of audio moment retrieval: ground truth (queries) and predictions.

One JSON object per line, the format of Moment-DETR's QVHighlights release, which Lighthouse
uses for Clotho-Moment and CASTELLA and the DCASE 2026 moment-retrieval task inherits:

ground truth / queries::

    {"qid": "37612", "query": "someone splashes in water", "vid": "Wildlife_0.0_60.0",
     "duration": 60, "relevant_windows": [[2.5, 27.5]]}

predictions::

    {"qid": "37612", "query": "someone splashes in water", "vid": "Wildlife_0.0_60.0",
     "pred_relevant_windows": [[2.0, 28.0, 0.93], [40.0, 52.5, 0.41]]}

Times are seconds from the start of the recording ``vid``; a window is ``[start, end]`` (ground
truth) or ``[start, end, score]`` (predictions, ranked by descending score). The evaluator reads
at most the first 10 predicted windows of a line (:data:`atrlib.moments.metrics.MAX_PREDICTIONS`),
in the order they are listed. Other keys (Clotho-Moment's ``fg_dB``, the generator's ``source``)
are kept out of the way and ignored. ``qid`` may be a number or a string; it is compared as text.

A *queries* file (what ``moments predict`` answers, :func:`read_queries`) needs only ``qid``,
``query`` and ``vid`` on each line; ``duration`` is optional and ``relevant_windows`` ignored, so
a ground-truth file serves as one.

Every bad input is a :class:`~atrlib.errors.MomentsFileError` whose message names the file, the
line and the fix: a line that is not JSON or not an object, a missing key, a non-numeric or
non-finite time, ``start >= end``, a negative start, a ground-truth window beyond the duration
(``duration_slack`` seconds are allowed past the end: CASTELLA's durations are whole seconds
rounded down and its windows may end 1 s after them), a file that is not UTF-8, a duplicate qid,
and a prediction for a qid the ground truth does not hold. Softer problems are *notes*, returned
to the caller (the command line prints them), each said once with its count: predicted windows
outside ``[0, duration]`` are clipped to it; lines with more than 10 windows, or windows not
ranked by score; queries with no prediction (scored as no prediction: 0 for every metric).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

from atrlib.errors import MomentsFileError
from atrlib.files import write_text_atomic

PathLike = Union[str, Path]
Window = Tuple[float, float]               # (start s, end s)
ScoredWindow = Tuple[float, float, float]  # (start s, end s, score)

GT_KEYS = ("qid", "query", "vid", "duration", "relevant_windows")
PRED_KEYS = ("qid", "query", "vid", "pred_relevant_windows")
MAX_LISTED = 10  # the evaluator keeps the first 10 windows of a prediction line
_GT_EXAMPLE = '{"qid": "q1", "query": "a dog barks", "vid": "rec1", "duration": 60, "relevant_windows": [[2.5, 9.0]]}'
_PRED_EXAMPLE = '{"qid": "q1", "query": "a dog barks", "vid": "rec1", "pred_relevant_windows": [[2.0, 9.5, 0.9]]}'


@dataclass(frozen=True)
class MomentQuery:
    """One ground-truth line: a text query, the recording it is asked of, its relevant windows."""

    qid: str
    query: str
    vid: str
    duration: float                  # seconds
    windows: Tuple[Window, ...]      # relevant windows, as listed
    line: int = 0                    # line number in the file it was read from (0: made in code)
    extra: Dict = field(default_factory=dict, compare=False)  # other keys of the line, kept when written


@dataclass(frozen=True)
class MomentPrediction:
    """One prediction line: the windows a system proposes for one query, as listed."""

    qid: str
    query: str
    vid: str
    windows: Tuple[ScoredWindow, ...]
    line: int = 0


# --------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------
def _json_lines(path: Path, example: str) -> Iterator[Tuple[int, dict]]:
    """(line number, object) for every non-blank line of ``path``; errors name file and line."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise MomentsFileError(f"{path}: file not found; check the path") from None
    except IsADirectoryError:
        raise MomentsFileError(f"{path}: is a folder; pass the JSONL file inside it") from None
    except OSError as e:
        raise MomentsFileError(f"{path}: cannot be read ({e.strerror})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise MomentsFileError(f"{path}, line {line}: not UTF-8 (byte 0x{raw[e.start]:02x}); re-save the file as "
                               "UTF-8, e.g. `iconv -f latin1 -t utf-8 in.jsonl > out.jsonl`") from None
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise MomentsFileError(f"{path}, line {number}: not JSON ({e.msg}, column {e.colno}); each line must be "
                                   f"one JSON object, e.g. {example}") from None
        if not isinstance(obj, dict):
            raise MomentsFileError(f"{path}, line {number}: a JSON {type(obj).__name__}, not an object; each line must "
                                   f"be one JSON object, e.g. {example}")
        yield number, obj


def _require(obj: dict, keys: Sequence[str], where: str, example: str) -> None:
    missing = [k for k in keys if k not in obj]
    if missing:
        raise MomentsFileError(f"{where}: missing key {', '.join(repr(k) for k in missing)}; a line needs "
                               f"{', '.join(keys)}, e.g. {example}")


def _qid(value, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or (isinstance(value, str) and not value.strip()):
        raise MomentsFileError(f"{where}: qid {value!r} is not a number or a non-empty string; give each query its id")
    return str(value)


def _number(value, where: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MomentsFileError(f"{where}: {what} {value!r} is not a number; write seconds as numbers, e.g. 12.5")
    if not math.isfinite(value):
        raise MomentsFileError(f"{where}: {what} is {value!r}; write a finite number")
    return float(value)


def _window_list(value, where: str, key: str, width: int, example: str) -> list:
    if not isinstance(value, list) or not all(isinstance(w, list) and len(w) == width for w in value):
        shape = "[start, end]" if width == 2 else "[start, end, score]"
        raise MomentsFileError(f"{where}: {key} must be a list of {shape} lists, got {json.dumps(value)[:80]}; "
                               f"e.g. {example}")
    return value


def _check_unique(seen: Dict[str, int], qid: str, path: Path, number: int) -> None:
    if qid in seen:
        raise MomentsFileError(f"{path}, line {number}: qid {qid!r} again (first on line {seen[qid]}); every line needs "
                               "its own qid — remove or renumber the duplicate")
    seen[qid] = number


def read_ground_truth(path: PathLike, duration_slack: float = 0.0) -> List[MomentQuery]:
    """The queries of a ground-truth JSONL file, in file order.

    Each line needs ``qid``, ``query``, ``vid``, ``duration`` (s, > 0) and ``relevant_windows``
    (a non-empty list of ``[start, end]`` with ``0 <= start < end <= duration + duration_slack``).
    Windows are kept exactly as written (never clipped), as the evaluator uses them.
    Raises :class:`MomentsFileError` naming the file, the line and the fix.
    """
    path = Path(path)
    queries: List[MomentQuery] = []
    seen: Dict[str, int] = {}
    for number, obj in _json_lines(path, _GT_EXAMPLE):
        where = f"{path}, line {number}"
        _require(obj, GT_KEYS, where, _GT_EXAMPLE)
        qid = _qid(obj["qid"], where)
        _check_unique(seen, qid, path, number)
        duration = _number(obj["duration"], where, "duration")
        if duration <= 0:
            raise MomentsFileError(f"{where}: duration {duration:g} s; a recording lasts more than 0 s")
        raw = _window_list(obj["relevant_windows"], where, "relevant_windows", 2, _GT_EXAMPLE)
        if not raw:
            raise MomentsFileError(f"{where}: relevant_windows is empty; every query needs at least one window "
                                   "(the evaluator cannot score a query without one) — remove the line")
        windows = []
        for k, w in enumerate(raw, 1):
            s = _number(w[0], where, f"window {k} start")
            e = _number(w[1], where, f"window {k} end")
            if s >= e:
                raise MomentsFileError(f"{where}: window {k} [{s:g}, {e:g}] has start >= end; write [start, end] "
                                       "with start < end")
            if s < 0:
                raise MomentsFileError(f"{where}: window {k} [{s:g}, {e:g}] starts before 0 s; times are seconds from "
                                       "the start of the recording")
            if e > duration + duration_slack:
                raise MomentsFileError(f"{where}: window {k} [{s:g}, {e:g}] ends after the recording's duration "
                                       f"{duration:g} s; correct the window or the duration (or allow a tolerance "
                                       f"with duration_slack=, now {duration_slack:g} s)")
            windows.append((s, e))
        extra = {k: v for k, v in obj.items() if k not in GT_KEYS}
        queries.append(MomentQuery(qid, str(obj["query"]), str(obj["vid"]), duration, tuple(windows), number, extra))
    if not queries:
        raise MomentsFileError(f"{path}: no lines; a ground-truth file holds one JSON object per line, e.g. {_GT_EXAMPLE}")
    return queries


_QUERY_EXAMPLE = '{"qid": "q1", "query": "a dog barks", "vid": "rec1"}'


def read_queries(path: PathLike) -> List[MomentQuery]:
    """The queries to answer (``moments predict``): each line needs ``qid``, ``query`` (a
    non-empty sentence) and ``vid``; ``duration`` is optional (checked against the audio when
    given) and ``relevant_windows`` is ignored, so a ground-truth file is a queries file too.
    A query without a duration gets 0. Raises :class:`MomentsFileError` naming file and line."""
    path = Path(path)
    queries: List[MomentQuery] = []
    seen: Dict[str, int] = {}
    for number, obj in _json_lines(path, _QUERY_EXAMPLE):
        where = f"{path}, line {number}"
        _require(obj, ("qid", "query", "vid"), where, _QUERY_EXAMPLE)
        qid = _qid(obj["qid"], where)
        _check_unique(seen, qid, path, number)
        if not isinstance(obj["query"], str) or not obj["query"].strip():
            raise MomentsFileError(f"{where}: query {obj['query']!r} is not a sentence; write the text to search for, "
                                   "e.g. \"a dog barks\"")
        if not isinstance(obj["vid"], (str, int)) or isinstance(obj["vid"], bool) or not str(obj["vid"]).strip():
            raise MomentsFileError(f"{where}: vid {obj['vid']!r} does not name a recording; give the audio file's "
                                   "name without its suffix")
        duration = 0.0
        if obj.get("duration") is not None:
            duration = _number(obj["duration"], where, "duration")
            if duration <= 0:
                raise MomentsFileError(f"{where}: duration {duration:g} s; a recording lasts more than 0 s")
        extra = {k: v for k, v in obj.items() if k not in GT_KEYS}
        queries.append(MomentQuery(qid, obj["query"].strip(), str(obj["vid"]), duration, (), number, extra))
    if not queries:
        raise MomentsFileError(f"{path}: no lines; a queries file holds one JSON object per line, e.g. {_QUERY_EXAMPLE}")
    return queries


def read_predictions(path: PathLike, ground_truth: Sequence[MomentQuery]) -> Tuple[Dict[str, MomentPrediction], List[str]]:
    """The predictions of a JSONL file for the queries of ``ground_truth``: ``({qid: prediction}, notes)``.

    Each line needs ``qid``, ``query``, ``vid`` and ``pred_relevant_windows`` (a list of
    ``[start, end, score]`` with ``start < end``; empty = no prediction). Windows are kept in the
    order listed (the evaluator takes the first listed window for R1 and the first 10 for mAP).
    A window outside ``[0, duration]`` of its query is clipped to it. A qid the ground truth does
    not hold, or a qid listed twice, is a :class:`MomentsFileError`. ``notes`` say once, with counts, what was clipped, which lines list more than 10 windows or do not
    rank them by score, and how many queries have no prediction (they score 0).
    """
    path = Path(path)
    durations = {q.qid: q.duration for q in ground_truth}
    out: Dict[str, MomentPrediction] = {}
    seen: Dict[str, int] = {}
    clipped: List[int] = []      # line numbers, one per clipped window
    too_many: List[int] = []
    unranked: List[int] = []
    for number, obj in _json_lines(path, _PRED_EXAMPLE):
        where = f"{path}, line {number}"
        _require(obj, PRED_KEYS, where, _PRED_EXAMPLE)
        qid = _qid(obj["qid"], where)
        _check_unique(seen, qid, path, number)
        if qid not in durations:
            raise MomentsFileError(f"{where}: qid {qid!r} is not in the ground truth; were these predictions made for "
                                   "another split or file? Remove the line or evaluate against the matching ground truth")
        duration = durations[qid]
        raw = _window_list(obj["pred_relevant_windows"], where, "pred_relevant_windows", 3, _PRED_EXAMPLE)
        windows = []
        for k, w in enumerate(raw, 1):
            s = _number(w[0], where, f"window {k} start")
            e = _number(w[1], where, f"window {k} end")
            score = _number(w[2], where, f"window {k} score")
            if s >= e:
                raise MomentsFileError(f"{where}: window {k} [{s:g}, {e:g}] has start >= end; write [start, end, score] "
                                       "with start < end")
            if s < 0 or e > duration:
                clipped.append(number)
                s, e = min(max(s, 0.0), duration), min(max(e, 0.0), duration)
            windows.append((s, e, score))
        if len(windows) > MAX_LISTED:
            too_many.append(number)
        scores = [w[2] for w in windows[:MAX_LISTED]]
        if any(a < b for a, b in zip(scores, scores[1:])):
            unranked.append(number)
        out[qid] = MomentPrediction(qid, str(obj["query"]), str(obj["vid"]), tuple(windows), number)
    notes = []
    if clipped:
        notes.append(f"{path}: {len(clipped)} predicted window(s) on {len(set(clipped))} line(s) reach outside "
                     f"[0, duration] and were clipped to it (first: line {clipped[0]}); the Moment-DETR evaluator "
                     "does not clip, so its numbers can differ for these windows")
    if too_many:
        notes.append(f"{path}: {len(too_many)} line(s) list more than {MAX_LISTED} windows (first: line {too_many[0]}); "
                     f"only the first {MAX_LISTED} listed count, as in the evaluator")
    if unranked:
        notes.append(f"{path}: {len(unranked)} line(s) do not list windows by descending score (first: line "
                     f"{unranked[0]}); R1 takes the first listed window, mAP sorts the first {MAX_LISTED} by score, "
                     "as the evaluator does — write them ranked")
    empty = sum(1 for p in out.values() if not p.windows)
    missing = [q.qid for q in ground_truth if q.qid not in out]
    if missing or empty:
        shown = ", ".join(repr(m) for m in missing[:3]) + (", ..." if len(missing) > 3 else "")
        parts = ([f"{len(missing)} without a line: {shown}"] if missing else []) + \
                ([f"{empty} with an empty window list"] if empty else [])
        notes.append(f"{path}: {len(missing) + empty} of {len(ground_truth)} queries have no prediction "
                     f"({'; '.join(parts)}); they count as no prediction: 0 for every metric")
    return out, notes


def aligned_windows(ground_truth: Sequence[MomentQuery], predictions: Dict[str, MomentPrediction]
                    ) -> Tuple[List[Tuple[Window, ...]], List[Tuple[ScoredWindow, ...]]]:
    """``(gt_windows, pred_windows)``: two lists in ground-truth order, what
    :func:`atrlib.moments.metrics.moment_scores` takes; a query without a prediction gets ``()``."""
    return ([q.windows for q in ground_truth],
            [predictions[q.qid].windows if q.qid in predictions else () for q in ground_truth])


# --------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------
def _jsonl(rows: Sequence[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in rows)


def write_ground_truth(path: PathLike, queries: Sequence[MomentQuery]) -> Path:
    """Write ``queries`` as a ground-truth JSONL file (atomically), their extra keys after the five."""
    rows = [{"qid": q.qid, "query": q.query, "vid": q.vid, "duration": q.duration,
             "relevant_windows": [list(w) for w in q.windows], **q.extra} for q in queries]
    return write_text_atomic(path, _jsonl(rows))


def write_predictions(path: PathLike, predictions: Sequence[MomentPrediction], max_windows: Optional[int] = MAX_LISTED) -> Path:
    """Write ``predictions`` as a JSONL file (atomically): each line's windows ranked by descending
    score (ties keep their order) and cut to the best ``max_windows`` (None keeps all)."""
    rows = []
    for p in predictions:
        ranked = sorted(p.windows, key=lambda w: -w[2])
        rows.append({"qid": p.qid, "query": p.query, "vid": p.vid,
                     "pred_relevant_windows": [list(w) for w in ranked[:max_windows]]})
    return write_text_atomic(path, _jsonl(rows))
