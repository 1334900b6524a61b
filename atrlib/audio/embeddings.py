"""Inputs for training and scoring: waveforms, and frozen towers' outputs computed once and
cached on disk.

- :func:`load_waves` — every clip of a dataset as one (clips, samples) tensor at the tower's
  rate, cropped / zero-padded to a fixed length (small datasets; training crops from these);
  :func:`load_wave` reads one clip the same way (datasets too large to hold in memory).
- :func:`audio_tower_embeddings` — a frozen audio tower's output per clip, cached per file
  content + tower identity in a :class:`~atrlib.audio.cache.FeatureCache`
  (``cache_dir()/features/tower-embeddings/``).
- :func:`text_tower_embeddings` — a frozen text tower's output for a list of captions, cached
  as one ``.npy`` keyed by sha256 of the captions + tower identity
  (``cache_dir()/text-embeddings/``), written atomically.

A tower's identity (``tower_id``) is a JSON-able dict — its registry name, kwargs, weights
source and :func:`weights_hash` — so a different checkpoint or setting can never return stale
embeddings.
"""
from __future__ import annotations

import hashlib
import weakref
import json
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from atrlib.audio.cache import FeatureCache
from atrlib.audio.io import load_audio, min_samples, pad_or_crop, pad_to_min
from atrlib.files import save_npy_atomic
from atrlib.paths import cache_dir


_HASHED: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()


def weights_hash(module: nn.Module) -> str:
    """sha256 over a module's state (names, shapes and values), first 16 hex digits.

    Remembered per module while none of its tensors is replaced or changed in place (their
    storage and version counters are the key), so asking again for a frozen tower is free."""
    state = module.state_dict()
    key = tuple((k, v.data_ptr(), v._version, tuple(v.shape)) for k, v in state.items())
    hit = _HASHED.get(module)
    if hit is not None and hit[0] == key:
        return hit[1]
    h = hashlib.sha256()
    for k, v in sorted(state.items()):
        h.update(k.encode())
        t = v.detach().cpu().contiguous()
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    digest = h.hexdigest()[:16]
    _HASHED[module] = (key, digest)
    return digest


def module_device(module: nn.Module) -> torch.device:
    """Where a module's first parameter (or buffer) lives; the CPU for an empty module."""
    for t in list(module.parameters()) + list(module.buffers()):
        return t.device
    return torch.device("cpu")


def load_wave(path: str, sample_rate: int, seconds: float, crop: str = "start",
              rng: Optional[np.random.Generator] = None, pad: bool = True, min_len: int = 0) -> torch.Tensor:
    """(samples,) float32: one file resampled to ``sample_rate`` and cropped to ``seconds``
    (``crop`` = ``"start"``, ``"center"`` or ``"random"`` with ``rng``); shorter files are
    zero-padded to exactly ``seconds`` unless ``pad=False`` — and then still to ``min_len``
    (a tower's shortest input, :func:`atrlib.audio.io.min_samples`)."""
    n = int(round(seconds * sample_rate))
    x, _ = load_audio(path, sample_rate=sample_rate, duration=seconds if crop == "start" else None)
    x = pad_or_crop(x, n, mode=crop, rng=rng) if pad or len(x) > n else pad_to_min(x, min(min_len, n))
    return torch.from_numpy(np.ascontiguousarray(x))


