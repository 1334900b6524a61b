"""Summaries of one scored system (a :class:`~atrlib.retrieval.simfile.SimilarityMatrix`) that the
evaluate, train and ablation notebooks show: metric tables with one confidence interval per
metric (clipped to the metric's range, the method named), chance levels, the worst queries
(one per distinct caption) and rankings with the captions of every retrieved clip."""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from atrlib.retrieval.metrics import chance_scores, expected_ap_at, per_query_metrics, scores_with_ci
from atrlib.retrieval.simfile import SimilarityMatrix

METRICS = ("R@1", "R@5", "R@10", "mAP@10")
CI_METHODS = ("jackknife", "bootstrap")
CI_NAMES = {"jackknife": "jackknife (delete-one, normal approximation)",
            "bootstrap": "percentile bootstrap over queries"}


def clip_interval(ci: Mapping[str, float], lo: float = 0.0, hi: float = 1.0) -> Dict[str, float]:
    """``ci`` (``{"value", "low", "high", ...}``) with ``low``/``high`` clipped to [lo, hi]:
    a recall or AP interval never leaves [0, 1] (the normal-approximation jackknife can)."""
    out = dict(ci)
    out["low"] = float(min(max(ci["low"], lo), hi))
    out["high"] = float(min(max(ci["high"], lo), hi))
    return out


def chance_of(sm: SimilarityMatrix, recall: str = "fraction") -> Dict[str, float]:
    """The exact expected metrics of a random ranking with this relevance
    (:func:`atrlib.retrieval.metrics.chance_scores`) — the number a result must be read against."""
    return chance_scores(sm.relevant, sm.sim.shape[1], recall=recall)


def ci_table(sm: SimilarityMatrix, method: str = "jackknife", also: Optional[str] = None, n_boot: int = 1000,
             seed: int = 0) -> pd.DataFrame:
    """Rows ``(direction, metric)``; columns ``value, low, high, chance`` — one 95 % interval,
    by ``method`` (``jackknife`` as the DCASE 2022 evaluation script, or ``bootstrap``),
    clipped to [0, 1]. ``also="bootstrap"`` adds that method's interval as two more columns.
    ``table.attrs["ci_method"]`` names the interval.

    Text-to-audio uses ``sm`` as is; audio-to-text its transpose (5 relevant captions per clip),
    where R@k is the hit rate (a clip with any of its captions in the top k), as the field reports it.
    ``chance`` is exact (:func:`atrlib.retrieval.metrics.chance_scores`).
    """
    for m in (method, also):
        if m is not None and m not in CI_METHODS:
            raise ValueError(f"CI method must be one of {CI_METHODS}, not {m!r}")
    rows = []
    for direction, s, recall in (("t2a", sm, "fraction"), ("a2t", sm.transposed(), "hit")):
        main = scores_with_ci(s.sim, s.relevant, method=method, n_boot=n_boot, seed=seed, recall=recall)
        other = scores_with_ci(s.sim, s.relevant, method=also, n_boot=n_boot, seed=seed, recall=recall) if also else None
        ch = chance_of(s, recall)
        for m in METRICS:
            c = clip_interval(main[m])
            row = {"direction": direction, "metric": m, "value": c["value"], "low": c["low"], "high": c["high"],
                   "chance": ch[m]}
            if other is not None:
                o = clip_interval(other[m])
                row.update({f"{also}_low": o["low"], f"{also}_high": o["high"]})
            rows.append(row)
    table = pd.DataFrame(rows).set_index(["direction", "metric"])
    table.attrs["ci_method"] = method
    return table


def table_to_metrics(table: pd.DataFrame) -> Dict[str, Dict[str, float]]:
    """``{"t2a": {"mAP@10": v, "mAP@10_low": ..., "mAP@10_high": ..., "mAP@10_chance": ...},
    "a2t": {...}, "ci_method": "jackknife"}``."""
    out: Dict[str, Dict[str, float]] = {}
    for (direction, metric), r in table.iterrows():
        d = out.setdefault(direction, {})
        d[metric] = float(r["value"])
        d[f"{metric}_low"] = float(r["low"])
        d[f"{metric}_high"] = float(r["high"])
        d[f"{metric}_chance"] = float(r["chance"])
    out["ci_method"] = table.attrs.get("ci_method", "jackknife")
    return out


