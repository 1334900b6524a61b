"""The zero-shot tag-bridge retriever: captions and clips meet in the tagger's AudioSet classes.

``tagbridge`` (:class:`TagBridgeRetriever`) needs no training and no paired data. Both sides
meet in the space of the tagger's 527 AudioSet classes (``scoring="labels"``, default)::

    clip -> 10-s segments (< 1 s: zero-padded) -> EfficientAT logits (segments, 527)   [cached]
         -> sigmoid(logits / temperature) -> max over segments -> [top_k]
         -> divided by its sum: the clip's class distribution p                       (527,)
    caption -> MiniLM embedding t (384,) -> cosine with the 527 label embeddings
         -> softmax(cos / label_temperature) over labels: which classes it names, a   (527,)
    score = sum over classes of a_c p_c / |a|   (the chance that the caption's class and the
            clip's class coincide, scaled per caption; the ranking of a . p)

Embeddings are built so that their cosine is exactly this score: clip = (p, sqrt(1 - |p|^2)),
caption = (a / |a|, 0), both unit vectors of 528 numbers.

so every score is a sum of per-class terms (:meth:`TagBridgeRetriever.explain` lists the
largest). The softmax keeps a caption on the few classes it names; the older
``scoring="bridge"`` (a caption against the probability-weighted sum of all 527 label
embeddings) lets hundreds of weak label similarities add noise.

Label embeddings: each class's synonyms (``"Heart sounds, heartbeat"`` -> two phrases) through
the prompt templates, averaged, plus ``description_weight`` x its AudioSet-ontology
description when the ontology file is found (:mod:`atrlib.data.ontology`; never shipped); cached
on disk. ``text_tower="mpnet"`` (:mod:`atrlib.models.mpnet`, an optional 438-MB extra) is a
stronger text tower than the default MiniLM.

The retriever interface and the registry are in :mod:`atrlib.retrieval.retrievers`; looking a
name up there imports this module, so ``get_retriever("tagbridge")`` always finds it.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from atrlib.audio.cache import FeatureCache
from atrlib.files import content_hash
from atrlib.retrieval.retrievers import RETRIEVERS, Retriever, l2_normalize

__all__ = ["split_segments", "TagBridgeConfig", "SCORINGS", "tagbridge_v1_config", "TagBridgeRetriever"]


def split_segments(x: np.ndarray, sample_rate: int, seconds: float, min_last: float = 1.0) -> List[np.ndarray]:
    """Cut a clip into ``seconds``-long segments without padding: :func:`atrlib.audio.io.segment`
    with ``tail="align"`` (a clip no longer than one segment stays whole; a leftover tail of at
    least ``min_last`` seconds becomes one more segment aligned to the clip's end; a shorter one
    is dropped)."""
    from atrlib.audio.io import segment

    return segment(x, sample_rate, seconds, max_seconds=None, min_last=min_last, tail="align")


@dataclass
class TagBridgeConfig:
    tagger: str = "efficientat-mn04"                 # AUDIO_TOWERS name of a tagger with .tag(wave) -> logits
    text_tower: str = "minilm"                       # TEXT_TOWERS name embedding captions and label names
    templates: Tuple[str, ...] = ("the sound of {label}", "{label}")  # prompts for label names, averaged
    temperature: float = 1.0                         # tag probs = sigmoid(logits / temperature); < 1 sharpens
    top_k: Optional[int] = None                      # keep only the k most probable tags per clip (None = all)
    pool: str = "max"                                # over 10-s segments: "max" or "mean" of probabilities
    segment_seconds: float = 10.0                    # long clips are tagged in segments of this length
    segment_batch_size: int = 8                      # segments per tagger call (bounds memory on long clips)
    max_seconds: Optional[float] = None              # read at most this much of each clip (None = all)
    weights_path: Optional[str] = None               # tagger weights file (None = atrlib.models.weights.resolve_weights)
    device: str = "cpu"                              # torch device for both towers
    text_batch_size: int = 64                        # captions / label prompts per text batch
    labels: Optional[Tuple[str, ...]] = field(default=None, repr=False)  # tag names (None = AudioSet's 527)
    scoring: str = "labels"                          # "labels": caption -> softmax over labels vs clip tags; "bridge": v1
    label_temperature: float = 0.05                  # softmax temperature over caption-label cosines ("labels" scoring)
    label_text: str = "synonyms"                     # "synonyms": names split at commas; "names": names as they are
    description_weight: float = 0.3                  # weight of the ontology description in each label embedding (0 = off)
    ontology_path: Optional[str] = None              # AudioSet ontology.json (None = atrlib.data.ontology.find_ontology)


SCORINGS = ("labels", "bridge")


def tagbridge_v1_config(**kw) -> TagBridgeConfig:
    """The first tag-bridge (before issue 11): label names as they are, no descriptions,
    captions against the probability-weighted sum of label embeddings."""
    return TagBridgeConfig(**{"scoring": "bridge", "label_text": "names", "description_weight": 0.0, **kw})


class TagBridgeRetriever(Retriever):
    """Zero-shot retrieval through AudioSet tags: audio -> tag probabilities -> probability-
    weighted label-name embeddings; text -> its own embedding. See the module docstring."""

    name = "tagbridge"

    def __init__(self, cfg: Optional[TagBridgeConfig] = None, cache: Optional[FeatureCache] = None, **kw):
        super().__init__(cache)
        self.cfg = cfg if cfg is not None else TagBridgeConfig(**kw)
        if cfg is not None and kw:
            raise TypeError("pass either cfg or keyword settings, not both")
        c = self.cfg
        self.cfg.templates = tuple(c.templates)
        if c.pool not in ("max", "mean"):
            raise ValueError(f"pool must be 'max' or 'mean', not {c.pool!r}")
        if c.temperature <= 0:
            raise ValueError(f"temperature must be > 0, not {c.temperature}")
        if not c.templates or any("{label}" not in t for t in c.templates):
            raise ValueError(f"every template needs a '{{label}}' placeholder: {c.templates}")
        if c.scoring not in SCORINGS:
            raise ValueError(f"scoring must be one of {SCORINGS}, not {c.scoring!r}")
        if c.label_temperature <= 0:
            raise ValueError(f"label_temperature must be > 0, not {c.label_temperature}")
        from atrlib.data.ontology import LABEL_TEXTS

        if c.label_text not in LABEL_TEXTS:
            raise ValueError(f"label_text must be one of {LABEL_TEXTS}, not {c.label_text!r}")
        if c.description_weight < 0:
            raise ValueError(f"description_weight must be >= 0, not {c.description_weight}")
        self._tagger = None
        self._text = None
        self._label_emb: Optional[np.ndarray] = None
        self._weights_file: Optional[Path] = None

    # -- towers, built on first use ---------------------------------------------------------
    def _resolve_weights(self) -> Path:
        if self._weights_file is None:
            from atrlib.models.weights import resolve_weights

            self._weights_file = resolve_weights(self.cfg.tagger, path=self.cfg.weights_path)
        return self._weights_file

    @property
    def tagger(self) -> torch.nn.Module:
        if self._tagger is None:
            from atrlib.models.towers import AUDIO_TOWERS

            self._tagger = AUDIO_TOWERS.get(self.cfg.tagger)(path=self._resolve_weights()).to(self.cfg.device).eval()
        return self._tagger

    @property
    def text_tower(self) -> torch.nn.Module:
        if self._text is None:
            from atrlib.models.towers import TEXT_TOWERS

            self._text = TEXT_TOWERS.get(self.cfg.text_tower)(device=self.cfg.device).eval()
        return self._text

    @property
    def labels(self) -> List[str]:
        if self.cfg.labels is not None:
            return list(self.cfg.labels)
        from atrlib.models.efficientat import audioset_labels

        return audioset_labels()

    # -- text side --------------------------------------------------------------------------
    def _text_settings(self) -> dict:
        t = self.text_tower
        return {"text_tower": self.cfg.text_tower, "model": getattr(t, "name_or_path", None),
                "pooling": getattr(t, "pooling", None), "max_length": getattr(t, "max_length", None),
                "normalize": getattr(t, "normalize", None)}

    def sentence_embeddings(self, texts: Sequence[str]) -> np.ndarray:
        """The text tower's unit vectors (m, d) for captions and label phrases."""
        from atrlib.models.text_towers import embed_texts

        return l2_normalize(embed_texts(self.text_tower, list(texts), batch_size=self.cfg.text_batch_size,
                                        progress=False))

    def caption_label_weights(self, texts: Sequence[str]) -> np.ndarray:
        """(m, n_labels): softmax over labels of cosine(caption, label) / label_temperature —
        how strongly each caption names each class; rows sum to 1."""
        cos = self.sentence_embeddings(texts) @ self.label_embeddings().T       # (m, n_labels)
        z = (cos - cos.max(axis=1, keepdims=True)) / self.cfg.label_temperature
        e = np.exp(z.astype(np.float64))
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)             # (m, n_labels)

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """Captions -> (m, n_labels + 1) unit vectors (a / |a|, 0) ("labels") or (m, d) sentence vectors ("bridge")."""
        if self.cfg.scoring == "labels":
            a = l2_normalize(self.caption_label_weights(texts))     # (m, n_labels)
            return np.concatenate([a, np.zeros((len(a), 1), np.float32)], axis=1)  # (m, n_labels + 1)
        return self.sentence_embeddings(texts)

    def label_phrases(self) -> List[List[str]]:
        from atrlib.data.ontology import label_texts

        return label_texts(self.labels, self.cfg.label_text)

    def label_descriptions(self) -> Optional[List[str]]:
        """One ontology description per label ('' where none), or None when the ontology is not
        found or ``description_weight`` is 0 (a warning says so once)."""
        if self.cfg.description_weight <= 0:
            return None
        from atrlib.data.ontology import load_ontology

        onto = load_ontology(self.cfg.ontology_path, required=self.cfg.ontology_path is not None)
        if onto is None:
            import warnings

            warnings.warn("tagbridge: the AudioSet ontology was not found, so label descriptions are off "
                          "(see atrlib.data.ontology.download_ontology or $ATRLIB_ONTOLOGY)", stacklevel=3)
            return None
        return [onto.description(lab) for lab in self.labels]

    def label_embeddings(self) -> np.ndarray:
        """(n_labels, d) unit vectors: each label's phrases through every template, averaged,
        plus ``description_weight`` x the unit embedding of its description, normalised.
        Cached in memory and on disk (``label-embeddings``), keyed by tower, templates and texts."""
        if self._label_emb is not None:
            return self._label_emb
        phrases = self.label_phrases()
        desc = self.label_descriptions()
        settings = {"text": self._text_settings(), "templates": list(self.cfg.templates), "phrases": phrases,
                    "descriptions": desc, "description_weight": self.cfg.description_weight if desc else 0.0}
        key = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()
        store = FeatureCache(root=self.cache.root, namespace="label-embeddings")
        emb = store.get(key)
        if emb is None:
            flat = [t.format(label=ph) for phs in phrases for ph in phs for t in self.cfg.templates]
            e = self.sentence_embeddings(flat)                          # (sum of phrases x templates, d)
            sizes = [len(phs) * len(self.cfg.templates) for phs in phrases]
            starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int)
            emb = l2_normalize(np.add.reduceat(e, starts, axis=0) / np.asarray(sizes)[:, None])  # (n_labels, d)
            if desc:
                has = np.array([bool(d.strip()) for d in desc])
                d_emb = np.zeros_like(emb)
                if has.any():
                    d_emb[has] = self.sentence_embeddings([d for d in desc if d.strip()])
                emb = l2_normalize(emb + self.cfg.description_weight * d_emb)
            store.put(key, emb)
        self._label_emb = np.asarray(emb, dtype=np.float32)
        return self._label_emb

    # -- audio side -------------------------------------------------------------------------
    def audio_settings(self) -> dict:
        from atrlib.audio.features import FEATURE_PRESETS

        c = self.cfg
        return {"kind": "segment-logits", "tagger": c.tagger, "weights": content_hash(self._resolve_weights()),
                "frontend": FEATURE_PRESETS["efficientat"].to_dict(), "segment_seconds": c.segment_seconds, "max_seconds": c.max_seconds,
                "short_clips": "zero-padded to the tagger's minimum"}

    def compute_audio(self, path: str | Path) -> np.ndarray:
        """Tag logits per segment, (n_segments, n_labels) float32."""
        from atrlib.audio.io import load_audio

        from atrlib.audio.io import min_samples, pad_to_min
        from atrlib.audio.embeddings import run_in_batches

        tagger = self.tagger
        x, sr = load_audio(path, sample_rate=tagger.sample_rate, duration=self.cfg.max_seconds)
        segs = split_segments(pad_to_min(x, min_samples(tagger, sr)), sr, self.cfg.segment_seconds)
        wave = torch.from_numpy(np.stack(segs)).to(self.cfg.device)  # (n_segments, samples)
        with torch.no_grad():  # a bounded number of segments at a time, however long the clip
            logits = run_in_batches(tagger.tag, wave, self.cfg.segment_batch_size)  # (n_segments, n_labels)
        return logits.float().cpu().numpy()

    def tag_probabilities(self, arrays: List[np.ndarray]) -> np.ndarray:
        """Per-file segment logits -> clip-level tag weights (n, n_labels): temperature,
        pooling over segments, then top-k (the other tags get weight 0)."""
        c = self.cfg
        out = []
        for lg in arrays:
            p = 1.0 / (1.0 + np.exp(-np.asarray(lg, dtype=np.float64) / c.temperature))  # (n_segments, n_labels)
            p = p.max(axis=0) if c.pool == "max" else p.mean(axis=0)                   # (n_labels,)
            if c.top_k is not None and 0 < c.top_k < p.shape[0]:
                keep = np.argpartition(-p, c.top_k - 1)[: c.top_k]
                mask = np.zeros_like(p)
                mask[keep] = 1.0
                p = p * mask
            out.append(p)
        return np.stack(out).astype(np.float32)

    @staticmethod
    def class_distribution(w: np.ndarray) -> np.ndarray:
        """Tag weights (n, n_labels) -> each clip's class distribution (rows sum to 1)."""
        w = np.asarray(w, dtype=np.float64)
        return (w / np.maximum(w.sum(axis=1, keepdims=True), 1e-12)).astype(np.float32)

    def finish_audio(self, arrays: List[np.ndarray]) -> np.ndarray:
        """Clips -> (n, n_labels + 1) unit vectors (p, sqrt(1 - |p|^2)) of the class distribution p
        ("labels"), or the label-embedding mixture (n, d) ("bridge")."""
        w = self.tag_probabilities(arrays)                          # (n, n_labels)
        n_labels = len(self.labels)
        if w.shape[1] != n_labels:
            raise ValueError(f"the tagger gives {w.shape[1]} tags but {n_labels} label names were given")
        if self.cfg.scoring == "labels":
            p = self.class_distribution(w)                          # (n, n_labels), |p|_2 <= |p|_1 = 1
            rest = np.sqrt(np.clip(1.0 - (p.astype(np.float64) ** 2).sum(axis=1, keepdims=True), 0.0, None))
            return np.concatenate([p, rest.astype(np.float32)], axis=1)  # (n, n_labels + 1), unit norm
        return l2_normalize(w @ self.label_embeddings())            # (n, d)

    # -- why this match -----------------------------------------------------------------------
    def contributions(self, texts: Sequence[str], paths: Sequence[str | Path], progress: bool = False) -> np.ndarray:
        """(m, n, n_labels): the share of each class in each caption-clip score; summed over the
        last axis it gives :meth:`similarity` exactly.

        "labels": a_qc / |a_q| * p_ic (caption label weights a, clip class distribution p);
        "bridge": cos(t_q, label_c) * w_ic / |sum_c w_ic label_c|."""
        w = self.tag_probabilities(self._audio_arrays(paths, progress))  # (n, n_labels)
        if self.cfg.scoring == "labels":
            a = l2_normalize(self.caption_label_weights(texts))     # (m, n_labels)
            return a[:, None, :] * self.class_distribution(w)[None, :, :]  # (m, n, n_labels)
        lab = self.label_embeddings()                               # (n_labels, d)
        cos = self.sentence_embeddings(texts) @ lab.T               # (m, n_labels)
        norm = np.maximum(np.linalg.norm(w @ lab, axis=1), 1e-12)   # (n,)
        return cos[:, None, :] * (w / norm[:, None])[None, :, :]    # (m, n, n_labels)

    def explain(self, texts: Sequence[str], paths: Sequence[str | Path], top: int = 3,
                progress: bool = False) -> List[List[List[Tuple[str, float]]]]:
        """For each caption and clip, the ``top`` classes with the largest contribution to the
        score, as ``(label, contribution)`` best first: ``out[q][i]``."""
        contrib = self.contributions(texts, paths, progress)        # (m, n, n_labels)
        labels = self.labels
        order = np.argsort(-contrib, axis=-1, kind="stable")[..., :top]
        return [[[(labels[c], float(contrib[q, i, c])) for c in order[q, i]] for i in range(contrib.shape[1])]
                for q in range(contrib.shape[0])]

    def explain_audio(self, example: str | Path, paths: Sequence[str | Path], top: int = 3,
                      progress: bool = False) -> List[List[Tuple[str, float]]]:
        """Query by example: for each clip, the classes it shares most with ``example``
        (terms of the cosine of the two tag vectors; they sum to :meth:`audio_similarity`)."""
        w = l2_normalize(self.tag_probabilities(self._audio_arrays([example] + list(paths), progress)))
        contrib = w[0][None, :] * w[1:]                             # (n, n_labels)
        labels = self.labels
        order = np.argsort(-contrib, axis=-1, kind="stable")[:, :top]
        return [[(labels[c], float(contrib[i, c])) for c in order[i]] for i in range(len(contrib))]

    def audio_similarity(self, examples: Sequence[str | Path], paths: Sequence[str | Path],
                         progress: bool = True) -> np.ndarray:
        """(len(examples), len(paths)) cosine of the clips' tag vectors (whatever the scoring)."""
        w = l2_normalize(self.tag_probabilities(self._audio_arrays(list(examples) + list(paths), progress)))
        return w[: len(examples)] @ w[len(examples):].T


@RETRIEVERS.register("tagbridge")
def tagbridge(**kw) -> TagBridgeRetriever:
    """Zero-shot EfficientAT-tags -> MiniLM-label-names retriever; keywords: :class:`TagBridgeConfig`."""
    return TagBridgeRetriever(**kw)
