"""Retrievers: anything that embeds captions and clips into one space, scored by cosine.

The interface (:class:`Retriever`)::

    r = get_retriever("tagbridge", top_k=20)
    A = r.embed_audio(paths)          # (n_clips, d), cached on disk per file content + settings
    T = r.embed_text(captions)        # (n_captions, d)
    S = r.similarity(captions, paths) # (n_captions, n_clips) cosine, higher = more relevant

Subclasses say what the expensive per-file array is (:meth:`Retriever.compute_audio`, cached
in a :class:`~atrlib.cache.FeatureCache` keyed by the file's bytes and
:meth:`Retriever.audio_settings`) and how arrays become embeddings
(:meth:`Retriever.finish_audio`, cheap, not cached), so that changing a cheap setting
never recomputes the network.

``tagbridge`` (:class:`TagBridgeRetriever`) is zero-shot: no training, no paired data.

    clip -> 10-s segments -> EfficientAT logits (segments, 527)      [cached]
         -> sigmoid(logits / temperature) -> max/mean over segments  (527,)
         -> keep the top_k tags -> weighted sum of the 527 label embeddings -> L2 norm (384,)
    caption -> MiniLM embedding (384,)

Label embeddings are MiniLM embeddings of each AudioSet class name through prompt
templates ("the sound of {label}", "{label}"), averaged over templates; cached on disk.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from atrlib.cache import FeatureCache
from atrlib.files import content_hash
from atrlib.registry import Registry

RETRIEVERS: Registry[Callable[..., "Retriever"]] = Registry("retriever")


def get_retriever(name: str, **kw) -> "Retriever":
    """Build a registered retriever by name: ``get_retriever("tagbridge", temperature=0.5)``."""
    return RETRIEVERS.get(name)(**kw)


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


class Retriever:
    """Base class: text and audio embeddings in one space, cosine similarity, cached audio.

    Subclasses implement :meth:`audio_settings`, :meth:`compute_audio` and :meth:`embed_text`,
    and may override :meth:`finish_audio` (default: stack the per-file arrays).
    """

    name = "retriever"

    def __init__(self, cache: Optional[FeatureCache] = None):
        self.cache = cache if cache is not None else FeatureCache(namespace=f"retriever-{self.name}")

    # -- to implement ---------------------------------------------------------------------
    def audio_settings(self) -> dict:
        """Everything :meth:`compute_audio`'s output depends on (part of the cache key)."""
        raise NotImplementedError

    def compute_audio(self, path: str | Path) -> np.ndarray:
        """The expensive per-file array (cached)."""
        raise NotImplementedError

    def finish_audio(self, arrays: List[np.ndarray]) -> np.ndarray:
        """Per-file arrays -> embeddings (n, d)."""
        return np.stack(arrays).astype(np.float32)

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """Captions -> embeddings (m, d)."""
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------------
    def embed_audio(self, paths: Sequence[str | Path], progress: bool = True) -> np.ndarray:
        """Clips -> embeddings (n, d); the per-file arrays come from the cache when present."""
        from tqdm.auto import tqdm

        settings = self.audio_settings()
        arrays = [
            self.cache.get_or_compute(p, settings, lambda p=p: self.compute_audio(p))
            for p in tqdm(list(paths), desc=f"{self.name}: audio", disable=not progress)
        ]
        return self.finish_audio(arrays)

    def similarity(self, texts: Sequence[str], paths: Sequence[str | Path], progress: bool = True) -> np.ndarray:
        """Cosine similarity (len(texts), len(paths)); rows are queries (text-to-audio)."""
        t = l2_normalize(self.embed_text(texts))                   # (m, d)
        a = l2_normalize(self.embed_audio(paths, progress=progress))  # (n, d)
        return t @ a.T                                              # (m, n)


