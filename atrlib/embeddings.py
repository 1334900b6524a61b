"""Inputs for training and scoring: waveforms in memory, and frozen towers' outputs computed
once and cached on disk.

- :func:`load_waves` — every clip of a dataset as one (clips, samples) tensor at the tower's
  rate, cropped / padded to a fixed length (small datasets; training crops from these).
- :func:`audio_tower_embeddings` — a frozen audio tower's output per clip, cached per file
  content + tower identity in a :class:`~atrlib.features.FeatureCache`.
- :func:`text_tower_embeddings` — a frozen text tower's output for a list of captions, cached
  as one array keyed by the captions + tower identity (atomic write).

A tower's identity is its config plus a hash of its weights, so a different checkpoint or
setting can never return stale embeddings.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

from atrlib.audio import load_audio, pad_or_crop
from atrlib.features import FeatureCache
from atrlib.paths import cache_dir


def weights_hash(module: nn.Module) -> str:
    """sha256 over a module's state (names, shapes and values), first 16 hex digits."""
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        t = v.detach().cpu().contiguous()
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()[:16]


def load_waves(dataset, sample_rate: int, seconds: float, crop: str = "start", progress: bool = True) -> torch.Tensor:
    """(clips, samples) float32: each clip resampled, then cropped / zero-padded to ``seconds``."""
    from tqdm.auto import tqdm

    n = int(round(seconds * sample_rate))
    out = torch.zeros(len(dataset), n)
    for i, it in enumerate(tqdm(dataset.items, desc="loading audio", disable=not progress, leave=False)):
        x, _ = load_audio(it["audio_path"], sample_rate=sample_rate, duration=None if crop == "random" else seconds)
        out[i] = torch.from_numpy(pad_or_crop(x, n, mode="center" if crop == "center" else "start"))
    return out


@torch.no_grad()
def audio_tower_embeddings(tower: nn.Module, tower_id: dict, dataset, seconds: float, batch_size: int = 16,
                           device: str = "cpu", cache: Optional[FeatureCache] = None, progress: bool = True) -> np.ndarray:
    """(clips, tower.embed_dim) float32 of a frozen audio tower, through the cache."""
    from tqdm.auto import tqdm

    cache = cache or FeatureCache(namespace="tower-embeddings")
    settings = {"tower": tower_id, "seconds": seconds}
    out: list = [None] * len(dataset)
    todo = []
    for i, it in enumerate(dataset.items):
        v = cache.get(cache.key(it["audio_path"], settings))
        if v is None:
            todo.append(i)
        else:
            out[i] = v
            cache.hits += 1
    tower.eval()
    n = int(round(seconds * tower.sample_rate))
    for s in tqdm(range(0, len(todo), batch_size), desc="audio tower (frozen, cached)", disable=not progress or not todo):
        idx = todo[s:s + batch_size]
        waves = []
        for i in idx:
            x, _ = load_audio(dataset[i]["audio_path"], sample_rate=tower.sample_rate, duration=seconds)
            waves.append(torch.from_numpy(pad_or_crop(x, n)))
        emb = tower(torch.stack(waves).to(device)).float().cpu().numpy()   # (batch, embed_dim)
        for i, e in zip(idx, emb):
            cache.put(cache.key(dataset[i]["audio_path"], settings), e)
            cache.misses += 1
            out[i] = e
    return np.stack(out).astype(np.float32)


@torch.no_grad()
def text_tower_embeddings(tower: nn.Module, tower_id: dict, texts: Sequence[str], batch_size: int = 128,
                          root: Optional[Path] = None, progress: bool = True) -> np.ndarray:
    """(len(texts), tower.embed_dim) float32 of a frozen text tower, cached as one file."""
    from tqdm.auto import tqdm

    key = hashlib.sha256(json.dumps({"tower": tower_id, "texts": list(texts)}, sort_keys=True, default=str)
                         .encode()).hexdigest()
    root = Path(root) if root is not None else cache_dir() / "text-embeddings"
    path = root / f"{key}.npy"
    if path.exists():
        try:
            return np.load(path, allow_pickle=False)
        except Exception:
            path.unlink(missing_ok=True)
    tower.eval()
    chunks = [tower(list(texts[s:s + batch_size])).float().cpu().numpy()
              for s in tqdm(range(0, len(texts), batch_size), desc="text tower (frozen, cached)", disable=not progress)]
    emb = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros((0, tower.embed_dim), np.float32)
    root.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=root, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, emb, allow_pickle=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return emb
