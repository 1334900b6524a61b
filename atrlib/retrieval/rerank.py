"""Top-K re-ranking with a matching head (Lingban 2023): the dual-encoder similarity retrieves
the K best clips per query, the matching head (A-CML's cross-attention text tower or the
Q-Former's ATM head) scores those K (caption, clip) pairs, and the K are re-ordered.

    sim (queries, clips) ── top K per query ── match_scores(caption, frames of clip) = p in [0, 1]
        weight "head":  new[q, top K] = base + p               (the head alone orders the K:
                                                                 ALBEF / Lingban)
        weight w >= 0:  new[q, top K] = base + (sim - min) + w·p (similarity plus w · probability:
                                                                 BLIP's fused score; w = 0 = no change)
    base lies above every other score, so the top K stay the top K; the rest keep their scores.

The weight is a choice, so it is made on validation: :func:`choose_weight` scores the
validation split's top K once and keeps the weight of the grid :data:`WEIGHTS` (0 included,
so re-ranking that does not help on validation is switched off) with the best mAP@10.

- :func:`pair_scores` — the matching head's probabilities of every query's top K (the cost);
  :func:`fuse` — pure: a new similarity matrix from them and a weight; :func:`rerank` — both.
- :func:`model_scorer` — the pair scorer of a model with a matching head over frames.
- :func:`rerank_split` — a model on a dataset split: similarity without and with re-ranking,
  metrics, a paired test of per-query AP@10 and the cost (head evaluations, seconds per query).
- :func:`choose_weight` / :func:`choose_split_weight` — the weight chosen on validation.
- :func:`rank_reranked` — ``atrlib search --rerank K``; :func:`evaluate_rerank` —
  ``atrlib evaluate --rerank K [--rerank-weight head|W|val]``.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

PairScorer = Callable[[Sequence[int], Sequence[int]], np.ndarray]


WEIGHTS: Tuple[Optional[float], ...] = (0.0, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, None)
"""The weights :func:`choose_weight` tries (None = the head alone)."""


def parse_weight(text) -> Optional[float]:
    """``"head"`` / None -> None (the head alone); a number >= 0 -> that weight."""
    if text is None or str(text).strip().lower() == "head":
        return None
    try:
        w = float(text)
    except ValueError:
        raise ValueError(f"a re-ranking weight is 'head' or a number >= 0, not {text!r}") from None
    if not w >= 0:
        raise ValueError(f"a re-ranking weight must be >= 0, not {w}")
    return w


def weight_name(weight: Optional[float]) -> str:
    return "head" if weight is None else f"{weight:g}"


def pair_scores(sim: np.ndarray, score_pairs: PairScorer, k: int, batch_size: int = 256):
    """The top ``k`` items of every query (row) of ``sim`` and ``score_pairs(queries, items)``
    on them. Returns (top (queries, k) item indices, scores (queries, k) in [0, 1], cost =
    ``{"k", "pairs", "seconds", "seconds_per_query"}``)."""
    sim = np.asarray(sim)
    n_q, n_i = sim.shape
    k = max(0, min(int(k), n_i))
    top = np.argsort(-sim, axis=1, kind="stable")[:, :k]                        # (queries, k)
    q_idx = np.repeat(np.arange(n_q), k)                                        # (queries * k,)
    i_idx = top.reshape(-1)
    t0 = time.perf_counter()
    parts = [np.asarray(score_pairs(q_idx[s:s + batch_size], i_idx[s:s + batch_size]), np.float64)
             for s in range(0, len(q_idx), batch_size)]
    seconds = time.perf_counter() - t0
    scores = (np.concatenate(parts) if parts else np.zeros(0)).reshape(n_q, k)  # (queries, k)
    return top, scores, {"k": k, "pairs": int(len(q_idx)), "seconds": seconds,
                         "seconds_per_query": seconds / max(1, n_q)}


def fuse(sim: np.ndarray, top: np.ndarray, scores: np.ndarray, weight: Optional[float] = None) -> np.ndarray:
    """A new similarity matrix (float64): each row's ``top`` items re-scored (module docstring)
    and lifted above every other item; ``weight`` None = by ``scores`` alone."""
    sim = np.asarray(sim, dtype=np.float64)
    out = sim.copy()
    if top.size == 0:
        return out
    base = float(sim.max()) + 1.0                                               # above every other score
    if weight is None:
        new = base + scores                                                     # (queries, k)
    else:
        new = base + (np.take_along_axis(sim, top, 1) - float(sim.min())) + float(weight) * scores
    np.put_along_axis(out, top, new, 1)
    return out


def rerank(sim: np.ndarray, score_pairs: PairScorer, k: int, batch_size: int = 256, weight: Optional[float] = None):
    """Re-order the top ``k`` items of every query (row) of ``sim`` with ``score_pairs(queries,
    items) -> scores in [0, 1]`` (one per pair) and ``weight`` (None: the scores alone).
    Returns (new sim (float64), cost). ``k <= 0`` returns a copy of ``sim``."""
    if int(k) <= 0:
        return np.asarray(sim, dtype=np.float64).copy(), {"k": 0, "pairs": 0, "seconds": 0.0, "seconds_per_query": 0.0}
    top, scores, cost = pair_scores(sim, score_pairs, k, batch_size)
    return fuse(sim, top, scores, weight), cost


def choose_weight(sim: np.ndarray, top: np.ndarray, scores: np.ndarray, relevant,
                  grid: Sequence[Optional[float]] = WEIGHTS) -> Tuple[Optional[float], Dict[str, float]]:
    """The weight of ``grid`` whose re-ranking gives the best mAP@10 on these (validation)
    queries, and every weight's mAP@10 (``{"head": ..., "0": ..., ...}``); ties go to the
    earlier weight of the grid (0 first: no change unless re-ranking helps)."""
    from atrlib.retrieval.metrics import retrieval_scores

    table = {weight_name(w): float(retrieval_scores(fuse(sim, top, scores, w), relevant)["mAP@10"]) for w in grid}
    best = max(grid, key=lambda w: (table[weight_name(w)], -list(grid).index(w)))
    return best, table


def model_scorer(model, captions: Sequence[str], frames) -> PairScorer:
    """Pair scorer of ``model``'s matching head (:func:`atrlib.models.fusion.matching_head`):
    caption ``q`` against the frames of clip ``i`` (``frames.get(idx)``, e.g. a FrameStore)."""
    from atrlib.models.fusion import matching_head

    head = matching_head(model)

    def score(q_idx, i_idx):
        fr, fm = frames.get(list(i_idx))
        was = head.training
        head.eval()
        try:
            return head.match_scores([captions[int(q)] for q in q_idx], fr, fm).float().cpu().numpy()
        finally:
            head.train(was)
    return score


def split_frames(model, dataset, batch_size: int = 16, progress: bool = False):
    """The audio tower's frames of every clip of ``dataset`` (cached on disk per tower)."""
    from atrlib.audio.frames import tower_frames
    from atrlib.models.inputs import tower_id

    return tower_frames(model.audio_tower, tower_id(model, "audio"), dataset, model.config.max_audio_seconds,
                        batch_size, progress=progress)


