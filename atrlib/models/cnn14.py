"""PANNs CNN14 audio tower (Kong et al., 2020), state-dict compatible with ``Cnn14_mAP=0.431.pth``.

The module names and shapes are those of the official ``Cnn14`` (``pytorch/models.py`` of
qiuqiangkong/audioset_tagging_cnn, front end from ``torchlibrosa``), so the official
checkpoint loads with ``strict=True``::

    spectrogram_extractor.stft.conv_real.weight  (513, 1, 1024)   windowed DFT, real part
    spectrogram_extractor.stft.conv_imag.weight  (513, 1, 1024)   windowed DFT, imaginary part
    logmel_extractor.melW                        (513, 64)        Slaney mel filterbank (librosa)
    bn0.*                                        (64,)            BatchNorm over mel bins
    conv_block{1..6}.{conv1,conv2,bn1,bn2}.*     64 .. 2048 channels, 3x3 convs without bias
    fc1.*                                        (2048, 2048)
    fc_audioset.*                                (527, 2048)

The front end is the torchlibrosa one: an STFT written as two ``Conv1d`` (kernel n_fft,
stride hop) over a reflect-padded waveform, power spectrum, mel matrix, ``10·log10(max(x,
amin))`` with ref 1.0, amin 1e-10, no top_db. It equals ``atrlib.features.LogMel("panns")``.

One parameterised class builds every variant: ``Cnn14Config.channels`` sets the number and
width of the conv blocks (``cnn14-tiny`` is a 3-block toy for tests).

The tower's embedding is PANNs' "embedding": ReLU(fc1(.)), 2048-d; :meth:`Cnn14.tag` gives the
527 AudioSet clip-wise probabilities (sigmoid of ``fc_audioset``).

Loading: the official file is ``{"iteration": int, "model": state_dict, "sampler": {...}}``
and its sampler state holds numpy int64 arrays, so plain ``torch.load(weights_only=True)``
refuses it (``Unsupported global: numpy.core.multiarray._reconstruct``). We keep
``weights_only=True`` and allow-list only numpy's array / scalar / dtype reconstructors
(:func:`torch_load_weights_only`): numpy data, no arbitrary code.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from atrlib.models.registry import AUDIO_TOWERS
from atrlib.models.small_cnn import SpecAugment

PathLike = Union[str, Path]
PANNS_WEIGHTS = "panns-cnn14"  # atrlib.weights name of Cnn14_mAP=0.431.pth (Zenodo 3987831)


# ---------------------------------------------------------------------------------------------
# Front end: librosa's mel matrix and torchlibrosa's STFT-as-conv1d, written out
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# The network
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cnn14Config:
    sample_rate: int = 32000                  # Hz of the input waveform
    window_size: int = 1024                   # n_fft = STFT window
    hop_size: int = 320                       # STFT hop (10 ms at 32 kHz)
    mel_bins: int = 64                        # mel bands
    fmin: float = 50.0                        # lowest mel edge, Hz
    fmax: float = 14000.0                     # highest mel edge, Hz
    channels: Tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)  # one ConvBlock per entry
    embed_dim: int = 2048                     # width of fc1 = the embedding
    classes_num: int = 527                    # AudioSet classes (fc_audioset)
    conv_dropout: float = 0.2                 # after every conv block (training only)
    fc_dropout: float = 0.5                   # before fc1 and on the embedding (training only)
    spec_time_masks: int = 0                  # SpecAugment time stripes in training (PANNs trains with 2)
    spec_time_width: int = 64                 # max frames per time stripe
    spec_freq_masks: int = 0                  # SpecAugment frequency stripes in training (PANNs: 2)
    spec_freq_width: int = 8                  # max mel bins per frequency stripe


CNN14_CONFIGS: Dict[str, Cnn14Config] = {
    "cnn14": Cnn14Config(),
    "cnn14-tiny": Cnn14Config(channels=(8, 16, 32), embed_dim=32),  # tests only: same code, 36.7k trainable
}


class ConvBlock(nn.Module):
    """Two 3x3 conv + BN + ReLU, then pooling (PANNs' ConvBlock)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        for conv in (self.conv1, self.conv2):
            nn.init.xavier_uniform_(conv.weight)

    def forward(self, x: torch.Tensor, pool_size=(2, 2), pool_type: str = "avg") -> torch.Tensor:
        x = F.relu_(self.bn1(self.conv1(x)))                               # (batch, out, frames, mels)
        x = F.relu_(self.bn2(self.conv2(x)))                               # (batch, out, frames, mels)
        if pool_type == "avg":
            return F.avg_pool2d(x, kernel_size=pool_size)                  # (batch, out, frames/p, mels/p)
        if pool_type == "max":
            return F.max_pool2d(x, kernel_size=pool_size)
        if pool_type == "avg+max":
            return F.avg_pool2d(x, kernel_size=pool_size) + F.max_pool2d(x, kernel_size=pool_size)
        raise ValueError(f"unknown pool_type {pool_type!r}")


class Cnn14(nn.Module):
    """CNN14 as an audio tower: wave (batch, samples) at 32 kHz -> (batch, embed_dim)."""

    def __init__(self, cfg: Cnn14Config = Cnn14Config()):
        super().__init__()
        self.cfg = cfg
        self.sample_rate = cfg.sample_rate
        self.embed_dim = cfg.embed_dim
        self.spectrogram_extractor = Spectrogram(cfg.window_size, cfg.hop_size, cfg.window_size)
        self.logmel_extractor = LogmelFilterBank(cfg.sample_rate, cfg.window_size, cfg.mel_bins, cfg.fmin, cfg.fmax)
        self.spec_augmenter = SpecAugment(cfg.spec_time_masks, cfg.spec_time_width,
                                          cfg.spec_freq_masks, cfg.spec_freq_width)  # no parameters
        self.bn0 = nn.BatchNorm2d(cfg.mel_bins)
        widths = (1,) + tuple(cfg.channels)
        for i in range(len(cfg.channels)):
            setattr(self, f"conv_block{i + 1}", ConvBlock(widths[i], widths[i + 1]))
        self.fc1 = nn.Linear(cfg.channels[-1], cfg.embed_dim)
        self.fc_audioset = nn.Linear(cfg.embed_dim, cfg.classes_num)
        for fc in (self.fc1, self.fc_audioset):
            nn.init.xavier_uniform_(fc.weight)
            nn.init.zeros_(fc.bias)

    @property
    def blocks(self):
        return [getattr(self, f"conv_block{i + 1}") for i in range(len(self.cfg.channels))]

    @property
    def min_samples(self) -> int:
        """Shortest input whose spectrogram survives every 2x2 pooling (shorter ones are zero-padded)."""
        return (2 ** (len(self.cfg.channels) - 1)) * self.cfg.hop_size

    def logmel(self, wave: torch.Tensor) -> torch.Tensor:
        """The front end alone: (batch, samples) -> dB log-mel (batch, 1, frames, mel_bins)."""
        x = self.spectrogram_extractor(wave.float())                       # (batch, 1, frames, freq)
        return self.logmel_extractor(x)                                    # (batch, 1, frames, mel_bins)

    def _embed(self, wave: torch.Tensor) -> torch.Tensor:
        """ReLU(fc1(.)) before the output dropout: (batch, embed_dim)."""
        if wave.dim() == 1:
            wave = wave.unsqueeze(0)                                       # (batch, samples)
        if wave.shape[-1] < self.min_samples:
            wave = F.pad(wave, (0, self.min_samples - wave.shape[-1]))
        c, drop = self.cfg, self.training
        x = self.logmel(wave)                                              # (batch, 1, frames, mel_bins)
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)                    # (batch, 1, frames, mel_bins)
        x = self.spec_augmenter(x)                                         # (batch, 1, frames, mel_bins)
        for i, block in enumerate(self.blocks):
            last = i == len(self.blocks) - 1
            x = block(x, pool_size=(1, 1) if last else (2, 2), pool_type="avg")  # (batch, ch_i, frames/2^i, mels/2^i)
            x = F.dropout(x, p=c.conv_dropout, training=drop)
        x = torch.mean(x, dim=3)                                           # (batch, channels[-1], frames')
        x = torch.amax(x, dim=2) + torch.mean(x, dim=2)                    # (batch, channels[-1])
        x = F.dropout(x, p=c.fc_dropout, training=drop)
        return F.relu_(self.fc1(x))                                        # (batch, embed_dim)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """PANNs' "embedding": (batch, samples) -> (batch, embed_dim)."""
        return F.dropout(self._embed(wave), p=self.cfg.fc_dropout, training=self.training)

    def tag(self, wave: torch.Tensor) -> torch.Tensor:
        """AudioSet clip-wise probabilities (PANNs' "clipwise_output"): (batch, classes_num)."""
        return torch.sigmoid(self.fc_audioset(self._embed(wave)))          # (batch, classes_num)


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------
def numpy_safe_globals() -> list:
    """numpy's array / scalar / dtype reconstructors, under both the numpy 1.x names
    (``numpy.core.multiarray``) and 2.x names (``numpy._core.multiarray``), for
    ``torch.serialization.safe_globals``. They rebuild numpy data only; object arrays stay refused."""
    try:
        from numpy._core import multiarray as ma
    except ImportError:  # numpy < 1.26
        from numpy.core import multiarray as ma
    out: list = [np.ndarray, np.dtype, ma._reconstruct, ma.scalar]
    for name in ("_reconstruct", "scalar"):
        for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            out.append((getattr(ma, name), f"{module}.{name}"))
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25 pickles dtypes by their DType class
    if dtypes is not None:
        out += [getattr(dtypes, n) for n in dir(dtypes)
                if n.endswith("DType") and n != "ObjectDType" and isinstance(getattr(dtypes, n), type)]
    return out


