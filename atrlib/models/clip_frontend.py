"""Tower-independent audio front-end options, set per model config: long clips in segments,
random training crops, SpecAugment for any log-mel tower.

    wave (batch, samples), lengths (batch,)
      -> training and train_crop_seconds: a random window of each clip's real audio
      -> segment_seconds: pad / cut to max_seconds, cut into segments (segment_bounds)
                                          (batch · segments, segment samples)
      -> the tower                        (batch · segments, D)
      -> mean / max over each clip's real segments          (batch, D)

:func:`atrlib.audio.io.segment_bounds` is the one rule for cutting a clip into segments (the DCASE
2024 winner pads to 30 s and cuts 10-s segments); ``atrlib.audio.io.segment`` cuts numpy clips with it.

:class:`ClipFrontend` wraps any audio tower and keeps its interface (``sample_rate``,
``embed_dim``, ``frame_dim``, ``forward``, ``forward_frames``); the dual encoder wraps its audio
tower when the model config has ``audio_frontend`` settings. SpecAugment settings go to every
:class:`~atrlib.models.frontend.SpecAugment` inside the tower (CNN14, ResNet38,
Wavegram-Logmel-CNN14, EfficientAT, small-cnn; masks act in training mode only).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Optional, Tuple

import torch
from torch import nn

from atrlib.audio.io import segment_bounds
from atrlib.models.frontend import SpecAugment


@dataclass
class AudioFrontendConfig:
    segment_seconds: Optional[float] = None     # cut clips into segments this long, pool their embeddings (None = whole clip)
    max_seconds: Optional[float] = None         # with segments: pad / cut every clip to this length first (Samsung: 30)
    segment_pool: str = "mean"                  # "mean" or "max" over a clip's real segments
    min_last_seconds: float = 1.0               # a last segment with less real audio than this is dropped
    train_crop_seconds: Optional[float] = None  # training mode: a random window this long of each clip (Lingban: 10.24)
    spec_time_masks: Optional[int] = None       # SpecAugment time stripes for the tower's log-mels (None = tower default)
    spec_time_width: Optional[int] = None       # max frames per time stripe
    spec_freq_masks: Optional[int] = None       # SpecAugment mel stripes
    spec_freq_width: Optional[int] = None       # max mel bins per stripe

    @classmethod
    def from_dict(cls, d: dict) -> "AudioFrontendConfig":
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown audio_frontend keys {sorted(unknown)}; known: {[f.name for f in fields(cls)]}")
        return cls(**d)


def configure_spec_augment(tower: nn.Module, time_masks: Optional[int] = None, time_width: Optional[int] = None,
                           freq_masks: Optional[int] = None, freq_width: Optional[int] = None) -> int:
    """Set the given SpecAugment fields on every SpecAugment module of ``tower``; returns how
    many there are. A tower without one cannot mask log-mels: asking it to is an error."""
    mods = [m for m in tower.modules() if isinstance(m, SpecAugment)]
    wanted = {k: v for k, v in dict(time_masks=time_masks, time_width=time_width, freq_masks=freq_masks,
                                    freq_width=freq_width).items() if v is not None}
    if wanted and not mods:
        raise ValueError(f"{type(tower).__name__} has no log-mel SpecAugment stage; remove spec_* from audio_frontend")
    for m in mods:
        for k, v in wanted.items():
            setattr(m, k, int(v))
    return len(mods)


def random_window(wave: torch.Tensor, lengths: torch.Tensor, n: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(batch, samples) -> ((batch, n) windows at uniform offsets inside each clip's real audio,
    their real lengths (batch,)); offsets from torch's RNG."""
    n = min(n, wave.shape[1])
    room = (lengths - n + 1).clamp(min=1)                                          # (batch,)
    start = (torch.rand(len(wave), device=wave.device) * room).long()              # (batch,)
    idx = start[:, None] + torch.arange(n, device=wave.device)[None]               # (batch, n)
    return wave.gather(1, idx), lengths.clamp(max=n)


