"""Metadata records (one clip each, from any corpus format) -> checked dataset items.

The corpus loaders (``audiocaps``, ``wavcaps``, ``macs``, ``fsd50k``) each parse their own
metadata (CSV, JSON, YAML) into :class:`Record` objects and hand them to
:func:`build_from_records`, which finds the audio, checks it decodes, drops clips by
Freesound id on request and records every skipped clip with where it came from. Items are
:class:`~atrlib.data.base.ClipItem` dicts plus two keys:

- ``source``: the corpus (and sub-source) the clip came from, e.g. ``"wavcaps/FreeSound"``;
- ``freesound_id``: the clip's Freesound sound id as a string, or None when unknown.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

from atrlib.data.base import AudioCaptionDataset, BadClips, ClipItem, clip_audio_info
from atrlib.errors import DatasetError

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aiff", ".aif")


@dataclass
class Record:
    """One clip as its corpus describes it, before the audio is checked."""

    where: str                       # "train.csv, line 12" / "fsd_final.json, entry 7": used in messages
    clip_id: str                     # unique within the dataset
    audio_path: Optional[Path]       # the audio file, or None when it was not found
    captions: List[str]              # raw captions, at least one
    source: str                      # "audiocaps", "wavcaps/FreeSound", ...
    freesound_id: Optional[str] = None
    duration: Optional[float] = None  # seconds, from the metadata (used when audio is not decoded)
    extra: Dict[str, object] = field(default_factory=dict)  # corpus fields kept on the item (tags, ...)


def index_audio(folder: Path, recursive: bool = False) -> Dict[str, Path]:
    """``{file stem: path}`` of the audio files in ``folder`` (one listing, so lookups of
    hundreds of thousands of clips stay fast). Also keyed by the full file name."""
    out: Dict[str, Path] = {}
    if not folder.is_dir():
        return out
    walker = os.walk(folder) if recursive else [(str(folder), [], os.listdir(folder))]
    for dirpath, _, files in walker:
        for f in files:
            if f.lower().endswith(AUDIO_SUFFIXES):
                p = Path(dirpath) / f
                out.setdefault(f, p)
                out.setdefault(Path(f).stem, p)
    return out


def first_existing(root: Path, candidates: Sequence[str]) -> Optional[Path]:
    """The first of ``root / c`` that exists, or None."""
    for c in candidates:
        if (root / c).exists():
            return root / c
    return None


def build_from_records(name: str, split: str, root: Optional[Path], records: Iterable[Record],
                       on_error: str = "raise", limit: Optional[int] = None, verify_audio: bool = True,
                       exclude_freesound_ids=None, missing_hint: str = "") -> AudioCaptionDataset:
    """Items for every record whose audio exists (and decodes, when ``verify_audio``).

    on_error: ``"raise"`` (default) stops at the first missing or broken clip, naming its
        metadata row and the fix; ``"skip"`` logs it, keeps going and records the message in
        ``dataset.skipped``.
    verify_audio: decode every file once (:func:`atrlib.audio.io.audio_info`: truncated or NaN
        files are found now, not mid-training). False only checks that the file exists and
        takes the duration from the metadata (0.0 when it has none) — for corpora of
        hundreds of thousands of clips.
    exclude_freesound_ids: anything :func:`atrlib.data.freesound.exclusion_ids` accepts (ids,
        a Clotho root, a metadata CSV); clips with one of those Freesound ids are left out and
        one summary line is added to ``dataset.skipped``.
    missing_hint: appended to the message for a missing audio file (where to get it).
    """
    from atrlib.data.freesound import exclusion_ids

    bad = BadClips(on_error)
    excluded_ids = exclusion_ids(exclude_freesound_ids) if exclude_freesound_ids is not None else set()
    items: List[ClipItem] = []
    excluded: List[str] = []
    seen: Dict[str, str] = {}
    for rec in records:
        if limit and len(items) >= limit:
            break
        if rec.freesound_id is not None and rec.freesound_id in excluded_ids:
            excluded.append(rec.freesound_id)
            continue
        if rec.clip_id in seen:
            raise DatasetError(f"{rec.where}: clip {rec.clip_id!r} appears twice (first at {seen[rec.clip_id]}); "
                               "merge the two entries' captions or remove one")
        seen[rec.clip_id] = rec.where
        info = bad.check(_record_audio, rec, verify_audio, missing_hint)
        if info is None:
            continue
        dur, sr = info
        item = ClipItem(clip_id=rec.clip_id, audio_path=str(Path(rec.audio_path).resolve()), captions=list(rec.captions),
                        duration=float(dur), sample_rate=int(sr), split=split)
        item["source"] = rec.source  # type: ignore[typeddict-unknown-key]
        item["freesound_id"] = rec.freesound_id  # type: ignore[typeddict-unknown-key]
        item.update(rec.extra)  # type: ignore[typeddict-item]
        items.append(item)
    skipped = bad.skipped
    if excluded:
        shown = ", ".join(sorted(set(excluded))[:5])
        skipped.append(f"{name}/{split}: excluded {len(excluded)} clip(s) whose Freesound id is in the exclusion "
                       f"set (e.g. {shown})")
        log.info(skipped[-1])
    n_bad = len(skipped) - bool(excluded)
    if n_bad:
        log.warning("%s/%s: skipped %d bad clip(s) of %d", name, split, n_bad, n_bad + len(items))
    return AudioCaptionDataset(name=name, split=split, root=root, items=items, skipped=skipped)


def _record_audio(rec: Record, verify_audio: bool, missing_hint: str):
    """(duration, sample rate) of a record's clip; a DatasetError names its metadata row and the fix."""
    if not rec.captions:
        raise DatasetError(f"{rec.where}: clip {rec.clip_id!r} has no caption; add one or remove the entry")
    if rec.audio_path is None or not Path(rec.audio_path).exists():
        raise DatasetError(
            f"{rec.where}: audio for clip {rec.clip_id!r} not found"
            + (f" (expected {rec.audio_path})" if rec.audio_path is not None else "")
            + (f"; {missing_hint}" if missing_hint else "")
            + "; restore the file, or load with on_error='skip' to leave such clips out")
    if verify_audio:
        return clip_audio_info(rec.audio_path, rec.where)
    return float(rec.duration or 0.0), 0