def torch_load_weights_only(path: PathLike):
    """``torch.load(path, map_location="cpu", weights_only=True)`` that also accepts numpy
    arrays / scalars inside the file (training-state extras in released checkpoints)."""
    with torch.serialization.safe_globals(numpy_safe_globals()):
        return torch.load(str(path), map_location="cpu", weights_only=True)


def load_panns_state_dict(path: PathLike) -> Dict[str, torch.Tensor]:
    """The model state dict of a PANNs checkpoint (``{"model": sd, ...}`` or a bare state dict)."""
    ckpt = torch_load_weights_only(path)
    sd = ckpt["model"] if isinstance(ckpt, dict) and "model" in ckpt else ckpt
    if not isinstance(sd, dict):
        raise ValueError(f"{path}: expected a state dict or {{'model': state_dict}}, got {type(sd).__name__}")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}


def _resolve(name: str, pretrained, weights) -> Optional[Path]:
    """None (random init), an explicit file, or the known weights for ``name`` via atrlib.weights."""
    if weights is not None:
        return Path(weights)
    if pretrained is None or pretrained is False:
        return None
    if isinstance(pretrained, (str, Path)):
        return Path(pretrained)
    if name != "cnn14":
        raise ValueError(f"no published weights for {name!r}; pass pretrained=<path to a checkpoint>")
    from atrlib.weights import resolve_weights  # lazy: only a pretrained build needs it

    return Path(resolve_weights(PANNS_WEIGHTS))


