"""Answering a queries file: which system, which recording, then ranked windows for every query.

* :func:`resolve_moment_system` — a name or folder -> a moment system (anything with ``name``,
  ``window`` and ``retrieve(path, texts, progress)``):

      ``tagbridge`` (default)       the zero-shot curve retriever (:mod:`atrlib.moments.retrieve`)
      a trained run folder          a dual encoder from ``atrlib train`` / notebook 02, window by window
      a moment-head folder          a head trained by :mod:`atrlib.moments.head_train` (``head.json``)

* :func:`find_recordings` — each query's audio, ``{vid}.wav|.flac|.ogg|.mp3`` in one folder,
  checked *before* any scoring: a vid without audio, a recording shorter than one analysis window
  or one whose length disagrees with the line's ``duration`` (by more than ``tolerance`` s) is a
  :class:`~atrlib.errors.MomentsFileError` naming the queries file and the line.
* :func:`predict_queries` — one streamed pass over each recording for all of its queries,
  a progress bar over recordings; an audio error names the first line asking about it.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

from atrlib.errors import AudioError, MomentsFileError
from atrlib.moments.formats import MomentPrediction, MomentQuery
from atrlib.moments.spans import SpanConfig

PathLike = Union[str, Path]


def is_head_folder(path: PathLike) -> bool:
    from atrlib.moments.head_train import HEAD_FILE

    p = Path(path)
    return (p / HEAD_FILE).is_file() or (p / "best" / HEAD_FILE).is_file()


def resolve_moment_system(system: str = "tagbridge", run_dir: Optional[PathLike] = None, window: Optional[float] = None,
                          spans: SpanConfig = SpanConfig(), device: str = "cpu"):
    """A moment system from a name or folder (see the module text); ``window`` (s) and ``spans``
    apply to the curve retrievers (a head keeps the settings it was trained with)."""
    text = str(system)
    for cand in ([Path(text)] + ([Path(run_dir) / text] if run_dir is not None else [])):
        if cand.is_dir() and is_head_folder(cand):
            from atrlib.moments.head_train import HeadRetriever

            return HeadRetriever.load(cand, device=device)
    from atrlib.moments.retrieve import curve_retriever

    return curve_retriever(text, run_dir, window=window, spans=spans, device=device)


def find_recordings(queries: Sequence[MomentQuery], audio_dir: PathLike, queries_path: PathLike,
                    window: float, tolerance: float = 1.0) -> Dict[str, Path]:
    """vid -> audio file for every query, checked as the module text says (nothing is decoded:
    lengths come from the files' headers)."""
    from atrlib.moments.datasets import AUDIO_SUFFIXES, audio_index
    from atrlib.moments.stream import recording_seconds

    audio_dir = Path(audio_dir)
    if not audio_dir.is_dir():
        raise MomentsFileError(f"--audio {audio_dir}: not a folder; give the folder holding {{vid}}.wav (or .flac, "
                               ".ogg, .mp3) for every recording the queries name")
    index = audio_index([audio_dir])
    found: Dict[str, Path] = {}
    seconds: Dict[str, float] = {}
    for q in queries:
        where = f"{queries_path}, line {q.line}"
        if q.vid not in index:
            raise MomentsFileError(f"{where}: no audio for vid {q.vid!r} in {audio_dir} (looked for "
                                   f"{q.vid}{'|'.join(AUDIO_SUFFIXES)}); put the recording there or fix the vid")
        path = index[q.vid]
        if q.vid not in seconds:
            try:
                seconds[q.vid] = recording_seconds(path)
            except AudioError as e:
                raise MomentsFileError(f"{where}: {e}") from None
        d = seconds[q.vid]
        if d < window:
            raise MomentsFileError(f"{where}: recording {path} lasts {d:.2f} s, shorter than one analysis window "
                                   f"({window:g} s); moment retrieval needs recordings of at least a window — use a "
                                   "shorter window or leave this query out")
        if q.duration and abs(q.duration - d) > tolerance:
            raise MomentsFileError(f"{where}: duration {q.duration:g} s, but {path} lasts {d:.2f} s; is it the right "
                                   "recording? Fix the duration or the audio")
        found[q.vid] = path
    return found


def predict_queries(system, queries: Sequence[MomentQuery], audio: Dict[str, Path], progress: bool = True,
                    queries_path: PathLike = "queries") -> List[MomentPrediction]:
    """Ranked windows for every query (in query order), each recording streamed once."""
    from tqdm.auto import tqdm

    by_vid: "OrderedDict[str, List[MomentQuery]]" = OrderedDict()
    for q in queries:
        by_vid.setdefault(q.vid, []).append(q)
    out: Dict[str, MomentPrediction] = {}
    for vid, qs in tqdm(by_vid.items(), desc=f"{system.name}: recordings", unit="rec", disable=not progress):
        try:
            answers = system.retrieve(audio[vid], [q.query for q in qs], progress=progress)
        except AudioError as e:
            raise MomentsFileError(f"{queries_path}, line {qs[0].line}: {e}") from None
        for q, windows in zip(qs, answers):
            out[q.qid] = MomentPrediction(q.qid, q.query, q.vid, tuple(windows))
    return [out[q.qid] for q in queries]
