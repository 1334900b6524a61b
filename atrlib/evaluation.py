"""Summaries of one scored system (a :class:`~atrlib.simfile.SimilarityMatrix`) that the
evaluate, train and ablation notebooks show: metric tables with confidence intervals in both
directions, chance levels, and the worst queries."""
from __future__ import annotations

from typing import Dict, List

import numpy as np
import pandas as pd

from atrlib.metrics import per_query_metrics, retrieval_scores, scores_with_ci
from atrlib.simfile import SimilarityMatrix

METRICS = ("R@1", "R@5", "R@10", "mAP@10")


def chance_scores(sm: SimilarityMatrix, n_perm: int = 20, seed: int = 0) -> Dict[str, float]:
    """Expected metrics of a random ranking with this relevance (mean over ``n_perm``
    random score matrices) — the number a result must be compared against."""
    rng = np.random.default_rng(seed)
    runs = [retrieval_scores(rng.random(sm.sim.shape, dtype=np.float32), sm.relevant) for _ in range(n_perm)]
    return {m: float(np.mean([r[m] for r in runs])) for m in METRICS}


def ci_table(sm: SimilarityMatrix, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Rows ``(direction, metric)``; columns value, jackknife 95 % CI, bootstrap 95 % CI, chance.

    Text-to-audio uses ``sm`` as is; audio-to-text its transpose (5 relevant captions per clip).
    """
    rows = []
    for direction, s in (("t2a", sm), ("a2t", sm.transposed())):
        jk = scores_with_ci(s.sim, s.relevant, method="jackknife")
        bs = scores_with_ci(s.sim, s.relevant, method="bootstrap", n_boot=n_boot, seed=seed)
        ch = chance_scores(s, n_perm=5, seed=seed)
        for m in METRICS:
            rows.append({"direction": direction, "metric": m, "value": jk[m]["value"],
                         "jackknife_low": jk[m]["low"], "jackknife_high": jk[m]["high"],
                         "bootstrap_low": bs[m]["low"], "bootstrap_high": bs[m]["high"], "chance": ch[m]})
    return pd.DataFrame(rows).set_index(["direction", "metric"])


def table_to_metrics(table: pd.DataFrame) -> Dict[str, Dict[str, float]]:
    """``{"t2a": {"mAP@10": v, "mAP@10_low": ..., "mAP@10_high": ...}, "a2t": {...}}`` (jackknife CI)."""
    out: Dict[str, Dict[str, float]] = {}
    for (direction, metric), r in table.iterrows():
        d = out.setdefault(direction, {})
        d[metric] = float(r["value"])
        d[f"{metric}_low"] = float(r["jackknife_low"])
        d[f"{metric}_high"] = float(r["jackknife_high"])
        d[f"{metric}_chance"] = float(r["chance"])
    return out


def worst_queries(sm: SimilarityMatrix, n: int = 5, top: int = 5) -> List[dict]:
    """The ``n`` text-to-audio queries whose first relevant clip ranks lowest, each with its
    ``top`` retrieved clips and the true clip's rank."""
    pq = per_query_metrics(sm.sim, sm.relevant)
    order = np.argsort(-pq["rank"], kind="stable")[:n]
    out = []
    for q in order:
        ranking = np.argsort(-sm.sim[q], kind="stable")[:top]
        out.append({"query": sm.query_ids[q], "query_index": int(q), "rank": int(pq["rank"][q]),
                    "true": [sm.item_ids[i] for i in sm.relevant[q]],
                    "top": [(sm.item_ids[i], float(sm.sim[q, i])) for i in ranking]})
    return out
