"""The batched Kaldi fbank against torchaudio's compliance/kaldi.py (the code BEATs' authors call)."""
import pytest
import torch

import atrlib  # noqa: F401  (thread settings before torch work)
from atrlib.models.kaldi_fbank import KaldiFbank, KaldiFbankConfig, frames_for
from reference_code import kaldi_reference, reference_cache, stub_torchaudio


@pytest.fixture(scope="module")
def ref_kaldi(request):
    path = kaldi_reference(reference_cache(request.config, "atrlib-torchaudio-kaldi"))
    with stub_torchaudio(path) as kaldi:
        yield kaldi


def _waves(batch, samples, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(samples) / 16000.0
    tone = 0.3 * torch.sin(2 * torch.pi * 440.0 * t)                   # a tone plus noise, in [-1, 1]
    return (tone + 0.1 * torch.randn(batch, samples, generator=g)).clamp(-1, 1)


@pytest.mark.parametrize("kw", [
    dict(num_mel_bins=128, input_scale=2 ** 15),                          # BEATs
    dict(num_mel_bins=40, window_type="hamming", low_freq=60.0, high_freq=-400.0, preemphasis=0.0),
    dict(num_mel_bins=23, window_type="hanning", remove_dc_offset=False, use_power=False, sample_rate=8000),
])
def test_fbank_matches_torchaudio_kaldi(ref_kaldi, kw):
    cfg = KaldiFbankConfig(**kw)
    waves = _waves(3, 7 * 1600 + 123, seed=len(kw))
    ours = KaldiFbank(cfg)(waves)                                        # (3, frames, mels)
    for b in range(3):
        ref = ref_kaldi.fbank(waves[b:b + 1] * cfg.input_scale, num_mel_bins=cfg.num_mel_bins,
                              sample_frequency=cfg.sample_rate, frame_length=cfg.frame_length_ms,
                              frame_shift=cfg.frame_shift_ms, low_freq=cfg.low_freq, high_freq=cfg.high_freq,
                              preemphasis_coefficient=cfg.preemphasis, remove_dc_offset=cfg.remove_dc_offset,
                              window_type=cfg.window_type, use_power=cfg.use_power, dither=0.0)
        assert ours[b].shape == ref.shape == (cfg.frames(waves.shape[-1]), cfg.num_mel_bins)
        err = (ours[b] - ref).abs().max().item()
        assert err <= 1e-4 * ref.abs().max().item(), err


def test_fbank_silence_hits_the_log_floor_and_frame_count():
    cfg = KaldiFbankConfig(input_scale=2 ** 15)
    out = KaldiFbank(cfg)(torch.zeros(2, 16000))
    assert out.shape == (2, 98, 128)                                     # 1 + (16000 - 400) // 160
    assert torch.allclose(out, torch.log(torch.tensor(torch.finfo(torch.float32).eps)))
    assert frames_for(torch.tensor([399, 400, 560, 16000]), cfg).tolist() == [0, 1, 2, 98]


def test_fbank_rejects_bad_settings():
    with pytest.raises(ValueError, match="window"):
        KaldiFbank(KaldiFbankConfig(window_type="blackmann"))
    with pytest.raises(ValueError, match="Nyquist"):
        KaldiFbank(KaldiFbankConfig(high_freq=9000.0))
    with pytest.raises(ValueError, match="at least 400 samples"):
        KaldiFbank()(torch.zeros(1, 300))