class ClipFrontend(nn.Module):
    """Any audio tower behind :class:`AudioFrontendConfig` options, with the tower interface."""

    def __init__(self, tower: nn.Module, cfg: AudioFrontendConfig):
        super().__init__()
        if cfg.segment_pool not in ("mean", "max"):
            raise ValueError(f"segment_pool must be 'mean' or 'max', not {cfg.segment_pool!r}")
        self.tower, self.cfg = tower, cfg
        self.sample_rate, self.embed_dim = int(tower.sample_rate), int(tower.embed_dim)
        self.frame_dim = int(getattr(tower, "frame_dim", tower.embed_dim))
        configure_spec_augment(tower, cfg.spec_time_masks, cfg.spec_time_width, cfg.spec_freq_masks,
                               cfg.spec_freq_width)
        sr = self.sample_rate
        self.seg = int(round(cfg.segment_seconds * sr)) if cfg.segment_seconds else 0
        self.max_len = int(round(cfg.max_seconds * sr)) if cfg.max_seconds else None
        self.min_last = int(round(cfg.min_last_seconds * sr))

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in asdict(self.cfg).items() if v is not None)

    def _prepare(self, wave: torch.Tensor, lengths: Optional[torch.Tensor]):
        if wave.dim() == 1:
            wave = wave.unsqueeze(0)                                                 # (batch, samples)
        lengths = (torch.full((wave.shape[0],), wave.shape[1], device=wave.device) if lengths is None
                   else torch.as_tensor(lengths, device=wave.device).long())
        if self.training and self.cfg.train_crop_seconds:
            wave, lengths = random_window(wave, lengths, int(round(self.cfg.train_crop_seconds * self.sample_rate)))
        return wave, lengths

    def _segments(self, wave: torch.Tensor, lengths: torch.Tensor):
        """(segments (batch · S, seg), segment mask (batch, S), per-segment real lengths (batch · S,))."""
        b, n = wave.shape
        total = self.max_len if self.max_len is not None else max(self.seg * math.ceil(n / self.seg), self.seg)
        s = math.ceil(total / self.seg)
        x = torch.nn.functional.pad(wave[:, :total], (0, s * self.seg - min(n, total)))   # (batch, S · seg)
        seg_mask = torch.zeros(b, s, dtype=torch.bool, device=wave.device)              # (batch, S)
        for i, length in enumerate(lengths.tolist()):
            for start, _ in segment_bounds(int(length), self.seg, total, "pad", self.min_last):
                seg_mask[i, start // self.seg] = True
        starts = torch.arange(s, device=wave.device) * self.seg                          # (S,)
        seg_len = (lengths[:, None] - starts[None]).clamp(min=0, max=self.seg)           # (batch, S)
        return x.reshape(b * s, self.seg), seg_mask, seg_len.reshape(-1)

    def forward(self, wave: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        wave, lengths = self._prepare(wave, lengths)
        if not self.seg:
            return self.tower(wave)                                                      # (batch, D)
        segs, seg_mask, _ = self._segments(wave, lengths)
        emb = self.tower(segs).reshape(*seg_mask.shape, -1)                              # (batch, S, D)
        if self.cfg.segment_pool == "max":
            return emb.masked_fill(~seg_mask[..., None], torch.finfo(emb.dtype).min).amax(dim=1)  # (batch, D)
        m = seg_mask[..., None].to(emb.dtype)                                             # (batch, S, 1)
        return (emb * m).sum(1) / m.sum(1).clamp(min=1)                                  # (batch, D)

    def forward_frames(self, wave: torch.Tensor, lengths: Optional[torch.Tensor] = None):
        """Segments' frames one after another: ((batch, S · T, frame_dim), mask (batch, S · T))."""
        wave, lengths = self._prepare(wave, lengths)
        if not self.seg:
            return self.tower.forward_frames(wave, lengths)
        segs, seg_mask, seg_len = self._segments(wave, lengths)
        frames, mask = self.tower.forward_frames(segs, seg_len.clamp(min=1))            # (batch · S, T, F), (batch · S, T)
        b, s = seg_mask.shape
        mask = mask & seg_mask.reshape(-1, 1)                                            # padding-only segments drop out
        return frames.reshape(b, s * frames.shape[1], -1), mask.reshape(b, -1)


def wrap_audio_tower(tower: nn.Module, settings: Optional[dict]) -> nn.Module:
    """``tower`` behind a :class:`ClipFrontend` when ``settings`` (a model config's
    ``audio_frontend``) sets anything; unchanged otherwise."""
    if not settings:
        return tower
    return ClipFrontend(tower, AudioFrontendConfig.from_dict(settings))


__all__ = ["AudioFrontendConfig", "ClipFrontend", "configure_spec_augment", "random_window", "segment_bounds",
           "wrap_audio_tower"]
