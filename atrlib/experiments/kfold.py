"""k-fold training (as the 2024 Samsung system did): pool development + validation, split the
clips into K folds, train K models — each validating on its own held-out fold — and score all
of them on the same test split, so their test matrices can be ensembled.

Folds are by clip (all captions of a clip stay in one fold), drawn with scikit-learn's
``KFold(shuffle=True, random_state=seed)``. Each fold's run folder holds what any training
run holds (``best/``, ``sim_<val>.npz`` on its own fold, ``sim_<test>.npz``, ``metrics.json``).
Validation matrices differ between folds (different clips), so fold ensembles weight their
members equally (or by each fold's validation score); they are not fitted on one shared
validation set.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Dict, List

from atrlib.train.config import TrainConfig
from atrlib.train.dev_run import folds_to_train
from atrlib.train.loop import run_training


def kfold_train(cfg: TrainConfig, k: int = 5, out_dir: str | Path | None = None) -> List[Path]:
    """Train ``k`` models on folds of ``cfg.train_split`` + ``cfg.val_split``; returns the run
    folders ``<out_dir>/fold<i>``, each scored on ``cfg.test_split``. Each is one training run
    with ``fold=i, folds=k`` (:func:`atrlib.data.splits.load_splits` cuts the folds).
    ``cfg.fast_dev_run``: the first fold only (a dry run)."""
    out = Path(out_dir or cfg.out_dir)
    runs = []
    for i in folds_to_train(k, cfg):
        run = out / f"fold{i}"
        run_training(replace(cfg, out_dir=str(run), fold=i, folds=k))
        runs.append(run)
    return runs
