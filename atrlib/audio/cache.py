"""The content-addressed on-disk cache of numpy arrays (features, frame features, embeddings).

An entry's key is sha256(audio file bytes + JSON of the settings that made it), so a changed
clip or a changed setting can never return a stale array; entries are written atomically.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from atrlib.files import content_hash, save_npy_atomic
from atrlib.paths import cache_dir


class FeatureCache:
    """Content-addressed store of numpy arrays.

    The key of an entry is sha256(audio file bytes + JSON of the settings that made it), so
    a changed clip or a changed setting can never return a stale array. Entries are written
    to a temporary file and renamed into place: a killed run leaves no half-written entry.

    Layout: ``<root>/<namespace>/<key[:2]>/<key>.npy`` with root ``cache_dir()/"features"``.
    """

    def __init__(self, root: str | Path | None = None, namespace: str = "default"):
        self.root = Path(root) if root is not None else cache_dir() / "features"
        self.dir = self.root / namespace
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(audio_path: str | Path, settings: dict) -> str:
        blob = content_hash(audio_path) + json.dumps(settings, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.npy"

    def get(self, key: str) -> Optional[np.ndarray]:
        p = self.path(key)
        if not p.exists():
            return None
        try:
            return np.load(p, allow_pickle=False)
        except Exception:  # unreadable entry (disk trouble): drop it and recompute
            p.unlink(missing_ok=True)
            return None

    def put(self, key: str, value: np.ndarray) -> None:
        save_npy_atomic(self.path(key), value)

    def lookup(self, audio_paths, settings: dict):
        """``(found, todo)`` for a list of clips: ``found[i]`` the cached array of clip ``i`` or
        None, ``todo`` the indices to compute (hits are counted)."""
        found = [self.get(self.key(p, settings)) for p in audio_paths]
        self.hits += sum(v is not None for v in found)
        return found, [i for i, v in enumerate(found) if v is None]

    def get_or_compute(self, audio_path: str | Path, settings: dict, fn: Callable[[], np.ndarray]) -> np.ndarray:
        k = self.key(audio_path, settings)
        v = self.get(k)
        if v is not None:
            self.hits += 1
            return v
        self.misses += 1
        v = np.asarray(fn())
        self.put(k, v)
        return v
