"""The similarity-matrix file: how stages hand scored systems to each other.

One ``.npz`` per (system, split, direction="t2a"), written atomically by
:func:`save_similarity` and read by :func:`load_similarity`:

==================  =========================================================
key                 content
==================  =========================================================
``sim``             float32 (n_queries, n_items); higher = more similar
``query_ids``       str (n_queries,), e.g. ``"clip.wav#3"`` for caption 3
``item_ids``        str (n_items,), clip ids
``rel_indptr``      int64 (n_queries + 1,) CSR row pointers of relevance
``rel_indices``     int64 (nnz,) relevant item indices of each query
``meta``            str: JSON with at least ``system``, ``split``, ``dataset``
==================  =========================================================

Queries are captions and items are clips (text-to-audio); audio-to-text is the
transpose with relevance inverted (:meth:`SimilarityMatrix.transposed`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Sequence

import numpy as np

from atrlib.files import atomic_path


@dataclass
class SimilarityMatrix:
    sim: np.ndarray
    query_ids: List[str]
    item_ids: List[str]
    relevant: List[List[int]]
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        q, i = self.sim.shape
        if len(self.query_ids) != q or len(self.item_ids) != i or len(self.relevant) != q:
            raise ValueError(
                f"similarity {self.sim.shape} does not match {len(self.query_ids)} query ids, "
                f"{len(self.item_ids)} item ids and {len(self.relevant)} relevance rows"
            )

    def transposed(self) -> "SimilarityMatrix":
        """Audio-to-text view: items become queries, relevance inverted."""
        inv: List[List[int]] = [[] for _ in self.item_ids]
        for q, rel in enumerate(self.relevant):
            for i in rel:
                inv[i].append(q)
        meta = dict(self.meta, direction="a2t")
        return SimilarityMatrix(self.sim.T.copy(), list(self.item_ids), list(self.query_ids), inv, meta)


def save_similarity(path: str | Path, sm: SimilarityMatrix) -> Path:
    """Write ``sm`` to ``path`` (.npz) atomically (a temp file, then rename)."""
    path = Path(path)
    indptr = np.zeros(len(sm.relevant) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(r) for r in sm.relevant])
    indices = np.array([i for r in sm.relevant for i in r], dtype=np.int64)
    with atomic_path(path, suffix=".tmp.npz") as tmp:
        np.savez_compressed(
            tmp,
            sim=np.asarray(sm.sim, dtype=np.float32),
            query_ids=np.array(sm.query_ids, dtype=str),
            item_ids=np.array(sm.item_ids, dtype=str),
            rel_indptr=indptr,
            rel_indices=indices,
            meta=np.array(json.dumps(sm.meta)),
        )
    return path


def load_similarity(path: str | Path) -> SimilarityMatrix:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no similarity file here; run the evaluate or train stage first")
    with np.load(path, allow_pickle=False) as z:
        indptr, indices = z["rel_indptr"], z["rel_indices"]
        rel = [indices[indptr[q]:indptr[q + 1]].tolist() for q in range(len(indptr) - 1)]
        return SimilarityMatrix(
            sim=z["sim"],
            query_ids=z["query_ids"].tolist(),
            item_ids=z["item_ids"].tolist(),
            relevant=rel,
            meta=json.loads(str(z["meta"])),
        )


# a split's role -> every name datasets give it (Clotho: development / validation / evaluation)
SPLIT_ROLES = {"train": ("train", "development", "dev"), "val": ("validation", "val", "valid"),
               "test": ("test", "evaluation", "eval")}


def _role(split: str) -> str | None:
    return next((r for r, names in SPLIT_ROLES.items() if str(split).lower() in names), None)


def sim_path(folder: str | Path, split: str) -> Path:
    """``<folder>/sim_<split>.npz``, where ``split`` may also be a role or another dataset's
    name for it: the split names flow from the dataset, so a run on Clotho holds
    ``sim_evaluation.npz`` where a caller asks for "test". Resolution: the file as named;
    else the name the run recorded for that role (``metrics.json`` ``splits``); else the one
    file whose name is another alias of the role. Raises ``FileNotFoundError`` listing the
    files there."""
    folder = Path(folder)
    direct = folder / f"sim_{split}.npz"
    if direct.exists():
        return direct
    role = _role(split)
    if role is not None:
        m = folder / "metrics.json"
        if m.exists():
            try:
                recorded = (json.loads(m.read_text(encoding="utf-8")).get("splits") or {}).get(role)
            except (OSError, ValueError, AttributeError):
                recorded = None
            if recorded and (folder / f"sim_{recorded}.npz").exists():
                return folder / f"sim_{recorded}.npz"
        alias = [folder / f"sim_{n}.npz" for n in SPLIT_ROLES[role] if (folder / f"sim_{n}.npz").exists()]
        if len(alias) == 1:
            return alias[0]
    found = sorted(p.name for p in folder.glob("sim_*.npz"))
    raise FileNotFoundError(f"{folder}: no similarity file for split {split!r} (found: {', '.join(found) or 'none'})")
