"""The long-recording generator on the synth dataset (cheap) and on the shared real sounds:
layout, annotations, measured SNR, non-overlapping events, determinism, block independence."""
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from atrlib.data import AudioCaptionDataset, ClipItem, load_dataset
from atrlib.errors import ConfigError, DatasetError
from atrlib.moments.formats import read_ground_truth
from atrlib.moments.generate import ANNOTATIONS, generate_moments
from atrlib.paths import shared_dir

SR = 16000


@pytest.fixture(scope="module")
def clips():
    return load_dataset("synth", split="train", size="tiny")  # 24 clips of 3 s


def _files(folder: Path):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _measured_snr_db(x: np.ndarray, windows, sr: int) -> list:
    """SNR of each event measured from the mix: (RMS^2 inside the window - bed RMS^2) / bed RMS^2,
    the bed measured on the samples outside every window (event and bed are independent)."""
    outside = np.ones(len(x), dtype=bool)
    for s, e in windows:
        outside[int(round(s * sr)):int(round(e * sr))] = False
    bed = np.mean(x[outside].astype(np.float64) ** 2)
    out = []
    for s, e in windows:
        inside = np.mean(x[int(round(s * sr)):int(round(e * sr))].astype(np.float64) ** 2)
        out.append(10 * np.log10((inside - bed) / bed))
    return out


def test_recordings_annotations_and_snr(tmp_path, clips):
    queries = generate_moments(clips, tmp_path / "a", n=4, duration=12.0, snr_db=10.0, seed=0, sample_rate=SR)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == [ANNOTATIONS] + [f"rec{r:05d}.wav" for r in range(4)]
    gt = read_ground_truth(tmp_path / "a" / ANNOTATIONS)  # the ground-truth format, readable by the evaluator
    assert [(q.qid, q.windows) for q in gt] == [(q.qid, q.windows) for q in queries]
    captions = {it["clip_id"]: it["captions"] for it in clips}
    by_vid = {}
    for q in gt:
        by_vid.setdefault(q.vid, []).append(q)
        assert q.query in captions[q.extra["source"]] and q.extra["snr_db"] == 10.0 and q.duration == 12.0
        assert q.qid == f"{q.vid}_{len(by_vid[q.vid])}"
    assert {len(v) for v in by_vid.values()} <= {1, 2, 3}
    for vid, qs in by_vid.items():
        windows = [q.windows[0] for q in qs]
        assert all(0 <= s < e <= 12.0 for s, e in windows)
        assert all(a[1] <= b[0] for a, b in zip(windows, windows[1:]))  # in time order, not overlapping
        assert len({q.extra["source"] for q in qs}) == len(qs)  # distinct clips
        x, sr = sf.read(tmp_path / "a" / f"{vid}.wav", dtype="float32")
        assert sr == SR and x.shape == (12 * SR,) and sf.info(str(tmp_path / "a" / f"{vid}.wav")).subtype == "PCM_16"
        for snr in _measured_snr_db(x, windows, SR):
            assert snr == pytest.approx(10.0, abs=0.25)


def test_the_same_arguments_give_the_same_bytes_whatever_the_block(tmp_path, clips):
    kw = dict(n=2, duration=8.0, snr_db=5.0, sample_rate=SR)
    generate_moments(clips, tmp_path / "a", seed=3, **kw)
    generate_moments(clips, tmp_path / "b", seed=3, block_seconds=0.37, **kw)  # many blocks, events across them
    generate_moments(clips, tmp_path / "c", seed=4, **kw)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert _files(tmp_path / "a")[ANNOTATIONS] != _files(tmp_path / "c")[ANNOTATIONS]


def test_a_background_file_is_looped_at_the_bed_level(tmp_path, clips):
    t = np.arange(int(0.5 * SR)) / SR
    sf.write(tmp_path / "hum.wav", 0.5 * np.sin(2 * np.pi * 100 * t), SR)  # 0.5 s, looped over 10 s
    gt = generate_moments(clips, tmp_path / "out", n=1, duration=10.0, snr_db=0.0, sample_rate=SR,
                          background=tmp_path / "hum.wav", bed_db=-30.0, max_events=1)
    x, _ = sf.read(tmp_path / "out" / "rec00000.wav")
    s, e = gt[0].windows[0]
    before = x[:int(s * SR)] if s > 1 else x[int(e * SR):]
    assert 20 * np.log10(np.sqrt(np.mean(before ** 2))) == pytest.approx(-30.0, abs=0.1)
    # a 100-Hz tone bed and a tonal synth event are not independent over 3 s: their cross term moves this a little
    assert _measured_snr_db(x, [(s, e)], SR)[0] == pytest.approx(0.0, abs=0.5)


def test_bad_settings_and_taken_folders_are_refused(tmp_path, clips):
    with pytest.raises(ConfigError, match="n \\(recordings\\) must be an int >= 1"):
        generate_moments(clips, tmp_path / "x", n=0)
    with pytest.raises(ConfigError, match="min_events <= max_events"):
        generate_moments(clips, tmp_path / "x", n=1, min_events=3, max_events=2)
    generate_moments(clips, tmp_path / "x", n=1, duration=4.0, sample_rate=SR)
    with pytest.raises(FileExistsError, match="already holds generated recordings"):
        generate_moments(clips, tmp_path / "x", n=1, duration=4.0, sample_rate=SR)
    one = AudioCaptionDataset("one", "train", None, [ClipItem(**{**clips[0]})])
    with pytest.raises(DatasetError, match="only 1 clip\\(s\\) with sound and a caption, 3 needed"):
        generate_moments(one, tmp_path / "y", n=1, duration=4.0, sample_rate=SR, min_events=3, max_events=3)


def test_on_real_sounds_when_the_shared_folder_has_them(tmp_path):
    root = (shared_dir() or Path("/nonexistent")) / "data" / "gcompris_sounds"
    if not (root / "captions.csv").is_file():
        pytest.skip(f"{root} is absent (../shared or $ATRLIB_SHARED holds the GCompris sounds): no real clips here")
    clips = load_dataset("folder", root=root)
    gt = generate_moments(clips, tmp_path / "real", n=3, duration=30.0, snr_db=6.0, seed=1, sample_rate=SR)
    captions = {it["clip_id"]: it["captions"] for it in clips}
    assert len(gt) >= 3 and all(q.query in captions[q.extra["source"]] for q in gt)
    for vid in {q.vid for q in gt}:
        windows = [q.windows[0] for q in gt if q.vid == vid]
        x, sr = sf.read(tmp_path / "real" / f"{vid}.wav", dtype="float32")
        assert sr == SR and len(x) == 30 * SR and np.abs(x).max() <= 0.99 + 1e-4
        assert all(a[1] <= b[0] for a, b in zip(windows, windows[1:]))
        for snr in _measured_snr_db(x, windows, SR):  # the event's RMS is over its whole window: quiet parts included
            assert snr == pytest.approx(6.0, abs=0.3)
