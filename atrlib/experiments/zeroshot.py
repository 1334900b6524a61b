"""Evaluating zero-shot retrievers on small real collections: label queries, chance, CIs, timing.

Small real collections often name several clips alike (68 gcompris sounds carry 47 distinct
labels: six "factory noise", six "weird"). A query is therefore each *distinct* caption, and
every clip carrying that exact caption is relevant to it (:func:`label_queries`); for Clotho
(five distinct captions per clip) this is the usual one-clip relevance.

- :func:`~atrlib.retrieval.metrics.chance_scores` — the expected R@k and AP@k of a random ranking, exactly.
- :func:`score_table_row` — R@1, R@10, mAP@10 with jackknife 95 % CIs and chance for one system.
- :func:`shared_real_sets` — the shared real collections (animals, clotho_mini, gcompris_sounds).
"""
from __future__ import annotations

from math import comb
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

from atrlib.retrieval.metrics import (chance_scores, expected_ap_at, jackknife_ci, label_queries,  # noqa: F401
                                     paired_test, per_query, per_query_metrics)

SHARED_REAL_SETS = {  # name -> (loader, folder under shared/data, split)
    "animals": ("folder", "animals", "all"),
    "clotho_mini": ("clotho", "clotho_mini", "evaluation"),
    "gcompris_sounds": ("folder", "gcompris_sounds", "all"),
}


def dataset_queries(dataset) -> Tuple[List[str], List[List[int]]]:
    return label_queries(dataset.captions_flat(), dataset.caption_clip_index())


def score_table_row(sim: np.ndarray, relevant: Sequence[Sequence[int]]) -> Dict[str, dict]:
    """``{"R@1": {"value", "low", "high"}, "R@10": ..., "mAP@10": ...}`` (jackknife 95 % CIs)."""
    pq = per_query(sim, relevant)
    return {"R@1": jackknife_ci(pq["R@1"]), "R@10": jackknife_ci(pq["R@10"]), "mAP@10": jackknife_ci(pq["AP@10"])}


def compare(sim_after: np.ndarray, sim_before: np.ndarray, relevant, metric: str = "AP@10", seed: int = 0) -> dict:
    """Paired bootstrap test of after - before on per-query ``metric``."""
    return paired_test(per_query(sim_after, relevant)[metric], per_query(sim_before, relevant)[metric], seed=seed)


def fmt_ci(c: dict) -> str:
    return f"{c['value']:.3f} ({max(0.0, c['low']):.2f}–{min(1.0, c['high']):.2f})"


def shared_real_sets(shared: str | Path) -> Dict[str, object]:
    """The shared real collections as datasets (needs ``shared/data``)."""
    from atrlib.data.base import load_dataset

    shared = Path(shared)
    return {name: load_dataset(loader, root=shared / "data" / folder, split=split)
            for name, (loader, folder, split) in SHARED_REAL_SETS.items()}
