"""Log-mel spectrograms in torch from one :class:`FeatureConfig`, and named presets.

(The content-addressed on-disk cache they are stored in is :mod:`atrlib.audio.cache`.)

The transform is a plain ``nn.Module`` (batched, runs on whatever device its input is on):

    wave (batch, samples) -> [pre-emphasis] -> STFT power (batch, freq, frames)
      -> mel filterbank (batch, n_mels, frames) -> log / dB -> (x - mean) / std

Presets (``FEATURE_PRESETS``):

- ``panns``: 32 kHz, n_fft 1024 / hop 320, 64 Slaney mels 50-14000 Hz, 10·log10 (PANNs CNN14).
- ``efficientat``: 32 kHz, pre-emphasis 0.97, n_fft 1024, Hann window 800 (symmetric), hop 320,
  128 Kaldi mels 0-15000 Hz, log(x + 1e-5), then (x + 4.5) / 5 (EfficientAT MobileNets). 15 kHz is
  the authors' eval-mode edge: their ``AugmentMelSTFT`` sets fmax = sr/2 - fmax_aug_range/2 =
  16000 - 2000/2 (in training it draws fmin / fmax around 0 / 15000 at random).
- ``small``: 16 kHz, n_fft 512 / hop 160, 64 Slaney mels, dB (the from-scratch CNN on the
  embedded dataset).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch
from torch import nn

from atrlib.audio.cache import FeatureCache
from atrlib.audio.mel import kaldi_mel_banks


@dataclass(frozen=True)
class FeatureConfig:
    sample_rate: int = 32000          # Hz the waveform is at
    n_fft: int = 1024                 # FFT size
    win_length: int = 1024            # window length in samples (<= n_fft, centred in the frame)
    hop_length: int = 320             # samples between frames
    n_mels: int = 64                  # mel bands
    fmin: float = 50.0                # lowest mel edge, Hz
    fmax: Optional[float] = 14000.0   # highest mel edge, Hz (None = Nyquist)
    window_periodic: bool = True      # periodic Hann (librosa, PANNs) or symmetric (EfficientAT)
    center: bool = True               # pad n_fft // 2 on both sides (reflect) before framing
    power: float = 2.0                # 1 = magnitude, 2 = power
    preemphasis: float = 0.0          # y[t] = x[t+1] - a·x[t] when a > 0 (EfficientAT: 0.97)
    mel_scale: str = "slaney"         # "slaney" (librosa default), "htk" or "kaldi"
    log: str = "db"                   # "db" = 10·log10(max(x, log_offset)), "log" = ln(x + log_offset), "none"
    log_offset: float = 1e-10         # floor (db) or offset (log)
    norm_mean: float = 0.0            # output = (x - norm_mean) / norm_std
    norm_std: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)

    def frames(self, n_samples: int) -> int:
        """Number of frames for a waveform of ``n_samples`` samples."""
        n = n_samples - (1 if self.preemphasis > 0 else 0)
        return 1 + n // self.hop_length if self.center else 1 + (n - self.n_fft) // self.hop_length


FEATURE_PRESETS: Dict[str, FeatureConfig] = {
    "panns": FeatureConfig(),
    "efficientat": FeatureConfig(
        sample_rate=32000, n_fft=1024, win_length=800, hop_length=320, n_mels=128, fmin=0.0, fmax=15000.0,
        window_periodic=False, preemphasis=0.97, mel_scale="kaldi", log="log", log_offset=1e-5,
        norm_mean=-4.5, norm_std=5.0,
    ),
    # the small towers' front end, at the embedded synth dataset's rate (16 kHz; a test holds
    # atrlib.data.synth_scenes.SAMPLE_RATE to it: audio sits below data and does not import it)
    "small": FeatureConfig(sample_rate=16000, n_fft=512, win_length=512, hop_length=160, n_mels=64,
                           fmin=20.0, fmax=8000.0),
}


def get_feature_config(name_or_cfg: str | FeatureConfig | dict, **overrides) -> FeatureConfig:
    """A preset by name (``"panns"``), a dict of fields, or a config; ``overrides`` replace fields."""
    if isinstance(name_or_cfg, FeatureConfig):
        cfg = name_or_cfg
    elif isinstance(name_or_cfg, dict):
        cfg = FeatureConfig(**name_or_cfg)
    else:
        if name_or_cfg not in FEATURE_PRESETS:
            raise KeyError(f"unknown feature preset {name_or_cfg!r}; presets: {', '.join(FEATURE_PRESETS)}")
        cfg = FEATURE_PRESETS[name_or_cfg]
    return replace(cfg, **overrides) if overrides else cfg


def mel_filterbank(cfg: FeatureConfig) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) filterbank for ``cfg.mel_scale``."""
    fmax = cfg.fmax if cfg.fmax is not None else cfg.sample_rate / 2
    if cfg.mel_scale == "kaldi":
        return kaldi_mel_banks(cfg.n_mels, cfg.n_fft, cfg.sample_rate, cfg.fmin, fmax)
    if cfg.mel_scale in ("slaney", "htk"):
        import librosa

        fb = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin,
                                 fmax=fmax, htk=cfg.mel_scale == "htk")
        return torch.from_numpy(fb).float()
    raise ValueError(f"unknown mel_scale {cfg.mel_scale!r}; use 'slaney', 'htk' or 'kaldi'")


