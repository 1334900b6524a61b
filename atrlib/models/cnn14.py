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
(:func:`atrlib.weights.torch_load_weights_only`): numpy data, no arbitrary code.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from atrlib.models.frontend import LogmelFilterBank, SpecAugment, Spectrogram
from atrlib.models.registry import AUDIO_TOWERS
from atrlib.weights import torch_load_weights_only

PathLike = Union[str, Path]
PANNS_WEIGHTS = "panns-cnn14"  # atrlib.weights name of Cnn14_mAP=0.431.pth (Zenodo 3987831)


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
