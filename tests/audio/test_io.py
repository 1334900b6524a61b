import numpy as np
import pytest
import soundfile as sf

from atrlib.audio.io import audio_info, load_audio, pad_or_crop, resample, segment
from atrlib.errors import AudioError


def _tone(path, sr=22050, seconds=1.0, freq=440.0, channels=1):
    t = np.arange(int(sr * seconds)) / sr
    x = 0.5 * np.sin(2 * np.pi * freq * t)
    if channels == 2:
        x = np.stack([x, -0.5 * x], axis=1)
    sf.write(path, x, sr)
    return x


def test_load_mono_and_resample(tmp_path):
    p = tmp_path / "st.wav"
    _tone(p, channels=2)
    x, sr = load_audio(p)
    assert sr == 22050 and x.shape == (22050,)
    # mono = mean of the channels: (x - 0.5·x) / 2 with x = 0.5·s, i.e. 0.125·s
    t = np.arange(22050) / 22050
    np.testing.assert_allclose(x, 0.125 * np.sin(2 * np.pi * 440 * t), atol=1e-4)
    y, sr2 = load_audio(p, sample_rate=16000)
    assert sr2 == 16000 and abs(len(y) - 16000) <= 1
    # the tone survives resampling: spectral peak at 440 Hz
    spec = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spec) * 16000 / len(y) - 440) < 2


def test_resample_matches_length_ratio():
    x = np.random.default_rng(0).standard_normal(44100).astype(np.float32)
    assert len(resample(x, 44100, 32000)) == 32000


def test_mp3_real_clip(shared):
    x, sr = load_audio(shared / "data/animals/dog.mp3", sample_rate=32000)
    dur, sr0 = audio_info(shared / "data/animals/dog.mp3")
    assert sr0 == 48000 and abs(dur - 5.989) < 0.01
    assert abs(len(x) / 32000 - dur) < 0.05 and 0.01 < np.abs(x).max() <= 1.0


@pytest.mark.parametrize("content", [b"", b"RIFF\x00\x00garbage" * 10])
def test_bad_files_name_the_file(tmp_path, content):
    p = tmp_path / "bad.wav"
    p.write_bytes(content)
    with pytest.raises(AudioError, match="bad.wav"):
        load_audio(p)


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="not found"):
        load_audio(tmp_path / "nope.wav")


def test_pad_crop_segment():
    x = np.arange(10, dtype=np.float32)
    assert pad_or_crop(x, 12).tolist() == list(range(10)) + [0, 0]
    assert pad_or_crop(x, 4, "start").tolist() == [0, 1, 2, 3]
    assert pad_or_crop(x, 4, "center").tolist() == [3, 4, 5, 6]
    r = pad_or_crop(x, 4, "random", np.random.default_rng(1))
    assert len(r) == 4 and r[1] - r[0] == 1
    # 25 s at 10 Hz in 10-s segments -> 3 segments, last padded with 5 s of zeros
    y = np.ones(250, dtype=np.float32)
    segs = segment(y, 10, seconds=10, max_seconds=30)
    assert [s.shape[0] for s in segs] == [100, 100, 100] and segs[2][50:].sum() == 0
    # 35 s is cut at 30 s; a 0.5-s tail is dropped
    assert len(segment(np.ones(305, dtype=np.float32), 10, 10, max_seconds=None, min_last=1.0)) == 3
