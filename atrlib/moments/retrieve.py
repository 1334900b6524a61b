"""Curve retrievers: score every window of a recording against a query, decode the curve into spans.

The zero-shot tag-bridge and any trained dual encoder find moments the same way::

    recording --(streamed, window_seconds every hop)--> window vectors (n, d)     encoders.py
    query ----------------------------------------------> text vector (d,)
    cosine per window (n,) -> frame curve (frames,) -> smoothed -> spans -> NMS     spans.py
                                                                  -> [[start, end, score], ...] (<= 10)

:class:`CurveRetriever` holds a window encoder and the span settings; :meth:`CurveRetriever.retrieve`
answers several queries about one recording with one pass over its audio. Every moment
system (this one, :class:`atrlib.moments.head_train.HeadRetriever`) has ``name`` and
``retrieve(path, texts, progress) -> [windows per text]``.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from atrlib.moments.encoders import RecordingWindows, WindowEncoder, encode_recording, window_encoder
from atrlib.moments.spans import ScoredWindow, SpanConfig, decode_spans, frame_curve

PathLike = Union[str, Path]


def l2n(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class CurveRetriever:
    """Moments from window-level cosine scores (see the module text).

    ``encoder``: a :class:`~atrlib.moments.encoders.WindowEncoder` with a text side;
    ``window``: analysis window in seconds (None: the encoder's); ``spans``: the decoding;
    ``batch``: windows per encoder call; ``cache``: keep window vectors on disk.
    """

    def __init__(self, encoder: WindowEncoder, window: Optional[float] = None, spans: SpanConfig = SpanConfig(),
                 batch: int = 16, cache: bool = True):
        if not encoder.has_text:
            from atrlib.errors import ConfigError

            raise ConfigError(f"{encoder.name} has no text side: it cannot score a query by itself (use it as the "
                              "moment head's features)")
        self.encoder = encoder
        self.window = float(window or encoder.default_window)
        if self.window < spans.hop:
            from atrlib.errors import ConfigError

            raise ConfigError(f"window {self.window:g} s is shorter than the hop {spans.hop:g} s; frames between "
                              "windows would be unscored")
        self.spans = spans
        self.batch = batch
        self.cache = cache
        self.name = f"{encoder.name} windows"

    def windows(self, path: PathLike, progress: bool = False) -> RecordingWindows:
        return encode_recording(path, self.encoder, self.window, self.spans.hop, self.batch, progress, self.cache)

    def curves(self, path: PathLike, texts: Sequence[str], progress: bool = False
               ) -> Tuple[np.ndarray, RecordingWindows]:
        """(frame curves (frames, len(texts)) of cosine scores, the recording's windows)."""
        rec = self.windows(path, progress)
        t = l2n(self.encoder.encode_texts(list(texts)))  # (m, d)
        scores = l2n(rec.vectors) @ t.T  # (n_windows, m)
        return frame_curve(rec.starts, rec.window, scores, rec.duration, self.spans.hop), rec  # (frames, m)

    def retrieve(self, path: PathLike, texts: Sequence[str], progress: bool = False) -> List[List[ScoredWindow]]:
        """For each text, its ranked windows ``[(start, end, score), ...]`` (at most ``spans.max_windows``)."""
        curves, rec = self.curves(path, texts, progress)
        return [decode_spans(curves[:, q], rec.duration, self.spans) for q in range(len(texts))]

    def explain(self, path: PathLike, text: str, windows: Sequence[ScoredWindow], top: int = 3
                ) -> List[List[Tuple[str, float]]]:
        """Tag-bridge only: for each window, the ``top`` AudioSet classes that contribute most to
        the tag-bridge score of that stretch of audio taken as one clip (its windows' tag
        probabilities, max-pooled as for a clip; the terms of
        :meth:`~atrlib.retrieval.tagbridge.TagBridgeRetriever.contributions`), best first.
        (The window's rank comes from its contrast with its surroundings; this says what in it
        matches the query.) Other encoders: a ``TypeError``."""
        from atrlib.audio.io import load_audio
        from atrlib.moments.encoders import TagBridgeWindows
        from atrlib.moments.stream import window_grid

        if not isinstance(self.encoder, TagBridgeWindows):
            raise TypeError(f"--explain lists AudioSet classes: it needs the tag-bridge, not {self.encoder.name}")
        r = self.encoder.retriever
        a = l2n(r.caption_label_weights([text]))[0]  # (labels,)
        sr, win, hop = self.encoder.sample_rate, int(self.window * self.encoder.sample_rate), int(self.spans.hop * self.encoder.sample_rate)
        out = []
        for start, end, _ in windows:  # one span (at most max_seconds) in memory at a time
            x, _ = load_audio(path, sample_rate=sr, offset=start, duration=max(end - start, self.window))  # (samples,)
            if len(x) < win:
                x = np.pad(x, (0, win - len(x)))
            waves = np.stack([x[s:s + win] for s in window_grid(len(x), win, hop)])  # (n, win)
            p = r.class_distribution(r.tag_probabilities([self.encoder.logits(waves)]))[0]  # (labels,)
            contrib = a * p
            order = np.argsort(-contrib, kind="stable")[:top]
            out.append([(r.labels[c], float(contrib[c])) for c in order])
        return out


def curve_retriever(system: str = "tagbridge", run_dir: Optional[PathLike] = None, window: Optional[float] = None,
                    spans: SpanConfig = SpanConfig(), device: str = "cpu", **kw) -> CurveRetriever:
    """A :class:`CurveRetriever` over :func:`~atrlib.moments.encoders.window_encoder` ``(system)``."""
    return CurveRetriever(window_encoder(system, run_dir, device), window=window, spans=spans, **kw)
