"""Leakage audit: clips shared between splits, by file name and by audio content.

Clotho is known to hold the same recording under more than one split; a model evaluated on
a clip it trained on looks better than it is. :func:`leakage_audit` finds

- ``file_name``: the same clip id in two splits;
- ``content``: byte-identical audio files (sha256) under any names;
- ``audio``: the same decoded samples under different encodings (optional, slower: pass
  ``decode=True``; hashes the first 30 s resampled to 16 kHz and rounded to 8 bits).
"""
from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Dict, Iterable

import numpy as np
import pandas as pd

from atrlib.data.base import AudioCaptionDataset
from atrlib.files import content_hash


def _audio_hash(path: str) -> str:
    from atrlib.audio import load_audio

    x, _ = load_audio(path, sample_rate=16000, duration=30.0)
    return hashlib.sha256(np.round(x * 127).astype(np.int8).tobytes()).hexdigest()


def leakage_audit(splits: Dict[str, AudioCaptionDataset] | Iterable[AudioCaptionDataset], decode: bool = False,
                  progress: bool = False) -> pd.DataFrame:
    """One row per group of clips found in more than one split.

    Columns: ``kind`` (file_name / content / audio), ``key`` (the shared name or hash
    prefix), ``splits`` (comma-joined), ``clips`` (``split:clip_id`` joined by ``; ``),
    ``n``. An empty frame means no leakage found.
    """
    if not isinstance(splits, dict):
        splits = {ds.split: ds for ds in splits}
    entries = [(s, it["clip_id"], it["audio_path"]) for s, ds in splits.items() for it in ds]
    if progress:
        from tqdm.auto import tqdm

        entries_iter = tqdm(entries, desc="hashing audio")
    else:
        entries_iter = entries
    groups: Dict[tuple, list] = defaultdict(list)
    for split, clip, path in entries_iter:
        groups[("file_name", clip)].append((split, clip))
        groups[("content", content_hash(path))].append((split, clip))
        if decode:
            groups[("audio", _audio_hash(path))].append((split, clip))
    rows = []
    for (kind, key), members in groups.items():
        split_set = sorted({s for s, _ in members})
        if len(split_set) > 1:
            rows.append({"kind": kind, "key": key if kind == "file_name" else key[:12],
                         "splits": ",".join(split_set), "clips": "; ".join(f"{s}:{c}" for s, c in members),
                         "n": len(members)})
    return pd.DataFrame(rows, columns=["kind", "key", "splits", "clips", "n"])
