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
amin))`` with ref 1.0, amin 1e-10, no top_db. It equals ``atrlib.audio.features.LogMel("panns")``.

One parameterised class builds every variant: ``Cnn14Config.channels`` sets the number and
width of the conv blocks (``cnn14-tiny`` is a 3-block toy for tests).

The tower's embedding is PANNs' "embedding": ReLU(fc1(.)), 2048-d; :meth:`Cnn14.tag` gives the
527 AudioSet clip-wise probabilities (sigmoid of ``fc_audioset``); ``forward_frames`` gives the
last conv block's features per 320 ms (mean over mels) with a validity mask. The blocks, head
and loader are shared with ResNet38 and Wavegram-Logmel-CNN14 through :mod:`atrlib.models.panns_blocks`.

Loading: the official file is ``{"iteration": int, "model": state_dict, "sampler": {...}}``
and its sampler state holds numpy int64 arrays, so plain ``torch.load(weights_only=True)``
refuses it (``Unsupported global: numpy.core.multiarray._reconstruct``). We keep
``weights_only=True`` and allow-list only numpy's array / scalar / dtype reconstructors
(:func:`atrlib.models.weights.torch_load_weights_only`): numpy data, no arbitrary code.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from atrlib.models.panns_blocks import (ConvBlock, PannsConfig, PannsHead, init_head, load_panns_state_dict,  # noqa: F401
                                        build_panns)
from atrlib.models.towers import register_variants

PathLike = Union[str, Path]
PANNS_WEIGHTS = "panns-cnn14"  # atrlib.models.weights name of Cnn14_mAP=0.431.pth (Zenodo 3987831)


# ---------------------------------------------------------------------------------------------
# The network
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cnn14Config(PannsConfig):
    channels: Tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)  # one ConvBlock per entry (the last = frame_dim)


CNN14_CONFIGS: Dict[str, Cnn14Config] = {
    "cnn14": Cnn14Config(),
    "cnn14-tiny": Cnn14Config(channels=(8, 16, 32), embed_dim=32),  # tests only: same code, 36.7k trainable
}


class Cnn14(PannsHead):
    """CNN14 as an audio tower: wave (batch, samples) at 32 kHz -> (batch, embed_dim); frames
    (batch, frames / 2^(blocks-1), channels[-1]) from :meth:`forward_frames`."""

    def __init__(self, cfg: Cnn14Config = Cnn14Config()):
        super().__init__()
        self.cfg = cfg
        self.sample_rate, self.embed_dim, self.frame_dim = cfg.sample_rate, cfg.embed_dim, cfg.channels[-1]
        self.time_stride = 2 ** (len(cfg.channels) - 1)                    # STFT frames per output frame
        self.frame_hop_samples = self.time_stride * cfg.hop_size
        self.build_front_end(cfg)                                          # spectrogram, log-mel, SpecAugment, bn0
        widths = (1,) + tuple(cfg.channels)
        for i in range(len(cfg.channels)):
            setattr(self, f"conv_block{i + 1}", ConvBlock(widths[i], widths[i + 1]))
        self.fc1 = nn.Linear(cfg.channels[-1], cfg.embed_dim)
        self.fc_audioset = nn.Linear(cfg.embed_dim, cfg.classes_num)
        init_head(self.fc1, self.fc_audioset)

    @property
    def blocks(self):
        return [getattr(self, f"conv_block{i + 1}") for i in range(len(self.cfg.channels))]

    def feature_map_from_logmel(self, x: torch.Tensor) -> torch.Tensor:
        """dB log-mel (batch, 1, frames, mel_bins) -> last conv map (batch, channels[-1], frames', mels')."""
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)                    # (batch, 1, frames, mel_bins)
        x = self.spec_augmenter(x)                                         # (batch, 1, frames, mel_bins)
        for i, block in enumerate(self.blocks):
            last = i == len(self.blocks) - 1
            x = block(x, pool_size=(1, 1) if last else (2, 2), pool_type="avg")  # (batch, ch_i, frames/2^i, mels/2^i)
            x = F.dropout(x, p=self.cfg.conv_dropout, training=self.training)
        return x

    def feature_map(self, wave: torch.Tensor) -> torch.Tensor:
        return self.feature_map_from_logmel(self.logmel(wave))             # (batch, channels[-1], frames', mels')

    def forward_logmel(self, x: torch.Tensor) -> torch.Tensor:
        """The embedding from a log-mel (batch, 1, frames, mel_bins), e.g. after mix-up."""
        emb = self._clip(torch.mean(self.feature_map_from_logmel(x), dim=3))  # (batch, embed_dim)
        return F.dropout(emb, p=self.cfg.fc_dropout, training=self.training)


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------
def build_cnn14(name: str = "cnn14", pretrained: Union[bool, PathLike, None] = None,
                weights: Optional[PathLike] = None, **overrides) -> Cnn14:
    """A CNN14 variant by name; ``overrides`` replace :class:`Cnn14Config` fields.

    pretrained: None / False = random init; True = the published weights (``cnn14`` only, via
    ``atrlib.models.weights.resolve_weights("panns-cnn14")``); a path = that checkpoint. ``weights=`` is the same as
    passing a path. Weights load with ``strict=True``.
    """
    return build_panns(Cnn14, CNN14_CONFIGS, "CNN14", name, {"cnn14": PANNS_WEIGHTS}, pretrained, weights,
                       tuple_fields=("channels",), **overrides)


register_variants(build_cnn14, {  # every row of CNN14_CONFIGS, full size and its tiny twin for tests
    "cnn14": "PANNs CNN14: 32 kHz, 2048-d embedding, 80.75 M trainable parameters (+1.08 M in the frozen front end).",
    "cnn14-tiny": "Three small conv blocks (8-16-32 channels), 32-d embedding: the CNN14 code path for tests.",
})
