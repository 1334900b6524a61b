"""Chance baselines for moment retrieval: predictions that know nothing but the duration.

A result is read against them: a system whose R1@0.5 is no better than "the whole recording"
has not learned where anything happens. Each baseline is a function of one query's duration
(and a random generator) returning ranked ``[(start, end, score), ...]``;
:func:`baseline_predictions` applies one to every query of a ground-truth file.

* ``whole``: one window, the whole recording ``(0, duration, 1.0)``. It hits R1@t exactly when
  a ground-truth window covers at least the fraction t of the recording.
* ``random``: ``n`` windows (default 10, the evaluator's maximum) with start and end drawn as
  two uniform points of ``[0, duration]`` (sorted), scored by descending uniform draws.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

from atrlib.moments.formats import MomentPrediction, MomentQuery, ScoredWindow


def whole_recording(duration: float, rng: np.random.Generator | None = None) -> List[ScoredWindow]:
    """``[(0, duration, 1.0)]``: the whole recording as the one predicted window."""
    return [(0.0, float(duration), 1.0)]


def random_windows(duration: float, rng: np.random.Generator, n: int = 10) -> List[ScoredWindow]:
    """``n`` random windows of ``[0, duration]``, ranked by their (random) descending scores.

    Each window's start and end are the smaller and larger of two uniform draws in
    ``[0, duration]`` (redrawn in the measure-zero case of equal draws).
    """
    out: List[Tuple[float, float]] = []
    while len(out) < n:
        a, b = sorted(float(x) for x in rng.uniform(0.0, duration, size=2))
        if a < b:
            out.append((a, b))
    scores = np.sort(rng.uniform(size=n))[::-1]  # (n,) descending
    return [(s, e, float(sc)) for (s, e), sc in zip(out, scores)]


BASELINES: Dict[str, Callable[..., List[ScoredWindow]]] = {"whole": whole_recording, "random": random_windows}


def baseline_predictions(queries: Sequence[MomentQuery], name: str, seed: int = 0) -> List[MomentPrediction]:
    """One baseline's predictions for every query (``name``: ``whole`` or ``random``), in
    query order; the random one draws from ``numpy.random.default_rng(seed)`` query by query."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; use one of {', '.join(BASELINES)}")
    rng = np.random.default_rng(seed)
    fn = BASELINES[name]
    return [MomentPrediction(q.qid, q.query, q.vid, tuple(fn(q.duration, rng))) for q in queries]
