"""E_A: the frozen audio encoder of a retrieval run, and what it hands to a captioner.

    enc = load_encoder("reports/demo/02_train")          # the run's DualEncoder (audio tower + heads)
    fs = encoder_features(enc, dataset, "frames")        # per-clip arrays, cached on disk
    feats, mask = fs.get([0, 1, 2], stride=4)            # (3, T, D), (3, T)

``features``: ``"frames"`` — the tower's frame sequence (``forward_frames``), cached like every
frozen tower's frames (:func:`atrlib.audio.frames.tower_frames`); ``"pooled"`` — its clip vector
(``forward``, :func:`atrlib.audio.embeddings.audio_tower_embeddings`), a sequence of one;
``"embedding"`` — that vector through the run's trained audio head (the retrieval space).
The caches are keyed by each file's content and the tower's identity (weights hash), so a
trained (not frozen) tower of an end-to-end run gets its own entries.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

MODEL_DIRS = ("", "best", "model", "last")


def model_dir(run) -> Path:
    """The folder of a run that holds the trained dual encoder (config.json + model.safetensors);
    a folder without one is a :class:`~atrlib.errors.RunError` naming it."""
    from atrlib.errors import RunError

    run = Path(run)
    if not run.is_dir():
        raise RunError(f"{run}: no such run folder; give a trained run (e.g. reports/demo/02_train) whose audio "
                       "tower becomes the captioner's encoder")
    for sub in MODEL_DIRS:
        d = run / sub if sub else run
        if (d / "config.json").is_file() and (d / "model.safetensors").is_file():
            return d
    raise RunError(f"{run}: no audio tower here: a captioner needs a trained run whose folder (or best/, model/, "
                   "last/) holds config.json and model.safetensors (a 02_train or 05_ensemble variant folder); "
                   "this one has none")


_LOADED: dict = {}  # (model folder, its weights' mtime and size, device) -> model: one load per process


def load_encoder(run, device: str = "cpu"):
    """The run's :class:`~atrlib.models.dual.DualEncoder` in eval mode (E_A and its heads);
    a config without an audio tower or an unreadable model is an error naming the file. A
    model is loaded once per process (again when its weights file changes)."""
    d = model_dir(run)
    st = (d / "model.safetensors").stat()
    key = (str(d.resolve()), st.st_mtime_ns, st.st_size, str(device))
    if key not in _LOADED:
        _LOADED.clear()  # keep one: a long session moving between runs holds one model
        _LOADED[key] = _load_encoder(d, device)
    return _LOADED[key]


def _load_encoder(d: Path, device: str):
    import json

    from atrlib.errors import RunError, WeightsFileError
    from atrlib.models.dual import load_model

    try:
        cfg = json.loads((d / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise WeightsFileError(f"{d / 'config.json'}: not a readable model config ({e})") from e
    if not isinstance(cfg, dict) or not isinstance(cfg.get("audio"), dict) or not cfg["audio"].get("name"):
        raise RunError(f"{d / 'config.json'}: this model has no audio tower (no 'audio' entry with a tower name), "
                       "so it cannot encode audio for a captioner")
    try:
        return load_model(d).to(device).eval()
    except Exception as e:
        if not isinstance(e, (OSError, ValueError, RuntimeError, KeyError, TypeError)) \
                and type(e).__name__ != "SafetensorError":
            raise
        raise WeightsFileError(f"{d}: the trained model cannot be loaded ({type(e).__name__}: "
                               f"{str(e).splitlines()[0] if str(e) else ''})") from e


class ClipList:
    """The dataset interface the feature caches read (``items``, ``dataset[i]``) over a list
    of audio files: what ``atrlib caption --audio DIR`` captions."""

    def __init__(self, paths: Sequence[str | Path]):
        self.items = [{"audio_path": str(p), "clip_id": Path(p).name} for p in paths]
        self.clip_ids = [it["clip_id"] for it in self.items]
        self.audio_paths = [it["audio_path"] for it in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


class FeatureSet:
    """Per-clip (T_i, D) arrays; :meth:`get` pads a batch and pools frames in time."""

    def __init__(self, arrays: Sequence[np.ndarray], kind: str, source: dict):
        self.arrays: List[np.ndarray] = [np.asarray(a, dtype=np.float32) for a in arrays]
        self.kind, self.source = kind, dict(source)
        self.dim = int(self.arrays[0].shape[1]) if self.arrays else 0

    def __len__(self) -> int:
        return len(self.arrays)

    def get(self, idx, stride: int = 1, device="cpu") -> Tuple[torch.Tensor, torch.Tensor]:
        """(features (B, T, D), mask (B, T) True = valid) of clips ``idx``; frames are averaged
        over windows of ``stride``."""
        from atrlib.models.crossattn import pool_frames_time

        idx = [int(i) for i in idx]
        t = max(len(self.arrays[i]) for i in idx)
        x = torch.zeros(len(idx), t, self.dim)                                    # (B, T, D)
        m = torch.zeros(len(idx), t, dtype=torch.bool)                           # (B, T)
        for b, i in enumerate(idx):
            a = torch.from_numpy(self.arrays[i])
            x[b, :len(a)], m[b, :len(a)] = a, True
        if self.kind == "frames" and stride > 1:
            x, m = pool_frames_time(x, m, int(stride))                           # (B, ceil(T/stride), D)
        return x.to(device), m.to(device)


@torch.no_grad()
def encoder_features(encoder, dataset, kind: str = "frames", progress: bool = False,
                     seconds: Optional[float] = None, run: str = "") -> FeatureSet:
    """E_A's outputs of every clip of ``dataset`` (see the module docstring), from the cache
    when present. A clip that cannot be decoded is an :class:`~atrlib.errors.AudioError` naming it."""
    from atrlib.audio.embeddings import audio_tower_embeddings
    from atrlib.audio.frames import tower_frames
    from atrlib.models.inputs import tower_id

    seconds = float(seconds or encoder.config.max_audio_seconds)
    tower = encoder.audio_tower
    tid = tower_id(encoder, "audio")
    source = {"run": str(run), "features": kind, "tower": encoder.config.audio.name, "seconds": seconds}
    if kind == "frames":
        store = tower_frames(tower, tid, dataset, seconds, progress=progress)
        return FeatureSet(store.frames, kind, source)
    pooled = audio_tower_embeddings(tower, tid, dataset, seconds, progress=progress)  # (clips, D)
    if kind == "embedding":
        dev = next(encoder.parameters()).device
        pooled = encoder.project_audio(torch.from_numpy(pooled).to(dev)).float().cpu().numpy()  # (clips, E)
    elif kind != "pooled":
        raise ValueError(f"features must be 'frames', 'pooled' or 'embedding', not {kind!r}")
    return FeatureSet([p[None] for p in pooled], kind, source)
