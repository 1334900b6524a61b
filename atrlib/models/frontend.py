"""Tower front ends as modules: the torchlibrosa-style STFT / log-mel (PANNs key names), SpecAugment.

``ConvSTFT`` / ``Spectrogram`` / ``LogmelFilterBank`` reproduce the PANNs front end (STFT as two
``Conv1d`` over a reflect-padded waveform, power, Slaney mel matrix, dB) with the official
state-dict key names, so every PANNs-family tower (CNN14, ResNet38, Wavegram-Logmel-CNN14)
loads its checkpoint strictly. ``SpecAugment`` masks time / frequency stripes of any log-mel
tower in training. The mel maths they use live in :mod:`atrlib.audio.mel` (re-exported here).
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from atrlib.audio.mel import hz_to_mel, kaldi_mel_banks, mel_matrix, mel_to_hz

__all__ = ["hz_to_mel", "mel_to_hz", "mel_matrix", "kaldi_mel_banks", "ConvSTFT", "Spectrogram",
           "LogmelFilterBank", "SpecAugment"]


class ConvSTFT(nn.Module):
    """STFT as two Conv1d over the (centre-padded) waveform, the torchlibrosa way.

    ``conv_real.weight[k, 0, n] = window[n]·cos(2πkn/N)``, ``conv_imag.weight[k, 0, n] =
    -window[n]·sin(2πkn/N)`` (periodic Hann, length win_length, centred in n_fft).
    """

    def __init__(self, n_fft: int = 1024, hop_length: int = 320, win_length: Optional[int] = None,
                 center: bool = True, pad_mode: str = "reflect"):
        super().__init__()
        win_length = win_length or n_fft
        self.n_fft, self.hop_length, self.center, self.pad_mode = n_fft, hop_length, center, pad_mode
        n_freq = n_fft // 2 + 1
        window = torch.zeros(n_fft, dtype=torch.float64)
        left = (n_fft - win_length) // 2
        window[left:left + win_length] = torch.hann_window(win_length, periodic=True, dtype=torch.float64)
        angle = 2 * math.pi * torch.outer(torch.arange(n_freq, dtype=torch.float64),
                                          torch.arange(n_fft, dtype=torch.float64)) / n_fft  # (freq, n_fft)
        self.conv_real = nn.Conv1d(1, n_freq, kernel_size=n_fft, stride=hop_length, bias=False)
        self.conv_imag = nn.Conv1d(1, n_freq, kernel_size=n_fft, stride=hop_length, bias=False)
        with torch.no_grad():
            self.conv_real.weight.copy_((torch.cos(angle) * window)[:, None, :].float())    # (freq, 1, n_fft)
            self.conv_imag.weight.copy_((-torch.sin(angle) * window)[:, None, :].float())   # (freq, 1, n_fft)
        for p in self.parameters():
            p.requires_grad = False

    def forward(self, wave: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = wave[:, None, :]                                               # (batch, 1, samples)
        if self.center:
            x = F.pad(x, (self.n_fft // 2, self.n_fft // 2), mode=self.pad_mode)  # (batch, 1, samples + n_fft)
        real = self.conv_real(x)[:, None].transpose(2, 3)                  # (batch, 1, frames, freq)
        imag = self.conv_imag(x)[:, None].transpose(2, 3)                  # (batch, 1, frames, freq)
        return real, imag


class Spectrogram(nn.Module):
    """Power spectrogram; holds the STFT as ``.stft`` (the official key prefix)."""

    def __init__(self, n_fft: int, hop_length: int, win_length: Optional[int] = None, center: bool = True,
                 pad_mode: str = "reflect"):
        super().__init__()
        self.stft = ConvSTFT(n_fft, hop_length, win_length, center, pad_mode)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        real, imag = self.stft(wave)                                       # (batch, 1, frames, freq) x 2
        return real ** 2 + imag ** 2                                       # (batch, 1, frames, freq)


class LogmelFilterBank(nn.Module):
    """Power spectrogram -> dB mel, with the (frozen) mel matrix as parameter ``melW``."""

    def __init__(self, sr: int, n_fft: int, n_mels: int, fmin: float, fmax: Optional[float],
                 ref: float = 1.0, amin: float = 1e-10, top_db: Optional[float] = None):
        super().__init__()
        self.ref, self.amin, self.top_db = ref, amin, top_db
        melw = torch.from_numpy(mel_matrix(sr, n_fft, n_mels, fmin, fmax)).T.contiguous()  # (freq, n_mels)
        self.melW = nn.Parameter(melw, requires_grad=False)

    def forward(self, power: torch.Tensor) -> torch.Tensor:
        mel = torch.matmul(power, self.melW)                               # (batch, 1, frames, n_mels)
        db = 10.0 * torch.log10(torch.clamp(mel, min=self.amin))
        db = db - 10.0 * math.log10(max(self.amin, self.ref))
        if self.top_db is not None:
            db = torch.maximum(db, db.amax(dim=(-2, -1), keepdim=True) - self.top_db)
        return db                                                          # (batch, 1, frames, n_mels)


class SpecAugment(nn.Module):
    """Time and frequency masking (Park et al., 2019) on (batch, 1, frames, bins) or
    (batch, frames, bins); identity in eval mode or when both mask counts are 0.

    Each example gets its own stripes: ``time_masks`` stripes of width uniform in
    [0, time_width) frames and ``freq_masks`` stripes of width uniform in [0, freq_width) bins,
    at uniform positions; masked cells are set to ``fill`` (0). Uses torch's RNG
    (``torch.manual_seed`` reproduces it). No parameters, so no state-dict keys.
    """

    def __init__(self, time_masks: int = 2, time_width: int = 64, freq_masks: int = 2, freq_width: int = 8,
                 fill: float = 0.0):
        super().__init__()
        self.time_masks, self.time_width = time_masks, time_width
        self.freq_masks, self.freq_width = freq_masks, freq_width
        self.fill = fill

    @staticmethod
    def _stripes(batch: int, size: int, count: int, width: int, device) -> torch.Tensor:
        """(batch, size) bool, True inside any of ``count`` random stripes per row."""
        pos = torch.arange(size, device=device)                                     # (size,)
        w = torch.randint(0, max(width, 1), (batch, count, 1), device=device)        # (batch, count, 1)
        start = (torch.rand(batch, count, 1, device=device) * (size - w + 1).clamp(min=1)).long()  # (batch, count, 1)
        return ((pos >= start) & (pos < start + w)).any(dim=1)                      # (batch, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or (self.time_masks <= 0 and self.freq_masks <= 0):
            return x
        batch, frames, bins = x.shape[0], x.shape[-2], x.shape[-1]
        mask = torch.zeros(batch, frames, bins, dtype=torch.bool, device=x.device)  # (batch, frames, bins)
        if self.time_masks > 0:
            mask |= self._stripes(batch, frames, self.time_masks, self.time_width, x.device)[:, :, None]
        if self.freq_masks > 0:
            mask |= self._stripes(batch, bins, self.freq_masks, self.freq_width, x.device)[:, None, :]
        if x.dim() == 4:
            mask = mask[:, None]                                                    # (batch, 1, frames, bins)
        return x.masked_fill(mask, self.fill)