def worst_queries(sm: SimilarityMatrix, n: int = 5, top: int = 5, texts: Optional[Sequence[str]] = None) -> List[dict]:
    """The ``n`` text-to-audio queries whose first relevant clip ranks lowest, each with its
    ``top`` retrieved clips and the true clip's rank.

    With ``texts`` (the caption of each query), a caption that occurs more than once (the
    same sentence for two clips) is listed once, at its worst rank.
    """
    pq = per_query_metrics(sm.sim, sm.relevant)
    order = np.argsort(-pq["rank"], kind="stable")
    out, seen = [], set()
    for q in order:
        key = " ".join(str(texts[q]).lower().split()) if texts is not None else q
        if key in seen:
            continue
        seen.add(key)
        ranking = np.argsort(-sm.sim[q], kind="stable")[:top]
        out.append({"query": sm.query_ids[q], "query_index": int(q), "rank": int(pq["rank"][q]),
                    "text": None if texts is None else str(texts[q]),
                    "true": [sm.item_ids[i] for i in sm.relevant[q]],
                    "top": [(sm.item_ids[i], float(sm.sim[q, i])) for i in ranking]})
        if len(out) >= n:
            break
    return out


def ranking_table(item_ids: Sequence[str], scores: Sequence[float], captions: Mapping[str, Sequence[str]],
                  true: Sequence[str] = (), top: int = 5) -> pd.DataFrame:
    """The ``top`` items by score (ties: lower index first), one row each: ``rank, clip,
    score, correct, captions`` — the captions of the retrieved clip, so a reader sees what
    was found, and ``correct`` marks the clip the query describes."""
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-s, kind="stable")[:top]
    true = set(true)
    return pd.DataFrame([{"rank": r + 1, "clip": item_ids[i], "score": float(s[i]), "correct": item_ids[i] in true,
                          "captions": list(captions.get(item_ids[i], ()))} for r, i in enumerate(order)])


def chance_map(n_items: int, k: int = 10) -> float:
    """Expected AP@k of a random ranking with one relevant item among ``n_items``:
    (1 / n_items) · (1 + 1/2 + … + 1/min(k, n_items))."""
    return float(expected_ap_at(n_items, 1, k))


def heatmap_slice(sm: SimilarityMatrix, captions: Sequence[str], n_clips: int = 8, per_clip: int = 2):
    """(scores, caption labels, clip labels) of the first ``n_clips`` clips and the first
    ``per_clip`` captions of each — small enough to read, the diagonal blocks are the hits."""
    rows, taken = [], {}
    for q, r in enumerate(sm.relevant):
        c = r[0]
        if c < n_clips and taken.get(c, 0) < per_clip:
            rows.append(q)
            taken[c] = taken.get(c, 0) + 1
    rows.sort(key=lambda q: (sm.relevant[q][0], q))
    cols = list(range(min(n_clips, len(sm.item_ids))))
    return (np.asarray(sm.sim)[np.ix_(rows, cols)], [f"{sm.item_ids[sm.relevant[q][0]]}: {captions[q]}" for q in rows],
            [sm.item_ids[i] for i in cols])


def seed_verdict(diffs: Sequence[float], p_value: Optional[float] = None, alpha: float = 0.05) -> Dict[str, object]:
    """Whether a difference between two systems survives the training seed.

    ``diffs`` holds one difference per seed (system A − system B, each pair trained with the
    same seed); ``p_value`` is the paired test on the seed-averaged per-query scores. The
    difference is **distinguishable** only when the test is significant at ``alpha`` *and*
    the seed spread does not cover it: every seed's difference has the mean's sign and the
    mean is larger than the seeds' standard deviation. With one seed the spread is unknown and
    nothing is called distinguishable.

    Returns ``n, mean, sd`` (sample sd, ddof 1; NaN for one seed), ``low, high`` (the
    smallest and largest per-seed difference), ``same_sign`` (how many seeds agree with the
    mean's sign), ``p_value`` and ``distinguishable``.
    """
    d = np.asarray([float(x) for x in diffs], dtype=float)
    if not d.size:
        raise ValueError("seed_verdict needs at least one per-seed difference")
    mean = float(d.mean())
    sd = float(d.std(ddof=1)) if d.size > 1 else float("nan")
    same = int(np.sum(np.sign(d) == np.sign(mean))) if mean != 0 else 0
    significant = p_value is not None and p_value == p_value and p_value < alpha
    distinguishable = bool(d.size > 1 and significant and same == d.size and abs(mean) > sd)
    return {"n": int(d.size), "mean": mean, "sd": sd, "low": float(d.min()), "high": float(d.max()),
            "same_sign": same, "p_value": None if p_value is None or p_value != p_value else float(p_value),
            "distinguishable": distinguishable}
