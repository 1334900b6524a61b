"""Retrievers: anything that embeds captions and clips into one space, scored by cosine.

The interface (:class:`Retriever`)::

    r = get_retriever("tagbridge", top_k=20)
    A = r.embed_audio(paths)          # (n_clips, d), cached on disk per file content + settings
    T = r.embed_text(captions)        # (n_captions, d)
    S = r.similarity(captions, paths) # (n_captions, n_clips) cosine, higher = more relevant

Subclasses say what the expensive per-file array is (:meth:`Retriever.compute_audio`, cached
in a :class:`~atrlib.audio.cache.FeatureCache` keyed by the file's bytes and
:meth:`Retriever.audio_settings`) and how arrays become embeddings
(:meth:`Retriever.finish_audio`, cheap, not cached), so that changing a cheap setting
never recomputes the network.

:data:`RETRIEVERS` is filled by discovery: ``trained`` (:class:`TrainedRetriever`, a trained
dual encoder) is registered here, ``tagbridge`` (the zero-shot tag-bridge,
:mod:`atrlib.retrieval.tagbridge`) by importing its module on the first look-up, and other
packages' retrievers through the ``atrlib.retrievers`` entry-point group. A module or entry
point that fails to import is an error naming it.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch

from atrlib.audio.cache import FeatureCache
from atrlib.registry import Registry

RETRIEVERS: Registry[Callable[..., "Retriever"]] = Registry(
    "retriever", entry_point="atrlib.retrievers", modules=("atrlib.retrieval.tagbridge", "atrlib.retrieval.peers"))


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
    def _audio_arrays(self, paths: Sequence[str | Path], progress: bool = True) -> List[np.ndarray]:
        """The per-file arrays of :meth:`compute_audio`, from the cache when present."""
        from tqdm.auto import tqdm

        settings = self.audio_settings()
        return [
            self.cache.get_or_compute(p, settings, lambda p=p: self.compute_audio(p))
            for p in tqdm(list(paths), desc=f"{self.name}: audio", disable=not progress)
        ]

    def embed_audio(self, paths: Sequence[str | Path], progress: bool = True) -> np.ndarray:
        """Clips -> embeddings (n, d); the per-file arrays come from the cache when present."""
        return self.finish_audio(self._audio_arrays(paths, progress))

    def audio_similarity(self, examples: Sequence[str | Path], paths: Sequence[str | Path],
                         progress: bool = True) -> np.ndarray:
        """Query by example: cosine of audio embeddings, (len(examples), len(paths))."""
        a = l2_normalize(self.embed_audio(list(examples) + list(paths), progress=progress))  # (e + n, d)
        return a[: len(examples)] @ a[len(examples):].T                                   # (e, n)

    def similarity(self, texts: Sequence[str], paths: Sequence[str | Path], progress: bool = True) -> np.ndarray:
        """Cosine similarity (len(texts), len(paths)); rows are queries (text-to-audio)."""
        t = l2_normalize(self.embed_text(texts))                   # (m, d)
        a = l2_normalize(self.embed_audio(paths, progress=progress))  # (n, d)
        return t @ a.T                                              # (m, n)


class TrainedRetriever(Retriever):
    """A trained dual encoder (a run directory written by :func:`atrlib.models.dual.save_model`,
    or a training output folder holding ``best/``) used as a retriever.

    ``score="dual"``: the dual encoder's cosine similarity. ``score="qformer"`` (a run trained
    with the Q-Former terms, e.g. ``infonce+atc+atm``): the Q-Former's ATC similarity, as
    Lingban retrieved — each clip is embedded as ``num_queries`` query vectors (the audio
    tower's frames read by the queries), each caption as one vector, and a clip scores the
    maximum over its queries of query · caption."""

    name = "trained"

    def __init__(self, run_dir: str | Path, device: str = "cpu", batch_size: int = 16, cache: Optional[FeatureCache] = None,
                 score: str = "dual"):
        from atrlib.models.dual import load_model

        run_dir = Path(run_dir)
        model_dir = next((d for d in (run_dir, run_dir / "best", run_dir / "model", run_dir / "last")
                          if (d / "config.json").exists() and (d / "model.safetensors").exists()), None)
        if model_dir is None:
            raise FileNotFoundError(f"{run_dir}: no trained model here (looked for config.json + model.safetensors in "
                                    "the folder and in best/, model/, last/); run the train stage first")
        if score not in ("dual", "qformer"):
            raise ValueError(f"score must be 'dual' or 'qformer', not {score!r}")
        self.model_dir = model_dir
        self.model = load_model(model_dir).to(device).eval()
        if score == "qformer" and "qformer" not in getattr(self.model, "extra_heads", {}):
            raise ValueError(f"{run_dir}: this run has no Q-Former (train it with the Q-Former terms, e.g. "
                             "loss='infonce+atc+atm'), so it cannot score with score='qformer'; use score='dual'")
        self.score = score
        self.device = device
        self.batch_size = batch_size
        self.name = f"trained:{run_dir.name}" + (":qformer" if score == "qformer" else "")
        self._weights_hash = hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()[:16]
        super().__init__(cache if cache is not None else FeatureCache(namespace="retriever-trained"))

    def audio_settings(self) -> dict:
        out = {"model": self._weights_hash, "max_seconds": getattr(self.model.config, "max_audio_seconds", None)}
        return {**out, "score": "qformer"} if self.score == "qformer" else out

    def compute_audio(self, path) -> np.ndarray:
        from atrlib.audio.io import load_audio, min_samples, pad_to_min

        tower = self.model.audio_tower
        x, _ = load_audio(path, sample_rate=tower.sample_rate,
                          duration=getattr(self.model.config, "max_audio_seconds", None))
        x = pad_to_min(x, min_samples(tower))  # very short clips: zero-padded to the tower's minimum
        wave = torch.from_numpy(x)[None].to(self.device)                         # (1, samples)
        with torch.no_grad():
            if self.score == "qformer":
                q = self.model.extra_heads["qformer"]
                frames, mask = tower.forward_frames(wave)                         # (1, T, D), (1, T)
                return q.embed_audio(frames, mask)[0].cpu().numpy()              # (queries, E), normalised
            return self.model.encode_audio(wave)[0].cpu().numpy()

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        out = []
        with torch.no_grad():
            for i in range(0, len(texts), 64):
                if self.score == "qformer":
                    q = self.model.extra_heads["qformer"]
                    tok = q.tokenize(list(texts[i:i + 64]))
                    out.append(q.embed_text(tok["input_ids"], tok["attention_mask"]).cpu().numpy())
                else:
                    out.append(self.model.encode_text(list(texts[i:i + 64])).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.model.config.embed_dim), np.float32)

    def similarity(self, texts: Sequence[str], paths: Sequence[str | Path], progress: bool = True) -> np.ndarray:
        if self.score != "qformer":
            return super().similarity(texts, paths, progress)
        t = self.embed_text(texts)                                               # (m, E), normalised
        a = self.embed_audio(paths, progress=progress)                           # (n, queries, E)
        return np.einsum("me,nqe->mnq", t, a).max(-1)                            # (m, n): max over queries

    def audio_similarity(self, examples, paths, progress: bool = True) -> np.ndarray:
        if self.score == "qformer":
            raise ValueError("query by example (--like) compares clip embeddings of the dual encoder; "
                             "use the run's dual score")
        return super().audio_similarity(examples, paths, progress)


@RETRIEVERS.register("trained")
def trained(run_dir: str, **kw) -> TrainedRetriever:
    return TrainedRetriever(run_dir, **kw)
