"""Frame sequences of frozen audio towers: what cross-modal objectives (matching heads, MLM,
the Q-Former) and re-ranking attend over, in memory or memory-mapped.

In memory
---------

The interface the training path and :mod:`atrlib.retrieval.rerank` use is one method::

    frames, mask = store.get(clip_indices)     # (B, T, frame_dim) float32, (B, T) bool (True = valid)

:class:`FrameStore` keeps every clip's (T_i, frame_dim) array in memory (``dtype`` float16 by
default: half the memory, ~3 significant digits) and pads a batch to its longest clip.
:func:`tower_frames` fills it through the content-addressed :class:`~atrlib.audio.cache.FeatureCache`
(namespace ``tower-frames``), so a second run reads the frames from disk. Any object with
this ``get`` (e.g. a memory-mapped cache for data that does not fit in memory) plugs in.

Memory: ``store.nbytes``; at Clotho size see the README (frames per second × seconds ×
frame_dim × bytes per value × clips).


Memory-mapped, for data that does not fit in memory
---------------------------------------------------
Clotho development through BEATs is ~3,800 clips × ~1,500 frames × 768 values: 4.4 G values,
8.76 GB as float16 (17.5 GB as float32) — more than a laptop's memory. Here every clip's
(T_i, frame_dim) frames lie back to back in one file read through ``np.memmap``: only the
pages a batch touches are read, and the OS page cache decides what stays in memory.

Layout of a store folder (written atomically: built in ``<folder>.tmp-*`` beside it, then
renamed into place, so a killed build leaves no half store and readers never see one)::

    frames.bin     raw (total_frames, frame_dim) values, C order, ``dtype`` (float16 default)
    offsets.npy    (clips,) int64   first row of each clip in frames.bin
    lengths.npy    (clips,) int64   rows (frames) of each clip
    meta.json      {"dtype", "frame_dim", "total_frames", "clips", "key", ...}

:class:`MemmapFrameStore` has the frame-store interface (``get(clip_indices) -> (frames (B, T, D)
float32, mask (B, T) bool)``, ``frame_dim``, ``len``, ``nbytes``), so it plugs in wherever an
in-memory store does. :func:`build_frame_cache` writes one from any iterator of per-clip
arrays; :func:`tower_frame_cache` fills one from a tower's ``forward_frames`` over a dataset,
in a folder named by the content of the clips and the tower's identity (a different checkpoint,
setting or clip never reuses a stale store).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from atrlib.audio.cache import FeatureCache
from atrlib.audio.embeddings import load_wave, module_device, unpadded_batches
from atrlib.paths import cache_dir


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


STORE_FILES = ("frames.bin", "offsets.npy", "lengths.npy", "meta.json")


class MemmapFrameStore:
    """Read side of a store folder written by :func:`build_frame_cache`."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        missing = [f for f in STORE_FILES if not (self.folder / f).is_file()]
        if missing:
            raise FileNotFoundError(f"{self.folder}: not a frame cache (missing {', '.join(missing)}); "
                                    "build it with atrlib.audio.frames.build_frame_cache")
        self.meta = json.loads((self.folder / "meta.json").read_text())
        self.frame_dim = int(self.meta["frame_dim"])
        self.dtype = np.dtype(self.meta["dtype"])
        self.offsets = np.load(self.folder / "offsets.npy")                     # (clips,)
        self.lengths = np.load(self.folder / "lengths.npy")                     # (clips,)
        total = int(self.meta["total_frames"])
        expected = total * self.frame_dim * self.dtype.itemsize
        size = (self.folder / "frames.bin").stat().st_size
        if size != expected:
            raise ValueError(f"{self.folder}/frames.bin has {size:,} bytes, meta.json says {expected:,}; rebuild it")
        self.frames = np.memmap(self.folder / "frames.bin", dtype=self.dtype, mode="r",
                                shape=(max(total, 1), self.frame_dim)) if total else np.zeros((0, self.frame_dim), self.dtype)

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def nbytes(self) -> int:
        """Bytes on disk of the frame values (what an in-memory store would need)."""
        return int(self.meta["total_frames"]) * self.frame_dim * self.dtype.itemsize

    def clip(self, i: int) -> np.ndarray:
        """(T_i, frame_dim) view into the memory map (no copy)."""
        o, n = int(self.offsets[i]), int(self.lengths[i])
        return self.frames[o:o + n]

    @property
    def max_frames(self) -> int:
        return int(self.lengths.max()) if len(self.lengths) else 0

    def get(self, idx, pad_to: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
        """(frames (B, T, frame_dim) float32, mask (B, T) bool): the clips ``idx`` padded to the
        longest, or to ``pad_to`` (e.g. ``max_frames``, so batches of several processes gather)."""
        idx = [int(i) for i in (idx.tolist() if isinstance(idx, torch.Tensor) else idx)]
        t = max([int(self.lengths[i]) for i in idx] + [1, int(pad_to)])
        out = torch.zeros(len(idx), t, self.frame_dim)                          # (B, T, D)
        mask = torch.zeros(len(idx), t, dtype=torch.bool)                       # (B, T)
        for b, i in enumerate(idx):
            f = torch.from_numpy(np.asarray(self.clip(i), dtype=np.float32))   # (T_i, D), read from disk
            out[b, :len(f)] = f
            mask[b, :len(f)] = True
        return out, mask


def build_frame_cache(folder: str | Path, clips: Iterable[np.ndarray], frame_dim: int, dtype="float16",
                      meta: Optional[dict] = None) -> MemmapFrameStore:
    """Write every (T_i, frame_dim) array of ``clips`` (in order) into a new store at ``folder``.

    Streams: one clip in memory at a time. Atomic: everything goes to a temporary folder beside
    ``folder``, renamed into place at the end; an existing ``folder`` is an error (delete it to
    rebuild). ``meta`` (JSON-able) is stored in ``meta.json``.
    """
    folder = Path(folder)
    if folder.exists():
        raise FileExistsError(f"{folder} exists; open it with MemmapFrameStore, or delete it to rebuild")
    folder.parent.mkdir(parents=True, exist_ok=True)
    dt = np.dtype(dtype)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.tmp-"))
    try:
        offsets, lengths, total = [], [], 0
        with open(tmp / "frames.bin", "wb") as f:
            for k, arr in enumerate(clips):
                a = np.ascontiguousarray(np.asarray(arr), dtype=dt)
                if a.ndim != 2 or a.shape[1] != frame_dim:
                    raise ValueError(f"clip {k}: frames of shape {a.shape}, expected (frames, {frame_dim})")
                f.write(a.tobytes())
                offsets.append(total)
                lengths.append(len(a))
                total += len(a)
            f.flush()
            os.fsync(f.fileno())
        np.save(tmp / "offsets.npy", np.asarray(offsets, dtype=np.int64))
        np.save(tmp / "lengths.npy", np.asarray(lengths, dtype=np.int64))
        info = {**(meta or {}), "dtype": dt.name, "frame_dim": int(frame_dim), "total_frames": total,
                "clips": len(lengths)}
        (tmp / "meta.json").write_text(json.dumps(info, indent=1, default=str))
        os.replace(tmp, folder)                                               # atomic on one file system
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return MemmapFrameStore(folder)


def frame_cache_key(tower_id: dict, audio_paths, seconds: float, dtype: str) -> str:
    """sha256 over the clips' contents (in order) and the settings that make their frames."""
    from atrlib.files import content_hash

    h = hashlib.sha256(json.dumps({"tower": tower_id, "seconds": seconds, "dtype": np.dtype(dtype).name},
                                  sort_keys=True, default=str).encode())
    for p in audio_paths:
        h.update(content_hash(p).encode())
    return h.hexdigest()


@torch.no_grad()
def tower_frame_cache(tower: torch.nn.Module, tower_id: dict, dataset, seconds: float,
                      root: Optional[str | Path] = None, dtype="float16", progress: bool = True) -> MemmapFrameStore:
    """The memory-mapped frames of a frozen tower's ``forward_frames`` over each clip's first
    ``seconds`` (each clip run unpadded; its valid frames only), built once under
    ``root`` (default ``cache_dir()/"frame-caches"``) in a folder named by :func:`frame_cache_key`."""
    from tqdm.auto import tqdm

    from atrlib.audio.embeddings import load_wave, module_device

    if not hasattr(tower, "forward_frames"):
        raise TypeError(f"{type(tower).__name__} has no forward_frames()")
    paths = [it["audio_path"] for it in dataset.items]
    root = Path(root) if root is not None else cache_dir() / "frame-caches"
    folder = root / frame_cache_key(tower_id, paths, seconds, dtype)
    if folder.exists():
        return MemmapFrameStore(folder)
    was_training = tower.training
    tower.eval()
    device = module_device(tower)

    def clips():
        for p in tqdm(paths, desc="audio frames (memory-mapped)", disable=not progress):
            wave = load_wave(p, tower.sample_rate, seconds, pad=False)[None].to(device)   # (1, samples)
            frames, mask = tower.forward_frames(wave)                                     # (1, T, D), (1, T)
            yield frames[0][mask[0]].float().cpu().numpy()                               # (T_i, D)

    try:
        return build_frame_cache(folder, clips(), int(tower.frame_dim), dtype,
                                 meta={"tower": tower_id, "seconds": seconds, "n_clips": len(paths)})
    finally:
        tower.train(was_training)
