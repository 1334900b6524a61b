"""Scored systems on disk, for the ensemble stage: find them, make more of them.

A *system* is anything whose validation and test similarity matrices exist as
``sim_<split>.npz`` (:mod:`atrlib.retrieval.simfile`) in one folder: a training run, an evaluate-stage
output, a k-fold member, a zero-shot retriever scored by :func:`score_retriever`.
"""
from __future__ import annotations

import gc
import glob
from dataclasses import replace
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Sequence

from atrlib.retrieval.simfile import SimilarityMatrix, load_similarity, save_similarity, sim_path

def find_systems(patterns: Iterable[str], base: str | Path = ".", val_split: str = "validation",
                 test_split: str = "test") -> Dict[str, Path]:
    """name -> folder for every folder matching ``patterns`` (globs, relative to ``base``)
    that holds both ``sim_<val_split>.npz`` and ``sim_<test_split>.npz``. Names are the
    folder names, made unique with their parent's name when needed. ``"sweep:DIR"`` adds every
    ok trial of a sweep (:func:`atrlib.runs.sweep_report.sweep_systems`), named by its trial label."""
    found: Dict[str, Path] = {}
    for pat in patterns:
        if str(pat).startswith("sweep:"):  # every ok trial of a sweep folder (atrlib.runs.sweep)
            from atrlib.runs.sweep_report import sweep_systems

            found.update(sweep_systems(Path(base) / str(pat)[6:], splits=(val_split, test_split)))
            continue
        p = Path(pat)
        full = str(p if p.is_absolute() else Path(base) / p)
        for d in sorted(glob.glob(full)):
            d = Path(d)
            if _has_sim(d, val_split) and _has_sim(d, test_split):
                name = d.name if d.name not in found else f"{d.parent.name}/{d.name}"
                found[name] = d
    return found


def _has_sim(folder: Path, split: str) -> bool:
    try:
        return sim_path(folder, split).exists()
    except FileNotFoundError:
        return False


def load_systems(folders: Mapping[str, Path], split: str) -> Dict[str, SimilarityMatrix]:
    """name -> the system's matrix for ``split`` (a split name or role; :func:`sim_path`)."""
    return {name: load_similarity(sim_path(d, split)) for name, d in folders.items()}


def train_or_reuse(cfg, data=None) -> Path:
    """Train ``cfg`` into ``cfg.out_dir`` unless that folder already holds a finished run of the
    same config (``metrics.json`` + a ``params.json`` with no differing field), which is reused.
    A killed run of the same config continues from its checkpoint; a folder from another
    config (say, fewer epochs) is moved aside and trained again, never silently reused."""
    from atrlib.files import read_json
    from atrlib.train.loop import run_training
    from atrlib.train.preflight import config_differences

    run = Path(cfg.out_dir)
    params = run / "params.json"
    if (run / "metrics.json").exists() and params.exists() and not config_differences(read_json(params), cfg.to_dict()):
        return run
    state = run / "last" / "state.json"
    same = state.exists() and not config_differences(read_json(state).get("config", {}), cfg.to_dict())
    run_training(replace(cfg, resume=True) if same else replace(cfg, overwrite=True), data=data)
    return run


def train_variants(base, variants: List[dict], out_dir: str | Path, data=None,
                   seeds: Sequence[int] = ()) -> Dict[str, Path]:
    """Train each variant (a dict of TrainConfig fields plus ``name``) into
    ``<out_dir>/<name>`` — or, with ``seeds``, once per seed into ``<out_dir>/<name>-s<seed>``;
    a finished folder of the same config is reused (:func:`train_or_reuse`)."""
    from tqdm.auto import tqdm

    from atrlib.data.splits import load_splits

    out = Path(out_dir)
    data = data if data is not None else load_splits(base)
    jobs = [(dict(v), s) for v in variants for s in (seeds or [None])]
    runs = {}
    for v, seed in tqdm(jobs, desc="training variants", disable=not jobs):
        name = v.pop("name") + ("" if seed is None else f"-s{seed}")
        cfg = replace(base, **v, **({} if seed is None else {"seed": int(seed)}), out_dir=str(out / name), progress=False)
        runs[name] = train_or_reuse(cfg, data=data)
        gc.collect()  # the finished run's model and optimizer state before the next one is built
    return runs


def score_retriever(name: str, datasets: Mapping[str, object], out_dir: str | Path, **kw) -> Path:
    """Score a registered retriever on each dataset split into ``<out_dir>/sim_<split>.npz``."""
    from atrlib.retrieval.scoring import score_split
    from atrlib.retrieval.search import resolve_retriever

    out = Path(out_dir)
    retriever = resolve_retriever(name, **kw)
    for ds in datasets.values():
        save_similarity(out / f"sim_{ds.split}.npz", score_split(retriever, ds, system=name, progress=False))
    return out