class LogMel(nn.Module):
    """Waveform (batch, samples) -> log-mel (batch, n_mels, frames), per :class:`FeatureConfig`."""

    def __init__(self, cfg: FeatureConfig | str = "panns"):
        super().__init__()
        self.cfg = get_feature_config(cfg)
        c = self.cfg
        if c.win_length > c.n_fft:
            raise ValueError(f"win_length {c.win_length} > n_fft {c.n_fft}")
        self.register_buffer("window", torch.hann_window(c.win_length, periodic=c.window_periodic), persistent=False)
        self.register_buffer("melfb", mel_filterbank(c), persistent=False)  # (n_mels, freq)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        if wave.dim() == 1:
            wave = wave.unsqueeze(0)                                   # (batch, samples)
        x = wave.float()
        if c.preemphasis > 0:
            x = x[:, 1:] - c.preemphasis * x[:, :-1]                   # (batch, samples - 1)
        spec = torch.stft(x, n_fft=c.n_fft, hop_length=c.hop_length, win_length=c.win_length,
                          window=self.window, center=c.center, pad_mode="reflect", return_complex=True)
        spec = spec.abs()                                              # (batch, freq, frames)
        if c.power != 1.0:
            spec = spec.pow(c.power)
        mel = torch.matmul(self.melfb, spec)                           # (batch, n_mels, frames)
        if c.log == "db":
            mel = 10.0 * torch.log10(torch.clamp(mel, min=c.log_offset))
        elif c.log == "log":
            mel = torch.log(mel + c.log_offset)
        elif c.log != "none":
            raise ValueError(f"unknown log mode {c.log!r}; use 'db', 'log' or 'none'")
        return (mel - c.norm_mean) / c.norm_std                        # (batch, n_mels, frames)


def compute_logmel(audio_path: str | Path, cfg: FeatureConfig | str = "panns", cache: Optional[FeatureCache] = None,
                   max_seconds: Optional[float] = None) -> np.ndarray:
    """Log-mel of one file as (n_mels, frames) float32, through the cache when one is given."""
    from atrlib.audio.io import load_audio

    cfg = get_feature_config(cfg)

    def _compute():
        x, _ = load_audio(audio_path, sample_rate=cfg.sample_rate,
                          duration=max_seconds)
        with torch.no_grad():
            return LogMel(cfg)(torch.from_numpy(x))[0].numpy()        # (n_mels, frames)

    if cache is None:
        return _compute()
    return cache.get_or_compute(audio_path, {"logmel": cfg.to_dict(), "max_seconds": max_seconds}, _compute)
