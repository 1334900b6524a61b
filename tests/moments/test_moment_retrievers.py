"""Moment retrievers end to end on generated recordings: the curve retriever (a transparent
loudness encoder, then a trained dual encoder's windows), the trained moment head (it learns:
train R1@0.5 well above random windows; checkpoint chosen on validation; resumable), and the
predict command (a predictions file the evaluator reads; every bad input one message naming
the line)."""
import json

import numpy as np
import pytest
import soundfile as sf

from atrlib.__main__ import main
from atrlib.data import load_dataset
from atrlib.moments.baselines import baseline_predictions
from atrlib.moments.datasets import load_generated
from atrlib.moments.encoders import WindowEncoder, encode_recording
from atrlib.moments.formats import read_ground_truth, read_predictions
from atrlib.moments.generate import generate_moments
from atrlib.moments.metrics import moment_scores
from atrlib.moments.retrieve import CurveRetriever
from atrlib.moments.spans import SpanConfig

SR = 16000


class Loudness(WindowEncoder):
    """A transparent window encoder: (RMS, 0.01): "loud" = (1, 0) scores the loudest windows highest."""

    name, sample_rate, has_text, default_window = "loudness", SR, True, 2.0

    def __init__(self):
        self.calls = []

    def settings(self):
        return {"encoder": "loudness-test"}

    def encode_windows(self, waves):
        self.calls.append(waves.shape)
        rms = np.sqrt(np.mean(waves.astype(np.float64) ** 2, axis=1))  # (b,)
        return np.stack([rms, np.full_like(rms, 0.01)], 1).astype(np.float32)

    def encode_texts(self, texts):
        return np.array([[1.0, 0.0] if "loud" in t else [0.0, 1.0] for t in texts], np.float32)


def _tone_recording(path, seconds=40.0, event=(12.3, 19.6)):
    rng = np.random.default_rng(0)
    x = 0.003 * rng.standard_normal(int(seconds * SR))
    a, b = int(event[0] * SR), int(event[1] * SR)
    x[a:b] += 0.3 * np.sin(2 * np.pi * 500 * np.arange(b - a) / SR)
    sf.write(path, x.astype(np.float32), SR)
    return path


def test_curve_retriever_finds_the_loud_stretch_streaming_one_batch_at_a_time(tmp_path):
    enc = Loudness()
    r = CurveRetriever(enc, window=2.0, spans=SpanConfig(), batch=4, cache=False)
    path = _tone_recording(tmp_path / "long.wav")
    (best, *rest), = r.retrieve(path, ["something loud"])
    inter = min(best[1], 19.6) - max(best[0], 12.3)
    assert inter / (max(best[1], 19.6) - min(best[0], 12.3)) >= 0.7  # IoU with the true event
    assert len(rest) <= 9 and all(w[2] <= best[2] for w in rest)
    assert max(s[0] for s in enc.calls) <= 4 and {s[1] for s in enc.calls} == {2 * SR}  # batches of <= 4 windows
    rec = encode_recording(path, enc, 2.0, 1.0, cache=False)
    assert rec.duration == pytest.approx(40.0) and len(rec.starts) == 39 and rec.starts[-1] == 38.0


