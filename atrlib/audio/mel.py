"""Mel-scale maths: Hz <-> mel, librosa-equal triangular filterbanks, Kaldi-style filterbanks.

Pure functions (numpy / torch), no modules: the feature front ends (:mod:`atrlib.audio.features`) and
the towers' own front ends (:mod:`atrlib.models.frontend`) both build on them.
"""
from __future__ import annotations

import math
from typing import Optional, Union

import numpy as np
import torch


def hz_to_mel(f: np.ndarray, htk: bool = False) -> np.ndarray:
    """Hz -> mel. Slaney (librosa default): linear below 1 kHz (3 mel / 200 Hz), log above."""
    f = np.asarray(f, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + f / 700.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, f / f_sp)


def mel_to_hz(m: np.ndarray, htk: bool = False) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    m = np.asarray(m, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_matrix(sr: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: Optional[float] = None,
               htk: bool = False, norm: Union[str, float, None] = "slaney") -> np.ndarray:
    """Triangular mel filterbank, (n_mels, n_fft // 2 + 1) float32, as ``librosa.filters.mel``.

    ``norm="slaney"`` scales each triangle to constant energy per Hz (2 / bandwidth);
    a number p scales each row to unit Lp norm (aisfx uses p = 1: rows sum to 1); None: peak 1.
    """
    fmax = sr / 2.0 if fmax is None else fmax
    fft_freqs = np.linspace(0.0, sr / 2.0, 1 + n_fft // 2)                          # (freq,)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin, htk), hz_to_mel(fmax, htk), n_mels + 2), htk)  # (n_mels + 2,)
    widths = np.diff(edges)                                                          # (n_mels + 1,)
    ramps = edges[:, None] - fft_freqs[None, :]                                      # (n_mels + 2, freq)
    rising = -ramps[:-2] / widths[:-1, None]                                         # (n_mels, freq)
    falling = ramps[2:] / widths[1:, None]                                           # (n_mels, freq)
    weights = np.maximum(0.0, np.minimum(rising, falling))                           # (n_mels, freq)
    if norm == "slaney":
        weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    elif isinstance(norm, (int, float)) and not isinstance(norm, bool):
        length = (np.abs(weights) ** norm).sum(axis=1, keepdims=True) ** (1.0 / norm)
        weights = weights / np.where(length > np.finfo(np.float32).tiny, length, 1.0)
    elif norm is not None:
        raise ValueError(f"unknown mel norm {norm!r}; use 'slaney', a number p, or None")
    return weights.astype(np.float32)


def kaldi_mel_banks(n_mels: int, n_fft: int, sample_rate: int, fmin: float, fmax: float) -> torch.Tensor:
    """Kaldi-style triangular mel filters, (n_mels, n_fft // 2 + 1).

    Triangles are equally spaced on the mel scale 1127·ln(1 + f/700) and evaluated at the
    FFT bin centres; Kaldi defines n_fft // 2 bins and the Nyquist bin gets zero weight.
    """
    def mel(f):
        return 1127.0 * torch.log1p(torch.as_tensor(f, dtype=torch.float64) / 700.0)

    n_bins = n_fft // 2
    lo, hi = mel(fmin), mel(fmax)
    delta = (hi - lo) / (n_mels + 1)
    b = torch.arange(n_mels, dtype=torch.float64).unsqueeze(1)   # (n_mels, 1)
    left, center, right = lo + b * delta, lo + (b + 1) * delta, lo + (b + 2) * delta
    m = mel(sample_rate / n_fft * torch.arange(n_bins, dtype=torch.float64)).unsqueeze(0)  # (1, n_bins)
    up = (m - left) / (center - left)
    down = (right - m) / (right - center)
    banks = torch.clamp(torch.minimum(up, down), min=0.0)        # (n_mels, n_bins)
    return torch.nn.functional.pad(banks, (0, 1)).float()        # (n_mels, n_bins + 1)
