"""The moment-retrieval JSONL files: a round trip, and every bad input an error that names the
file, the line and the fix; softer problems are notes said once with their count."""
import json

import pytest

from atrlib.errors import AtrlibError, InputFileError, MomentsFileError
from atrlib.moments.formats import (MomentPrediction, MomentQuery, aligned_windows, read_ground_truth, read_predictions,
                                    write_ground_truth, write_predictions)

GOOD_GT = [
    {"qid": 1, "query": "a dog barks", "vid": "rec1", "duration": 60, "relevant_windows": [[2.5, 9.0]], "fg_dB": -2.1},
    {"qid": "q2", "query": "rain on a roof", "vid": "rec1", "duration": 60, "relevant_windows": [[20, 30], [40, 60]]},
    {"qid": "q3", "query": "a bell rings", "vid": "rec2", "duration": 30.5, "relevant_windows": [[0, 1.5]]},
]


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def _pred(qid, windows, **kw):
    return {"qid": qid, "query": "x", "vid": "rec1", "pred_relevant_windows": windows, **kw}


@pytest.fixture
def gt_file(tmp_path):
    return _write(tmp_path / "gt.jsonl", GOOD_GT)


def test_ground_truth_is_read_as_written(gt_file):
    gt = read_ground_truth(gt_file)
    assert [q.qid for q in gt] == ["1", "q2", "q3"]  # qids compared as text
    assert gt[1].windows == ((20.0, 30.0), (40.0, 60.0)) and gt[2].duration == 30.5 and gt[1].line == 2
    assert gt[0].extra == {"fg_dB": -2.1}


def test_round_trip(tmp_path, gt_file):
    gt = read_ground_truth(gt_file)
    again = read_ground_truth(write_ground_truth(tmp_path / "again.jsonl", gt))
    assert [(q.qid, q.query, q.vid, q.duration, q.windows, q.extra) for q in again] == \
           [(q.qid, q.query, q.vid, q.duration, q.windows, q.extra) for q in gt]
    preds = [MomentPrediction("1", "a dog barks", "rec1", tuple((float(i), i + 1.0, i / 20) for i in range(12)))]
    path = write_predictions(tmp_path / "pred.jsonl", preds)
    back, notes = read_predictions(path, gt)
    # written ranked by score and cut to 10
    assert [w[2] for w in back["1"].windows] == [i / 20 for i in range(11, 1, -1)]
    assert len(notes) == 1 and "2 of 3 queries have no prediction" in notes[0]


def test_predictions_align_with_the_ground_truth(tmp_path, gt_file):
    gt = read_ground_truth(gt_file)
    preds, notes = read_predictions(_write(tmp_path / "p.jsonl", [_pred("q2", [[20, 30, 0.9]]), _pred(1, [])]), gt)
    gts, ps = aligned_windows(gt, preds)
    assert gts[1] == ((20.0, 30.0), (40.0, 60.0)) and ps == [(), ((20.0, 30.0, 0.9),), ()]
    assert notes == [f"{tmp_path / 'p.jsonl'}: 2 of 3 queries have no prediction (1 without a line: 'q3'; 1 with an "
                     "empty window list); they count as no prediction: 0 for every metric"]


GT_ERRORS = [
    ("not JSON", ['{"qid": 1, "query": "x"'], 1, "not JSON"),
    ("a list, not an object", ['[1, 2]'], 1, "not an object"),
    ("missing key", [{"qid": 1, "query": "x", "vid": "r", "relevant_windows": [[0, 1]]}], 1, "missing key 'duration'"),
    ("non-numeric time", [{**GOOD_GT[0], "relevant_windows": [["2.5", 9]]}], 1, "window 1 start '2.5' is not a number"),
    ("boolean time", [{**GOOD_GT[0], "relevant_windows": [[True, 9]]}], 1, "is not a number"),
    ("NaN time", ['{"qid": 1, "query": "x", "vid": "r", "duration": 60, "relevant_windows": [[NaN, 9]]}'], 1,
     "write a finite number"),
    ("start >= end", [GOOD_GT[0], {**GOOD_GT[1], "relevant_windows": [[20, 30], [45, 45]]}], 2,
     "window 2 [45, 45] has start >= end"),
    ("negative start", [{**GOOD_GT[0], "relevant_windows": [[-1, 9]]}], 1, "starts before 0 s"),
    ("beyond the duration", [GOOD_GT[0], GOOD_GT[1], {**GOOD_GT[2], "relevant_windows": [[29, 31]]}], 3,
     "ends after the recording's duration 30.5 s"),
    ("no window", [{**GOOD_GT[0], "relevant_windows": []}], 1, "relevant_windows is empty"),
    ("windows not pairs", [{**GOOD_GT[0], "relevant_windows": [[1, 2, 3]]}], 1, "list of [start, end] lists"),
    ("zero duration", [{**GOOD_GT[0], "duration": 0}], 1, "duration 0 s"),
    ("bad qid", [{**GOOD_GT[0], "qid": None}], 1, "qid None is not a number"),
    ("duplicate qid", [GOOD_GT[0], GOOD_GT[1], {**GOOD_GT[2], "qid": "q2"}], 3, "qid 'q2' again (first on line 2)"),
]