def test_window_vectors_are_cached_by_content_and_settings(tmp_path):
    enc = Loudness()
    path = _tone_recording(tmp_path / "a.wav", seconds=10.0, event=(2, 4))
    a = encode_recording(path, enc, 2.0, 1.0)
    n = len(enc.calls)
    b = encode_recording(path, enc, 2.0, 1.0)
    assert len(enc.calls) == n  # from the cache
    np.testing.assert_array_equal(a.vectors, b.vectors) and np.testing.assert_array_equal(a.starts, b.starts)
    encode_recording(path, enc, 3.0, 1.0)  # another window: computed again
    assert len(enc.calls) > n


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """Train / val / test recordings from the tiny synth splits (3-s clips as events)."""
    root = tmp_path_factory.mktemp("moments")
    for split, n in (("train", 10), ("validation", 4), ("test", 4)):
        generate_moments(load_dataset("synth", split=split, size="tiny"), root / split, n=n, duration=24.0, seed=1,
                         sample_rate=SR, prefix=split[:3])
    return {s: load_generated(root / s) for s in ("train", "validation", "test")}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A saved (untrained) synth-tiny dual encoder: a run folder as `atrlib train` writes one."""
    from atrlib.models.dual import create_model, save_model

    import torch

    torch.manual_seed(0)
    return save_model(create_model("synth-tiny"), tmp_path_factory.mktemp("run") / "best").parent


def test_a_trained_dual_encoder_scores_windows(tiny_run, generated):
    from atrlib.moments.predict import resolve_moment_system

    r = resolve_moment_system(str(tiny_run))
    assert r.window == 3.0 and r.encoder.sample_rate == SR  # synth-tiny learned from 3-s clips
    ds = generated["test"]
    vid = ds.recordings[0]
    texts = [q.query for q in ds.queries if q.vid == vid]
    out = r.retrieve(ds.audio[vid], texts)
    assert len(out) == len(texts) and all(1 <= len(w) <= 10 for w in out)
    assert all(0 <= s < e <= 24.0 for ws in out for s, e, _ in ws)


@pytest.fixture(scope="module")
def head_run(generated, tmp_path_factory):
    from atrlib.moments.head_train import HeadTrainConfig, train_head

    out = tmp_path_factory.mktemp("head")
    cfg = HeadTrainConfig(epochs=40, out_dir=str(out), device="cpu")
    retriever, history, epoch = train_head(generated["train"], generated["validation"], cfg)
    return retriever, history, epoch, out, cfg


def _r1(retriever, ds):
    preds = []
    for vid in ds.recordings:
        qs = [q for q in ds.queries if q.vid == vid]
        preds += list(zip(qs, retriever.retrieve(ds.audio[vid], [q.query for q in qs])))
    by = {q.qid: w for q, w in preds}
    return moment_scores([q.windows for q in ds.queries], [by[q.qid] for q in ds.queries]).summary()


def test_the_head_learns_and_is_chosen_on_validation(head_run, generated):
    retriever, history, epoch, out, cfg = head_run
    train = _r1(retriever, generated["train"])
    rand = moment_scores([q.windows for q in generated["train"].queries],
                         [p.windows for p in baseline_predictions(generated["train"].queries, "random")]).summary()
    print("head on train", train, "random", rand)
    assert train["R1@0.5"] >= rand["R1@0.5"] + 40  # a real margin (measured: 78.9 against 5.3)
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
    scored = [h for h in history if "val_mAP" in h]
    assert [h["epoch"] for h in scored] == list(range(5, 41, 5))
    assert epoch == max(scored, key=lambda h: (h["val_mAP"], -h["epoch"]))["epoch"]  # chosen on validation
    meta = json.loads((out / "best" / "head.json").read_text())
    assert meta["epoch"] == epoch and meta["frames"] == "mel-stats" and "test" not in json.dumps(meta)


def test_the_head_reloads_and_resumes_where_an_uninterrupted_run_ends(head_run, generated, tmp_path):
    from dataclasses import replace

    from atrlib.moments.head_train import HeadRetriever, build_examples, fit_head

    retriever, history, epoch, out, cfg = head_run
    again = HeadRetriever.load(out)
    ds = generated["validation"]
    vid = ds.recordings[0]
    texts = [q.query for q in ds.queries if q.vid == vid]
    for a, b in zip(again.retrieve(ds.audio[vid], texts), retriever.retrieve(ds.audio[vid], texts)):
        np.testing.assert_allclose(np.array(a), np.array(b), atol=1e-6)
    tr = build_examples(generated["train"], retriever.encoder, retriever.embed, 2.0)
    va = build_examples(generated["validation"], retriever.encoder, retriever.embed, 2.0)
    short = replace(cfg, epochs=5, out_dir=str(tmp_path / "r"))
    fit_head(tr, va, short)                      # "killed" after 5 epochs
    _, resumed, _ = fit_head(tr, va, replace(short, epochs=10))   # resumes at 6
    _, fresh, _ = fit_head(tr, va, replace(short, epochs=10, out_dir=""))
    assert len(resumed) == 10
    assert [sorted(h) for h in resumed] == [sorted(h) for h in fresh]
    for a, b in zip(resumed, fresh):
        assert {k: v for k, v in a.items() if k != "seconds"} == pytest.approx({k: v for k, v in b.items() if k != "seconds"})


# ----------------------------------------------------------------------------- the predict command
def _queries(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_predict_command_end_to_end(tiny_run, generated, tmp_path, capsys):
    ds = generated["test"]
    folder = ds.root
    out = tmp_path / "pred.jsonl"
    assert main(["moments", "predict", "--system", str(tiny_run), "--audio", str(folder), "--queries",
                 str(ds.annotations), "--out", str(out)]) == 0
    gt = read_ground_truth(ds.annotations)
    preds, notes = read_predictions(out, gt)  # the evaluator's reader takes it as it is
    assert set(preds) == {q.qid for q in gt} and not notes
    assert all(1 <= len(p.windows) <= 10 for p in preds.values())
    assert main(["moments", "evaluate", "--pred", str(out), "--gt", str(ds.annotations), "--out",
                 str(tmp_path / "m.json")]) == 0
    assert set(json.loads((tmp_path / "m.json").read_text())) == {"R1@0.5", "R1@0.7", "mAP", "mAP@0.5", "mAP@0.75"}
    # an existing output is kept unless --overwrite, which moves the earlier predictions aside
    capsys.readouterr()
    assert main(["moments", "predict", "--system", str(tiny_run), "--audio", str(folder), "--queries",
                 str(ds.annotations), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_predict_command_with_a_trained_head_folder(head_run, generated, tmp_path):
    ds, out = generated["test"], tmp_path / "head.jsonl"
    assert main(["moments", "predict", "--system", str(head_run[3]), "--audio", str(ds.root), "--queries",
                 str(ds.annotations), "--out", str(out)]) == 0
    preds, notes = read_predictions(out, read_ground_truth(ds.annotations))
    assert len(preds) == len(ds.queries) and not notes
    # the same windows as the trained retriever in memory gives
    vid = ds.recordings[0]
    q = next(q for q in ds.queries if q.vid == vid)
    np.testing.assert_allclose(np.array(preds[q.qid].windows), np.array(head_run[0].retrieve(ds.audio[vid], [q.query])[0]),
                               atol=1e-6)


BAD = [
    ("missing vid", lambda q: [q[0], {**q[1], "vid": "nowhere"}], 2, "no audio for vid 'nowhere'"),
    ("too short", lambda q: [q[0], {**q[1], "vid": "short"}], 2, "lasts 1.00 s, shorter than one analysis window (3 s)"),
    ("duration", lambda q: [{**q[0], "duration": 99}, q[1]], 1, "duration 99 s, but"),
    ("not json", lambda q: [q[0], '{"qid": 3,'], 2, "not JSON"),
    ("non-numeric duration", lambda q: [q[0], {**q[1], "duration": "60 s"}], 2, "duration '60 s' is not a number"),
    ("zero duration", lambda q: [q[0], {**q[1], "duration": 0}], 2, "duration 0 s; a recording lasts more than 0 s"),
    ("empty query", lambda q: [q[0], {**q[1], "query": " "}], 2, "is not a sentence"),
    ("duplicate", lambda q: [q[0], {**q[1], "qid": q[0]["qid"]}], 2, "again (first on line 1)"),
]


@pytest.mark.parametrize("name,corrupt,line,message", BAD, ids=[b[0] for b in BAD])
def test_predict_errors_name_the_line(tiny_run, generated, tmp_path, capsys, name, corrupt, line, message):
    import shutil

    ds = generated["test"]
    audio = tmp_path / "audio"
    audio.mkdir()
    for vid in ds.recordings[:2]:
        shutil.copy(ds.audio[vid], audio / f"{vid}.wav")
    sf.write(audio / "short.wav", np.zeros(SR, np.float32), SR)
    rows = [{"qid": q.qid, "query": q.query, "vid": q.vid, "duration": q.duration} for q in ds.queries[:2]]
    qfile = _queries(tmp_path / "q.jsonl", corrupt(rows))
    out = tmp_path / "p.jsonl"
    assert main(["moments", "predict", "--system", str(tiny_run), "--audio", str(audio), "--queries", qfile,
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {qfile}, line {line}: ") and message in err, err
    assert "Traceback" not in err and not out.exists()


# ----------------------------------------------------------------------------- search --moments
def test_search_moments_prints_windows_of_one_recording(tiny_run, generated, capsys):
    import re

    ds = generated["test"]
    wav = ds.audio[ds.recordings[0]]
    assert main(["search", "--system", str(tiny_run), "--audio", str(wav), "--query", "a high beep", "--query",
                 "rain", "--moments", "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{wav.name}: 24.0 s, trained:")
    rows = re.findall(r"^\s+(\d)\s+(\d+):(\d\d\.\d)–(\d+):(\d\d\.\d)\s+[+-]\d\.\d{4}$", out, re.M)
    assert 2 <= len(rows) <= 6 and {r[0] for r in rows} <= {"1", "2", "3"}
    for _, m1, s1, m2, s2 in rows:
        assert 0 <= 60 * int(m1) + float(s1) < 60 * int(m2) + float(s2) <= 24.0


@pytest.mark.parametrize("extra,message", [
    (["--explain"], "--explain lists AudioSet classes per window: it needs the tag-bridge"),
    (["--out", "x.csv"], "--out do not apply"),
    (["--folder"], "give one recording (an audio file), not a folder"),
])
def test_search_moments_refuses_what_does_not_apply(tiny_run, generated, capsys, extra, message):
    ds = generated["test"]
    audio = str(ds.root) if extra == ["--folder"] else str(ds.audio[ds.recordings[0]])
    extra = [] if extra == ["--folder"] else extra
    assert main(["search", "--system", str(tiny_run), "--audio", audio, "--query", "rain", "--moments", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
