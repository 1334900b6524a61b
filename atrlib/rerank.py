"""Top-K re-ranking with a matching head (Lingban 2023): the dual-encoder similarity retrieves
the K best clips per query, the matching head (A-CML's cross-attention text tower or the
Q-Former's ATM head) re-orders them.

    sim (queries, clips) ── top K per query ── match_scores(caption, frames of clip) ──
        new[q, top K] = base + match probability   (base above every other score: the top K
        stay the top K, ordered by the head); the rest keep their dual-encoder scores

- :func:`rerank` — pure function on a similarity matrix and a pair scorer (any callable).
- :func:`model_scorer` — the pair scorer of a model with a matching head over frames.
- :func:`rerank_split` — a model on a dataset split: similarity without and with re-ranking,
  metrics, a paired test of per-query AP@10 and the cost (head evaluations, seconds per query).
- :func:`rank_reranked` — ``atrlib search --rerank K``; :func:`evaluate_rerank` —
  ``atrlib evaluate --rerank K``.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

PairScorer = Callable[[Sequence[int], Sequence[int]], np.ndarray]


def rerank(sim: np.ndarray, score_pairs: PairScorer, k: int, batch_size: int = 256):
    """Re-order the top ``k`` items of every query (row) of ``sim`` by ``score_pairs(queries,
    items) -> scores in [0, 1]`` (one per pair). Returns (new sim (float64), cost) with cost =
    ``{"k", "pairs", "seconds", "seconds_per_query"}``. ``k <= 0`` returns a copy of ``sim``."""
    sim = np.asarray(sim, dtype=np.float64)
    out = sim.copy()
    n_q, n_i = sim.shape
    k = min(int(k), n_i)
    if k <= 0:
        return out, {"k": 0, "pairs": 0, "seconds": 0.0, "seconds_per_query": 0.0}
    top = np.argsort(-sim, axis=1, kind="stable")[:, :k]                        # (queries, k)
    base = float(sim.max()) + 1.0                                               # above every other score
    q_idx = np.repeat(np.arange(n_q), k)                                        # (queries * k,)
    i_idx = top.reshape(-1)
    t0 = time.perf_counter()
    scores = np.concatenate([np.asarray(score_pairs(q_idx[s:s + batch_size], i_idx[s:s + batch_size]), np.float64)
                             for s in range(0, len(q_idx), batch_size)])
    seconds = time.perf_counter() - t0
    out[q_idx, i_idx] = base + scores
    return out, {"k": k, "pairs": int(len(q_idx)), "seconds": seconds, "seconds_per_query": seconds / max(1, n_q)}


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
    from atrlib.frame_store import tower_frames
    from atrlib.train_inputs import tower_id

    return tower_frames(model.audio_tower, tower_id(model, "audio"), dataset, model.config.max_audio_seconds,
                        batch_size, progress=progress)


def compare(sim_without: np.ndarray, sim_with: np.ndarray, relevant, n: int = 10000, seed: int = 0) -> Dict[str, Any]:
    """Metrics without and with re-ranking (each with jackknife CIs) and a paired test of
    per-query AP@10, with minus without."""
    from atrlib.metrics import paired_test, per_query_metrics, retrieval_scores, scores_with_ci

    ap = {k: per_query_metrics(s, relevant)["AP@10"] for k, s in (("without", sim_without), ("with", sim_with))}
    out: Dict[str, Any] = {k: retrieval_scores(s, relevant) for k, s in (("without", sim_without), ("with", sim_with))}
    out["ci"] = {k: scores_with_ci(s, relevant)["mAP@10"] for k, s in (("without", sim_without), ("with", sim_with))}
    out["paired_test"] = paired_test(ap["with"], ap["without"], method="permutation", n=n, seed=seed)
    return out


def rerank_split(model, dataset, k: int = 16, batch_size: int = 64, frames=None, progress: bool = False,
                 sim_without=None) -> Dict[str, Any]:
    """Score ``dataset`` with ``model`` (a DualEncoder with a matching head), re-rank the top
    ``k`` per caption, compare. Returns ``{"sim_without", "sim_with"}`` (SimilarityMatrix),
    ``"metrics"`` (:func:`compare`) and ``"cost"`` (:func:`rerank`)."""
    from atrlib.scoring import evaluate_model
    from atrlib.simfile import SimilarityMatrix

    base = sim_without if sim_without is not None else evaluate_model(model, dataset, progress=progress)
    frames = frames if frames is not None else split_frames(model, dataset, progress=progress)
    new, cost = rerank(base.sim, model_scorer(model, dataset.captions_flat(), frames), k, batch_size)
    rr = SimilarityMatrix(sim=new.astype(np.float32), query_ids=base.query_ids, item_ids=base.item_ids,
                          relevant=base.relevant, meta={**base.meta, "rerank_k": int(cost["k"])})
    return {"sim_without": base, "sim_with": rr, "metrics": compare(base.sim, new, base.relevant), "cost": cost}


def _model_of(retriever):
    model = getattr(retriever, "model", None)
    if model is None:
        raise ValueError(f"--rerank needs a trained run with a matching head; {getattr(retriever, 'name', retriever)!r} "
                         "is not a trained model")
    return model


def path_frames(model, paths: Sequence[str | Path]):
    """A FrameStore of the audio tower's frames for audio files (each cropped to the model's
    ``max_audio_seconds``)."""
    from atrlib.embeddings import load_wave, module_device
    from atrlib.frame_store import FrameStore

    tower = model.audio_tower
    out: List[np.ndarray] = []
    with torch.no_grad():
        for p in paths:
            w = load_wave(str(p), tower.sample_rate, model.config.max_audio_seconds, pad=False)
            fr, m = tower.forward_frames(w[None].to(module_device(tower)))     # (1, T, D), (1, T)
            out.append(fr[0][m[0]].float().cpu().numpy())
    return FrameStore(out, dtype=np.float32)


def rank_reranked(retriever, queries: Sequence[str], audio_paths: Sequence[str | Path], top: int, k: int,
                  progress: bool = False):
    """``atrlib search --rerank K``: the ranking table of :func:`atrlib.search.rank` after
    re-ranking the top ``k``; returns (table, cost)."""
    import pandas as pd

    model = _model_of(retriever)
    sim = retriever.similarity(list(queries), list(audio_paths), progress=progress)  # (queries, clips)
    new, cost = rerank(sim, model_scorer(model, list(queries), path_frames(model, audio_paths)), k)
    rows = []
    for q, text in enumerate(queries):
        order = np.argsort(-new[q], kind="stable")[:top]
        rows += [{"query": text, "rank": r + 1, "file": Path(audio_paths[i]).name, "score": float(new[q, i]),
                  "path": str(audio_paths[i])} for r, i in enumerate(order)]
    return pd.DataFrame(rows, columns=["query", "rank", "file", "score", "path"]), cost


def evaluate_rerank(retriever, dataset, sm, k: int, out_dir: str | Path) -> Dict[str, Any]:
    """``atrlib evaluate --rerank K``: re-rank ``sm`` (the retriever's similarity on ``dataset``),
    write ``sim_<split>_rerank<K>.npz`` and ``rerank.json`` (metrics without / with, paired test,
    cost) into ``out_dir``; returns that summary."""
    from atrlib.files import write_json
    from atrlib.simfile import save_similarity

    model = _model_of(retriever)
    res = rerank_split(model, dataset, k, sim_without=sm)
    out = Path(out_dir)
    save_similarity(out / f"sim_{dataset.split}_rerank{res['cost']['k']}.npz", res["sim_with"])
    summary = {**res["metrics"], "cost": res["cost"]}
    write_json(out / "rerank.json", summary)
    return summary


def format_summary(summary: Dict[str, Any]) -> str:
    """One line: mAP@10 without -> with, the paired test, the cost."""
    p, c = summary["paired_test"], summary["cost"]
    return (f"re-rank top {c['k']}: t2a mAP@10 {summary['without']['mAP@10']:.4f} -> {summary['with']['mAP@10']:.4f} "
            f"(diff {p['diff']:+.4f}, 95% CI {p['low']:+.4f}..{p['high']:+.4f}, p {p['p_value']:.3g}); "
            f"{c['pairs']} head evaluations, {1000 * c['seconds_per_query']:.1f} ms per query")
