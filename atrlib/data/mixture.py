"""``mixture``: several datasets as one training set, with per-source sampling weights.

    ds = load_dataset("mixture", sources=[
        {"name": "clotho",    "root": "/data/clotho",    "split": "development", "weight": 1.0},
        {"name": "audiocaps", "root": "/data/audiocaps", "split": "train",       "weight": 1.0, "on_error": "skip"},
        {"name": "wavcaps",   "root": "/data/wavcaps",   "sources": ["FreeSound"], "weight": 0.5, "fraction": 0.25},
    ], exclude_freesound_ids="/data/clotho", seed=0)
    idx = sample_indices(ds, n=10_000, seed=epoch)        # which items an epoch draws

Each source entry names a registered dataset (``name``), gives its loader's keywords (root,
split, ...) and two mixture settings:

- ``weight`` (default 1): the source's share of draws. Every item gets ``sample_weight`` =
  weight / (sum of weights × the source's clip count), so the items of one source together
  hold weight / sum(weights) of the probability mass, whatever the source's size;
  :func:`sample_indices` draws by those weights (seeded, deterministic), and any weighted
  sampler (``torch.utils.data.WeightedRandomSampler``) can use them.
- ``fraction`` (default 1): keep a seeded random subset of this share of the source's clips
  (e.g. Xiaomi's "40,000 Freesound clips" of WavCaps), chosen the same way on every run.

Items keep their own fields; ``clip_id`` becomes ``<label>:<clip_id>`` (label = ``label`` or
``name``) so ids from different corpora never collide, and ``source`` says where each came
from. ``exclude_freesound_ids=`` is passed to every source (Clotho's evaluation clips out of
WavCaps / FSD50K); per-source entries may override it.
"""
from __future__ import annotations

import hashlib
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from atrlib.data.base import DATASETS, AudioCaptionDataset, load_dataset
from atrlib.errors import DatasetError

MIXTURE_KEYS = ("name", "label", "weight", "fraction")


def _seed_for(seed: int, label: str) -> int:
    """A per-source seed that depends on the label, not on the source's position in the list."""
    return int(hashlib.sha256(f"{seed}:{label}".encode()).hexdigest()[:12], 16)


def _entries(sources) -> List[dict]:
    if isinstance(sources, Mapping):
        sources = [dict(spec, label=spec.get("label", label)) for label, spec in sources.items()]
    if not sources:
        raise DatasetError("mixture needs sources=[{'name': ..., 'root': ..., 'weight': ...}, ...]")
    out = []
    for i, s in enumerate(sources):
        if not isinstance(s, Mapping) or "name" not in s:
            raise DatasetError(f"mixture source {i}: needs a 'name' (a registered dataset), got {s!r}")
        s = dict(s)
        s.setdefault("label", s["name"])
        w, f = float(s.get("weight", 1.0)), float(s.get("fraction", 1.0))
        if not w >= 0:
            raise DatasetError(f"mixture source {i} ({s['label']}): weight must be >= 0, got {w}")
        if not 0 < f <= 1:
            raise DatasetError(f"mixture source {i} ({s['label']}): fraction must be in (0, 1], got {f}")
        s["weight"], s["fraction"] = w, f
        out.append(s)
    labels = [s["label"] for s in out]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise DatasetError(f"mixture: source label(s) {', '.join(dup)} used twice; give each entry its own 'label'")
    if sum(s["weight"] for s in out) <= 0:
        raise DatasetError("mixture: all weights are 0")
    return out


@DATASETS.register("mixture")
def load_mixture(root=None, split: str = "train", sources: Optional[Sequence[dict] | Mapping[str, dict]] = None,
                 seed: int = 0, exclude_freesound_ids=None, limit: Optional[int] = None, **_) -> AudioCaptionDataset:
    """The mixture of ``sources`` (see the module docstring); ``root`` is unused (each source has its own)."""
    entries = _entries(sources)
    parts = []
    for s in entries:
        kw = {k: v for k, v in s.items() if k not in MIXTURE_KEYS}
        if exclude_freesound_ids is not None:
            kw.setdefault("exclude_freesound_ids", exclude_freesound_ids)
        if s["name"] == "mixture":
            raise DatasetError("mixture: a source cannot itself be a mixture; list its sources instead")
        ds = load_dataset(s["name"], **kw)
        items = list(ds.items)
        if s["fraction"] < 1:
            rng = np.random.default_rng(_seed_for(seed, s["label"]))
            k = max(1, int(round(s["fraction"] * len(items)))) if items else 0
            keep = np.sort(rng.choice(len(items), size=k, replace=False))
            items = [items[i] for i in keep]
        parts.append((s, ds, items))
    total_w = sum(s["weight"] for s, _, items in parts if items)
    out, skipped = [], []
    for s, ds, items in parts:
        skipped += [f"{s['label']}: {m}" for m in ds.skipped]
        for it in items:
            new = dict(it)
            new["clip_id"] = f"{s['label']}:{it['clip_id']}"
            new.setdefault("source", ds.name)
            new["sample_weight"] = s["weight"] / (total_w * len(items))
            out.append(new)
    if limit:
        out = out[:limit]
    return AudioCaptionDataset(name="mixture", split=split, root=None, items=out, skipped=skipped)  # type: ignore[arg-type]


def source_shares(dataset: AudioCaptionDataset) -> Dict[str, float]:
    """``{source: share of the sampling mass}`` of a mixture (sums to 1)."""
    out: Dict[str, float] = {}
    for it in dataset.items:
        out[it["source"]] = out.get(it["source"], 0.0) + float(it.get("sample_weight", 0.0))
    return out


def sample_indices(dataset: AudioCaptionDataset, n: int, seed: int = 0, replace: bool = True) -> np.ndarray:
    """``n`` item indices drawn by the items' ``sample_weight`` with a seeded generator (the
    same seed gives the same draw; use the epoch number as seed for a new draw per epoch).
    ``replace=False`` draws distinct items (n at most the number with non-zero weight)."""
    w = np.array([float(it.get("sample_weight", 1.0)) for it in dataset.items], dtype=np.float64)  # (items,)
    if not len(w) or w.sum() <= 0:
        raise ValueError("sample_indices: the dataset has no items with a positive sample_weight")
    return np.random.default_rng(seed).choice(len(w), size=n, replace=replace, p=w / w.sum())
