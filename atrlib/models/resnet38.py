"""PANNs ResNet38 audio tower (Kong et al., 2020), state-dict compatible with ``ResNet38_mAP=0.434.pth``.

Module names and shapes are those of the official ``ResNet38`` (``pytorch/models.py`` of
qiuqiangkong/audioset_tagging_cnn), so the released ``{"model": state_dict}`` loads with
``strict=True``. Front end as CNN14 (torchlibrosa STFT-as-conv, 64 Slaney mels 50-14000 Hz, dB)::

    wave (batch, samples) @ 32 kHz
      -> spectrogram_extractor, logmel_extractor     (batch, 1, frames, 64)     frozen
      -> bn0 over mel bins, SpecAugment (training)   (batch, 1, frames, 64)
      -> conv_block1 (1 -> 64), 2x2 avg pool         (batch, 64, frames/2, 32)
      -> resnet.layer1..4 (3, 4, 6, 3 basic blocks; 64, 128, 256, 512 channels; layers 2-4 halve)
                                                     (batch, 512, frames/16, 4)
      -> 2x2 avg pool, conv_block_after1 (512 -> 2048)  (batch, 2048, frames/32, 2)
      -> PANNs head (mean over mels = frames; max + mean over time; ReLU(fc1))  (batch, 2048)

73.8 M trainable parameters in ``resnet38`` (+1.08 M in the frozen front end); ``resnet38-tiny``
is the same code at toy widths for tests.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from atrlib.models.panns_blocks import (ConvBlock, PannsConfig, PannsHead, ResNetStages, init_head, build_panns)
from atrlib.models.towers import register_variants

PathLike = Union[str, Path]
PUBLISHED = {"resnet38": "panns-resnet38"}  # variant -> atrlib.models.weights name (Zenodo 3987831)


@dataclass(frozen=True)
class ResNet38Config(PannsConfig):
    stem: int = 64                                  # conv_block1 output channels
    widths: Tuple[int, ...] = (64, 128, 256, 512)   # resnet.layer1..4 channels
    layers: Tuple[int, ...] = (3, 4, 6, 3)          # basic blocks per stage
    after: int = 2048                               # conv_block_after1 output channels (= frame_dim)


RESNET38_CONFIGS: Dict[str, ResNet38Config] = {
    "resnet38": ResNet38Config(),
    "resnet38-tiny": ResNet38Config(stem=8, widths=(8, 8, 16, 16), layers=(1, 1, 1, 1), after=32, embed_dim=32),
}


class ResNet38(PannsHead):
    """ResNet38 as an audio tower: wave (batch, samples) at 32 kHz -> (batch, embed_dim)."""

    def __init__(self, cfg: ResNet38Config = ResNet38Config()):
        super().__init__()
        self.cfg = cfg
        self.sample_rate, self.embed_dim, self.frame_dim = cfg.sample_rate, cfg.embed_dim, cfg.after
        self.frame_hop_samples = self.time_stride * cfg.hop_size
        self.build_front_end(cfg)                                          # spectrogram, log-mel, SpecAugment, bn0
        self.conv_block1 = ConvBlock(1, cfg.stem)
        self.resnet = ResNetStages(cfg.stem, tuple(cfg.widths), tuple(cfg.layers))
        self.conv_block_after1 = ConvBlock(cfg.widths[-1], cfg.after)
        self.fc1 = nn.Linear(cfg.after, cfg.embed_dim)
        self.fc_audioset = nn.Linear(cfg.embed_dim, cfg.classes_num)
        init_head(self.fc1, self.fc_audioset)

    def feature_map_from_logmel(self, x: torch.Tensor) -> torch.Tensor:
        """dB log-mel (batch, 1, frames, mel_bins) -> last conv map (batch, after, frames/32, mels/32)."""
        p, drop = self.cfg.conv_dropout, self.training
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)                    # (batch, 1, frames, mel_bins)
        x = self.spec_augmenter(x)                                         # (batch, 1, frames, mel_bins)
        x = self.conv_block1(x, pool_size=(2, 2), pool_type="avg")         # (batch, stem, frames/2, mels/2)
        x = F.dropout(x, p=p, training=drop)
        x = self.resnet(x)                                                 # (batch, widths[-1], frames/16, mels/16)
        x = F.avg_pool2d(x, kernel_size=(2, 2))                            # (batch, widths[-1], frames/32, mels/32)
        x = F.dropout(x, p=p, training=drop)
        x = self.conv_block_after1(x, pool_size=(1, 1), pool_type="avg")   # (batch, after, frames/32, mels/32)
        return F.dropout(x, p=p, training=drop)

    def feature_map(self, wave: torch.Tensor) -> torch.Tensor:
        return self.feature_map_from_logmel(self.logmel(wave))             # (batch, after, frames/32, mels/32)

    def forward_logmel(self, x: torch.Tensor) -> torch.Tensor:
        """The embedding from a log-mel (batch, 1, frames, mel_bins), e.g. after mix-up."""
        emb = self._clip(torch.mean(self.feature_map_from_logmel(x), dim=3))  # (batch, embed_dim)
        return F.dropout(emb, p=self.cfg.fc_dropout, training=self.training)


def build_resnet38(name: str = "resnet38", pretrained: Union[bool, PathLike, None] = None,
                   weights: Optional[PathLike] = None, **overrides) -> ResNet38:
    """A ResNet38 variant by name; ``overrides`` replace :class:`ResNet38Config` fields.

    pretrained: None / False = random init; True = the published ``ResNet38_mAP=0.434.pth``
    (``resnet38`` only, via ``atrlib.models.weights.resolve_weights("panns-resnet38")``); a path = that
    checkpoint (``weights=`` is the same). Weights load with ``strict=True``.
    """
    return build_panns(ResNet38, RESNET38_CONFIGS, "ResNet38", name, PUBLISHED, pretrained, weights,
                       tuple_fields=("widths", "layers"), **overrides)


register_variants(build_resnet38, {  # every row of RESNET38_CONFIGS, full size and its tiny twin for tests
    "resnet38": "PANNs ResNet38: 32 kHz, 2048-d embedding, AudioSet mAP .434 with the published weights.",
    "resnet38-tiny": "One basic block per stage at 8-16 channels, 32-d embedding: the ResNet38 code path for tests.",
})
