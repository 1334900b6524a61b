"""Long recordings are read in windows with bounded memory: the windowed reader never asks for
more than a window and never holds more than a window + hop (a counting fake reader), and the
streamed file reader gives the samples load_audio gives, resampled on the fly."""
import numpy as np
import pytest
import soundfile as sf

from atrlib.moments.stream import AudioStream, TooShortError, iter_windows, window_batches, window_grid


class CountingReader:
    """A fake stream of ``n`` samples (value = index) that records every request."""

    def __init__(self, n: int, sample_rate: int = 10):
        self.n, self.sample_rate, self.pos, self.requests = n, sample_rate, 0, []

    def read(self, k: int) -> np.ndarray:
        self.requests.append(k)
        out = np.arange(self.pos, min(self.pos + k, self.n), dtype=np.float32)
        self.pos += len(out)
        return out


@pytest.mark.parametrize("n", [40, 41, 47, 1000, 100_003])
def test_the_windowed_reader_reads_at_most_a_window_and_holds_at_most_window_plus_hop(n):
    window, hop = 20, 10
    reader = CountingReader(n)
    starts = []
    for start, w in iter_windows(reader, window, hop):
        assert len(w) == window
        np.testing.assert_array_equal(w, np.arange(start, start + window))  # the right samples
        assert reader.pos - start == window  # nothing read ahead: the one window is all it holds
        starts.append(start)
    # one window first, then one hop at a time: a window plus the newest hop is the most ever held
    assert reader.requests[0] == window and set(reader.requests[1:]) == {hop}
    assert starts == window_grid(n, window, hop)
    assert starts[-1] + window == n  # the last window ends at the end: every sample is covered
    assert reader.pos == n


def test_a_recording_shorter_than_a_window_is_an_error_naming_it():
    with pytest.raises(TooShortError, match=r"rec7: lasts 1.50 s, shorter than one analysis window \(2 s\)"):
        list(iter_windows(CountingReader(15), 20, 10, name="rec7"))
    assert window_grid(15, 20, 10) == []


def test_window_batches_group_windows():
    batches = list(window_batches(CountingReader(100), 20, 10, batch=4))
    assert [len(s) for s, _ in batches] == [4, 4, 1] and batches[0][1].shape == (4, 20)
    assert np.concatenate([s for s, _ in batches]).tolist() == list(range(0, 81, 10))


def test_audio_stream_reads_blocks_and_resamples_like_the_whole_file(tmp_path):
    from atrlib.audio.io import load_audio

    sr = 22050
    t = np.arange(int(3.3 * sr)) / sr
    x = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    stereo = np.stack([x, 0.5 * x], 1)
    sf.write(tmp_path / "a.wav", stereo, sr)
    with AudioStream(tmp_path / "a.wav", block=4096) as s:  # native rate, mono mix
        assert s.duration == pytest.approx(3.3, abs=1e-4)
        parts = [s.read(5000) for _ in range(20)]
        assert s.samples_read == len(x)
    np.testing.assert_allclose(np.concatenate(parts), 0.75 * x, atol=1e-4)
    whole, _ = load_audio(tmp_path / "a.wav", sample_rate=16000)
    with AudioStream(tmp_path / "a.wav", sample_rate=16000, block=1000) as s:
        got = np.concatenate([s.read(3000) for _ in range(30)])
    assert abs(len(got) - len(whole)) <= 2
    n = min(len(got), len(whole))
    # the streamed resampler and the whole-file one agree away from the very ends
    np.testing.assert_allclose(got[500:n - 500], whole[500:n - 500], atol=2e-3)


def test_audio_stream_errors_name_the_file(tmp_path):
    from atrlib.errors import AudioError

    (tmp_path / "bad.wav").write_bytes(b"RIFF not really")
    with pytest.raises(AudioError, match="bad.wav: cannot decode audio"):
        AudioStream(tmp_path / "bad.wav")
    with pytest.raises(AudioError, match="missing.wav: file not found"):
        AudioStream(tmp_path / "missing.wav")
