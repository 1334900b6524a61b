"""EfficientAT MobileNetV3 AudioSet taggers (Schmid et al., 2023), one class for every width.

The network is torchvision's MobileNetV3-Large adapted to 1-channel log-mel input, with a
two-layer MLP head over 527 AudioSet classes. ``width_mult`` scales every channel count
(rounded to a multiple of 8), so ``mn04`` (0.4) and ``mn10`` (1.0) are the same class.
Module names follow the authors' state dicts (``features.N.block.M...``, ``classifier.2``,
``classifier.5``), so their released weights load strictly, key for key.

    wave (batch, samples) @ 32 kHz
      -> LogMel(FEATURE_PRESETS["efficientat"])      (batch, 128, frames)      mels 0-15 kHz
      -> SpecAugment (training, off by default)       masked cells = log 0, i.e. 0.9 after the affine
      -> features: stem conv + 15 inverted residuals + 1x1 conv   (batch, C, 4, frames/32)
      -> mean over frequency = the frames             (batch, frames/32, C)     forward_frames
      -> mean over time = the embedding               (batch, C)    C = 6 * last block width
      -> classifier MLP (C -> hidden -> 527)          (batch, 527) logits; sigmoid = tag probs

For ``mn04`` the embedding is 384-d (``embed_dim``) and the MLP hidden layer 512-d.

Registered audio towers: ``efficientat-mn04`` (the released ``mn04_as_mAP_432.pt``, AudioSet
mAP .432) and ``efficientat-mn10`` (``mn10_as_mAP_471.pt``, downloaded when not present).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn

from atrlib.audio.features import FEATURE_PRESETS, FeatureConfig, LogMel
from atrlib.models.frames import frames_mask
from atrlib.models.frontend import SpecAugment
from atrlib.models.towers import AUDIO_TOWERS

NUM_AUDIOSET_CLASSES = 527


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round ``v`` to the nearest multiple of ``divisor`` (never below it), and up by one
    step if rounding lost more than 10% (the MobileNet rule for scaled widths)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


@dataclass(frozen=True)
class BlockSpec:
    """One inverted-residual block of MobileNetV3-Large, channels at width 1.0."""

    in_ch: int        # input channels
    kernel: int       # depthwise kernel size
    expanded: int     # channels after the 1x1 expansion
    out_ch: int       # output channels
    se: bool          # squeeze-and-excitation after the depthwise conv
    hswish: bool      # Hardswish (True) or ReLU (False)
    stride: int       # depthwise stride (2 halves frequency and time)


# MobileNetV3-Large (Howard et al. 2019, table 1), as in torchvision and EfficientAT.
MOBILENET_V3_LARGE: Tuple[BlockSpec, ...] = (
    BlockSpec(16, 3, 16, 16, False, False, 1),
    BlockSpec(16, 3, 64, 24, False, False, 2),
    BlockSpec(24, 3, 72, 24, False, False, 1),
    BlockSpec(24, 5, 72, 40, True, False, 2),
    BlockSpec(40, 5, 120, 40, True, False, 1),
    BlockSpec(40, 5, 120, 40, True, False, 1),
    BlockSpec(40, 3, 240, 80, False, True, 2),
    BlockSpec(80, 3, 200, 80, False, True, 1),
    BlockSpec(80, 3, 184, 80, False, True, 1),
    BlockSpec(80, 3, 184, 80, False, True, 1),
    BlockSpec(80, 3, 480, 112, True, True, 1),
    BlockSpec(112, 3, 672, 112, True, True, 1),
    BlockSpec(112, 5, 672, 160, True, True, 2),
    BlockSpec(160, 5, 960, 160, True, True, 1),
    BlockSpec(160, 5, 960, 160, True, True, 1),
)
LAST_CHANNEL = 1280  # hidden width of the MLP head at width 1.0


def _bn(ch: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(ch, eps=0.001, momentum=0.01)  # EfficientAT's BatchNorm settings


class ConvBNAct(nn.Sequential):
    """conv (0) -> BatchNorm (1) -> activation (2, optional): torchvision's ConvNormActivation names."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 act: Optional[type] = nn.Hardswish):
        layers: List[nn.Module] = [
            nn.Conv2d(cin, cout, kernel, stride=stride, padding=(kernel - 1) // 2, groups=groups, bias=False),
            _bn(cout),
        ]
        if act is not None:
            layers.append(act(inplace=True))
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    """Channel squeeze-and-excitation: mean over (freq, time) -> fc1 -> ReLU -> fc2 -> sigmoid -> scale."""

    def __init__(self, channels: int, squeeze: int):
        super().__init__()
        self.fc1 = nn.Linear(channels, squeeze)
        self.fc2 = nn.Linear(squeeze, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3))                                      # (batch, channels)
        s = torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))        # (batch, channels)
        return x * s[:, :, None, None]                              # (batch, channels, freq, time)


