"""``mel-stats``: a parameter-free audio tower — log-mel band statistics over time segments.

wave -> log-mel (64 bands, 16 kHz ``small`` preset) -> for each of ``segments`` equal time
segments the per-band mean and standard deviation, plus the per-band maximum over the clip,
-> one vector of ``n_mels * (2 * segments + 1)`` values, standardised per clip.

Its frames (``forward_frames``) are the log-mel frames themselves, ``frame_dim = n_mels``.

It knows nothing it was not told, yet keeps pitch (which bands), loudness (level), order
(which segment) and texture (spread) — enough for heads trained on top of it to learn the
embedded synthetic dataset in seconds on a CPU. It is the demo's frozen audio tower and a
floor any learned tower must beat.
"""
from __future__ import annotations

import torch
from torch import nn

from atrlib.audio.features import LogMel, get_feature_config
from atrlib.models.frames import frames_mask
from atrlib.models.towers import AUDIO_TOWERS


class MelStats(nn.Module):
    def __init__(self, features: str = "small", segments: int = 4):
        super().__init__()
        cfg = get_feature_config(features)
        self.logmel = LogMel(cfg)
        self.segments = segments
        self.sample_rate = cfg.sample_rate
        self.embed_dim = cfg.n_mels * (2 * segments + 1)
        self.frame_dim = cfg.n_mels
        self.frame_hop_samples = cfg.hop_length

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.dim() == 1:
            wave = wave.unsqueeze(0)                                   # (batch, samples)
        x = self.logmel(wave)                                          # (batch, mels, frames)
        chunks = torch.tensor_split(x, self.segments, dim=2)           # segments × (batch, mels, frames/segments)
        parts = [c.mean(dim=2) for c in chunks] + [c.std(dim=2) for c in chunks] + [x.amax(dim=2)]
        v = torch.cat(parts, dim=1)                                    # (batch, mels * (2 * segments + 1))
        return (v - v.mean(dim=1, keepdim=True)) / (v.std(dim=1, keepdim=True) + 1e-5)

    def forward_frames(self, wave: torch.Tensor, lengths=None):
        """(log-mel frames (batch, frames, n_mels), mask (batch, frames))."""
        if wave.dim() == 1:
            wave = wave.unsqueeze(0)                                   # (batch, samples)
        frames = self.logmel(wave).transpose(1, 2)                     # (batch, frames, mels)
        return frames, frames_mask(lengths, frames.shape[0], frames.shape[1], self.frame_hop_samples, frames.device)


@AUDIO_TOWERS.register("mel-stats")
def mel_stats(pretrained=None, **kw) -> MelStats:
    """Parameter-free; ``pretrained`` is ignored (there is nothing to load)."""
    return MelStats(**kw)
