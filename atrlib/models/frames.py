"""The two outputs every audio tower has, and the helpers behind them.

Every tower in ``AUDIO_TOWERS`` is an ``nn.Module`` with

- ``sample_rate`` (int): the rate its waveform input must have;
- ``embed_dim`` (int): size of the pooled clip embedding;
- ``frame_dim`` (int): size of one frame (or patch) of the frame sequence;
- ``forward(wave (batch, samples)) -> (batch, embed_dim)``: the pooled clip embedding;
- ``forward_frames(wave (batch, samples), lengths=None) -> (frames (batch, T, frame_dim),
  mask (batch, T) bool)``: the sequence the pooling sees (cross-modal objectives — matching
  heads, Q-Formers — attend over it). ``mask`` is True for valid frames; ``lengths`` (batch,)
  gives the samples of real audio per clip when the batch was zero-padded (default: the whole
  input; a tower that pads internally, e.g. to a fixed window, masks its own padding).

What a "frame" is depends on the tower (conv features per 320 ms for PANNs, per 320 ms for
EfficientAT, transformer tokens for ``hf-audio``, 2.3-s blocks for aisfx, STFT frames for
``mel-stats``); ``frame_hop_samples`` of a tower says how many input samples one frame advances.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch


def frames_mask(lengths: Optional[torch.Tensor], batch: int, n_frames: int, hop_samples: int,
                device=None) -> torch.Tensor:
    """(batch, n_frames) bool: frame ``t`` is valid when it starts within the real audio,
    ``t * hop_samples <= length`` (a centred STFT's last frame sits on the end); the first frame
    is always valid. ``lengths=None``: all valid."""
    if lengths is None:
        return torch.ones(batch, n_frames, dtype=torch.bool, device=device)
    lengths = torch.as_tensor(lengths, device=device).reshape(-1)               # (batch,)
    starts = torch.arange(n_frames, device=device) * hop_samples               # (n_frames,)
    mask = starts[None, :] <= lengths[:, None]                                 # (batch, n_frames)
    mask[:, 0] = True
    return mask


def masked_mean(frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``frames`` (batch, T, D) over the valid positions of ``mask`` (batch, T): (batch, D)."""
    m = mask.unsqueeze(-1).to(frames.dtype)                                   # (batch, T, 1)
    return (frames * m).sum(1) / m.sum(1).clamp(min=1.0)                      # (batch, D)


def masked_max(frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max of ``frames`` (batch, T, D) over the valid positions of ``mask`` (batch, T): (batch, D)."""
    neg = torch.finfo(frames.dtype).min
    return frames.masked_fill(~mask.unsqueeze(-1), neg).amax(dim=1)           # (batch, D)


def pool_frames(frames: torch.Tensor, mask: torch.Tensor, how: str = "mean") -> torch.Tensor:
    """``"mean"``, ``"max"`` (over valid frames) or ``"cls"`` (the first frame): (batch, D)."""
    if how == "mean":
        return masked_mean(frames, mask)
    if how == "max":
        return masked_max(frames, mask)
    if how == "cls":
        return frames[:, 0]                                                   # (batch, D)
    raise ValueError(f"unknown pooling {how!r}; use 'mean', 'max' or 'cls'")


def check_tower(tower, wave: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run both outputs and assert the interface (attributes, shapes, dtypes); for tests.
    Returns (pooled, frames, mask)."""
    for attr in ("sample_rate", "embed_dim", "frame_dim"):
        assert isinstance(getattr(tower, attr, None), int), f"{type(tower).__name__}.{attr} missing or not an int"
    pooled = tower(wave)
    frames, mask = tower.forward_frames(wave)
    b = wave.shape[0]
    assert pooled.shape == (b, tower.embed_dim), (tuple(pooled.shape), tower.embed_dim)
    assert frames.dim() == 3 and frames.shape[0] == b and frames.shape[2] == tower.frame_dim, tuple(frames.shape)
    assert mask.shape == frames.shape[:2] and mask.dtype == torch.bool, (tuple(mask.shape), mask.dtype)
    return pooled, frames, mask
