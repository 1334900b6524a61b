"""Moment-retrieval metrics: R1@IoU and mAP over IoU thresholds, per query and overall (pure).

Every definition is that of the evaluator Moment-DETR released for QVHighlights
(``jayleicn/moment_detr``, ``standalone_eval/eval.py`` with ``utils.py``, which adapts
MMAction2's ``eval_detection.py``) and Lighthouse copies for Clotho-Moment and CASTELLA
(``line/lighthouse``, ``training/standalone_eval/``); the function names below say which of
their functions each one re-computes. Inputs are plain lists in seconds:
``gt_windows[q] = [(start, end), ...]`` and ``pred_windows[q] = [(start, end, score), ...]``
as listed in the prediction file (ranked by descending score).

* **IoU** of two windows = length of their intersection / length of their union.
* **R1@t** (``compute_mr_r1``): take the *first listed* predicted window; find the ground-truth
  window it has the highest IoU with (the first one on ties); the query scores 1 when that IoU
  is >= t. R1@t is the share of such queries; reported at t = 0.5 and 0.7.
* **AP of one query at IoU t** (``compute_average_precision_detection``): keep the first 10
  listed windows, sort them by descending score (a stable sort: equal scores keep their listed
  order); walk down that list; a window is a true positive when some ground-truth window not yet
  matched *at this t* has IoU >= t with it — it takes the one with the highest IoU (on exact
  ties the later-listed one, the order ``np.argsort(iou)[::-1]`` gives with a stable sort) —
  otherwise a false positive. Precision and recall (TP / number of ground-truth windows) after
  each window give the curve; AP is the VOC-style interpolated area (``interpolated_precision_recall``):
  precision made non-increasing from the right, summed over the points where recall rises.
* **mAP** (``compute_mr_ap``): AP per query at each t in 0.50, 0.55, ..., 0.95; averaged over
  queries at each t (per query, then the mean: not pooled over queries), then over the ten t.
  ``mAP@0.5`` and ``mAP@0.75`` are the query means at one t.
* All results are percentages (x 100), as the evaluator reports them.

Where atrlib differs on purpose, and says so: the evaluator refuses a prediction file whose
qids differ from the ground truth's and silently drops a query with an empty window list from
mAP; here a query without a prediction scores 0 on every metric (the file reader notes how
many). The evaluator rounds to 2 decimals; these functions do not (round when printing).
Lighthouse also drops ground-truth windows longer than 1,500 s (its single length range
(0, 1500]); that never applies to recordings of up to 25 minutes. Exact IoU ties between
ground-truth windows: the evaluator orders them with ``argsort()[::-1]``, which takes the
later-listed window first when numpy sorts small arrays stably (insertion sort, as when it was
written); numpy's SIMD sorts on AVX-512 CPUs do not keep that order for four or more windows.
atrlib always takes the later-listed one. Checked against the evaluator's own code: on its
QVHighlights sample (1,550 queries) every per-query AP is equal; on 3,000 random queries with
times on a 0.5-s grid, one differed, by such a tie among four windows (AVX-512 numpy 2.4).

Per-query values (:class:`MomentScores`) make jackknife intervals and paired tests work as for
the clip metrics: :func:`metrics_with_ci`, :func:`compare`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from atrlib.retrieval.metrics import jackknife_ci, paired_test

# the evaluator's thresholds: np.linspace(0.5, 0.95, 10) written with two decimals and read back
IOU_THRESHOLDS: Tuple[float, ...] = tuple(float(f"{t:.2f}") for t in np.linspace(0.5, 0.95, 10))
R1_THRESHOLDS: Tuple[float, ...] = (0.5, 0.7)
MAX_PREDICTIONS = 10  # the evaluator's max_pred_windows: the first 10 listed windows count
METRICS = ("R1@0.5", "R1@0.7", "mAP", "mAP@0.5", "mAP@0.75")


def iou_cross(a, b) -> np.ndarray:
    """IoU of every window of ``a`` (N, 2) with every window of ``b`` (M, 2) -> (N, M), as the
    evaluator's ``compute_temporal_iou_batch_cross``: inter / (len_a + len_b - inter)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 2)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 2)
    len_a = a[:, 1] - a[:, 0]  # (N,)
    len_b = b[:, 1] - b[:, 0]  # (M,)
    left = np.maximum(a[:, None, 0], b[None, :, 0])  # (N, M)
    right = np.minimum(a[:, None, 1], b[None, :, 1])  # (N, M)
    inter = np.clip(right - left, 0, None)  # (N, M)
    union = len_a[:, None] + len_b[None, :] - inter  # (N, M)
    return inter / union


