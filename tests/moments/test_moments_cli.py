"""``python -m atrlib moments evaluate | generate``: metrics.json with exactly the five keys, a
table with CIs, and every bad file one message with exit 2 and no traceback."""
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from atrlib.__main__ import main
from atrlib.moments.metrics import METRICS, moment_metrics

GT = [{"qid": f"q{i}", "query": f"sound {i}", "vid": f"rec{i % 3}", "duration": 60,
       "relevant_windows": [[5.0 * i, 5.0 * i + 8]]} for i in range(8)]
PRED = [{"qid": f"q{i}", "query": f"sound {i}", "vid": f"rec{i % 3}",
         "pred_relevant_windows": [[5.0 * i + (i % 4), 5.0 * i + 8, 0.9], [40, 50, 0.3]]} for i in range(8)]


def _jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return str(path)


@pytest.fixture
def files(tmp_path):
    return _jsonl(tmp_path / "gt.jsonl", GT), _jsonl(tmp_path / "pred.jsonl", PRED), tmp_path / "metrics.json"


def test_evaluate_writes_the_five_metrics_and_prints_a_table(files, capsys):
    gt, pred, out = files
    assert main(["moments", "evaluate", "--pred", pred, "--gt", gt, "--out", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert list(metrics) == list(METRICS)
    want = moment_metrics([[tuple(w) for w in g["relevant_windows"]] for g in GT],
                          [[tuple(w) for w in p["pred_relevant_windows"]] for p in PRED])
    assert metrics == pytest.approx(want, abs=1e-12)
    # by hand: shifts 0,1,2,3 s of an 8-s window -> IoU 1, 7/8, 6/8, 5/8: R1@0.5 100 %, R1@0.7 75 %
    assert metrics["R1@0.5"] == 100.0 and metrics["R1@0.7"] == 75.0
    table = capsys.readouterr().out
    assert "95 % CI (jackknife)" in table and "whole recording" in table and "random windows" in table
    row = next(line for line in table.splitlines() if line.startswith("R1@0.7"))
    assert row.split()[1] == "75.00" and "–" in row


BAD = [
    ("pred", 2, "not JSON", lambda p: [p[0], '{"qid": "q1", "query"', *p[2:]]),
    ("pred", 3, "window 1 start '7' is not a number", lambda p: [*p[:2], {**p[2], "pred_relevant_windows": [["7", 9, 1]]}, *p[3:]]),
    ("pred", 1, "qid 'q99' is not in the ground truth", lambda p: [{**p[0], "qid": "q99"}, *p[1:]]),
    ("gt", 4, "missing key 'duration'", lambda g: [*g[:3], {k: v for k, v in g[3].items() if k != "duration"}, *g[4:]]),
    ("gt", 2, "ends after the recording's duration", lambda g: [g[0], {**g[1], "relevant_windows": [[50, 61]]}, *g[2:]]),
]


@pytest.mark.parametrize("which,line,message,corrupt", BAD, ids=[b[2] for b in BAD])
def test_a_bad_file_is_one_message_and_exit_2(files, capsys, which, line, message, corrupt):
    gt, pred, out = files
    path = pred if which == "pred" else gt
    _jsonl(out.parent / f"{which}.jsonl", corrupt(PRED if which == "pred" else GT))
    assert main(["moments", "evaluate", "--pred", pred, "--gt", gt, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}, line {line}: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err and not out.exists()


def test_the_real_command_exits_2_without_a_traceback(files):
    gt, pred, out = files
    _jsonl(out.parent / "pred.jsonl", [PRED[0], "not json"])
    r = subprocess.run([sys.executable, "-m", "atrlib", "moments", "evaluate", "--pred", pred, "--gt", gt, "--out",
                        str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.startswith(f"error: {pred}, line 2: not JSON") and "Traceback" not in r.stderr


def test_missing_predictions_are_a_note_and_score_zero(files, capsys):
    gt, pred, out = files
    _jsonl(out.parent / "pred.jsonl", PRED[:4])
    assert main(["moments", "evaluate", "--pred", pred, "--gt", gt, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert err.startswith(f"note: {pred}: 4 of 8 queries have no prediction (4 without a line: 'q4', 'q5', 'q6', ...)")
    assert json.loads(out.read_text())["R1@0.5"] == 50.0


def test_predictions_beyond_the_duration_are_clipped_and_said_so(files, capsys):
    gt, pred, out = files
    # q0's first window starts 10 s before the recording, its second ends 10 s after it: both are clipped
    _jsonl(out.parent / "pred.jsonl", [{**PRED[0], "pred_relevant_windows": [[-10, 8, 0.9], [55, 70, 0.2]]}, *PRED[1:]])
    assert main(["moments", "evaluate", "--pred", pred, "--gt", gt, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"note: {pred}: 2 predicted window(s) on 1 line(s) reach outside [0, duration] and were clipped" in err
    assert "(first: line 1)" in err
    want = moment_metrics([[tuple(w) for w in g["relevant_windows"]] for g in GT],
                          [[(0.0, 8.0, 0.9), (55.0, 60.0, 0.2)]] + [[tuple(w) for w in p["pred_relevant_windows"]]
                                                                   for p in PRED[1:]])
    assert json.loads(out.read_text()) == pytest.approx(want)


def test_out_is_replaced_only_with_overwrite_and_only_an_earlier_result(files, capsys):
    gt, pred, out = files
    args = ["moments", "evaluate", "--pred", pred, "--gt", gt, "--out", str(out)]
    assert main(args) == 0
    assert main(args) == 2 and "pass --overwrite" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0 and len(list(out.parent.glob("metrics.json.prev-*"))) == 1
    mine = out.parent / "notes.json"
    mine.write_text('{"my": "notes"}')
    assert main(["moments", "evaluate", "--pred", pred, "--gt", gt, "--out", str(mine), "--overwrite"]) == 2
    assert "not a metrics file of `atrlib moments evaluate`" in capsys.readouterr().err and mine.exists()
    assert main(["moments", "evaluate", "--pred", pred, "--gt", gt, "--out", gt, "--overwrite"]) == 2
    assert "an input of this command" in capsys.readouterr().err


def test_generate_from_synth_and_from_a_folder_then_evaluate_a_baseline(tmp_path, capsys):
    out = tmp_path / "gen"
    args = ["moments", "generate", "--source", "synth", "--size", "tiny", "--out", str(out), "--n", "2",
            "--duration", "6", "--sample-rate", "8000", "--snr", "10", "--seed", "0"]
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["annotations.jsonl", "rec00000.wav", "rec00001.wav"]
    assert main(args) == 2 and "pass --overwrite" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0 and len(list(tmp_path.glob("gen.prev-*"))) == 1
    # a folder of the user's own sounds with a captions.csv
    sounds = tmp_path / "sounds"
    sounds.mkdir()
    rows = ["file_name,caption_1"]
    for k, hz in enumerate((220, 440, 880, 1760)):
        t = np.arange(8000) / 8000
        sf.write(sounds / f"tone{k}.wav", 0.3 * np.sin(2 * np.pi * hz * t), 8000)
        rows.append(f"tone{k}.wav,a tone at {hz} hertz")
    (sounds / "captions.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert main(["moments", "generate", "--source", str(sounds), "--out", str(tmp_path / "g2"), "--n", "1",
                 "--duration", "5", "--sample-rate", "8000"]) == 0
    gt = [json.loads(line) for line in (tmp_path / "g2" / "annotations.jsonl").read_text().splitlines()]
    assert gt and all(q["query"].startswith("a tone at ") for q in gt)
    # the whole-recording baseline as a prediction file scores through the same command
    pred = _jsonl(tmp_path / "whole.jsonl", [{"qid": q["qid"], "query": q["query"], "vid": q["vid"],
                                                "pred_relevant_windows": [[0, q["duration"], 1.0]]} for q in gt])
    capsys.readouterr()
    assert main(["moments", "evaluate", "--pred", pred, "--gt", str(tmp_path / "g2" / "annotations.jsonl"),
                 "--out", str(tmp_path / "m.json")]) == 0
    assert capsys.readouterr().out.startswith(f"{len(gt)} queries, {len(gt)} with a prediction line")


def test_generate_from_an_unknown_source_is_one_message(tmp_path, capsys):
    assert main(["moments", "generate", "--source", "nosuchset", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown dataset 'nosuchset'") and "Traceback" not in err
    assert main(["moments", "generate", "--source", str(tmp_path / "no" / "folder"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --source: dataset path") and "does not exist" in err and "Traceback" not in err
