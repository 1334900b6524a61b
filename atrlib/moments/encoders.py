"""Window encoders: one vector per analysis window of a long recording, streamed and cached.

A window encoder turns a batch of equal-length waveforms into vectors; those with a text side
also embed sentences into the same space, so that a window's cosine with a query is its score:

    ``tagbridge``         the zero-shot tag-bridge (:mod:`atrlib.retrieval.tagbridge`): each window
                          is tagged by EfficientAT, its 527 tag probabilities become a class
                          distribution (528 numbers with the norm filler), a query its label
                          weights; their cosine is the tag-bridge score of that window.
    a trained run folder  a dual encoder from ``atrlib train`` / notebook 02
                          (:class:`~atrlib.retrieval.retrievers.TrainedRetriever`): each window is a
                          clip for ``encode_audio``; a query is ``encode_text``.
    ``mel-stats``         no text side: the parameter-free log-mel statistics of each window
                          (:mod:`atrlib.models.mel_stats`, one segment), frozen features for the
                          trained moment head (:mod:`atrlib.moments.head`).

:func:`encode_recording` streams a recording through an encoder (:mod:`atrlib.moments.stream`:
one batch of windows in memory, never the whole file) with a progress bar, and caches the
result on disk keyed by the file's bytes and every setting (``cache_dir()/features/moment-windows``).
The output is one vector per hop: a two-hour recording at a 1-s hop is 7,200 vectors.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

PathLike = Union[str, Path]


class WindowEncoder:
    """Base class: ``encode_windows(waves (b, samples)) -> (b, d)``; ``encode_texts`` when
    ``has_text``. ``default_window`` is the analysis window in seconds it is meant for."""

    name = "encoder"
    sample_rate = 16000
    has_text = False
    default_window = 2.0

    def settings(self) -> dict:
        """Everything the window vectors depend on (part of the cache key)."""
        raise NotImplementedError

    def encode_windows(self, waves: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        raise TypeError(f"the {self.name} encoder has no text side; use it as features for the moment head")


class TagBridgeWindows(WindowEncoder):
    """The zero-shot tag-bridge, window by window (see the module text)."""

    has_text = True
    default_window = 3.0

    def __init__(self, retriever=None, device: str = "cpu", **kw):
        from atrlib.retrieval.retrievers import get_retriever

        self.retriever = retriever if retriever is not None else get_retriever("tagbridge", device=device, **kw)
        self.name = "tagbridge"
        self.sample_rate = int(self.retriever.tagger.sample_rate)  # loads the weights (a clear error without them)
        self.device = self.retriever.cfg.device

    def settings(self) -> dict:
        from dataclasses import asdict

        cfg = {k: v for k, v in asdict(self.retriever.cfg).items() if k not in ("device", "weights_path", "labels")}
        return {"encoder": "tagbridge", "audio": self.retriever.audio_settings(), "cfg": cfg}

    def logits(self, waves: np.ndarray) -> np.ndarray:
        """Tag logits (b, 527) of each window."""
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(waves, dtype=np.float32)).to(self.device)  # (b, samples)
            return self.retriever.tagger.tag(x).float().cpu().numpy()  # (b, 527)

    def encode_windows(self, waves: np.ndarray) -> np.ndarray:
        lg = self.logits(waves)  # (b, 527)
        return self.retriever.finish_audio([row[None, :] for row in lg])  # (b, 528): one "segment" per window

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.retriever.embed_text(list(texts))  # (m, 528) unit vectors


class DualWindows(WindowEncoder):
    """A trained dual encoder, window by window: ``encode_audio`` of each window, ``encode_text`` of each query."""

    has_text = True

    def __init__(self, run_dir: PathLike, device: str = "cpu"):
        from atrlib.retrieval.retrievers import TrainedRetriever

        self.retriever = TrainedRetriever(Path(run_dir), device=device)
        self.model = self.retriever.model
        self.name = self.retriever.name
        self.sample_rate = int(self.model.sample_rate)
        self.device = device
        clip = getattr(self.model.config, "max_audio_seconds", None)
        self.default_window = float(min(max(clip, 2.0), 5.0)) if clip else 3.0  # its clips' length, 2-5 s

    def settings(self) -> dict:
        return {"encoder": "dual", **self.retriever.audio_settings()}

    def encode_windows(self, waves: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(waves, dtype=np.float32)).to(self.device)  # (b, samples)
            return self.model.encode_audio(x).float().cpu().numpy()  # (b, E), unit vectors

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.retriever.embed_text(list(texts))  # (m, E)


class MelStatsWindows(WindowEncoder):
    """Parameter-free log-mel statistics per window (per-band mean, spread and peak, standardised); no text side."""

    name = "mel-stats"
    default_window = 2.0

    def __init__(self, segments: int = 1, device: str = "cpu"):
        from atrlib.models.towers import AUDIO_TOWERS

        self.tower = AUDIO_TOWERS.get("mel-stats")(segments=segments).eval()
        self.segments = segments
        self.sample_rate = int(self.tower.sample_rate)

    def settings(self) -> dict:
        return {"encoder": "mel-stats", "segments": self.segments}

    def encode_windows(self, waves: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.tower(torch.from_numpy(np.ascontiguousarray(waves, dtype=np.float32))).numpy()  # (b, 64 x 3)


def window_encoder(system: str = "tagbridge", run_dir: Optional[PathLike] = None, device: str = "cpu",
                   **kw) -> WindowEncoder:
    """``"tagbridge"``, ``"mel-stats"`` or a trained run folder (looked up as given, then under
    ``run_dir``) -> its :class:`WindowEncoder`. Keywords go to the tag-bridge's config."""
    from atrlib.errors import ConfigError

    text = str(system)
    if text == "tagbridge":
        return TagBridgeWindows(device=device, **kw)
    if text == "mel-stats":
        return MelStatsWindows(device=device)
    path = Path(text)
    if not path.exists() and run_dir is not None and (Path(run_dir) / text).is_dir():
        path = Path(run_dir) / text
    if not path.is_dir():
        raise ConfigError(f"{system!r}: not a window encoder; use tagbridge, mel-stats or a trained run folder "
                          "(from `atrlib train` or notebook 02)")
    return DualWindows(path, device=device)