def run_in_batches(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
    """``fn`` over ``x`` (n, ...) in slices of at most ``batch_size`` rows, concatenated: the
    memory a tower needs stays bounded however many segments a long clip has."""
    if len(x) <= batch_size:
        return fn(x)
    return torch.cat([fn(part) for part in torch.split(x, batch_size)])


def load_waves(dataset, sample_rate: int, seconds: float, crop: str = "start", progress: bool = True,
               seed: int = 0, return_lengths: bool = False):
    """(clips, samples) float32: every clip of ``dataset`` through :func:`load_wave`
    (``"random"`` crops drawn from ``numpy.random.default_rng(seed)``). With
    ``return_lengths`` also (clips,) int64: samples of real audio before the zero padding."""
    from tqdm.auto import tqdm

    n = int(round(seconds * sample_rate))
    rng = np.random.default_rng(seed) if crop == "random" else None
    out = torch.zeros(len(dataset), n)                                   # (clips, samples)
    lengths = torch.zeros(len(dataset), dtype=torch.long)                # (clips,)
    for i, it in enumerate(tqdm(dataset.items, desc="loading audio", disable=not progress, leave=False)):
        x = load_wave(it["audio_path"], sample_rate, seconds, crop, rng, pad=False)
        out[i, :len(x)] = x
        lengths[i] = len(x)
    return (out, lengths) if return_lengths else out


def same_length_runs(lengths: Sequence[int], batch_size: int) -> List[List[int]]:
    """Batches of indices of equal ``lengths`` (at most ``batch_size`` each), so clips can be
    run unpadded: a clip's embedding never depends on the padding its batch needed."""
    order = sorted(range(len(lengths)), key=lambda i: (int(lengths[i]), i))
    batches: List[List[int]] = []
    for i in order:
        if batches and len(batches[-1]) < batch_size and int(lengths[batches[-1][0]]) == int(lengths[i]):
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def unpadded_batches(get_wave: Callable[[int], torch.Tensor], order: Sequence[int], batch_size: int
                     ) -> Iterator[Tuple[List[int], torch.Tensor]]:
    """Yield (indices, (batch, samples) waves) over ``order``: ``batch_size`` clips are loaded
    at a time and runs of equal length stacked (sort ``order`` by length to batch well)."""
    order = list(order)
    for s in range(0, len(order), batch_size):
        chunk = order[s:s + batch_size]
        waves = [get_wave(i) for i in chunk]
        for run in same_length_runs([len(w) for w in waves], batch_size):
            yield [chunk[j] for j in run], torch.stack([waves[j] for j in run])


@torch.no_grad()
def audio_tower_embeddings(tower: nn.Module, tower_id: dict, dataset, seconds: float, batch_size: int = 16,
                           device=None, cache: Optional[FeatureCache] = None, progress: bool = True) -> np.ndarray:
    """(clips, tower.embed_dim) float32 of a frozen audio tower over each clip's first
    ``seconds`` (unpadded: clips of equal length share a batch), through the cache;
    ``device`` defaults to the tower's."""
    from tqdm.auto import tqdm

    cache = cache or FeatureCache(namespace="tower-embeddings")
    shortest = min_samples(tower)
    settings = {"tower": tower_id, "seconds": seconds, "padding": "none", "min_samples": shortest}
    device = device or module_device(tower)
    out, todo = cache.lookup([it["audio_path"] for it in dataset.items], settings)
    todo.sort(key=lambda i: float(dataset[i].get("duration") or 0.0))  # similar lengths batch together
    was_training = tower.training
    tower.eval()
    bar = tqdm(total=len(todo), desc="audio tower (frozen, cached)", disable=not progress or not todo)
    get = lambda i: load_wave(dataset[i]["audio_path"], tower.sample_rate, seconds, pad=False,  # noqa: E731
                              min_len=shortest)  # very short clips: zero-padded to the tower's minimum
    for idx, waves in unpadded_batches(get, todo, batch_size):
        emb = tower(waves.to(device)).float().cpu().numpy()                      # (batch, embed_dim)
        for i, e in zip(idx, emb):
            cache.put(cache.key(dataset[i]["audio_path"], settings), e)
            cache.misses += 1
            out[i] = e
        bar.update(len(idx))
    bar.close()
    tower.train(was_training)
    if not out:
        return np.zeros((0, tower.embed_dim), np.float32)
    return np.stack(out).astype(np.float32)


def text_cache_path(tower_id: dict, texts: Sequence[str], root: Optional[Path] = None) -> Path:
    """Where :func:`text_tower_embeddings` keeps the array for these texts and this tower."""
    key = hashlib.sha256(json.dumps({"tower": tower_id, "texts": list(texts)}, sort_keys=True, default=str)
                         .encode()).hexdigest()
    root = Path(root) if root is not None else cache_dir() / "text-embeddings"
    return root / f"{key}.npy"


@torch.no_grad()
def text_tower_embeddings(tower: nn.Module, tower_id: dict, texts: Sequence[str], batch_size: int = 128,
                          root: Optional[Path] = None, progress: bool = True) -> np.ndarray:
    """(len(texts), tower.embed_dim) float32 of a frozen text tower, cached as one file."""
    from tqdm.auto import tqdm

    path = text_cache_path(tower_id, texts, root)
    if path.exists():
        try:
            return np.load(path, allow_pickle=False)
        except Exception:  # unreadable entry: drop it and recompute
            path.unlink(missing_ok=True)
    was_training = tower.training
    tower.eval()
    chunks = [tower(list(texts[s:s + batch_size])).float().cpu().numpy()           # (batch, embed_dim)
              for s in tqdm(range(0, len(texts), batch_size), desc="text tower (frozen, cached)", disable=not progress)]
    tower.train(was_training)
    emb = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros((0, tower.embed_dim), np.float32)
    save_npy_atomic(path, emb)
    return emb
