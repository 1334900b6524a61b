"""From a score curve over time to ranked windows ``[start, end, score]`` (pure numpy).

Every curve-based moment retriever (zero-shot tag-bridge, a trained dual encoder) scores
overlapping analysis windows of a recording against a query; this module turns those scores
into at most ``max_windows`` ranked, non-overlapping answers:

1. **frames** (:func:`frame_curve`): the recording is cut into ``hop``-second frames; a frame's
   score is the mean score of the windows that cover its centre.
2. **smoothing** (:func:`smooth`): a centred moving average over ``smooth_seconds``.
3. **spans** (:func:`candidate_spans`): at each relative level λ of ``levels`` the threshold is
   ``median + λ (max - median)`` of this recording's smoothed curve (relative to its own score
   distribution: no threshold carries over between queries or models); every maximal run of
   frames at or above it is a span. Spans shorter than ``min_seconds`` are widened around
   their centre; longer than ``max_seconds``, cut to the ``max_seconds`` stretch with the
   highest mean. Several levels give nested spans of several lengths.
4. **scores** (:func:`span_score`): the mean of the (unsmoothed) curve inside the span minus the
   mean of its surroundings (as long as the span, at least ``context_seconds``, on each side):
   a span that stands out from its neighbourhood ranks first.
5. **temporal non-maximum suppression** (:func:`temporal_nms`): best first, a span overlapping
   an already kept one with IoU above ``nms_iou`` is dropped; at most ``max_windows`` are kept.

:func:`decode_spans` runs all five.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import List, Sequence, Tuple

import numpy as np

ScoredWindow = Tuple[float, float, float]


@dataclass(frozen=True)
class SpanConfig:
    """How a score curve becomes windows (see the module text)."""

    hop: float = 1.0                       # seconds per frame of the curve
    smooth_seconds: float = 3.0            # moving-average width; <= hop: no smoothing
    levels: Tuple[float, ...] = (0.3, 0.5, 0.7)  # thresholds: median + level x (max - median)
    min_seconds: float = 1.0               # shorter spans are widened to this
    max_seconds: float = 20.0              # longer spans are cut to their best stretch of this length
    context_seconds: float = 2.0           # at least this much on each side is the span's surroundings
    nms_iou: float = 0.5                   # drop a span overlapping a better one by more than this IoU
    max_windows: int = 10                  # answers per query (the evaluator reads 10)

    def __post_init__(self):
        problems = []
        if not self.hop > 0:
            problems.append(f"hop must be > 0 s, got {self.hop}")
        if not self.levels or not all(0 <= lv < 1 for lv in self.levels):
            problems.append(f"levels must be numbers in [0, 1), got {self.levels}")
        if not (0 < self.min_seconds <= self.max_seconds):
            problems.append(f"need 0 < min_seconds <= max_seconds, got {self.min_seconds} and {self.max_seconds}")
        if not (0 <= self.nms_iou <= 1):
            problems.append(f"nms_iou must be in [0, 1], got {self.nms_iou}")
        if not (isinstance(self.max_windows, int) and self.max_windows >= 1):
            problems.append(f"max_windows must be an int >= 1, got {self.max_windows}")
        if problems:
            from atrlib.errors import ConfigError

            raise ConfigError("; ".join(problems))

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def n_frames(duration: float, hop: float) -> int:
    """Frames of ``hop`` seconds that cover ``duration`` (the last one may be shorter)."""
    return max(1, int(np.ceil(duration / hop - 1e-9)))


def frame_curve(starts: Sequence[float], window: float, scores: np.ndarray, duration: float, hop: float = 1.0
                ) -> np.ndarray:
    """Window scores -> frame scores.

    ``starts`` (n,) window starts in seconds, ``window`` their length, ``scores`` (n,) or
    (n, queries). Frame ``t`` covers ``[t hop, (t + 1) hop)`` and scores the mean of the windows
    containing its centre (the nearest window when none does). Returns (frames,) or (frames, queries).
    """
    starts = np.asarray(starts, dtype=np.float64)  # (n,)
    scores = np.asarray(scores, dtype=np.float64)
    flat = scores.ndim == 1
    s = scores[:, None] if flat else scores  # (n, q)
    order = np.argsort(starts, kind="stable")
    starts, s = starts[order], s[order]
    t = n_frames(duration, hop)
    centres = np.minimum((np.arange(t) + 0.5) * hop, duration)  # (frames,)
    # windows covering a centre c: start in [c - window, c], a contiguous run of the sorted starts
    # (index arithmetic and running sums: O(frames + windows) memory, whatever the recording's length)
    lo = np.searchsorted(starts, centres - window - 1e-9, side="left")  # (frames,)
    hi = np.searchsorted(starts, centres + 1e-9, side="right")  # (frames,)
    sums = np.concatenate([np.zeros((1, s.shape[1])), np.cumsum(s, axis=0)])  # (n + 1, q)
    count = hi - lo
    out = (sums[hi] - sums[lo]) / np.maximum(count, 1)[:, None]  # (frames, q)
    empty = count == 0
    if empty.any():  # a frame beyond every window (windows that do not reach the end): the nearest window
        mid = starts + window / 2  # (n,) sorted
        j = np.clip(np.searchsorted(mid, centres[empty]), 1, len(mid) - 1) if len(mid) > 1 else np.zeros(int(empty.sum()), int)
        if len(mid) > 1:
            j = np.where(np.abs(centres[empty] - mid[j - 1]) <= np.abs(centres[empty] - mid[j]), j - 1, j)
        out[empty] = s[j]
    return out[:, 0] if flat else out


def smooth(curve: np.ndarray, frames: int) -> np.ndarray:
    """Centred moving average over ``frames`` frames (made odd), the mean of what exists at the edges."""
    curve = np.asarray(curve, dtype=np.float64)
    k = int(frames) // 2
    if k < 1 or len(curve) < 2:
        return curve.copy()
    c = np.concatenate([[0.0], np.cumsum(curve)])  # (T + 1,)
    idx = np.arange(len(curve))
    lo, hi = np.maximum(idx - k, 0), np.minimum(idx + k + 1, len(curve))
    return (c[hi] - c[lo]) / (hi - lo)


def runs(mask: np.ndarray) -> List[Tuple[int, int]]:
    """Maximal runs of True as ``(first frame, last frame + 1)``."""
    m = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
    d = np.diff(m.astype(np.int8))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def _fit_length(a: int, b: int, curve: np.ndarray, lo_frames: int, hi_frames: int) -> Tuple[int, int]:
    """Frame span [a, b) widened to ``lo_frames`` around its centre or cut to the ``hi_frames``
    stretch with the highest mean; stays inside the curve."""
    t = len(curve)
    if b - a < lo_frames:
        grow = lo_frames - (b - a)
        a = max(0, a - grow // 2)
        b = min(t, a + lo_frames)
        a = max(0, b - lo_frames)
    elif b - a > hi_frames:
        c = np.concatenate([[0.0], np.cumsum(curve[a:b])])  # (b - a + 1,)
        sums = c[hi_frames:] - c[:-hi_frames]  # (b - a - hi + 1,) sum of each stretch
        a = a + int(np.argmax(sums))
        b = a + hi_frames
    return a, b


def candidate_spans(curve: np.ndarray, cfg: SpanConfig) -> List[Tuple[int, int]]:
    """Frame spans ``(a, b)`` of the smoothed ``curve`` at every level (duplicates dropped, in level order)."""
    curve = np.asarray(curve, dtype=np.float64)
    med, top = float(np.median(curve)), float(curve.max())
    lo = max(1, int(round(cfg.min_seconds / cfg.hop)))
    hi = max(lo, int(cfg.max_seconds / cfg.hop + 1e-9))
    out: List[Tuple[int, int]] = []
    seen = set()
    for level in cfg.levels:
        thr = med + level * (top - med)
        for a, b in runs(curve >= thr - 1e-12):
            span = _fit_length(a, b, curve, lo, hi)
            if span not in seen:
                seen.add(span)
                out.append(span)
    return out


def span_score(curve: np.ndarray, a: int, b: int, context: int) -> float:
    """Mean of ``curve[a:b]`` minus the mean of the frames around it (``max(b - a, context)``
    each side, as far as the curve goes; 0 subtracted when the span is the whole curve)."""
    width = max(b - a, context)
    around = np.concatenate([curve[max(0, a - width):a], curve[b:b + width]])
    inside = float(np.mean(curve[a:b]))
    return inside - (float(np.mean(around)) if len(around) else float(np.median(curve)))


def iou_1d(a: Tuple[float, float], b: Tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union > 0 else 0.0


def temporal_nms(windows: Sequence[ScoredWindow], iou: float = 0.5, max_windows: int = 10) -> List[ScoredWindow]:
    """Greedy temporal non-maximum suppression: best score first (ties: listed order), drop a
    window whose IoU with a kept one exceeds ``iou``; at most ``max_windows``."""
    order = sorted(range(len(windows)), key=lambda i: -windows[i][2])
    kept: List[ScoredWindow] = []
    for i in order:
        w = windows[i]
        if all(iou_1d(w[:2], k[:2]) <= iou for k in kept):
            kept.append((float(w[0]), float(w[1]), float(w[2])))
            if len(kept) == max_windows:
                break
    return kept


def decode_spans(curve: np.ndarray, duration: float, cfg: SpanConfig = SpanConfig()) -> List[ScoredWindow]:
    """A frame curve (frames,) of one query over a recording of ``duration`` s -> ranked windows
    ``[(start, end, score), ...]`` (see the module text)."""
    curve = np.asarray(curve, dtype=np.float64)
    if curve.ndim != 1 or not len(curve):
        raise ValueError(f"a curve is one score per frame, got shape {curve.shape}")
    if not np.isfinite(curve).all():
        raise ValueError("the score curve holds NaN or infinite values; the model or the audio is broken")
    smoothed = smooth(curve, int(round(cfg.smooth_seconds / cfg.hop)))
    context = max(1, int(round(cfg.context_seconds / cfg.hop)))
    cands = []
    for a, b in candidate_spans(smoothed, cfg):
        start, end = a * cfg.hop, min(b * cfg.hop, duration)
        if end > start:
            cands.append((start, end, span_score(curve, a, b, context)))
    return temporal_nms(cands, cfg.nms_iou, cfg.max_windows)
