"""Pieces shared by the PANNs towers (Kong et al., 2020): CNN14, ResNet38, Wavegram-Logmel-CNN14.

Not a tower itself: the conv blocks with the authors' module names (so the released
checkpoints load with ``strict=True``), the common config fields, the common clip head, the
checkpoint reader and the weights resolution. Each tower file builds its own network from
these and registers itself; no tower imports another.

The common head of every PANNs tagger, given the last conv feature map (batch, C, frames', mels')::

    mean over mels               (batch, C, frames')      = the frame sequence (forward_frames)
    max over time + mean over time  (batch, C)
    dropout 0.5 -> ReLU(fc1)     (batch, embed_dim)        = PANNs' "embedding" (forward)
    sigmoid(fc_audioset)         (batch, 527)              = "clipwise_output" (tag)

Frames: every PANNs tower halves time five times, so one output frame covers 32 STFT frames
(32 x hop = 320 ms at 32 kHz); frame ``t`` is valid when its first STFT frame is centred
within the clip's real audio (``t * 32 * hop <= length``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from atrlib.models.frames import frames_mask
from atrlib.models.frontend import LogmelFilterBank, SpecAugment, Spectrogram

PathLike = Union[str, Path]


@dataclass(frozen=True)
class PannsConfig:
    """Fields every PANNs tower shares (the authors' AudioSet settings by default)."""

    sample_rate: int = 32000                  # Hz of the input waveform
    window_size: int = 1024                   # n_fft = STFT window
    hop_size: int = 320                       # STFT hop (10 ms at 32 kHz)
    mel_bins: int = 64                        # mel bands
    fmin: float = 50.0                        # lowest mel edge, Hz
    fmax: float = 14000.0                     # highest mel edge, Hz
    embed_dim: int = 2048                     # width of fc1 = the embedding
    classes_num: int = 527                    # AudioSet classes (fc_audioset)
    conv_dropout: float = 0.2                 # after conv stages (training only)
    fc_dropout: float = 0.5                   # before fc1 and on the embedding (training only)
    spec_time_masks: int = 0                  # SpecAugment time stripes in training (PANNs trains with 2)
    spec_time_width: int = 64                 # max frames per time stripe
    spec_freq_masks: int = 0                  # SpecAugment frequency stripes in training (PANNs: 2)
    spec_freq_width: int = 8                  # max mel bins per frequency stripe


class PannsFrontEnd:
    """The PANNs log-mel front end, for a tower class to inherit beside ``nn.Module``: the
    official module names (``spectrogram_extractor``, ``logmel_extractor``, ``bn0``) and
    SpecAugment, built from a :class:`PannsConfig`; ``logmel(wave)`` runs it."""

    def build_front_end(self, cfg: PannsConfig) -> None:
        self.spectrogram_extractor = Spectrogram(cfg.window_size, cfg.hop_size, cfg.window_size)
        self.logmel_extractor = LogmelFilterBank(cfg.sample_rate, cfg.window_size, cfg.mel_bins, cfg.fmin, cfg.fmax)
        self.spec_augmenter = SpecAugment(cfg.spec_time_masks, cfg.spec_time_width,
                                          cfg.spec_freq_masks, cfg.spec_freq_width)  # no parameters
        self.bn0 = nn.BatchNorm2d(cfg.mel_bins)

    def logmel(self, wave: torch.Tensor) -> torch.Tensor:
        """The log-mel front end alone: (batch, samples) -> dB log-mel (batch, 1, frames, mel_bins)."""
        x = self.spectrogram_extractor(wave.float())                       # (batch, 1, frames, freq)
        return self.logmel_extractor(x)                                    # (batch, 1, frames, mel_bins)


# ---------------------------------------------------------------------------------------------
# Blocks (module names = the official ``pytorch/models.py``)
# ---------------------------------------------------------------------------------------------
class ConvBlock(nn.Module):
    """Two 3x3 conv (no bias) + BN + ReLU, then pooling: PANNs' ConvBlock, and with
    ``init="kaiming"`` and max pooling the aisfx network's (same module names)."""

    def __init__(self, in_channels: int, out_channels: int, init: str = "xavier"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        for conv in (self.conv1, self.conv2):
            if init == "xavier":
                nn.init.xavier_uniform_(conv.weight)
            elif init == "kaiming":
                nn.init.kaiming_uniform_(conv.weight, nonlinearity="leaky_relu")
            else:
                raise ValueError(f"init must be 'xavier' or 'kaiming', not {init!r}")

    def forward(self, x: torch.Tensor, pool_size=(2, 2), pool_type: str = "avg") -> torch.Tensor:
        x = F.relu_(self.bn1(self.conv1(x)))                               # (batch, out, frames, mels)
        x = F.relu_(self.bn2(self.conv2(x)))                               # (batch, out, frames, mels)
        if pool_type == "none":
            return x
        if pool_type == "avg":
            return F.avg_pool2d(x, kernel_size=pool_size)                  # (batch, out, frames/p, mels/p)
        if pool_type == "max":
            return F.max_pool2d(x, kernel_size=pool_size)
        if pool_type == "avg+max":
            return F.avg_pool2d(x, kernel_size=pool_size) + F.max_pool2d(x, kernel_size=pool_size)
        raise ValueError(f"unknown pool_type {pool_type!r}")


class ResnetBasicBlock(nn.Module):
    """ResNet basic block, PANNs variant: a stride-2 block average-pools its input first
    (instead of a strided conv); dropout 0.1 between the two convs; ``downsample`` (when
    shapes change) maps the identity path."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None):
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        for conv in (self.conv1, self.conv2):
            nn.init.xavier_uniform_(conv.weight)
        nn.init.zeros_(self.bn2.weight)                                    # zero-init residual, as the authors

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.avg_pool2d(x, kernel_size=(2, 2)) if self.stride == 2 else x  # (batch, in, frames/s, mels/s)
        out = F.relu(self.bn1(self.conv1(out)))                            # (batch, planes, frames/s, mels/s)
        out = F.dropout(out, p=0.1, training=self.training)
        out = self.bn2(self.conv2(out))                                    # (batch, planes, frames/s, mels/s)
        identity = self.downsample(x) if self.downsample is not None else x
        return F.relu(out + identity)                                      # (batch, planes, frames/s, mels/s)


class ResNetStages(nn.Module):
    """``layer1..layer4`` of PANNs' ``_ResNet`` (basic blocks); stage i > 1 halves time and mels.

    ``widths``: output channels per stage; ``layers``: blocks per stage; ``inplanes``: input channels.
    """

    def __init__(self, inplanes: int, widths: Tuple[int, ...] = (64, 128, 256, 512),
                 layers: Tuple[int, ...] = (3, 4, 6, 3)):
        super().__init__()
        if len(widths) != 4 or len(layers) != 4:
            raise ValueError(f"ResNet stages need 4 widths and 4 layer counts, got {widths} and {layers}")
        for i, (planes, n) in enumerate(zip(widths, layers)):
            stride = 1 if i == 0 else 2
            downsample = None
            if stride == 2:
                downsample = nn.Sequential(nn.AvgPool2d(kernel_size=2), nn.Conv2d(inplanes, planes, 1, bias=False),
                                           nn.BatchNorm2d(planes))         # keys downsample.1.*, downsample.2.*
            elif inplanes != planes:
                downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, bias=False), nn.BatchNorm2d(planes))
            blocks = [ResnetBasicBlock(inplanes, planes, stride, downsample)]
            blocks += [ResnetBasicBlock(planes, planes) for _ in range(1, n)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            inplanes = planes
        for m in self.modules():
            if isinstance(m, nn.Sequential) and len(m) and isinstance(m[-1], nn.BatchNorm2d):
                nn.init.xavier_uniform_(m[-2].weight)                      # the downsample conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(4):
            x = getattr(self, f"layer{i + 1}")(x)                          # (batch, widths[i], frames/2^i, mels/2^i)
        return x


class ConvPreWavBlock(nn.Module):
    """Wavegram block: conv1d k3 + BN + ReLU, dilated conv1d k3 (dilation 2) + BN + ReLU, max pool."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv1d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.conv2 = nn.Conv1d(out_channels, out_channels, kernel_size=3, dilation=2, padding=2, bias=False)
        self.bn1 = nn.BatchNorm1d(out_channels)
        self.bn2 = nn.BatchNorm1d(out_channels)
        for conv in (self.conv1, self.conv2):
            nn.init.xavier_uniform_(conv.weight)

    def forward(self, x: torch.Tensor, pool_size: int) -> torch.Tensor:
        x = F.relu_(self.bn1(self.conv1(x)))                               # (batch, out, steps)
        x = F.relu_(self.bn2(self.conv2(x)))                               # (batch, out, steps)
        return F.max_pool1d(x, kernel_size=pool_size)                      # (batch, out, steps / pool)


# ---------------------------------------------------------------------------------------------
# The common clip head
# ---------------------------------------------------------------------------------------------
def init_head(fc1: nn.Linear, fc_audioset: nn.Linear) -> None:
    for fc in (fc1, fc_audioset):
        nn.init.xavier_uniform_(fc.weight)
        nn.init.zeros_(fc.bias)


def pad_to_min(wave: torch.Tensor, min_samples: int) -> torch.Tensor:
    """(samples,) or (batch, samples) -> (batch, max(samples, min_samples)), zero-padded at the end."""
    if wave.dim() == 1:
        wave = wave.unsqueeze(0)                                           # (batch, samples)
    if wave.shape[-1] < min_samples:
        wave = F.pad(wave, (0, min_samples - wave.shape[-1]))
    return wave


class PannsHead(PannsFrontEnd, nn.Module):
    """Base of the PANNs towers: the front end (:class:`PannsFrontEnd`) and, given
    ``feature_map(wave) -> (batch, C, frames', mels')`` and the modules ``fc1`` / ``fc_audioset``,
    ``forward``, ``forward_frames``, ``tag``.

    Subclasses set ``cfg`` (a :class:`PannsConfig`), ``sample_rate``, ``embed_dim``,
    ``frame_dim`` and ``time_stride`` (STFT frames per output frame).
    """

    cfg: PannsConfig
    time_stride: int = 32

    @property
    def min_samples(self) -> int:
        """Shortest input whose spectrogram survives every time pooling (shorter ones are zero-padded)."""
        return self.time_stride * self.cfg.hop_size

    def feature_map(self, wave: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _frames(self, wave: torch.Tensor) -> torch.Tensor:
        """(batch, samples) -> conv frames (batch, C, frames') before the clip pooling."""
        x = self.feature_map(pad_to_min(wave, self.min_samples))           # (batch, C, frames', mels')
        return torch.mean(x, dim=3)                                        # (batch, C, frames')

    def _clip(self, frames: torch.Tensor) -> torch.Tensor:
        """PANNs pooling + fc1, before the output dropout: (batch, C, frames') -> (batch, embed_dim)."""
        x = torch.amax(frames, dim=2) + torch.mean(frames, dim=2)          # (batch, C)
        x = F.dropout(x, p=self.cfg.fc_dropout, training=self.training)
        return F.relu_(self.fc1(x))                                        # (batch, embed_dim)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """PANNs' "embedding": (batch, samples) -> (batch, embed_dim)."""
        emb = self._clip(self._frames(wave))                               # (batch, embed_dim)
        return F.dropout(emb, p=self.cfg.fc_dropout, training=self.training)

    def forward_frames(self, wave: torch.Tensor, lengths: Optional[torch.Tensor] = None):
        """(frames (batch, frames', C), mask (batch, frames') bool, True = valid): the conv
        features before the clip pooling; ``lengths`` (batch,) = samples of real audio (default: all)."""
        frames = self._frames(wave).transpose(1, 2)                        # (batch, frames', C)
        return frames, frames_mask(lengths, frames.shape[0], frames.shape[1],
                                   self.time_stride * self.cfg.hop_size, frames.device)

    def tag(self, wave: torch.Tensor) -> torch.Tensor:
        """AudioSet clip-wise probabilities (PANNs' "clipwise_output"): (batch, classes_num)."""
        return torch.sigmoid(self.fc_audioset(self._clip(self._frames(wave))))  # (batch, classes_num)


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------
def load_panns_state_dict(path: PathLike) -> Dict[str, torch.Tensor]:
    """The model state dict of a PANNs checkpoint (``{"model": sd, ...}`` or a bare state dict),
    read with numpy-safe ``weights_only`` loading; a ``module.`` (DataParallel) prefix is stripped."""
    from atrlib.models.weights import torch_load_weights_only

    ckpt = torch_load_weights_only(path)
    sd = ckpt["model"] if isinstance(ckpt, dict) and "model" in ckpt else ckpt
    if not isinstance(sd, dict):
        raise ValueError(f"{path}: expected a state dict or {{'model': state_dict}}, got {type(sd).__name__}")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}


def load_strict(model: nn.Module, path: Optional[Path]) -> nn.Module:
    """Load a PANNs checkpoint into ``model`` with ``strict=True`` (no-op for ``path=None``)."""
    if path is not None:
        try:
            model.load_state_dict(load_panns_state_dict(path), strict=True)
        except RuntimeError as e:
            raise RuntimeError(f"{path}: does not match {type(model).__name__}: {e}") from e
    return model


def build_panns(cls, configs: Dict[str, object], family: str, name: str, published: Dict[str, object],
                pretrained=None, weights=None, tuple_fields: Tuple[str, ...] = (), **overrides) -> nn.Module:
    """Variant ``name`` of a PANNs family: ``cls(configs[name])`` with ``overrides`` replacing
    config fields (lists typed in YAML become tuples for ``tuple_fields``), then the published
    weights (for the names in ``published``: ``pretrained=True``) or a checkpoint path loaded
    with ``strict=True`` (:func:`atrlib.models.weights.tower_weights`)."""
    from dataclasses import replace

    from atrlib.models.weights import tower_weights

    if name not in configs:
        raise KeyError(f"unknown {family} variant {name!r}; known: {', '.join(configs)}")
    for k in tuple_fields:
        if k in overrides:
            overrides[k] = tuple(overrides[k])
    model = cls(replace(configs[name], **overrides))
    return load_strict(model, tower_weights(name, published, pretrained, weights))