@pytest.mark.parametrize("rows,line,message", [c[1:] for c in GT_ERRORS], ids=[c[0] for c in GT_ERRORS])
def test_every_bad_ground_truth_line_is_an_error_naming_file_and_line(tmp_path, rows, line, message):
    path = _write(tmp_path / "gt.jsonl", rows)
    with pytest.raises(MomentsFileError) as e:
        read_ground_truth(path)
    assert f"{path}, line {line}: " in str(e.value) and message in str(e.value)
    assert isinstance(e.value, InputFileError) and isinstance(e.value, AtrlibError) and isinstance(e.value, ValueError)


def test_a_tolerance_past_the_end_is_allowed_only_when_asked(tmp_path):
    path = _write(tmp_path / "gt.jsonl", [{**GOOD_GT[2], "duration": 30, "relevant_windows": [[29, 31]]}])
    with pytest.raises(MomentsFileError, match="duration_slack"):
        read_ground_truth(path)
    assert read_ground_truth(path, duration_slack=1.0)[0].windows == ((29.0, 31.0),)  # kept, never clipped


def test_a_file_that_is_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "gt.jsonl"
    path.write_bytes(json.dumps(GOOD_GT[0]).encode() + b"\n" + json.dumps(GOOD_GT[1]).encode().replace(b"rain", b"r\xe9in"))
    with pytest.raises(MomentsFileError, match=rf"{path}, line 2: not UTF-8 \(byte 0xe9\); re-save the file as UTF-8"):
        read_ground_truth(path)


def test_missing_empty_and_folder_files(tmp_path):
    with pytest.raises(MomentsFileError, match="file not found"):
        read_ground_truth(tmp_path / "nope.jsonl")
    with pytest.raises(MomentsFileError, match="is a folder"):
        read_ground_truth(tmp_path)
    with pytest.raises(MomentsFileError, match="no lines"):
        read_ground_truth(_write(tmp_path / "empty.jsonl", [" "]))


PRED_ERRORS = [
    ("not JSON", [_pred("q2", [[1, 2, 0.5]]), "{oops"], 2, "not JSON"),
    ("missing key", [{"qid": "q2", "query": "x", "vid": "rec1"}], 1, "missing key 'pred_relevant_windows'"),
    ("non-numeric score", [_pred("q2", [[1, 2, "high"]])], 1, "window 1 score 'high' is not a number"),
    ("start >= end", [_pred("q2", [[1, 2, 0.9], [5, 4, 0.8]])], 1, "window 2 [5, 4] has start >= end"),
    ("no score", [_pred("q2", [[1, 2]])], 1, "list of [start, end, score] lists"),
    ("unknown qid", [_pred("q2", [[1, 2, 0.5]]), _pred("q9", [[1, 2, 0.5]])], 2, "qid 'q9' is not in the ground truth"),
    ("duplicate qid", [_pred("q2", [[1, 2, 0.5]]), _pred("q2", [[1, 2, 0.5]])], 2, "qid 'q2' again (first on line 1)"),
]


@pytest.mark.parametrize("rows,line,message", [c[1:] for c in PRED_ERRORS], ids=[c[0] for c in PRED_ERRORS])
def test_every_bad_prediction_line_is_an_error_naming_file_and_line(tmp_path, gt_file, rows, line, message):
    path = _write(tmp_path / "pred.jsonl", rows)
    with pytest.raises(MomentsFileError) as e:
        read_predictions(path, read_ground_truth(gt_file))
    assert f"{path}, line {line}: " in str(e.value) and message in str(e.value)


def test_predicted_windows_outside_the_recording_are_clipped_with_one_note(tmp_path, gt_file):
    gt = read_ground_truth(gt_file)
    rows = [_pred(1, [[-2, 5, 0.9], [55, 70, 0.5]]), _pred("q2", [[10, 20, 0.9]]), _pred("q3", [[25, 40, 0.7]])]
    path = _write(tmp_path / "pred.jsonl", rows)
    preds, notes = read_predictions(path, gt)
    assert preds["1"].windows == ((0.0, 5.0, 0.9), (55.0, 60.0, 0.5)) and preds["q3"].windows == ((25.0, 30.5, 0.7),)
    assert notes == [f"{path}: 3 predicted window(s) on 2 line(s) reach outside [0, duration] and were clipped to it "
                     "(first: line 1); the Moment-DETR evaluator does not clip, so its numbers can differ for these windows"]


def test_more_than_ten_or_unranked_windows_are_noted_once(tmp_path, gt_file):
    gt = read_ground_truth(gt_file)
    many = [[i, i + 1, 1 - i / 100] for i in range(12)]
    rows = [_pred(1, many), _pred("q2", [[1, 2, 0.1], [3, 4, 0.9]]), _pred("q3", [[1, 2, 0.1], [3, 4, 0.9]])]
    preds, notes = read_predictions(_write(tmp_path / "pred.jsonl", rows), gt)
    assert len(preds["1"].windows) == 12  # all kept; the metrics read the first 10
    assert len(notes) == 2
    assert "1 line(s) list more than 10 windows (first: line 1); only the first 10 listed count" in notes[0]
    assert "2 line(s) do not list windows by descending score (first: line 2)" in notes[1]


def test_dataclasses_compare_by_content():
    assert MomentQuery("a", "q", "v", 1.0, ((0.0, 1.0),), extra={"x": 1}) == MomentQuery("a", "q", "v", 1.0, ((0.0, 1.0),))