def iou_paired(a, b) -> np.ndarray:
    """IoU of ``a[i]`` with ``b[i]`` (both (N, 2)) -> (N,), as the evaluator's
    ``compute_temporal_iou_batch_paired``: inter / (max end - min start), 0 where that is 0.
    (For overlapping windows the span is the union; otherwise inter is 0 anyway.)"""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 2)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 2)
    inter = np.maximum(0, np.minimum(a[:, 1], b[:, 1]) - np.maximum(a[:, 0], b[:, 0]))  # (N,)
    span = np.maximum(a[:, 1], b[:, 1]) - np.minimum(a[:, 0], b[:, 0])  # (N,)
    return np.divide(inter, span, out=np.zeros_like(inter), where=span != 0)


def interpolated_ap(precision, recall) -> float:
    """VOC-style interpolated average precision of one precision-recall curve (the evaluator's
    ``interpolated_precision_recall``, VOCdevkit 2011): pad precision with 0 at both ends and
    recall with 0 and 1, make precision non-increasing from the right, and sum
    (recall step) x precision over the points where recall changes."""
    p = np.concatenate([[0.0], np.asarray(precision, dtype=np.float64), [0.0]])
    r = np.concatenate([[0.0], np.asarray(recall, dtype=np.float64), [1.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]  # the envelope: max precision at this recall or beyond
    idx = np.nonzero(r[1:] != r[:-1])[0] + 1
    return float(np.sum((r[idx] - r[idx - 1]) * p[idx]))


def average_precision(gt_windows: Sequence, pred_windows: Sequence, thresholds: Sequence[float] = IOU_THRESHOLDS,
                      max_predictions: Optional[int] = MAX_PREDICTIONS) -> np.ndarray:
    """AP (fractions in [0, 1]) of one query at each IoU threshold -> (len(thresholds),).

    The evaluator's ``compute_average_precision_detection`` for one query: the first
    ``max_predictions`` listed windows, sorted by descending score (stable), each matched
    greedily to the unmatched ground-truth window of highest IoU >= t (each ground-truth window
    at most once per t), then :func:`interpolated_ap`. No predicted window: AP 0.
    """
    preds = list(pred_windows)[:max_predictions]
    ap = np.zeros(len(thresholds))
    if not preds or not len(gt_windows):
        return ap
    order = sorted(range(len(preds)), key=lambda i: -float(preds[i][2]))  # stable: ties keep the listed order
    spans = np.asarray([preds[i][:2] for i in order], dtype=np.float64)  # (N, 2)
    iou = iou_cross(spans, gt_windows)  # (N, M)
    n, m = iou.shape
    tp = np.zeros((len(thresholds), n))  # (T, N): 1 = true positive
    taken = np.zeros((len(thresholds), m), dtype=bool)  # (T, M): ground truth matched at this t
    for i in range(n):
        best_first = np.argsort(iou[i], kind="stable")[::-1]  # (M,) highest IoU first, ties: later-listed first
        for t, thr in enumerate(thresholds):
            for j in best_first:
                if iou[i, j] < thr:
                    break  # every remaining window overlaps less: a false positive
                if not taken[t, j]:
                    taken[t, j] = True
                    tp[t, i] = 1
                    break
    tp_cum = np.cumsum(tp, axis=1)  # (T, N)
    precision = tp_cum / np.arange(1, n + 1)  # each window is a TP or an FP: TP + FP = rank
    recall = tp_cum / float(m)
    for t in range(len(thresholds)):
        ap[t] = interpolated_ap(precision[t], recall[t])
    return ap


def r1_hits(gt_windows: Sequence, pred_windows: Sequence, thresholds: Sequence[float] = R1_THRESHOLDS) -> np.ndarray:
    """1.0 / 0.0 per threshold: does the first listed predicted window reach IoU >= t with the
    ground-truth window it overlaps most (the first such window on ties)? The evaluator's
    ``compute_mr_r1`` for one query (cross IoU to choose the window, paired IoU to score it).
    No predicted window: all 0."""
    if not len(pred_windows) or not len(gt_windows):
        return np.zeros(len(thresholds))
    first = np.asarray(pred_windows[0][:2], dtype=np.float64)[None, :]  # (1, 2)
    gt = np.asarray(gt_windows, dtype=np.float64).reshape(-1, 2)  # (M, 2)
    j = int(np.argmax(iou_cross(first, gt)[0]))
    iou = iou_paired(first, gt[j:j + 1])[0]
    return np.asarray([float(iou >= t) for t in thresholds])


@dataclass(frozen=True)
class MomentScores:
    """Per-query results of one system on one set of queries (fractions in [0, 1]).

    ``r1``: (queries, len(R1_THRESHOLDS)) hits; ``ap``: (queries, len(IOU_THRESHOLDS)) AP.
    """

    r1: np.ndarray
    ap: np.ndarray

    def __len__(self) -> int:
        return len(self.ap)

    def per_query(self) -> Dict[str, np.ndarray]:
        """metric -> (queries,) percentages whose mean is the metric (mAP: mean AP over t)."""
        return {"R1@0.5": 100.0 * self.r1[:, R1_THRESHOLDS.index(0.5)],
                "R1@0.7": 100.0 * self.r1[:, R1_THRESHOLDS.index(0.7)],
                "mAP": 100.0 * self.ap.mean(axis=1),
                "mAP@0.5": 100.0 * self.ap[:, IOU_THRESHOLDS.index(0.5)],
                "mAP@0.75": 100.0 * self.ap[:, IOU_THRESHOLDS.index(0.75)]}

    def summary(self) -> Dict[str, float]:
        """The five numbers in percent, computed in the evaluator's order (query means per t first)."""
        if not len(self):
            raise ValueError("no queries to score")
        ap_t = self.ap.mean(axis=0)  # (T,) mAP at each IoU threshold
        r1_t = self.r1.mean(axis=0)  # (len(R1_THRESHOLDS),)
        return {"R1@0.5": float(100 * r1_t[R1_THRESHOLDS.index(0.5)]),
                "R1@0.7": float(100 * r1_t[R1_THRESHOLDS.index(0.7)]),
                "mAP": float(100 * np.mean(ap_t)),
                "mAP@0.5": float(100 * ap_t[IOU_THRESHOLDS.index(0.5)]),
                "mAP@0.75": float(100 * ap_t[IOU_THRESHOLDS.index(0.75)])}


def moment_scores(gt_windows: Sequence[Sequence], pred_windows: Sequence[Sequence],
                  max_predictions: Optional[int] = MAX_PREDICTIONS) -> MomentScores:
    """Per-query R1 and AP of aligned lists (``gt_windows[q]``, ``pred_windows[q]``; an empty
    prediction scores 0). See :func:`atrlib.moments.formats.aligned_windows` for files."""
    if len(gt_windows) != len(pred_windows):
        raise ValueError(f"{len(gt_windows)} ground-truth queries but {len(pred_windows)} predictions; align them "
                         "by qid first (formats.aligned_windows)")
    r1 = np.zeros((len(gt_windows), len(R1_THRESHOLDS)))
    ap = np.zeros((len(gt_windows), len(IOU_THRESHOLDS)))
    for q, (gt, pred) in enumerate(zip(gt_windows, pred_windows)):
        r1[q] = r1_hits(gt, pred)
        ap[q] = average_precision(gt, pred, IOU_THRESHOLDS, max_predictions)
    return MomentScores(r1, ap)


def moment_metrics(gt_windows: Sequence[Sequence], pred_windows: Sequence[Sequence]) -> Dict[str, float]:
    """``{"R1@0.5", "R1@0.7", "mAP", "mAP@0.5", "mAP@0.75"}`` in percent (see the module text)."""
    return moment_scores(gt_windows, pred_windows).summary()


def metrics_with_ci(scores: MomentScores, alpha: float = 0.05) -> Dict[str, Dict[str, float]]:
    """metric -> ``{"value", "low", "high"}``: the delete-one jackknife interval over queries
    (:func:`atrlib.retrieval.metrics.jackknife_ci`, as for the clip metrics); needs >= 2 queries."""
    return {k: jackknife_ci(v, alpha) for k, v in scores.per_query().items()}


def compare(a: MomentScores, b: MomentScores, method: str = "bootstrap", n: int = 10000,
            seed: int = 0) -> Dict[str, Dict[str, float]]:
    """metric -> paired test of system ``a`` against ``b`` on the same queries
    (:func:`atrlib.retrieval.metrics.paired_test`: ``{"diff", "p_value", "low", "high"}``, percent points)."""
    pa, pb = a.per_query(), b.per_query()
    return {k: paired_test(pa[k], pb[k], method=method, n=n, seed=seed) for k in METRICS}
