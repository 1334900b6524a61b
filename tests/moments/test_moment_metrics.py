"""Moment-retrieval metrics against an independent reference written here from the definitions,
against hand-computed cases, and the chance baselines.

The reference below shares no code with atrlib.moments.metrics: plain Python loops over windows
from the definitions (IoU; R1 = first listed window vs. its best-overlapping ground truth; AP =
first 10 listed windows, stable sort by score, greedy match to the best unmatched ground truth at
IoU >= t, later-listed first on ties, interpolated precision summed at each true positive).
On the random cases below the largest difference found was 2.2e-16 in a per-query AP (a fraction;
R1 equal everywhere) and 1.8e-15 percentage points in a summary (summation order); the test
asserts < 1e-9. (Against the evaluator's own code, run once outside the repository on its
QVHighlights sample predictions, 1,550 queries: every per-query AP equal, 0.0 difference, and
53.94 / 34.84 / 32.20 / 54.96 / 31.01 as its published sample_val_preds_metrics_raw.json.)
"""
import numpy as np
import pytest

from atrlib.moments.baselines import baseline_predictions, random_windows, whole_recording
from atrlib.moments.formats import MomentQuery
from atrlib.moments.metrics import (IOU_THRESHOLDS, METRICS, average_precision, compare, interpolated_ap, iou_cross,
                                    iou_paired, metrics_with_ci, moment_metrics, moment_scores, r1_hits)

THRESHOLDS = [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]


# --------------------------------------------------------------------------------------
# the independent reference
# --------------------------------------------------------------------------------------
def ref_iou(a, b):
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union


def ref_r1(gt, preds, t):
    if not preds:
        return 0.0
    best = max(ref_iou(preds[0], g) for g in gt)
    return 1.0 if best >= t else 0.0


def ref_ap(gt, preds, t):
    preds = list(preds)[:10]
    if not preds:
        return 0.0
    ranked = [p for _, p in sorted(enumerate(preds), key=lambda kv: (-kv[1][2], kv[0]))]
    matched, hits = set(), []
    for p in ranked:
        candidates = [(ref_iou(p, g), j) for j, g in enumerate(gt) if j not in matched and ref_iou(p, g) >= t]
        if candidates:
            matched.add(max(candidates)[1])  # highest IoU, then the later-listed window
            hits.append(True)
        else:
            hits.append(False)
    precision = [sum(hits[:k + 1]) / (k + 1) for k in range(len(hits))]
    return sum(max(precision[k:]) for k in range(len(hits)) if hits[k]) / len(gt)


def ref_metrics(gts, preds):
    q = len(gts)
    r1 = {t: sum(ref_r1(g, p, t) for g, p in zip(gts, preds)) / q for t in (0.5, 0.7)}
    ap = {t: sum(ref_ap(g, p, t) for g, p in zip(gts, preds)) / q for t in THRESHOLDS}
    return {"R1@0.5": 100 * r1[0.5], "R1@0.7": 100 * r1[0.7], "mAP": 100 * sum(ap.values()) / len(ap),
            "mAP@0.5": 100 * ap[0.5], "mAP@0.75": 100 * ap[0.75]}


def _random_case(rng, grid: bool):
    """One query: 1-5 ground-truth windows in a 60-s recording and 0-15 predictions, some built
    to land near IoU 0.5 / 0.7 (exactly on them with grid times), with tied scores."""
    dur = 60.0
    step = 0.25 if grid else None

    def t(x):
        return float(np.round(x / step) * step) if grid else float(x)

    gt = []
    for _ in range(int(rng.integers(1, 6))):
        a = t(rng.uniform(0, dur - 2))
        b = t(min(dur, a + rng.uniform(1, 20)))
        gt.append((a, b if b > a else a + 1.0))
    preds = []
    for _ in range(int(rng.integers(0, 16))):
        score = float(rng.choice([0.2, 0.5, 0.9])) if rng.random() < 0.5 else float(rng.random())
        if rng.random() < 0.5:  # a near hit: a window inside a ground-truth one covering ~0.5 or ~0.7 of it
            g = gt[int(rng.integers(len(gt)))]
            # exactly on the threshold only on the quarter-second grid, where every IoU is computed exactly
            # (off the grid, "exactly 0.5" is a matter of the last bit of each formula); just off it elsewhere
            frac = float(rng.choice([0.5, 0.7])) + (0.0 if grid else float(rng.choice([-1e-7, 1e-7])))
            a, b = g[0], g[0] + frac * (g[1] - g[0])
            if grid:
                b = t(b)
            if b <= a:
                b = a + 0.25
            preds.append((a, b, score))
        else:
            a = t(rng.uniform(0, dur - 1))
            b = t(a + rng.uniform(0.25, 25))
            preds.append((a, b if b > a else a + 0.25, score))
    return gt, preds


