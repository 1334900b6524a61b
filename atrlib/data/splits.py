"""The splits a run uses: the train / validation / test datasets a config names, and k-fold
cuts of train + validation by clip (as the 2024 Samsung system trained its folds).

Folds are by clip (all captions of a clip stay in one fold), drawn with scikit-learn's
``KFold(shuffle=True, random_state=seed)``.
"""
from __future__ import annotations

from typing import Any, Dict, List

from atrlib.data.base import AudioCaptionDataset, load_dataset


def make_folds(pool: AudioCaptionDataset, k: int, seed: int = 0) -> List[Dict[str, AudioCaptionDataset]]:
    """K (train, val) pairs of datasets over ``pool``'s clips."""
    from sklearn.model_selection import KFold

    if k < 2 or k > len(pool):
        raise ValueError(f"k must be between 2 and the number of clips ({len(pool)}), not {k}")
    folds = []
    for i, (tr, va) in enumerate(KFold(n_splits=k, shuffle=True, random_state=seed).split(range(len(pool)))):
        folds.append({
            "train": AudioCaptionDataset(pool.name, f"fold{i}-train", pool.root, [pool.items[j] for j in tr]),
            "val": AudioCaptionDataset(pool.name, f"fold{i}-val", pool.root, [pool.items[j] for j in va]),
        })
    return folds


def load_splits(cfg) -> Dict[str, Any]:
    """The train / val / test datasets named by ``cfg`` (test only when ``test_split``).

    k-fold (``cfg.fold >= 0``): the clips of train + val are pooled and cut into ``cfg.folds``
    folds by clip (:func:`make_folds`, seeded by ``cfg.seed``); "val" is
    fold ``cfg.fold`` (split name ``fold<k>-val``), "train" the other folds, test is unchanged.
    """
    kw = dict(root=cfg.root or None, size=cfg.size, **cfg.dataset_kwargs)
    names = {"train": cfg.train_split, "val": cfg.val_split, "test": cfg.test_split}
    fold, folds = int(getattr(cfg, "fold", -1)), int(getattr(cfg, "folds", 0))
    if fold >= 0 and not (folds >= 2 and fold < folds):
        raise ValueError(f"fold={fold} needs folds >= 2 and fold < folds (folds={folds}); fold=-1 turns k-fold off")
    if fold >= 0 and not (cfg.train_split and cfg.val_split):
        raise ValueError("k-fold (fold >= 0) pools train_split and val_split: set both")
    data = {k: load_dataset(cfg.dataset, split=s, **kw).subset(cfg.max_clips) for k, s in names.items() if s}
    if fold < 0:
        return data
    tr, va = data["train"], data["val"]
    pool = AudioCaptionDataset(tr.name, f"{tr.split}+{va.split}", tr.root, tr.items + va.items)
    data.update(make_folds(pool, folds, cfg.seed)[fold])  # {"train": the other folds, "val": fold k}
    return data