def compare(sim_without: np.ndarray, sim_with: np.ndarray, relevant, n: int = 10000, seed: int = 0) -> Dict[str, Any]:
    """Metrics without and with re-ranking (each with jackknife CIs) and a paired test of
    per-query AP@10, with minus without."""
    from atrlib.retrieval.metrics import paired_test, per_query_metrics, retrieval_scores, scores_with_ci

    ap = {k: per_query_metrics(s, relevant)["AP@10"] for k, s in (("without", sim_without), ("with", sim_with))}
    out: Dict[str, Any] = {k: retrieval_scores(s, relevant) for k, s in (("without", sim_without), ("with", sim_with))}
    out["ci"] = {k: scores_with_ci(s, relevant)["mAP@10"] for k, s in (("without", sim_without), ("with", sim_with))}
    out["paired_test"] = paired_test(ap["with"], ap["without"], method="permutation", n=n, seed=seed)
    return out


def rerank_split(model, dataset, k: int = 16, batch_size: int = 64, frames=None, progress: bool = False,
                 sim_without=None, weight: Optional[float] = None) -> Dict[str, Any]:
    """Score ``dataset`` with ``model`` (a DualEncoder with a matching head), re-rank the top
    ``k`` per caption with ``weight`` (None: the head alone), compare. Returns
    ``{"sim_without", "sim_with"}`` (SimilarityMatrix), ``"metrics"`` (:func:`compare`),
    ``"cost"``, ``"weight"`` and the head's pair scores ``"top"`` / ``"scores"`` (queries, k)
    (so other weights cost nothing: :func:`fuse`)."""
    from atrlib.retrieval.scoring import evaluate_model
    from atrlib.retrieval.simfile import SimilarityMatrix

    base = sim_without if sim_without is not None else evaluate_model(model, dataset, progress=progress)
    frames = frames if frames is not None else split_frames(model, dataset, progress=progress)
    top, scores, cost = pair_scores(base.sim, model_scorer(model, dataset.captions_flat(), frames), k, batch_size)
    new = fuse(base.sim, top, scores, weight)
    rr = SimilarityMatrix(sim=new.astype(np.float32), query_ids=base.query_ids, item_ids=base.item_ids,
                          relevant=base.relevant, meta={**base.meta, "rerank_k": int(cost["k"]),
                                                        "rerank_weight": weight_name(weight)})
    return {"sim_without": base, "sim_with": rr, "metrics": compare(base.sim, new, base.relevant), "cost": cost,
            "weight": weight, "top": top, "scores": scores}


