"""Re-split training + validation into new training / validation sets (Xiaomi 2023 on Clotho:
development + validation pooled and re-split 9:1, 4,395 / 489 clips; evaluation untouched).

    load_dataset("clotho-resplit", root="/data/clotho", split="train")        # 4,395 clips
    load_dataset("clotho-resplit", root="/data/clotho", split="validation")   #   489 clips
    load_dataset("clotho-resplit", root="/data/clotho", split="evaluation")   # the official test split
    load_dataset("synth-resplit", size="tiny", split="train")                 # the same rule on synth

The pool is the base dataset's training split followed by its validation split; a seeded
permutation (``numpy.random.default_rng(seed)``) of the pool's clips puts the first
``ceil(len(pool) * val_fraction)`` into the new validation set, the rest (in pool order) into
training. Every caption of a clip stays with its clip, and the test split is the base's own,
so no test clip can move into training. Any other keyword (``root``, ``size``, ``on_error``,
...) goes to the base loader. Registered names: ``clotho-resplit``, ``synth-resplit``.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from atrlib.data.base import DATASETS, SPLIT_ROLES, AudioCaptionDataset, load_dataset
from atrlib.errors import DatasetError


def resplit(train: AudioCaptionDataset, val: AudioCaptionDataset, val_fraction: float = 0.1, seed: int = 0
            ) -> tuple[AudioCaptionDataset, AudioCaptionDataset]:
    """(new train, new validation) from the pooled clips of ``train`` and ``val``."""
    if not 0 < val_fraction < 1:
        raise DatasetError(f"val_fraction must be in (0, 1), got {val_fraction}")
    pool = list(train.items) + list(val.items)
    ids = [it["clip_id"] for it in pool]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise DatasetError(f"{train.name}: clips {dup} are in both {train.split} and {val.split}; cannot re-split")
    n_val = math.ceil(len(pool) * val_fraction)
    if not 0 < n_val < len(pool):
        raise DatasetError(f"{train.name}: {len(pool)} clips cannot be re-split {1 - val_fraction:g}:{val_fraction:g}")
    chosen = set(np.random.default_rng(seed).permutation(len(pool))[:n_val].tolist())
    new_train = [it for i, it in enumerate(pool) if i not in chosen]
    new_val = [it for i, it in enumerate(pool) if i in chosen]
    return (AudioCaptionDataset(train.name, "train", train.root, new_train),
            AudioCaptionDataset(train.name, "validation", train.root, new_val))


def _load(base: str, splits: dict, root=None, split: str = "train", val_fraction: float = 0.1,
          resplit_seed: int = 0, limit: Optional[int] = None, **kw) -> AudioCaptionDataset:
    role = next((r for r, names in SPLIT_ROLES.items() if str(split).lower() in names), None)
    if role is None:
        raise DatasetError(f"unknown {base}-resplit split {split!r}; use train, validation or {splits['test']}")
    if role == "test":
        return load_dataset(base, root=root, split=splits["test"], limit=limit, **kw)
    tr, va = resplit(load_dataset(base, root=root, split=splits["train"], **kw),
                     load_dataset(base, root=root, split=splits["val"], **kw), val_fraction, resplit_seed)
    out = tr if role == "train" else va
    return out.subset(limit) if limit else out


@DATASETS.register("clotho-resplit")
def load_clotho_resplit(root=None, split: str = "train", **kw) -> AudioCaptionDataset:
    """Clotho development + validation re-split 9:1 (``val_fraction=0.1``); evaluation as is."""
    return _load("clotho", {"train": "development", "val": "validation", "test": "evaluation"}, root, split, **kw)


@DATASETS.register("synth-resplit")
def load_synth_resplit(root=None, split: str = "train", **kw) -> AudioCaptionDataset:
    """The synth dataset's train + validation re-split 9:1; test as is (the tiny twin of ``clotho-resplit``)."""
    return _load("synth", {"train": "train", "val": "validation", "test": "test"}, root, split, **kw)
