"""Few-shot adaptation of the zero-shot tag-bridge that starts from it and never trusts itself blindly.

A user with a few dozen labelled sounds adapts :class:`~atrlib.retrieval.tagbridge.TagBridgeRetriever`
(``scoring="labels"``) with two small residual parts, both initialised so that the adapted
model *is* the zero-shot one before training:

    caption t (d,) -> t + t U            U (d, d) = 0 at start: the user's words move toward classes
    clip tags w (527,) -> w * exp(g)     g (527,) = 0 at start: a learned class prior (Speech, Music ...)
    adapted score s1 = a(t + t U) . p(w * exp(g)) / |a|     (as the zero-shot score s0)

trained with a multi-positive InfoNCE on the training captions against the training clips, with
an L2 pull of U and g toward 0 (toward zero-shot). The final score is a blend
``(1 - beta) * s0 + beta * s1`` with ``beta`` chosen on the validation clips from
``blends`` (ties go to the smaller beta, and beta = 0 *is* zero-shot), so on validation it is
never below zero-shot. :meth:`FewShotAdapter.fit_cv` chooses beta by cross-validation over all
labelled clips instead (steadier with a few dozen clips) and then trains on all of them.

    ad = FewShotAdapter(get_retriever("tagbridge")).fit(train, val)   # datasets or (captions, paths, index)
    ad = FewShotAdapter(get_retriever("tagbridge")).fit_cv(labelled)  # or: beta by 4-fold cross-validation
    S = ad.similarity(["a gong"], paths)                               # (queries, clips)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from atrlib.retrieval.retrievers import Retriever


@dataclass
class FewShotConfig:
    steps: int = 300                                  # full-batch Adam steps
    lr: float = 1e-2                                  # Adam learning rate
    l2: float = 1e-2                                  # weight of |U|^2 + |g|^2 / 527 (pull toward zero-shot)
    logit_scale: float = 30.0                         # InfoNCE logits = scale * score (scores lie in [0, 1])
    text_residual: bool = True                        # learn U (caption side)
    class_prior: bool = True                          # learn g (clip side)
    blends: Tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)  # candidate beta; chosen on validation mAP@10
    seed: int = 0                                     # torch seed


Split = Tuple[Sequence[str], Sequence[str], Sequence[int]]  # captions, clip paths, caption -> clip index


def _as_split(data) -> Split:
    if hasattr(data, "captions_flat"):
        return data.captions_flat(), data.audio_paths, data.caption_clip_index()
    caps, paths, idx = data
    return list(caps), list(paths), list(idx)


class FewShotAdapter(Retriever):
    """See the module docstring. ``base`` must be a tag-bridge retriever with ``scoring="labels"``."""

    name = "tagbridge-fewshot"

    def __init__(self, base, cfg: Optional[FewShotConfig] = None, **kw):
        if getattr(getattr(base, "cfg", None), "scoring", None) != "labels":
            raise ValueError("few-shot adaptation needs a tag-bridge retriever with scoring='labels'")
        super().__init__(base.cache)
        self.base = base
        self.cfg = cfg if cfg is not None else FewShotConfig(**kw)
        d = base.label_embeddings().shape[1]
        n_labels = len(base.labels)
        self.U = torch.zeros(d, d)                                   # caption residual (d, d)
        self.g = torch.zeros(n_labels)                               # log class-prior correction (n_labels,)
        self.beta = 0.0
        self.val_scores: dict = {}

    # -- scoring ---------------------------------------------------------------------------------
    def _caption_weights(self, t: torch.Tensor) -> torch.Tensor:
        """Sentence vectors (m, d) -> adapted caption label weights a / |a| (m, n_labels)."""
        L = torch.from_numpy(self.base.label_embeddings())           # (n_labels, d)
        t = torch.nn.functional.normalize(t + t @ self.U, dim=-1)    # (m, d)
        a = torch.softmax((t @ L.T) / self.base.cfg.label_temperature, dim=-1)  # (m, n_labels)
        return torch.nn.functional.normalize(a, dim=-1)

    def _clip_distribution(self, w: torch.Tensor) -> torch.Tensor:
        w = w * torch.exp(self.g)                                    # (n, n_labels)
        return w / w.sum(dim=-1, keepdim=True).clamp_min(1e-12)

    def _adapted(self, t: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self._caption_weights(t) @ self._clip_distribution(w).T  # (m, n)

    def _inputs(self, texts, paths, progress=False):
        t = torch.from_numpy(self.base.sentence_embeddings(list(texts)))                     # (m, d)
        w = torch.from_numpy(self.base.tag_probabilities(self.base._audio_arrays(paths, progress)))  # (n, n_labels)
        return t, w

    def similarity(self, texts: Sequence[str], paths: Sequence[str | Path], progress: bool = True) -> np.ndarray:
        """(1 - beta) * zero-shot + beta * adapted score, (len(texts), len(paths))."""
        s0 = self.base.similarity(texts, paths, progress=progress)
        if self.beta == 0.0:
            return s0
        t, w = self._inputs(texts, paths)
        with torch.no_grad():
            s1 = self._adapted(t, w).numpy()
        return ((1.0 - self.beta) * s0 + self.beta * s1).astype(np.float32)

    def embed_text(self, texts):
        raise NotImplementedError("the few-shot adapter scores pairs: use similarity()")

    # -- fitting ---------------------------------------------------------------------------------
    def fit(self, train, val) -> "FewShotAdapter":
        """Train U and g on ``train``, then choose beta on ``val`` (each a dataset or
        ``(captions, paths, caption_clip_index)``). Returns self."""
        from atrlib.retrieval.metrics import label_queries, per_query

        c = self.cfg
        torch.manual_seed(c.seed)
        caps, paths, idx = _as_split(train)
        t, w = self._inputs(caps, paths)
        pos = torch.zeros(len(caps), len(paths), dtype=torch.bool)    # (m, n) caption -> its clip(s)
        for j, i in enumerate(idx):
            pos[j, i] = True
        same = {}                                                     # identical captions share their clips
        for j, text in enumerate(caps):
            same.setdefault(text, set()).add(int(idx[j]))
        for j, text in enumerate(caps):
            pos[j, sorted(same[text])] = True
        params = ([self.U] if c.text_residual else []) + ([self.g] if c.class_prior else [])
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.Adam(params, lr=c.lr)
        for _ in range(c.steps if params else 0):
            logits = c.logit_scale * self._adapted(t, w)              # (m, n)
            lse_all = torch.logsumexp(logits, dim=1)
            lse_pos = torch.logsumexp(logits.masked_fill(~pos, -1e9), dim=1)
            loss = (lse_all - lse_pos).mean() + c.l2 * ((self.U ** 2).sum() + (self.g ** 2).sum() / len(self.g))
            opt.zero_grad()
            loss.backward()
            opt.step()
        for p in params:
            p.requires_grad_(False)
        # choose beta on validation: mAP@10 over distinct validation captions
        vcaps, vpaths, vidx = _as_split(val)
        queries, rel = label_queries(vcaps, vidx)
        self.beta = 0.0
        s0 = self.base.similarity(queries, vpaths, progress=False)
        tv, wv = self._inputs(queries, vpaths)
        with torch.no_grad():
            s1 = self._adapted(tv, wv).numpy()
        best = None
        for b in sorted(c.blends):
            m = float(per_query((1 - b) * s0 + b * s1, rel)["AP@10"].mean())
            self.val_scores[b] = m
            if best is None or m > best + 1e-12:
                best, self.beta = m, float(b)
        return self

    def fit_cv(self, labelled, folds: int = 4) -> "FewShotAdapter":
        """Choose beta by ``folds``-fold cross-validation over the labelled clips (train on the
        other folds, score every blend on the held-out one, pool the per-query AP@10), then train
        on all of them. Steadier than one small validation split. Returns self."""
        from atrlib.retrieval.metrics import label_queries, per_query

        caps, paths, idx = _as_split(labelled)
        parts = split_by_clip(len(paths), fractions=(1.0 / folds,) * folds, seed=self.cfg.seed)
        pooled = {b: [] for b in self.cfg.blends}
        for k in range(folds):
            rest = np.concatenate([parts[j] for j in range(folds) if j != k])
            fold = FewShotAdapter(self.base, self.cfg)
            fold.fit(subset(caps, paths, idx, rest), subset(caps, paths, idx, parts[k]))
            hcaps, hpaths, hidx = subset(caps, paths, idx, parts[k])
            queries, rel = label_queries(hcaps, hidx)
            s0 = self.base.similarity(queries, hpaths, progress=False)
            t, w = fold._inputs(queries, hpaths)
            with torch.no_grad():
                s1 = fold._adapted(t, w).numpy()
            for b in pooled:
                pooled[b].append(per_query((1 - b) * s0 + b * s1, rel)["AP@10"])
        self.fit((caps, paths, idx), (caps, paths, idx))           # train on everything labelled
        self.val_scores = {b: float(np.concatenate(v).mean()) for b, v in pooled.items()}
        self.beta, best = 0.0, None
        for b in sorted(self.val_scores):
            if best is None or self.val_scores[b] > best + 1e-12:
                best, self.beta = self.val_scores[b], float(b)
        return self

    def state(self) -> dict:
        return {"config": asdict(self.cfg), "beta": self.beta, "val_mAP@10": self.val_scores}


def split_by_clip(n_clips: int, fractions=(0.5, 0.2, 0.3), seed: int = 0) -> List[np.ndarray]:
    """Clip indices for train / val / test, a seeded permutation cut at ``fractions``."""
    if abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(f"fractions must sum to 1, got {fractions}")
    order = np.random.default_rng(seed).permutation(n_clips)
    cuts = np.round(np.cumsum(fractions)[:-1] * n_clips).astype(int)
    return np.split(order, cuts)


def subset(caps: Sequence[str], paths: Sequence[str], idx: Sequence[int], clips: Sequence[int]) -> Split:
    """The captions and paths of ``clips`` (a list of clip indices), re-indexed from 0."""
    new = {int(c): k for k, c in enumerate(clips)}
    keep = [j for j, i in enumerate(idx) if int(i) in new]
    return [caps[j] for j in keep], [paths[int(c)] for c in clips], [new[int(idx[j])] for j in keep]
