"""PANNs Wavegram-Logmel-CNN14 audio tower (Kong et al., 2020), state-dict compatible with
``Wavegram_Logmel_Cnn14_mAP=0.439.pth``.

Two branches meet after the first conv block, concatenated along channels (module names and
shapes = the official ``Wavegram_Logmel_Cnn14``, so the released file loads with ``strict=True``)::

    wave (batch, samples) @ 32 kHz
      wavegram: pre_conv0 (k11, stride 5) + pre_bn0 + ReLU      (batch, 64, samples/5)
                pre_block1..3 (dilated conv1d pairs, max pool 4) (batch, 128, samples/320)
                reshape to 4 "channels" x 32 "bins", transpose  (batch, 4, samples/320, 32)
                pre_block4 (ConvBlock 4 -> 64), pool (2, 1)       (batch, 64, frames/2, 32)
      log-mel:  as CNN14: STFT-as-conv, 64 Slaney mels, dB, bn0, SpecAugment (training)
                conv_block1 (1 -> 64), 2x2 avg pool              (batch, 64, frames/2, 32)
      concat                                                     (batch, 128, frames/2, 32)
      -> conv_block2..6 (128 -> 128, 256, 512, 1024, 2048), 2x2 pools but the last
                                                                 (batch, 2048, frames/32, 2)
      -> PANNs head (mean over mels = frames; max + mean over time; ReLU(fc1))  (batch, 2048)

The wavegram advances 320 samples per step, the STFT one hop (320) per frame plus one centre
frame, so for some input lengths the branches differ by one step after pooling; the authors'
code then fails (it only ever saw 10-s clips, where they agree). Here the longer branch is
cut to the shorter one: for every length the authors' code accepts, nothing changes.

81.1 M trainable parameters in ``wavegram-logmel-cnn14`` (+1.08 M in the frozen front end).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from atrlib.models.panns_blocks import (ConvBlock, ConvPreWavBlock, PannsConfig, PannsHead, init_head, build_panns)
from atrlib.models.towers import register_variants

PathLike = Union[str, Path]
PUBLISHED = {"wavegram-logmel-cnn14": "panns-wavegram-logmel-cnn14"}  # variant -> atrlib.models.weights name
WAVE_STRIDE = 5 * 4 * 4 * 4  # pre_conv0 stride x three max pools = samples per wavegram step


@dataclass(frozen=True)
class WavegramConfig(PannsConfig):
    stem: int = 64                                          # conv_block1 (log-mel branch) output channels
    wave_channels: Tuple[int, ...] = (64, 64, 128, 128)     # pre_conv0, pre_block1, pre_block2, pre_block3 outputs
    wave_out: int = 64                                      # pre_block4 output channels
    channels: Tuple[int, ...] = (128, 256, 512, 1024, 2048)  # conv_block2.. outputs (the last = frame_dim)


WAVEGRAM_CONFIGS: Dict[str, WavegramConfig] = {
    "wavegram-logmel-cnn14": WavegramConfig(),
    "wavegram-logmel-cnn14-tiny": WavegramConfig(stem=8, wave_channels=(8, 8, 16, 32), wave_out=8,
                                                 channels=(16, 32, 32), embed_dim=32),
}


class WavegramLogmelCnn14(PannsHead):
    """Wavegram-Logmel-CNN14 as an audio tower: wave (batch, samples) at 32 kHz -> (batch, embed_dim)."""

    def __init__(self, cfg: WavegramConfig = WavegramConfig()):
        super().__init__()
        rows = cfg.mel_bins // 2
        if cfg.hop_size != WAVE_STRIDE:
            raise ValueError(f"the wavegram advances {WAVE_STRIDE} samples per step; hop_size must be {WAVE_STRIDE}")
        if cfg.wave_channels[-1] % rows:
            raise ValueError(f"wave_channels[-1] ({cfg.wave_channels[-1]}) must be a multiple of mel_bins / 2 ({rows})")
        self.cfg = cfg
        self.sample_rate, self.embed_dim, self.frame_dim = cfg.sample_rate, cfg.embed_dim, cfg.channels[-1]
        self.time_stride = 2 ** len(cfg.channels)                          # STFT frames per output frame
        self.frame_hop_samples = self.time_stride * cfg.hop_size
        w = cfg.wave_channels
        self.pre_conv0 = nn.Conv1d(1, w[0], kernel_size=11, stride=5, padding=5, bias=False)
        self.pre_bn0 = nn.BatchNorm1d(w[0])
        self.pre_block1 = ConvPreWavBlock(w[0], w[1])
        self.pre_block2 = ConvPreWavBlock(w[1], w[2])
        self.pre_block3 = ConvPreWavBlock(w[2], w[3])
        self.pre_block4 = ConvBlock(w[3] // rows, cfg.wave_out)
        nn.init.xavier_uniform_(self.pre_conv0.weight)
        self.build_front_end(cfg)                                          # spectrogram, log-mel, SpecAugment, bn0
        widths = (cfg.stem + cfg.wave_out,) + tuple(cfg.channels)
        self.conv_block1 = ConvBlock(1, cfg.stem)
        for i in range(len(cfg.channels)):
            setattr(self, f"conv_block{i + 2}", ConvBlock(widths[i], widths[i + 1]))
        self.fc1 = nn.Linear(cfg.channels[-1], cfg.embed_dim)
        self.fc_audioset = nn.Linear(cfg.embed_dim, cfg.classes_num)
        init_head(self.fc1, self.fc_audioset)

    def wavegram(self, wave: torch.Tensor) -> torch.Tensor:
        """The learnt front end: (batch, samples) -> (batch, wave_out, samples/640, mel_bins/2)."""
        a = F.relu_(self.pre_bn0(self.pre_conv0(wave.float()[:, None, :])))  # (batch, w0, samples/5)
        a = self.pre_block1(a, pool_size=4)                                # (batch, w1, samples/20)
        a = self.pre_block2(a, pool_size=4)                                # (batch, w2, samples/80)
        a = self.pre_block3(a, pool_size=4)                                # (batch, w3, samples/320)
        a = a.reshape(a.shape[0], -1, self.cfg.mel_bins // 2, a.shape[-1]).transpose(2, 3)  # (batch, w3/32, steps, 32)
        return self.pre_block4(a, pool_size=(2, 1))                        # (batch, wave_out, steps/2, 32)

    def feature_map(self, wave: torch.Tensor) -> torch.Tensor:
        """(batch, samples) -> last conv map (batch, channels[-1], frames/32, mels/32)."""
        p, drop = self.cfg.conv_dropout, self.training
        a = self.wavegram(wave)                                            # (batch, wave_out, frames/2, mels/2)
        x = self.logmel(wave)                                              # (batch, 1, frames, mel_bins)
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)                    # (batch, 1, frames, mel_bins)
        x = self.spec_augmenter(x)                                         # (batch, 1, frames, mel_bins)
        x = self.conv_block1(x, pool_size=(2, 2), pool_type="avg")         # (batch, stem, frames/2, mels/2)
        steps = min(x.shape[2], a.shape[2])                                # the branches may differ by one step
        x = torch.cat((x[:, :, :steps], a[:, :, :steps]), dim=1)           # (batch, stem + wave_out, frames/2, mels/2)
        x = F.dropout(x, p=p, training=drop)
        n = len(self.cfg.channels)
        for i in range(n):
            last = i == n - 1
            x = getattr(self, f"conv_block{i + 2}")(x, pool_size=(1, 1) if last else (2, 2), pool_type="avg")
            x = F.dropout(x, p=p, training=drop)                           # (batch, channels[i], frames/2^(i+2), ...)
        return x


def build_wavegram(name: str = "wavegram-logmel-cnn14", pretrained: Union[bool, PathLike, None] = None,
                   weights: Optional[PathLike] = None, **overrides) -> WavegramLogmelCnn14:
    """A Wavegram-Logmel-CNN14 variant by name; ``overrides`` replace :class:`WavegramConfig` fields.

    pretrained: None / False = random init; True = the published ``Wavegram_Logmel_Cnn14_mAP=0.439.pth``
    (the full variant only, via ``atrlib.models.weights.resolve_weights("panns-wavegram-logmel-cnn14")``);
    a path = that checkpoint (``weights=`` is the same). Weights load with ``strict=True``.
    """
    return build_panns(WavegramLogmelCnn14, WAVEGRAM_CONFIGS, "Wavegram-Logmel-CNN14", name, PUBLISHED, pretrained, weights,
                       tuple_fields=("wave_channels", "channels"), **overrides)


register_variants(build_wavegram, {  # every row of WAVEGRAM_CONFIGS, full size and its tiny twin for tests
    "wavegram-logmel-cnn14": "PANNs Wavegram-Logmel-CNN14: 32 kHz, 2048-d embedding, AudioSet mAP .439 with the published weights.",
    "wavegram-logmel-cnn14-tiny": "Toy widths, three conv blocks after the merge, 32-d embedding: the same code path for tests.",
})
