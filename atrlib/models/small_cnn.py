"""A small from-scratch CNN audio tower for the embedded synthetic dataset.

    wave (batch, samples) at 16 kHz
      -> LogMel("small")                (batch, 64 mels, frames)       dB, inside the tower
      -> BatchNorm over mel bins        (batch, 1, frames, 64)
      -> SpecAugment (training only)    time / frequency stripes set to 0 (= the mean after bn0)
      -> 4 x [conv3x3 - BN - ReLU - 2x2 pool], 32-64-128-128 channels
      -> mean over frequency                          (batch, frames/16, 128)  = forward_frames
      -> mean + max over time                         (batch, 128)
      -> Linear                         (batch, embed_dim)

About 0.2 M parameters; no pretrained weights.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

from atrlib.audio.features import LogMel, get_feature_config
from atrlib.models.frames import frames_mask
from atrlib.models.frontend import SpecAugment
from atrlib.models.towers import AUDIO_TOWERS


@dataclass(frozen=True)
class SmallCNNConfig:
    features: str = "small"                          # FEATURE_PRESETS name for the LogMel front end
    channels: Tuple[int, ...] = (32, 64, 128, 128)   # one conv-BN-ReLU-pool block per entry
    embed_dim: int = 256                             # output size
    dropout: float = 0.1                             # before the output layer (training only)
    time_masks: int = 2                              # SpecAugment time stripes (training only)
    time_width: int = 40                             # max frames per time stripe (0.4 s at hop 160)
    freq_masks: int = 2                              # SpecAugment mel stripes (training only)
    freq_width: int = 8                              # max mel bins per stripe


class SmallCNN(nn.Module):
    """wave (batch, samples) at the preset's rate (16 kHz) -> (batch, embed_dim)."""

    def __init__(self, cfg: SmallCNNConfig = SmallCNNConfig()):
        super().__init__()
        self.cfg = cfg
        feat = get_feature_config(cfg.features)
        self.sample_rate = feat.sample_rate
        self.embed_dim = cfg.embed_dim
        self.frame_dim = cfg.channels[-1]
        self.frame_hop_samples = 2 ** len(cfg.channels) * feat.hop_length   # each block halves time
        self.logmel = LogMel(feat)
        self.bn0 = nn.BatchNorm2d(feat.n_mels)
        self.spec_augment = SpecAugment(cfg.time_masks, cfg.time_width, cfg.freq_masks, cfg.freq_width)
        widths = (1,) + tuple(cfg.channels)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(widths[i], widths[i + 1], kernel_size=3, padding=1, bias=False),
                          nn.BatchNorm2d(widths[i + 1]), nn.ReLU(inplace=True), nn.MaxPool2d(2, ceil_mode=True))
            for i in range(len(cfg.channels)))
        self.fc = nn.Linear(cfg.channels[-1], cfg.embed_dim)

    def _frames(self, mel: torch.Tensor) -> torch.Tensor:
        """Log-mel (batch, mels, frames) -> conv frames (batch, channels[-1], frames')."""
        x = mel.transpose(1, 2)[:, None]                                 # (batch, 1, frames, mels)
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)                  # (batch, 1, frames, mels)
        x = self.spec_augment(x)                                         # (batch, 1, frames, mels)
        for block in self.blocks:
            x = block(x)                                                 # (batch, ch, frames/2, mels/2)
        return x.mean(dim=3)                                             # (batch, channels[-1], frames')

    def forward_logmel(self, mel: torch.Tensor) -> torch.Tensor:
        """The embedding from a log-mel (batch, mels, frames) = ``self.logmel(wave)``, e.g. after mix-up."""
        x = self._frames(mel)                                            # (batch, channels[-1], frames')
        x = x.mean(dim=2) + x.amax(dim=2)                                # (batch, channels[-1])
        x = F.dropout(x, p=self.cfg.dropout, training=self.training)
        return self.fc(x)                                                # (batch, embed_dim)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.dim() == 1:
            wave = wave.unsqueeze(0)                                     # (batch, samples)
        return self.forward_logmel(self.logmel(wave))                    # (batch, embed_dim)

    def forward_frames(self, wave: torch.Tensor, lengths=None):
        """(frames (batch, frames', channels[-1]), mask (batch, frames')): the conv features before pooling."""
        if wave.dim() == 1:
            wave = wave.unsqueeze(0)                                     # (batch, samples)
        frames = self._frames(self.logmel(wave)).transpose(1, 2)         # (batch, frames', channels[-1])
        return frames, frames_mask(lengths, frames.shape[0], frames.shape[1], self.frame_hop_samples, frames.device)


@AUDIO_TOWERS.register("small-cnn")
def small_cnn(pretrained=None, **overrides) -> SmallCNN:
    """The from-scratch CNN; ``overrides`` replace :class:`SmallCNNConfig` fields. It has no
    published weights: ``pretrained`` may be None/False, or a path to a state dict of this
    architecture (``torch.save(model.state_dict())`` or ``.safetensors``)."""
    model = SmallCNN(replace(SmallCNNConfig(), **overrides))
    if pretrained is True:
        raise ValueError("small-cnn has no published weights; pass a path to a state dict you trained")
    if pretrained:
        path = str(pretrained)
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            sd = load_file(path)
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(sd, strict=True)
    return model