@pytest.mark.parametrize("grid", [True, False], ids=["quarter-second-grid", "continuous"])
def test_equal_to_the_reference_loop_on_random_queries(grid):
    rng = np.random.default_rng(7 if grid else 8)
    gts, preds = zip(*[_random_case(rng, grid) for _ in range(400)])
    scores = moment_scores(gts, preds)
    # per query, per threshold
    ap_ref = np.array([[ref_ap(g, p, t) for t in THRESHOLDS] for g, p in zip(gts, preds)])
    r1_ref = np.array([[ref_r1(g, p, t) for t in (0.5, 0.7)] for g, p in zip(gts, preds)])
    assert np.abs(scores.ap - ap_ref).max() < 1e-9
    assert np.abs(scores.r1 - r1_ref).max() < 1e-9
    # the summaries (percent)
    got, want = scores.summary(), ref_metrics(gts, preds)
    assert max(abs(got[k] - want[k]) for k in METRICS) < 1e-9
    # the cases really probe what they should: exact threshold hits, >10 predictions, several GT windows
    assert any(len(p) > 10 for p in preds) and any(len(g) > 2 for g in gts) and any(not p for p in preds)
    if grid:
        on_boundary = [ref_iou(p, w) for g, ps in zip(gts, preds) for p in ps for w in g]
        assert 0.5 in on_boundary and 0.7 in on_boundary
    assert 0 < got["mAP"] < 100 and 0 < got["R1@0.7"] < got["R1@0.5"] < 100


def test_thresholds_are_the_evaluators():
    assert IOU_THRESHOLDS == tuple(THRESHOLDS)


# --------------------------------------------------------------------------------------
# hand-computed cases
# --------------------------------------------------------------------------------------
def test_perfect_prediction_scores_100():
    assert moment_metrics([[(0, 10)]], [[(0, 10, 0.9)]]) == {k: 100.0 for k in METRICS}


def test_iou_06_hits_r1_at_05_not_07_and_the_second_window_counts_half():
    # GT [0,10]; first window [0,6]: IoU 6/10 = 0.6 -> R1@0.5 hit, R1@0.7 miss.
    # AP at t <= 0.6 (0.50, 0.55, 0.60; 0.6 >= 0.6 is a hit): rank 1 TP, recall 1 -> AP 1.
    # AP at t >= 0.65 (7 thresholds): rank 1 FP, rank 2 [0,10] TP: precision 1/2 at recall 1 -> AP 0.5.
    # mAP = (3 x 1 + 7 x 0.5) / 10 = 0.65 -> 65 %; mAP@0.5 = 100; mAP@0.75 = 50.
    m = moment_metrics([[(0, 10)]], [[(0, 6, 0.9), (0, 10, 0.5)]])
    assert m == pytest.approx({"R1@0.5": 100, "R1@0.7": 0, "mAP": 65, "mAP@0.5": 100, "mAP@0.75": 50}, abs=1e-12)


def test_two_ground_truth_windows_with_a_miss_between():
    # GT [0,10], [20,30]; ranked [20,30] TP, [50,60] FP, [0,10] TP at every t.
    # precision 1, 1/2, 2/3; recall 1/2, 1/2, 1; interpolated: 1/2 x 1 + 1/2 x 2/3 = 5/6.
    m = moment_metrics([[(0, 10), (20, 30)]], [[(20, 30, 0.9), (50, 60, 0.8), (0, 10, 0.7)]])
    assert m == pytest.approx({"R1@0.5": 100, "R1@0.7": 100, "mAP": 250 / 3, "mAP@0.5": 250 / 3,
                               "mAP@0.75": 250 / 3}, abs=1e-12)


def test_no_prediction_scores_zero_and_queries_are_averaged():
    # query 1 perfect (100 everywhere), query 2 no prediction (0): every metric 50.
    m = moment_metrics([[(0, 10)], [(5, 8)]], [[(0, 10, 1.0)], []])
    assert m == pytest.approx({k: 50.0 for k in METRICS})


def test_only_the_first_ten_listed_windows_count():
    # ten misses, then a perfect window in 11th place (and the best score): cut before sorting -> 0.
    preds = [(40 + i, 41 + i, 0.5) for i in range(10)] + [(0, 10, 1.0)]
    assert moment_metrics([[(0, 10)]], [preds])["mAP"] == 0.0
    assert average_precision([(0, 10)], preds, max_predictions=None).tolist() == [1.0] * 10


def test_score_ties_keep_the_listed_order_and_r1_takes_the_first_listed():
    # equal scores: [30,40] stays first (FP), [0,10] second (TP): AP = 1/2 at every t; R1 uses [30,40]: 0.
    m = moment_metrics([[(0, 10)]], [[(30, 40, 0.5), (0, 10, 0.5)]])
    assert m == pytest.approx({"R1@0.5": 0, "R1@0.7": 0, "mAP": 50, "mAP@0.5": 50, "mAP@0.75": 50})
    # R1 takes the first *listed* window even when a later one scores higher (as the evaluator)
    assert r1_hits([(0, 10)], [(30, 40, 0.1), (0, 10, 0.9)]).tolist() == [0.0, 0.0]


