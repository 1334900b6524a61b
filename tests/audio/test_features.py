import numpy as np
import pytest
import soundfile as sf
import torch

from atrlib.audio.cache import FeatureCache
from atrlib.audio.features import FEATURE_PRESETS, LogMel, compute_logmel, get_feature_config
from atrlib.audio.mel import kaldi_mel_banks


@pytest.fixture
def noise_wave():
    rng = np.random.default_rng(0)
    t = np.arange(32000 * 2) / 32000
    return (0.3 * np.sin(2 * np.pi * 1000 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def test_panns_preset_matches_librosa(noise_wave):
    import librosa

    ours = LogMel("panns")(torch.from_numpy(noise_wave))[0].numpy()
    ref = librosa.power_to_db(
        librosa.feature.melspectrogram(y=noise_wave, sr=32000, n_fft=1024, hop_length=320, n_mels=64, fmin=50,
                                       fmax=14000, center=True, pad_mode="reflect", power=2.0),
        ref=1.0, amin=1e-10, top_db=None)
    assert ours.shape == ref.shape == (64, 201)
    assert np.abs(ours - ref).max() < 1e-2  # float32 vs float64 STFT, in dB


def test_batched_equals_single(noise_wave):
    m = LogMel("small")
    x = torch.from_numpy(noise_wave[:16000 * 2])
    batch = m(torch.stack([x, 0.5 * x]))
    assert batch.shape == (2, 64, 201)
    torch.testing.assert_close(batch[0], m(x)[0])
    # half the amplitude is -6.02 dB in every bin that is above the floor
    assert torch.allclose(batch[0] - batch[1], torch.full_like(batch[0], 20 * np.log10(2)), atol=1e-2)


def test_kaldi_banks_against_formula():
    fb = kaldi_mel_banks(128, 1024, 32000, 0.0, 16000.0)
    assert fb.shape == (128, 513) and torch.all(fb[:, -1] == 0)
    # each triangle peaks (<= 1) at its centre frequency, which is equally spaced on the mel scale
    mel = lambda f: 1127 * np.log1p(f / 700)
    centres = [mel(0) + (k + 1) * (mel(16000) - mel(0)) / 129 for k in range(128)]
    freqs = np.arange(513) * 32000 / 1024
    for k in (5, 60, 120):
        peak_bin = int(fb[k].argmax())
        assert abs(mel(freqs[peak_bin]) - centres[k]) < (mel(freqs[peak_bin] + 31.25) - mel(freqs[peak_bin]))
    assert float(fb.max()) <= 1.0


def test_efficientat_preset_shape_and_scale(noise_wave):
    cfg = FEATURE_PRESETS["efficientat"]
    out = LogMel(cfg)(torch.from_numpy(noise_wave))
    assert out.shape == (1, 128, cfg.frames(noise_wave.size))
    # by hand for one frame: pre-emphasis, symmetric Hann(800) centred in 1024, power, kaldi mel, log, affine
    x = noise_wave[1:] - 0.97 * noise_wave[:-1]
    xp = np.pad(x, 512, mode="reflect")
    j = 10
    frame = xp[j * 320: j * 320 + 1024].astype(np.float64)
    win = np.zeros(1024)
    win[112:912] = np.hanning(800)
    p = np.abs(np.fft.rfft(frame * win)) ** 2
    mel = kaldi_mel_banks(128, 1024, 32000, 0, 15000).double().numpy() @ p
    ref = (np.log(mel + 1e-5) + 4.5) / 5
    np.testing.assert_allclose(out[0, :, j].numpy(), ref, atol=2e-3)


def test_get_feature_config_errors_and_overrides():
    assert get_feature_config("panns", n_mels=32).n_mels == 32
    with pytest.raises(KeyError, match="presets"):
        get_feature_config("nope")


def test_cache_is_content_addressed_and_atomic(tmp_path, noise_wave):
    wav = tmp_path / "a.wav"
    sf.write(wav, noise_wave, 32000)
    cache = FeatureCache(tmp_path / "cache", "t")
    a = compute_logmel(wav, "panns", cache)
    assert cache.misses == 1
    b = compute_logmel(wav, "panns", cache)
    assert cache.hits == 1 and np.array_equal(a, b)
    # another setting -> another entry, never the stale one
    c = compute_logmel(wav, get_feature_config("panns", n_mels=32), cache)
    assert c.shape[0] == 32 and cache.misses == 2
    # changed audio under the same name -> recomputed
    sf.write(wav, noise_wave * 0.5, 32000)
    d = compute_logmel(wav, "panns", cache)
    assert cache.misses == 3 and not np.allclose(a, d)
    # no temp files left behind
    assert not list((tmp_path / "cache").rglob("*.tmp"))


def test_cache_put_killed_midway_leaves_no_entry(tmp_path, monkeypatch):
    cache = FeatureCache(tmp_path, "t")

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        cache.put("ab" * 32, np.zeros(3))
    assert cache.get("ab" * 32) is None and not list(tmp_path.rglob("*.tmp"))


def test_small_preset_is_at_the_synth_rate():
    """The small towers' front end runs at the embedded dataset's rate; audio sits below data, so
    the preset states the number and this test holds the two together."""
    from atrlib.audio.features import FEATURE_PRESETS
    from atrlib.data.synth_scenes import SAMPLE_RATE

    assert FEATURE_PRESETS["small"].sample_rate == SAMPLE_RATE
