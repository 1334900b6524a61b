"""Kaldi-compatible log mel filterbank ("fbank") in batched torch: the front end of BEATs.

Kaldi's ``compute-fbank-feats`` (and ``torchaudio.compliance.kaldi.fbank``, which the BEATs
authors call) works frame by frame on one waveform:

    wave (batch, samples) · input_scale
      -> frames of frame_length ms every frame_shift ms, only frames that fit ("snip edges")
                                                            (batch, frames, win)
      -> remove each frame's mean (DC offset)
      -> pre-emphasis inside the frame: y[n] = x[n] - a·x[n-1], with x[-1] := x[0]
      -> window (Povey: symmetric Hann ** 0.85), zero-pad to the next power of two
      -> |rfft|^2                                           (batch, frames, n_fft // 2 + 1)
      -> Kaldi mel triangles (mel = 1127·ln(1 + f/700), low_freq .. high_freq; the Nyquist
         bin has zero weight)                               (batch, frames, num_mel_bins)
      -> ln(max(x, float32 eps))

Defaults are Kaldi's (and torchaudio's): 25 ms / 10 ms, pre-emphasis 0.97, Povey window,
low_freq 20 Hz, high_freq 0 (= Nyquist; a negative value is an offset from it), no dither.
``input_scale`` multiplies the waveform first: BEATs passes float audio scaled to the int16
range (2**15). Only ``snip_edges=True`` (Kaldi's default) is implemented.

The whole batch is one ``unfold`` + ``rfft`` + matmul, so it runs on any device.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from atrlib.audio.mel import kaldi_mel_banks

WINDOWS = ("povey", "hanning", "hamming", "rectangular")


@dataclass(frozen=True)
class KaldiFbankConfig:
    sample_rate: int = 16000          # Hz of the input waveform
    num_mel_bins: int = 128           # mel filters (Kaldi default 23; BEATs 128)
    frame_length_ms: float = 25.0     # analysis window, milliseconds
    frame_shift_ms: float = 10.0      # hop between frames, milliseconds
    low_freq: float = 20.0            # lowest mel edge, Hz
    high_freq: float = 0.0            # highest mel edge, Hz; <= 0 means Nyquist + high_freq
    preemphasis: float = 0.97         # in-frame pre-emphasis coefficient (0 disables)
    remove_dc_offset: bool = True     # subtract each frame's mean before pre-emphasis
    window_type: str = "povey"        # "povey", "hanning", "hamming" or "rectangular"
    round_to_power_of_two: bool = True  # zero-pad each frame to the next power of two for the FFT
    use_power: bool = True            # power (True) or magnitude spectrum
    use_log_fbank: bool = True        # natural log of the mel energies, floored at float32 eps
    input_scale: float = 1.0          # multiply the waveform first (BEATs: 2**15, the int16 range)

    @property
    def win_length(self) -> int:
        return int(self.sample_rate * self.frame_length_ms * 0.001)

    @property
    def hop_length(self) -> int:
        return int(self.sample_rate * self.frame_shift_ms * 0.001)

    @property
    def n_fft(self) -> int:
        w = self.win_length
        return 1 << (w - 1).bit_length() if self.round_to_power_of_two else w

    def frames(self, n_samples: int) -> int:
        """Frames Kaldi makes from ``n_samples`` samples (snip edges: only whole windows)."""
        return 0 if n_samples < self.win_length else 1 + (n_samples - self.win_length) // self.hop_length

    def to_dict(self) -> dict:
        return asdict(self)


def kaldi_window(kind: str, length: int, dtype=torch.float32) -> torch.Tensor:
    """Kaldi's analysis windows (all symmetric), (length,)."""
    if kind == "povey":
        return torch.hann_window(length, periodic=False, dtype=dtype).pow(0.85)
    if kind == "hanning":
        return torch.hann_window(length, periodic=False, dtype=dtype)
    if kind == "hamming":
        return torch.hamming_window(length, periodic=False, alpha=0.54, beta=0.46, dtype=dtype)
    if kind == "rectangular":
        return torch.ones(length, dtype=dtype)
    raise ValueError(f"unknown Kaldi window {kind!r}; use one of {', '.join(WINDOWS)}")


class KaldiFbank(nn.Module):
    """Waveform (batch, samples) -> Kaldi log mel filterbank (batch, frames, num_mel_bins)."""

    def __init__(self, cfg: KaldiFbankConfig = KaldiFbankConfig()):
        super().__init__()
        self.cfg = cfg
        c = cfg
        if c.window_type not in WINDOWS:
            raise ValueError(f"unknown Kaldi window {c.window_type!r}; use one of {', '.join(WINDOWS)}")
        nyquist = c.sample_rate / 2
        high = c.high_freq if c.high_freq > 0 else nyquist + c.high_freq
        if not 0 <= c.low_freq < high <= nyquist:
            raise ValueError(f"need 0 <= low_freq < high_freq <= Nyquist, got {c.low_freq} .. {high} Hz "
                             f"at {c.sample_rate} Hz")
        self.register_buffer("window", kaldi_window(c.window_type, c.win_length), persistent=False)  # (win,)
        banks = kaldi_mel_banks(c.num_mel_bins, c.n_fft, c.sample_rate, c.low_freq, high)  # (mels, n_fft//2 + 1)
        self.register_buffer("mel_banks", banks, persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        if wave.dim() == 1:
            wave = wave.unsqueeze(0)                                       # (batch, samples)
        if wave.shape[-1] < c.win_length:
            raise ValueError(f"Kaldi fbank needs at least {c.win_length} samples "
                             f"({c.frame_length_ms} ms at {c.sample_rate} Hz), got {wave.shape[-1]}")
        x = wave.float() * c.input_scale                                   # (batch, samples)
        frames = x.unfold(-1, c.win_length, c.hop_length)                  # (batch, frames, win)
        if c.remove_dc_offset:
            frames = frames - frames.mean(dim=-1, keepdim=True)            # (batch, frames, win)
        if c.preemphasis != 0.0:
            previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)  # x[n-1], x[-1] := x[0]
            frames = frames - c.preemphasis * previous                     # (batch, frames, win)
        frames = frames * self.window                                      # (batch, frames, win)
        spec = torch.fft.rfft(frames, n=c.n_fft, dim=-1)                   # (batch, frames, n_fft//2 + 1)
        spec = spec.real.square() + spec.imag.square() if c.use_power else spec.abs()
        mel = torch.matmul(spec, self.mel_banks.T)                         # (batch, frames, mels)
        if c.use_log_fbank:
            mel = torch.clamp(mel, min=torch.finfo(torch.float32).eps).log()
        return mel                                                         # (batch, frames, mels)


def frames_for(samples: torch.Tensor, cfg: KaldiFbankConfig) -> torch.Tensor:
    """Per-clip frame counts for clip lengths ``samples`` (batch,) int: whole windows only."""
    n = torch.clamp(samples - cfg.win_length, min=-1)
    return torch.where(n < 0, torch.zeros_like(n), 1 + torch.div(n, cfg.hop_length, rounding_mode="floor"))


__all__ = ["KaldiFbankConfig", "KaldiFbank", "kaldi_window", "frames_for", "WINDOWS"]