@dataclass
class RecordingWindows:
    """One vector per analysis window of a recording: ``starts`` (n,) seconds, ``vectors`` (n, d)."""

    path: str
    duration: float      # seconds (samples read / rate)
    window: float        # seconds
    hop: float           # seconds
    starts: np.ndarray
    vectors: np.ndarray


def _cache():
    from atrlib.audio.cache import FeatureCache

    return FeatureCache(namespace="moment-windows")


def encode_recording(path: PathLike, encoder: WindowEncoder, window: Optional[float] = None, hop: float = 1.0,
                     batch: int = 16, progress: bool = False, cache: bool = True) -> RecordingWindows:
    """Stream ``path`` through ``encoder`` in ``window``-second windows every ``hop`` seconds
    (:func:`atrlib.moments.stream.window_batches`, ``batch`` windows per call) -> :class:`RecordingWindows`.
    A recording shorter than one window is a :class:`~atrlib.moments.stream.TooShortError` naming it."""
    from tqdm.auto import tqdm

    from atrlib.moments.stream import AudioStream, window_batches, window_grid

    window = float(window or encoder.default_window)
    sr = encoder.sample_rate
    win, step = int(round(window * sr)), int(round(hop * sr))
    settings = {**encoder.settings(), "window": window, "hop": hop, "sample_rate": sr, "version": 1}
    store = _cache() if cache else None
    if store is not None:
        key = store.key(path, settings)
        hit = store.get(key)
        if hit is not None:  # (n + 1, d + 1): row 0 = (duration, 0...), column 0 = window starts
            return RecordingWindows(str(path), float(hit[0, 0]), window, hop, hit[1:, 0].copy(), hit[1:, 1:].copy())
    starts, rows = [], []
    with AudioStream(path, sr) as stream:
        expected = len(window_grid(int(round(stream.duration * sr)), win, step)) or None
        with tqdm(total=expected, desc=f"{encoder.name}: {Path(path).name}", unit="win", disable=not progress,
                  leave=False) as bar:
            for s, waves in window_batches(stream, win, step, batch, name=str(path)):  # (b,), (b, win)
                rows.append(np.asarray(encoder.encode_windows(waves), dtype=np.float32))  # (b, d)
                starts.append(s / sr)
                bar.update(len(s))
        duration = stream.samples_read / sr
    vectors = np.concatenate(rows)  # (n, d)
    out = RecordingWindows(str(path), duration, window, hop, np.concatenate(starts), vectors)
    if not np.isfinite(vectors).all():
        from atrlib.errors import AudioError

        raise AudioError(f"{path}: the {encoder.name} encoder gave NaN or infinite vectors; the audio or the model is broken")
    if store is not None:
        table = np.zeros((len(vectors) + 1, vectors.shape[1] + 1), np.float32)
        table[0, 0] = duration
        table[1:, 0], table[1:, 1:] = out.starts, vectors
        store.put(key, table)
    return out
