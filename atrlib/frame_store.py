"""Frame sequences of a frozen audio tower, computed once per clip: what cross-modal
objectives (matching heads, MLM, the Q-Former) and re-ranking attend over.

The interface the training path and :mod:`atrlib.rerank` use is one method::

    frames, mask = store.get(clip_indices)     # (B, T, frame_dim) float32, (B, T) bool (True = valid)

:class:`FrameStore` keeps every clip's (T_i, frame_dim) array in memory (``dtype`` float16 by
default: half the memory, ~3 significant digits) and pads a batch to its longest clip.
:func:`tower_frames` fills it through the content-addressed :class:`~atrlib.cache.FeatureCache`
(namespace ``tower-frames``), so a second run reads the frames from disk. Any object with
this ``get`` (e.g. a memory-mapped cache for data that does not fit in memory) plugs in.

Memory: ``store.nbytes``; at Clotho size see the README (frames per second × seconds ×
frame_dim × bytes per value × clips).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from atrlib.cache import FeatureCache
from atrlib.embeddings import load_wave, module_device, unpadded_batches


class FrameStore:
    """Per-clip frame arrays in memory; ``get(idx)`` pads a batch to its longest clip."""

    def __init__(self, frames: Sequence[np.ndarray], dtype=np.float16):
        self.frames: List[np.ndarray] = [np.asarray(f, dtype=dtype) for f in frames]
        if not self.frames:
            raise ValueError("FrameStore needs at least one clip")
        self.frame_dim = int(self.frames[0].shape[1])

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def max_frames(self) -> int:
        return max(len(f) for f in self.frames)

    @property
    def nbytes(self) -> int:
        return int(sum(f.nbytes for f in self.frames))

    def get(self, idx, pad_to: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
        """(frames (B, T, D), mask (B, T)) with T = the batch's longest clip, or ``pad_to``
        (e.g. ``max_frames``, so batches of several processes can be gathered)."""
        idx = [int(i) for i in (idx.tolist() if isinstance(idx, torch.Tensor) else idx)]
        t = max([len(self.frames[i]) for i in idx] + [int(pad_to)])
        out = torch.zeros(len(idx), t, self.frame_dim)                          # (B, T, D)
        mask = torch.zeros(len(idx), t, dtype=torch.bool)                       # (B, T)
        for b, i in enumerate(idx):
            f = torch.from_numpy(self.frames[i].astype(np.float32))
            out[b, :len(f)] = f
            mask[b, :len(f)] = True
        return out, mask


@torch.no_grad()
def tower_frames(tower: nn.Module, tower_id: dict, dataset, seconds: float, batch_size: int = 16,
                 cache: Optional[FeatureCache] = None, progress: bool = True, dtype=np.float16) -> FrameStore:
    """A :class:`FrameStore` of ``tower.forward_frames`` over each clip's first ``seconds``
    (run unpadded, so no frame is computed from padding), through the cache."""
    from tqdm.auto import tqdm

    if not hasattr(tower, "forward_frames"):
        raise TypeError(f"{type(tower).__name__} has no forward_frames(); cross-modal objectives need frame outputs")
    cache = cache or FeatureCache(namespace="tower-frames")
    settings = {"tower": tower_id, "seconds": seconds, "padding": "none", "dtype": np.dtype(dtype).name}
    out, todo = cache.lookup([it["audio_path"] for it in dataset.items], settings)
    todo.sort(key=lambda i: float(dataset[i].get("duration") or 0.0))
    was_training = tower.training
    tower.eval()
    device = module_device(tower)
    get = lambda i: load_wave(dataset[i]["audio_path"], tower.sample_rate, seconds, pad=False)  # noqa: E731
    bar = tqdm(total=len(todo), desc="audio frames (frozen, cached)", disable=not progress or not todo)
    for idx, waves in unpadded_batches(get, todo, batch_size):
        frames, mask = tower.forward_frames(waves.to(device))                  # (B, T, D), (B, T)
        for b, i in enumerate(idx):
            f = frames[b][mask[b]].float().cpu().numpy().astype(dtype)          # (T_i, D)
            cache.put(cache.key(dataset[i]["audio_path"], settings), f)
            out[i] = f
        bar.update(len(idx))
    bar.close()
    tower.train(was_training)
    return FrameStore(out, dtype=dtype)