def split_segments(x: np.ndarray, sample_rate: int, seconds: float, min_last: float = 1.0) -> List[np.ndarray]:
    """Cut a clip into ``seconds``-long segments without padding.

    A clip no longer than one segment stays whole. A leftover tail of at least ``min_last``
    seconds becomes one more segment aligned to the clip's end (overlapping the previous one),
    so every segment is full length and no silence is added; a shorter tail is dropped.
    """
    seg = int(round(seconds * sample_rate))
    n = x.shape[-1]
    if seg <= 0 or n <= seg:
        return [x]
    out = [x[..., s:s + seg] for s in range(0, n - seg + 1, seg)]
    tail = n - len(out) * seg
    if tail >= min_last * sample_rate:
        out.append(x[..., n - seg:])
    return out


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
    weights_path: Optional[str] = None               # tagger weights file (None = atrlib.weights.resolve_weights)
    device: str = "cpu"                              # torch device for both towers
    text_batch_size: int = 64                        # captions / label prompts per text batch
    labels: Optional[Tuple[str, ...]] = field(default=None, repr=False)  # tag names (None = AudioSet's 527)


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
        self._tagger = None
        self._text = None
        self._label_emb: Optional[np.ndarray] = None
        self._weights_file: Optional[Path] = None

    # -- towers, built on first use ---------------------------------------------------------
    def _resolve_weights(self) -> Path:
        if self._weights_file is None:
            from atrlib.weights import resolve_weights

            self._weights_file = resolve_weights(self.cfg.tagger, path=self.cfg.weights_path)
        return self._weights_file

    @property
    def tagger(self) -> torch.nn.Module:
        if self._tagger is None:
            import atrlib.models.efficientat  # noqa: F401  (registers the EfficientAT towers)
            from atrlib.models.registry import AUDIO_TOWERS

            self._tagger = AUDIO_TOWERS.get(self.cfg.tagger)(path=self._resolve_weights()).to(self.cfg.device).eval()
        return self._tagger

    @property
    def text_tower(self) -> torch.nn.Module:
        if self._text is None:
            import atrlib.models.text  # noqa: F401  (registers the text towers)
            from atrlib.models.registry import TEXT_TOWERS

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

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        from atrlib.models.text import embed_texts

        return l2_normalize(embed_texts(self.text_tower, list(texts), batch_size=self.cfg.text_batch_size,
                                        progress=False))

    def label_embeddings(self) -> np.ndarray:
        """(n_labels, d) unit vectors: each label through every template, averaged, normalised.
        Cached in memory and on disk (``features/label-embeddings``), keyed by tower, templates, labels."""
        if self._label_emb is not None:
            return self._label_emb
        labels = self.labels
        settings = {"text": self._text_settings(), "templates": list(self.cfg.templates), "labels": labels}
        key = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()
        store = FeatureCache(root=self.cache.root, namespace="label-embeddings")
        emb = store.get(key)
        if emb is None:
            per_template = [self.embed_text([t.format(label=lab) for lab in labels]) for t in self.cfg.templates]
            emb = l2_normalize(np.mean(per_template, axis=0))       # (n_labels, d)
            store.put(key, emb)
        self._label_emb = emb.astype(np.float32)
        return self._label_emb

    # -- audio side -------------------------------------------------------------------------
    def audio_settings(self) -> dict:
        from atrlib.features import FEATURE_PRESETS

        c = self.cfg
        return {"kind": "segment-logits", "tagger": c.tagger, "weights": content_hash(self._resolve_weights()),
                "frontend": FEATURE_PRESETS["efficientat"].to_dict(), "segment_seconds": c.segment_seconds, "max_seconds": c.max_seconds}

    def compute_audio(self, path: str | Path) -> np.ndarray:
        """Tag logits per segment, (n_segments, n_labels) float32."""
        from atrlib.audio import load_audio

        from atrlib.audio import min_samples, pad_to_min
        from atrlib.embeddings import run_in_batches

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

    def finish_audio(self, arrays: List[np.ndarray]) -> np.ndarray:
        w = self.tag_probabilities(arrays)                          # (n, n_labels)
        lab = self.label_embeddings()                               # (n_labels, d)
        if w.shape[1] != lab.shape[0]:
            raise ValueError(f"the tagger gives {w.shape[1]} tags but {lab.shape[0]} label names were given")
        return l2_normalize(w @ lab)                                # (n, d)


@RETRIEVERS.register("tagbridge")
def tagbridge(**kw) -> TagBridgeRetriever:
    """Zero-shot EfficientAT-tags -> MiniLM-label-names retriever; keywords: :class:`TagBridgeConfig`."""
    return TagBridgeRetriever(**kw)


class TrainedRetriever(Retriever):
    """A trained dual encoder (a run directory written by :func:`atrlib.models.dual.save_model`,
    or a training output folder holding ``best/``) used as a retriever."""

    name = "trained"

    def __init__(self, run_dir: str | Path, device: str = "cpu", batch_size: int = 16, cache: Optional[FeatureCache] = None):
        from atrlib.models.dual import load_model

        run_dir = Path(run_dir)
        model_dir = next((d for d in (run_dir, run_dir / "best", run_dir / "model", run_dir / "last")
                          if (d / "config.json").exists() and (d / "model.safetensors").exists()), None)
        if model_dir is None:
            raise FileNotFoundError(f"{run_dir}: no trained model here (looked for config.json + model.safetensors in "
                                    "the folder and in best/, model/, last/); run the train stage first")
        self.model_dir = model_dir
        self.model = load_model(model_dir).to(device).eval()
        self.device = device
        self.batch_size = batch_size
        self.name = f"trained:{run_dir.name}"
        self._weights_hash = hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()[:16]
        super().__init__(cache if cache is not None else FeatureCache(namespace="retriever-trained"))

    def audio_settings(self) -> dict:
        return {"model": self._weights_hash, "max_seconds": getattr(self.model.config, "max_audio_seconds", None)}

    def compute_audio(self, path) -> np.ndarray:
        from atrlib.audio import load_audio

        from atrlib.audio import min_samples, pad_to_min

        tower = self.model.audio_tower
        x, _ = load_audio(path, sample_rate=tower.sample_rate,
                          duration=getattr(self.model.config, "max_audio_seconds", None))
        x = pad_to_min(x, min_samples(tower))  # very short clips: zero-padded to the tower's minimum
        with torch.no_grad():
            return self.model.encode_audio(torch.from_numpy(x)[None].to(self.device))[0].cpu().numpy()

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        out = []
        with torch.no_grad():
            for i in range(0, len(texts), 64):
                out.append(self.model.encode_text(list(texts[i:i + 64])).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.model.config.embed_dim), np.float32)


@RETRIEVERS.register("trained")
def trained(run_dir: str, **kw) -> TrainedRetriever:
    return TrainedRetriever(run_dir, **kw)