def choose_split_weight(model, val_dataset, k: int, sim_without=None, grid: Sequence[Optional[float]] = WEIGHTS,
                        progress: bool = False) -> Dict[str, Any]:
    """The re-ranking weight chosen on ``val_dataset`` (:func:`choose_weight`): ``{"weight",
    "split", "k", "val_mAP@10": {weight name: mAP@10}}``."""
    res = rerank_split(model, val_dataset, k, sim_without=sim_without, progress=progress)
    w, table = choose_weight(res["sim_without"].sim, res["top"], res["scores"], res["sim_without"].relevant, grid)
    return {"weight": weight_name(w), "split": val_dataset.split, "k": int(res["cost"]["k"]), "val_mAP@10": table}


def _model_of(retriever):
    model = getattr(retriever, "model", None)
    if model is None:
        raise ValueError(f"--rerank needs a trained run with a matching head; {getattr(retriever, 'name', retriever)!r} "
                         "is not a trained model")
    return model


def path_frames(model, paths: Sequence[str | Path]):
    """A FrameStore of the audio tower's frames for audio files (each cropped to the model's
    ``max_audio_seconds``)."""
    from atrlib.audio.embeddings import load_wave, module_device
    from atrlib.audio.frames import FrameStore

    tower = model.audio_tower
    out: List[np.ndarray] = []
    with torch.no_grad():
        for p in paths:
            w = load_wave(str(p), tower.sample_rate, model.config.max_audio_seconds, pad=False)
            fr, m = tower.forward_frames(w[None].to(module_device(tower)))     # (1, T, D), (1, T)
            out.append(fr[0][m[0]].float().cpu().numpy())
    return FrameStore(out, dtype=np.float32)


def rank_reranked(retriever, queries: Sequence[str], audio_paths: Sequence[str | Path], top: int, k: int,
                  progress: bool = False, weight: Optional[float] = None):
    """``atrlib search --rerank K``: the ranking table of :func:`atrlib.retrieval.search.rank` after
    re-ranking the top ``k``; returns (table, cost)."""
    import pandas as pd

    model = _model_of(retriever)
    sim = retriever.similarity(list(queries), list(audio_paths), progress=progress)  # (queries, clips)
    new, cost = rerank(sim, model_scorer(model, list(queries), path_frames(model, audio_paths)), k, weight=weight)
    rows = []
    for q, text in enumerate(queries):
        order = np.argsort(-new[q], kind="stable")[:top]
        rows += [{"query": text, "rank": r + 1, "file": Path(audio_paths[i]).name, "score": float(new[q, i]),
                  "path": str(audio_paths[i])} for r, i in enumerate(order)]
    return pd.DataFrame(rows, columns=["query", "rank", "file", "score", "path"]), cost


def evaluate_rerank(retriever, dataset, sm, k: int, out_dir: str | Path, weight="head", val_dataset=None
                    ) -> Dict[str, Any]:
    """``atrlib evaluate --rerank K --rerank-weight W``: re-rank ``sm`` (the retriever's
    similarity on ``dataset``) with weight ``W`` ("head", a number, or "val": chosen on
    ``val_dataset``, :func:`choose_split_weight`), write ``sim_<split>_rerank<K>.npz`` and
    ``rerank.json`` (metrics without / with, paired test, cost, weight) into ``out_dir``;
    returns that summary."""
    from atrlib.files import write_json
    from atrlib.retrieval.simfile import save_similarity

    model = _model_of(retriever)
    choice = None
    if str(weight).strip().lower() == "val":
        if val_dataset is None:
            raise ValueError("--rerank-weight val needs the dataset's validation split")
        if val_dataset.split == dataset.split:
            raise ValueError(f"--rerank-weight val: the weight must be chosen on another split than the one scored "
                             f"({dataset.split!r}); score the test split")
        choice = choose_split_weight(model, val_dataset, k)
        weight = choice["weight"]
    w = parse_weight(weight)
    res = rerank_split(model, dataset, k, sim_without=sm, weight=w)
    out = Path(out_dir)
    save_similarity(out / f"sim_{dataset.split}_rerank{res['cost']['k']}.npz", res["sim_with"])
    summary = {**res["metrics"], "cost": res["cost"], "weight": weight_name(w)}
    if choice is not None:
        summary["weight_choice"] = choice
    write_json(out / "rerank.json", summary)
    return summary


def format_summary(summary: Dict[str, Any]) -> str:
    """One line: mAP@10 without -> with, the paired test, the cost."""
    p, c = summary["paired_test"], summary["cost"]
    how = {"head": "by the matching head"}.get(summary.get("weight", "head"),
                                                 f"by similarity + {summary.get('weight')} x match probability")
    chosen = summary.get("weight_choice")
    if chosen:
        how += f" (weight chosen on {chosen['split']})"
    return (f"re-rank top {c['k']} {how}: t2a mAP@10 {summary['without']['mAP@10']:.4f} -> "
            f"{summary['with']['mAP@10']:.4f} (diff {p['diff']:+.4f}, 95% CI {p['low']:+.4f}..{p['high']:+.4f}, "
            f"p {p['p_value']:.3g}); {c['pairs']} head evaluations, {1000 * c['seconds_per_query']:.1f} ms per query")
