"""Span decoding on hand-made score curves: frames from windows, smoothing, relative thresholds,
min/max length, contrast scores and temporal NMS."""
import numpy as np
import pytest

from atrlib.errors import ConfigError
from atrlib.moments.spans import (SpanConfig, candidate_spans, decode_spans, frame_curve, runs, smooth, span_score,
                                  temporal_nms)


def test_frame_curve_averages_the_windows_covering_each_frame_centre():
    # 2-s windows every second over 5 s, plus the end-aligned window [3, 5]
    starts, scores = [0, 1, 2, 3], np.array([1.0, 3.0, 5.0, 7.0])
    curve = frame_curve(starts, 2.0, scores, duration=5.0, hop=1.0)
    # frame 0 (centre 0.5): window 0; frame 1 (1.5): windows 0, 1; frame 2: 1, 2; frame 3: 2, 3; frame 4: 3
    np.testing.assert_allclose(curve, [1, 2, 4, 6, 7])
    two = frame_curve(starts, 2.0, np.stack([scores, -scores], 1), 5.0)  # (frames, queries)
    np.testing.assert_allclose(two[:, 1], -curve)


def test_frame_curve_gives_a_frame_beyond_every_window_the_nearest_one():
    curve = frame_curve([0.0], 1.0, np.array([4.0]), duration=3.0)
    np.testing.assert_allclose(curve, [4, 4, 4])


def test_smooth_and_runs():
    np.testing.assert_allclose(smooth(np.array([0, 0, 3, 0, 0.0]), 3), [0, 1, 1, 1, 0])
    np.testing.assert_allclose(smooth(np.array([3, 0, 0.0]), 3), [1.5, 1, 0])  # the mean of what exists at the edge
    np.testing.assert_allclose(smooth(np.array([1, 2.0]), 1), [1, 2])           # one frame: unchanged
    assert runs(np.array([0, 1, 1, 0, 1], bool)) == [(1, 3), (4, 5)]
    assert runs(np.ones(3, bool)) == [(0, 3)] and runs(np.zeros(3, bool)) == []


def test_thresholds_are_relative_to_the_recording_so_scale_and_offset_do_not_matter():
    curve = np.array([0, 0, 0, 5, 6, 5, 0, 0, 2, 2, 0, 0.0])
    cfg = SpanConfig(levels=(0.3, 0.7), min_seconds=1, smooth_seconds=1)
    spans = candidate_spans(curve, cfg)
    # median 0, max 6: level 0.3 -> 1.8 (two runs), level 0.7 -> 4.2 (the big one only)
    assert spans == [(3, 6), (8, 10)]
    assert candidate_spans(100 * curve - 7, cfg) == spans


def test_min_and_max_length():
    peak = np.zeros(20)
    peak[10] = 1.0
    assert candidate_spans(peak, SpanConfig(levels=(0.5,), min_seconds=3, smooth_seconds=1)) == [(9, 12)]
    edge = np.zeros(20)
    edge[0] = 1.0
    assert candidate_spans(edge, SpanConfig(levels=(0.5,), min_seconds=3, smooth_seconds=1)) == [(0, 3)]  # stays inside
    long = np.r_[np.zeros(5), np.ones(10), [3, 3, 3], np.ones(10), np.zeros(5)]
    # level 0: threshold at the median (1): the 23-frame run is cut to its best 4-frame stretch (the three 3s + one 1)
    assert candidate_spans(long, SpanConfig(levels=(0.0,), max_seconds=4, smooth_seconds=1)) == [(14, 18)]


def test_span_score_is_inside_minus_surroundings():
    curve = np.array([1, 1, 5, 5, 1, 1.0])
    assert span_score(curve, 2, 4, context=2) == pytest.approx(4.0)
    assert span_score(curve, 0, 6, context=2) == pytest.approx(curve.mean() - np.median(curve))  # nothing around