def test_r1_scores_against_the_ground_truth_window_that_overlaps_most():
    # [11,20] vs [0,4]: 0; vs [10,20]: 9/10 -> hit at 0.5 and 0.7
    assert r1_hits([(0, 4), (10, 20)], [(11, 20, 1.0)]).tolist() == [1.0, 1.0]


def test_a_ground_truth_window_is_matched_once_and_ties_go_to_the_later_listed_one():
    # GT A=[0,10], B=[10,20]; rank 1 [0,20] has IoU 0.5 with both, rank 2 [0,10] IoU 1 with A.
    # t = 0.5: rank 1 takes B (tie -> later-listed), rank 2 takes A: AP 1.
    # t >= 0.55: rank 1 misses, rank 2 takes A: precision 1/2 at recall 1/2 -> AP 1/4.
    # mAP = (1 + 9 x 0.25) / 10 = 0.325; R1: first window IoU 0.5 -> hit at 0.5 only.
    m = moment_metrics([[(0, 10), (10, 20)]], [[(0, 20, 0.9), (0, 10, 0.8)]])
    assert m == pytest.approx({"R1@0.5": 100, "R1@0.7": 0, "mAP": 32.5, "mAP@0.5": 100, "mAP@0.75": 25})
    # the same window predicted twice: the second is a false positive (A is taken): precision 1, 1/2 -> AP 1
    assert average_precision([(0, 10)], [(0, 10, 0.9), (0, 10, 0.8)]).tolist() == [1.0] * 10


def test_iou_and_interpolation_by_hand():
    assert iou_cross([(0, 6)], [(0, 10), (5, 15), (20, 30)]).tolist() == [[0.6, 1 / 15, 0.0]]
    assert iou_paired([(0, 6), (0, 1)], [(0, 10), (2, 3)]).tolist() == [0.6, 0.0]
    # precision 1/2, 2/3 at recall 1/2, 1: envelope 2/3 at both -> 1/2 x 2/3 + 1/2 x 2/3
    assert interpolated_ap([0.5, 2 / 3], [0.5, 1.0]) == pytest.approx(2 / 3)
    assert interpolated_ap([0.0, 0.0], [0.0, 0.0]) == 0.0


def test_per_query_values_give_intervals_and_paired_tests():
    rng = np.random.default_rng(0)
    gts, preds = zip(*[_random_case(rng, grid=False) for _ in range(60)])
    a = moment_scores(gts, preds)
    per_query = a.per_query()
    assert set(per_query) == set(METRICS) and all(len(v) == 60 for v in per_query.values())
    for k, v in a.summary().items():
        assert per_query[k].mean() == pytest.approx(v, abs=1e-9)
    ci = metrics_with_ci(a)
    for k in METRICS:
        assert ci[k]["low"] <= ci[k]["value"] <= ci[k]["high"] and ci[k]["high"] > ci[k]["low"]
        assert ci[k]["value"] == pytest.approx(a.summary()[k], abs=1e-9)
    same = compare(a, a, n=200)
    assert all(same[k]["diff"] == 0 and same[k]["p_value"] == 1.0 for k in METRICS)
    whole = moment_scores(gts, [whole_recording(60.0) for _ in gts])
    diff = compare(a, whole, n=200)
    assert diff["mAP"]["diff"] == pytest.approx(a.summary()["mAP"] - whole.summary()["mAP"])


# --------------------------------------------------------------------------------------
# chance baselines
# --------------------------------------------------------------------------------------
def test_the_whole_recording_baseline():
    # [0,60] vs [0,60]: IoU 1; vs [0,20]: 1/3 -> R1 100 and 0; vs [0,40]: 2/3 -> R1@0.5 only
    assert whole_recording(60.0) == [(0.0, 60.0, 1.0)]
    m = moment_metrics([[(0, 60)], [(0, 20)], [(0, 40)]], [whole_recording(60.0)] * 3)
    assert m["R1@0.5"] == pytest.approx(200 / 3) and m["R1@0.7"] == pytest.approx(100 / 3)


def test_random_windows_are_ranked_inside_the_recording_and_seeded():
    w = random_windows(30.0, np.random.default_rng(3))
    assert len(w) == 10 and all(0 <= s < e <= 30 for s, e, _ in w)
    assert [x[2] for x in w] == sorted((x[2] for x in w), reverse=True)
    assert w == random_windows(30.0, np.random.default_rng(3))
    queries = [MomentQuery(f"q{i}", "a dog", "rec", 30.0, ((1.0, 5.0),)) for i in range(4)]
    a, b = baseline_predictions(queries, "random", seed=1), baseline_predictions(queries, "random", seed=1)
    assert a == b and a != baseline_predictions(queries, "random", seed=2) and [p.qid for p in a] == ["q0", "q1", "q2", "q3"]
    assert baseline_predictions(queries, "whole")[0].windows == ((0.0, 30.0, 1.0),)
    with pytest.raises(ValueError, match="unknown baseline"):
        baseline_predictions(queries, "oracle")
