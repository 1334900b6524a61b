"""Leakage audit: clips shared between splits or between corpora, by id and by audio content.

Clotho is known to hold the same recording under more than one split, and pre-training
corpora (WavCaps' FreeSound part, FSD50K, LAION-630K) hold Freesound recordings that are
also Clotho evaluation clips; a model evaluated on a clip it trained on looks better than it
is. :func:`leakage_audit` takes labelled datasets (``{"clotho/evaluation": ds, "wavcaps": ws}``)
and finds

- ``file_name``: the same clip id in two splits of the same dataset (ids of different
  corpora are not comparable and are not matched);
- ``freesound_id``: the same Freesound sound in two datasets or splits (items carry
  ``freesound_id``: the corpus loaders set it, :func:`atrlib.data.freesound.attach_clotho_ids`
  adds it to Clotho items from the metadata CSV) — this catches excerpts and re-encodings
  of one upload that no hash can;
- ``content``: byte-identical audio files (sha256) under any names;
- ``audio``: the same decoded samples under different encodings (optional, slower: pass
  ``decode=True``; hashes the first 30 s resampled to 16 kHz and rounded to 8 bits, so it
  finds lossless re-encodings at one sample rate, not excerpts or re-sampled copies).

:func:`overlap_summary` counts the groups per kind and pair of datasets.
"""
from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Dict, Iterable, Optional, Sequence

import numpy as np
import pandas as pd

from atrlib.data.base import AudioCaptionDataset
from atrlib.files import content_hash


def _audio_hash(path: str) -> str:
    from atrlib.audio.io import load_audio

    x, _ = load_audio(path, sample_rate=16000, duration=30.0)
    return hashlib.sha256(np.round(x * 127).astype(np.int8).tobytes()).hexdigest()


def leakage_audit(splits: Dict[str, AudioCaptionDataset] | Iterable[AudioCaptionDataset], decode: bool = False,
                  progress: bool = False, kinds: Optional[Sequence[str]] = None) -> pd.DataFrame:
    """One row per group of clips found in more than one split (or dataset).

    ``splits``: ``{label: dataset}`` (labels name splits or corpora), or datasets, labelled by
    their split. ``kinds``: which checks to run (default file_name, freesound_id, content,
    and audio when ``decode``).

    Columns: ``kind`` (file_name / freesound_id / content / audio), ``key`` (the shared name,
    Freesound id or hash prefix), ``splits`` (comma-joined labels), ``clips``
    (``label:clip_id`` joined by ``; ``), ``n``. An empty frame means no leakage found.
    """
    if not isinstance(splits, dict):
        splits = {ds.split: ds for ds in splits}
    kinds = set(kinds or ("file_name", "freesound_id", "content") + (("audio",) if decode else ()))
    unknown = kinds - {"file_name", "freesound_id", "content", "audio"}
    if unknown:
        raise ValueError(f"unknown audit kind(s) {sorted(unknown)}; use file_name, freesound_id, content, audio")
    entries = [(s, it["clip_id"], it["audio_path"], ds.name, it.get("freesound_id"))
               for s, ds in splits.items() for it in ds]
    if progress:
        from tqdm.auto import tqdm

        entries_iter = tqdm(entries, desc="hashing audio")
    else:
        entries_iter = entries
    groups: Dict[tuple, list] = defaultdict(list)
    for split, clip, path, dataset, fsid in entries_iter:
        if "file_name" in kinds:
            groups[("file_name", (dataset, clip))].append((split, clip))
        if "freesound_id" in kinds and fsid is not None:
            groups[("freesound_id", str(fsid))].append((split, clip))
        if "content" in kinds:
            groups[("content", content_hash(path))].append((split, clip))
        if "audio" in kinds:
            groups[("audio", _audio_hash(path))].append((split, clip))
    rows = []
    for (kind, key), members in groups.items():
        split_set = sorted({s for s, _ in members})
        if len(split_set) > 1:
            shown = key[1] if kind == "file_name" else key if kind == "freesound_id" else key[:12]
            rows.append({"kind": kind, "key": shown,
                         "splits": ",".join(split_set), "clips": "; ".join(f"{s}:{c}" for s, c in members),
                         "n": len(members)})
    return pd.DataFrame(rows, columns=["kind", "key", "splits", "clips", "n"])


def overlap_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Groups per (kind, pair of labels) from a :func:`leakage_audit` table: columns ``kind``,
    ``a``, ``b``, ``groups`` — e.g. how many Freesound ids Clotho's evaluation split shares
    with WavCaps. A group spanning three labels counts for each of its pairs."""
    counts: Dict[tuple, int] = defaultdict(int)
    for kind, labels in zip(table["kind"], table["splits"]):
        parts = labels.split(",")
        for i in range(len(parts)):
            for j in range(i + 1, len(parts)):
                counts[(kind, parts[i], parts[j])] += 1
    rows = [{"kind": k, "a": a, "b": b, "groups": n} for (k, a, b), n in sorted(counts.items())]
    return pd.DataFrame(rows, columns=["kind", "a", "b", "groups"])
