"""Scored systems on disk, for the ensemble stage: find them, make more of them.

A *system* is anything whose validation and test similarity matrices exist as
``sim_<split>.npz`` (:mod:`atrlib.simfile`) in one folder: a training run, an evaluate-stage
output, a k-fold member, a zero-shot retriever scored by :func:`score_retriever`.
"""
from __future__ import annotations

import glob
from dataclasses import replace
from pathlib import Path
from typing import Dict, Iterable, List, Mapping

from atrlib.simfile import SimilarityMatrix, load_similarity, save_similarity


def find_systems(patterns: Iterable[str], base: str | Path = ".", val_split: str = "validation",
                 test_split: str = "test") -> Dict[str, Path]:
    """name -> folder for every folder matching ``patterns`` (globs, relative to ``base``)
    that holds both ``sim_<val_split>.npz`` and ``sim_<test_split>.npz``. Names are the
    folder names, made unique with their parent's name when needed."""
    found: Dict[str, Path] = {}
    for pat in patterns:
        p = Path(pat)
        full = str(p if p.is_absolute() else Path(base) / p)
        for d in sorted(glob.glob(full)):
            d = Path(d)
            if (d / f"sim_{val_split}.npz").exists() and (d / f"sim_{test_split}.npz").exists():
                name = d.name if d.name not in found else f"{d.parent.name}/{d.name}"
                found[name] = d
    return found


def load_systems(folders: Mapping[str, Path], split: str) -> Dict[str, SimilarityMatrix]:
    return {name: load_similarity(Path(d) / f"sim_{split}.npz") for name, d in folders.items()}


def train_variants(base, variants: List[dict], out_dir: str | Path, data=None) -> Dict[str, Path]:
    """Train each variant (a dict of TrainConfig fields plus ``name``) into
    ``<out_dir>/<name>``; a folder whose ``metrics.json`` exists is reused."""
    from tqdm.auto import tqdm

    from atrlib.training import load_splits, run_training

    out = Path(out_dir)
    data = data if data is not None else load_splits(base)
    runs = {}
    for v in tqdm(variants, desc="training variants"):
        v = dict(v)
        name = v.pop("name")
        run = out / name
        if not (run / "metrics.json").exists():
            run_training(replace(base, **v, out_dir=str(run), progress=False), data=data)
        runs[name] = run
    return runs


def score_retriever(name: str, datasets: Mapping[str, object], out_dir: str | Path, **kw) -> Path:
    """Score a registered retriever on each dataset split into ``<out_dir>/sim_<split>.npz``."""
    from atrlib.scoring import score_split
    from atrlib.search import resolve_retriever

    out = Path(out_dir)
    retriever = resolve_retriever(name, **kw)
    for ds in datasets.values():
        save_similarity(out / f"sim_{ds.split}.npz", score_split(retriever, ds, system=name, progress=False))
    return out