def build_cnn14(name: str = "cnn14", pretrained: Union[bool, PathLike, None] = None,
                weights: Optional[PathLike] = None, **overrides) -> Cnn14:
    """A CNN14 variant by name; ``overrides`` replace :class:`Cnn14Config` fields.

    pretrained: None / False = random init; True = the published weights (``cnn14`` only, via
    ``atrlib.weights.resolve_weights("panns-cnn14")``); a path = that checkpoint. ``weights=`` is the same as
    passing a path. Weights load with ``strict=True``.
    """
    if name not in CNN14_CONFIGS:
        raise KeyError(f"unknown CNN14 variant {name!r}; known: {', '.join(CNN14_CONFIGS)}")
    model = Cnn14(replace(CNN14_CONFIGS[name], **overrides))
    path = _resolve(name, pretrained, weights)
    if path is not None:
        model.load_state_dict(load_panns_state_dict(path), strict=True)
    return model


@AUDIO_TOWERS.register("cnn14")
def cnn14(pretrained: Union[bool, PathLike, None] = None, weights: Optional[PathLike] = None, **overrides) -> Cnn14:
    """PANNs CNN14: 32 kHz, 2048-d embedding, 80.75 M trainable parameters (+1.08 M in the frozen front end)."""
    return build_cnn14("cnn14", pretrained, weights, **overrides)


@AUDIO_TOWERS.register("cnn14-tiny")
def cnn14_tiny(pretrained: Union[bool, PathLike, None] = None, weights: Optional[PathLike] = None,
               **overrides) -> Cnn14:
    """Three small conv blocks (8-16-32 channels), 32-d embedding: the CNN14 code path for tests."""
    return build_cnn14("cnn14-tiny", pretrained, weights, **overrides)