def test_temporal_nms_keeps_the_best_of_overlapping_windows_and_at_most_k():
    w = [(0, 10, 0.5), (1, 10, 0.9), (20, 30, 0.8), (21, 31, 0.7), (40, 41, 0.1)]
    assert temporal_nms(w, iou=0.5) == [(1, 10, 0.9), (20, 30, 0.8), (40, 41, 0.1)]
    # IoU of [20, 30] and [21, 31] is 9/11 = 0.82: kept only when the threshold is above it
    assert len(temporal_nms(w, iou=0.85)) == 4
    many = [(float(i), i + 0.5, float(i)) for i in range(30)]
    out = temporal_nms(many, iou=0.5, max_windows=10)
    assert len(out) == 10 and [x[2] for x in out] == list(range(29, 19, -1))


def test_decode_spans_finds_two_events_best_first_on_a_noisy_curve():
    rng = np.random.default_rng(0)
    curve = 0.05 * rng.standard_normal(60)
    curve[10:16] += 1.0   # a strong event, 10-16 s
    curve[40:44] += 0.6   # a weaker one, 40-44 s
    out = decode_spans(curve, 60.0, SpanConfig())
    assert len(out) <= 10 and [w[2] for w in out] == sorted([w[2] for w in out], reverse=True)
    (s1, e1, _), (s2, e2, _) = out[0], out[1]
    assert abs(s1 - 10) <= 1 and abs(e1 - 16) <= 1      # the strong one first
    assert abs(s2 - 40) <= 1 and abs(e2 - 44) <= 1
    for i, a in enumerate(out):  # NMS: no two answers overlap by more than IoU 0.5
        for b in out[i + 1:]:
            inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
            assert inter / ((a[1] - a[0]) + (b[1] - b[0]) - inter) <= 0.5


def test_decode_spans_ends_at_the_duration_and_refuses_nan():
    out = decode_spans(np.r_[np.zeros(9), [1.0]], duration=9.4, cfg=SpanConfig(smooth_seconds=1, min_seconds=1))
    assert out[0][:2] == (9.0, 9.4)
    with pytest.raises(ValueError, match="NaN"):
        decode_spans(np.array([0, np.nan]), 2.0)


def test_span_config_refuses_bad_values_in_one_message():
    with pytest.raises(ConfigError, match="levels must be.*max_windows"):
        SpanConfig(levels=(1.5,), max_windows=0)


def _frame_curve_brute(starts, window, scores, duration, hop=1.0):
    """The definition, frame by frame against every window (O(frames x windows))."""
    starts, s = np.asarray(starts, float), np.asarray(scores, float)
    t = int(np.ceil(duration / hop - 1e-9))
    out = np.zeros((t, s.shape[1]))
    for f in range(t):
        c = min((f + 0.5) * hop, duration)
        cover = [i for i, a in enumerate(starts) if a <= c + 1e-9 and c <= a + window + 1e-9]
        if not cover:
            cover = [int(np.argmin(np.abs(c - (starts + window / 2))))]
        out[f] = s[cover].mean(axis=0)
    return out


def test_frame_curve_equals_the_brute_force_definition_in_linear_memory():
    rng = np.random.default_rng(0)
    for trial in range(200):
        n = int(rng.integers(1, 30))
        starts = np.arange(n, dtype=float) if trial % 2 else np.unique(rng.uniform(0, 40, n).round(1))
        window, duration = float(rng.choice([1, 2, 2.5, 3])), float(rng.uniform(1, 50))
        scores = rng.standard_normal((len(starts), 3))
        np.testing.assert_allclose(frame_curve(starts, window, scores, duration),
                                   _frame_curve_brute(starts, window, scores, duration), atol=1e-12)
    # two hours at a 1-s hop: 7,200 frames x 7,198 windows would be a 400-MB weight matrix; here it is two index arrays
    starts = np.arange(7198.0)
    curve = frame_curve(starts, 3.0, np.sin(starts / 100), 7200.0)
    assert curve.shape == (7200,) and np.isfinite(curve).all()