class ConcurrentSE(nn.Module):
    """EfficientAT's container for SE layers over several axes; the released AudioSet models
    use the channel axis only, which is all this supports (one layer, so no aggregation)."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        self.conc_se_layers = nn.ModuleList([SqueezeExcite(channels, make_divisible(channels // reduction))])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conc_se_layers[0](x)


class InvertedResidual(nn.Module):
    """[1x1 expand] -> depthwise kxk -> [SE] -> 1x1 project, with a residual when shapes allow."""

    def __init__(self, spec: BlockSpec, width_mult: float):
        super().__init__()
        cin, exp, cout = (make_divisible(c * width_mult) for c in (spec.in_ch, spec.expanded, spec.out_ch))
        act = nn.Hardswish if spec.hswish else nn.ReLU
        layers: List[nn.Module] = []
        if exp != cin:
            layers.append(ConvBNAct(cin, exp, 1, act=act))
        layers.append(ConvBNAct(exp, exp, spec.kernel, stride=spec.stride, groups=exp, act=act))
        if spec.se:
            layers.append(ConcurrentSE(exp))
        layers.append(ConvBNAct(exp, cout, 1, act=None))
        self.block = nn.Sequential(*layers)
        self.residual = spec.stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)                                           # (batch, cout, freq', time')
        return x + y if self.residual else y


class EfficientAT(nn.Module):
    """EfficientAT MobileNetV3 tagger and audio tower.

    Parameters
    ----------
    width_mult: channel width multiplier (0.4 = ``mn04``, 1.0 = ``mn10``, ...).
    num_classes: output tags (527 AudioSet classes).
    dropout: dropout before the last linear layer (training only).
    features: the log-mel front end; default the ``efficientat`` preset (32 kHz, 128 Kaldi mels).
    spec_time_masks, spec_time_width, spec_freq_masks, spec_freq_width: SpecAugment stripes in
        training (the authors train with one time stripe < 192 frames and one mel stripe < 48 bins).

    Attributes: ``sample_rate`` (32000), ``embed_dim`` = ``frame_dim`` (pooled CNN features, 384
    for mn04), ``hidden_dim`` (MLP hidden layer), ``num_classes``, ``frame_hop_samples`` (10240).
    Calls: ``forward(wave) -> embedding``, ``forward_frames(wave) -> (frames, mask)``,
    ``tag(wave) -> logits``, ``tag_and_embed(wave) -> (logits, embedding)``, ``forward_mel(mel)``
    for precomputed log-mels.
    """

    def __init__(self, width_mult: float = 0.4, num_classes: int = NUM_AUDIOSET_CLASSES, dropout: float = 0.2,
                 features: FeatureConfig | str = "efficientat", spec_time_masks: int = 0, spec_time_width: int = 192,
                 spec_freq_masks: int = 0, spec_freq_width: int = 48):
        super().__init__()
        self.width_mult = width_mult
        self.num_classes = num_classes
        self.frontend = LogMel(features if isinstance(features, FeatureConfig) else FEATURE_PRESETS[features])
        fc = self.frontend.cfg
        self.spec_augment = SpecAugment(spec_time_masks, spec_time_width, spec_freq_masks, spec_freq_width,
                                        fill=(0.0 - fc.norm_mean) / fc.norm_std)  # log-mel 0, as the authors mask
        self.sample_rate = fc.sample_rate
        self.frame_hop_samples = 32 * fc.hop_length                 # stem + 4 stride-2 blocks halve time 5 times
        blocks = MOBILENET_V3_LARGE
        stem = make_divisible(blocks[0].in_ch * width_mult)
        last_in = make_divisible(blocks[-1].out_ch * width_mult)
        self.embed_dim = self.frame_dim = 6 * last_in
        self.hidden_dim = make_divisible(LAST_CHANNEL * width_mult)
        self.features = nn.Sequential(
            ConvBNAct(1, stem, 3, stride=2),
            *[InvertedResidual(b, width_mult) for b in blocks],
            ConvBNAct(last_in, self.embed_dim, 1),
        )
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(1),
            nn.Linear(self.embed_dim, self.hidden_dim),
            nn.Hardswish(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(self.hidden_dim, num_classes),
        )
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_mel(self, mel: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Log-mel (batch, n_mels, frames) or (batch, 1, n_mels, frames) -> (logits, embedding)."""
        if mel.dim() == 3:
            mel = mel.unsqueeze(1)                                  # (batch, 1, n_mels, frames)
        x = self.features(mel)                                      # (batch, embed_dim, n_mels/32, frames/32)
        emb = x.mean(dim=(2, 3))                                    # (batch, embed_dim)
        logits = self.classifier(x)                                 # (batch, num_classes)
        return logits, emb

    def logmel(self, wave: torch.Tensor) -> torch.Tensor:
        """Waveform (batch, samples) -> normalised log-mel (batch, n_mels, frames), SpecAugment in training."""
        if wave.dim() == 1:
            wave = wave.unsqueeze(0)                                # (batch, samples)
        mel = self.frontend(wave)                                   # (batch, n_mels, frames)
        return self.spec_augment(mel.transpose(1, 2)).transpose(1, 2)  # (batch, n_mels, frames)

    def tag_and_embed(self, wave: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Waveform (batch, samples) at ``sample_rate`` -> (logits (batch, 527), embedding (batch, embed_dim))."""
        return self.forward_mel(self.logmel(wave))

    def forward_logmel(self, mel: torch.Tensor) -> torch.Tensor:
        """The embedding from a log-mel (batch, n_mels, frames), e.g. after mix-up."""
        return self.forward_mel(mel)[1]

    def forward_frames(self, wave: torch.Tensor, lengths: Optional[torch.Tensor] = None):
        """(frames (batch, frames/32, embed_dim), mask (batch, frames/32)): the last feature map
        averaged over frequency; its mean over time is :meth:`forward`'s embedding."""
        x = self.features(self.logmel(wave)[:, None])               # (batch, embed_dim, n_mels/32, frames/32)
        frames = x.mean(dim=2).transpose(1, 2)                      # (batch, frames/32, embed_dim)
        return frames, frames_mask(lengths, frames.shape[0], frames.shape[1], self.frame_hop_samples, frames.device)

    def tag(self, wave: torch.Tensor) -> torch.Tensor:
        """Tag logits (batch, num_classes); ``torch.sigmoid`` gives per-class probabilities."""
        return self.tag_and_embed(wave)[0]

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """Audio-tower contract: waveform (batch, samples) -> embedding (batch, embed_dim)."""
        return self.tag_and_embed(wave)[1]


def load_checkpoint(model: nn.Module, path: str | Path) -> nn.Module:
    """Load an EfficientAT state dict into ``model`` strictly (every key, every shape).

    The release files are plain tensor dicts, so ``weights_only=True`` (no arbitrary
    unpickling) works; a file it refuses is not one of the released checkpoints.
    """
    path = Path(path)
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise RuntimeError(
            f"{path}: torch.load(weights_only=True) refused this file ({type(e).__name__}: {e}). The released "
            "EfficientAT checkpoints are plain tensor dicts; re-download it — atrlib will not unpickle arbitrary objects."
        ) from e
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise RuntimeError(f"{path}: does not match EfficientAT(width_mult={getattr(model, 'width_mult', '?')}): {e}") from e
    return model


def efficientat(width_mult: float = 0.4, weights: Optional[str] = "efficientat-mn04", pretrained: bool = True,
                path: Optional[str | Path] = None, download: bool = True, **kw) -> EfficientAT:
    """Build an :class:`EfficientAT` and, when ``pretrained``, load ``weights`` (a name known to
    :mod:`atrlib.models.weights`, found via :func:`atrlib.models.weights.resolve_weights`; ``path`` overrides).
    Returned in eval mode."""
    model = EfficientAT(width_mult=width_mult, **kw)
    if pretrained:
        from atrlib.models.weights import resolve_weights

        load_checkpoint(model, resolve_weights(weights, path=path, download=download))
    return model.eval()


@AUDIO_TOWERS.register("efficientat-mn04")
def efficientat_mn04(pretrained: bool = True, path: Optional[str | Path] = None, download: bool = True,
                     **kw) -> EfficientAT:
    """EfficientAT mn04_as (width 0.4, 983,599 parameters, AudioSet mAP .432, 384-d embedding)."""
    return efficientat(0.4, "efficientat-mn04", pretrained=pretrained, path=path, download=download, **kw)


@AUDIO_TOWERS.register("efficientat-mn10")
def efficientat_mn10(pretrained: bool = True, path: Optional[str | Path] = None, download: bool = True,
                     **kw) -> EfficientAT:
    """EfficientAT mn10_as (width 1.0, AudioSet mAP .471, 960-d embedding); downloaded on first use."""
    return efficientat(1.0, "efficientat-mn10", pretrained=pretrained, path=path, download=download, **kw)


def _labels_csv() -> Path:
    from atrlib.paths import shared_dir
    from atrlib.models.weights import resolve_weights

    candidates = []
    try:
        candidates.append(resolve_weights("efficientat-mn04", download=False).parent / "class_labels_indices.csv")
    except FileNotFoundError:
        pass
    sd = shared_dir()
    if sd is not None:
        candidates.append(sd / "weights" / "efficientat_mn04" / "class_labels_indices.csv")
    from atrlib.paths import cache_dir

    candidates.append(cache_dir() / "weights" / "class_labels_indices.csv")
    for c in candidates:
        if c.exists():
            return c
    raise FileNotFoundError(
        "class_labels_indices.csv (the 527 AudioSet class names) was not found; looked in: "
        + ", ".join(str(c) for c in candidates)
        + ". Download it from http://storage.googleapis.com/us_audioset/youtube_corpus/v1/csv/class_labels_indices.csv "
        f"and save it as {cache_dir() / 'weights' / 'class_labels_indices.csv'}, or pass path= to audioset_labels()."
    )


@lru_cache(maxsize=4)
def _read_labels(path: str) -> Tuple[str, ...]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: int(r["index"]))
    names = tuple(r["display_name"] for r in rows)
    if len(names) != NUM_AUDIOSET_CLASSES:
        raise ValueError(f"{path}: expected {NUM_AUDIOSET_CLASSES} AudioSet classes, found {len(names)}")
    return names


def audioset_labels(path: Optional[str | Path] = None) -> List[str]:
    """The 527 AudioSet class names in model output order (``index`` column of
    ``class_labels_indices.csv``: beside the weights, in the shared folder, or in the cache)."""
    if path is not None and not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no AudioSet class list here (class_labels_indices.csv with columns index,mid,display_name)")
    return list(_read_labels(str(Path(path) if path is not None else _labels_csv())))


def top_tags(logits: torch.Tensor, k: int = 5, labels: Optional[Sequence[str]] = None) -> List[List[Tuple[str, float]]]:
    """Top-``k`` (label, probability) pairs for each row of logits (batch, 527)."""
    labels = list(labels) if labels is not None else audioset_labels()
    probs = torch.sigmoid(logits.detach().float().cpu())            # (batch, classes)
    vals, idx = probs.topk(k, dim=-1)                               # (batch, k)
    return [[(labels[i], float(v)) for v, i in zip(vr.tolist(), ir.tolist())] for vr, ir in zip(vals, idx)]
