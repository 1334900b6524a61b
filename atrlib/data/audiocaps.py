"""``audiocaps``: AudioCaps (Kim et al., NAACL 2019) in its published layout.

The captions are public CSVs (github.com/cdjkim/audiocaps, ``dataset/{train,val,test}.csv``),
one caption per row: ``audiocap_id,youtube_id,start_time,caption`` (train: one caption per
clip, val/test: five). The audio is 10 s of a YouTube video from ``start_time`` and is not
distributed: you fetch it yourself (many videos are gone, so expect missing clips and load
with ``on_error="skip"``). Layout::

    root/
      train.csv  val.csv  test.csv          (also found in root/dataset/ or root/csv_files/)
      audio/{train,val,test}/<clip>.{wav,flac,...}   (or root/{train,val,test}/, or audio_dir=)

An audio file is found by name, trying in order (any audio extension):
``{youtube_id}_{start_time}`` (aac-datasets), ``Y{youtube_id}_{start_time:.3f}_{end:.3f}``
(AudioSet downloads), ``Y{youtube_id}``, ``{youtube_id}``, ``{audiocap_id}``; pass
``audio_name="{youtube_id}.wav"``-style templates (fields ``youtube_id``, ``start_time``,
``audiocap_id``) for another naming. The clip id is ``{youtube_id}_{start_time}``.

``load_dataset("audiocaps", root=..., split="train")``; splits ``train`` / ``val`` / ``test``
(also ``validation``, ``evaluation`` ...). AudioCaps is AudioSet (YouTube), not Freesound:
items have ``freesound_id=None``; ``exclude_freesound_ids`` is accepted and changes nothing.
"""
from __future__ import annotations

import csv
import io
from collections import OrderedDict
from pathlib import Path
from typing import List, Optional, Sequence

from atrlib.data.base import DATASETS, AudioCaptionDataset, root_and_split
from atrlib.data.captions_csv import read_text_utf8
from atrlib.data.records import Record, build_from_records, first_existing, index_audio
from atrlib.errors import DatasetError

SPLIT_NAMES = {"train": "train", "validation": "val", "test": "test"}
COLUMNS = ("audiocap_id", "youtube_id", "start_time", "caption")
CSV_URL = "https://raw.githubusercontent.com/cdjkim/audiocaps/master/dataset/{split}.csv"
NAME_PATTERNS = ("{youtube_id}_{start_time}", "Y{youtube_id}_{start_time:.3f}_{end_time:.3f}", "Y{youtube_id}",
                 "{youtube_id}", "{audiocap_id}")


def locate_csv(root: Path, split: str) -> Path:
    p = first_existing(root, [f"{split}.csv", f"dataset/{split}.csv", f"csv_files/{split}.csv"])
    if p is None:
        raise DatasetError(f"{root}: no AudioCaps {split}.csv (looked in ., dataset/, csv_files/); download it from "
                           f"{CSV_URL.format(split=split)} (atrlib.data.download.download_audiocaps_csvs(root))")
    return p


def read_audiocaps_csv(path: Path) -> "OrderedDict[tuple, dict]":
    """Rows grouped by clip: ``{(youtube_id, start_time): {"line", "audiocap_ids", "captions"}}``
    in file order. Errors name the line: missing columns, a non-numeric start time, an empty caption."""
    reader = csv.reader(io.StringIO(read_text_utf8(path)), strict=True)
    header = [h.strip() for h in next(reader, [])]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise DatasetError(f"{path}, line 1: missing column(s) {', '.join(missing)} (columns: {header}); an AudioCaps "
                           f"CSV has the header {','.join(COLUMNS)}")
    col = {c: header.index(c) for c in COLUMNS}
    clips: "OrderedDict[tuple, dict]" = OrderedDict()
    for line, rec in enumerate(reader, start=2):
        if not rec or all(not c.strip() for c in rec):
            continue
        if len(rec) != len(header):
            raise DatasetError(f"{path}, line {line}: {len(rec)} fields, the header has {len(header)}; quote captions "
                               "that hold commas")
        yt, start, cap = rec[col["youtube_id"]].strip(), rec[col["start_time"]].strip(), rec[col["caption"]].strip()
        try:
            start_f = float(start)
        except ValueError:
            raise DatasetError(f"{path}, line {line}: start_time {start!r} is not a number (seconds)") from None
        if not yt:
            raise DatasetError(f"{path}, line {line}: empty youtube_id")
        if not cap:
            raise DatasetError(f"{path}, line {line}: empty caption; add one or remove the row")
        key = (yt, start_f)
        entry = clips.setdefault(key, {"line": line, "audiocap_ids": [], "captions": []})
        entry["audiocap_ids"].append(rec[col["audiocap_id"]].strip())
        entry["captions"].append(cap)
    return clips


def _start_text(start: float) -> str:
    return str(int(start)) if float(start).is_integer() else str(start)


@DATASETS.register("audiocaps")
def load_audiocaps(root=None, split: str = "train", on_error: str = "raise", limit: Optional[int] = None,
                   audio_dir: Optional[str] = None, audio_name: Optional[str | Sequence[str]] = None,
                   verify_audio: bool = True, exclude_freesound_ids=None, **_) -> AudioCaptionDataset:
    """AudioCaps ``split`` under ``root`` (layout in the module docstring)."""
    root, split = root_and_split("audiocaps", root, split, SPLIT_NAMES,
                                 "the folder holding train.csv / val.csv / test.csv and the audio", display="AudioCaps")
    csv_path = locate_csv(root, split)
    adir = root / audio_dir if audio_dir else first_existing(root, [f"audio/{split}", split, "audio"])
    if adir is None or not adir.is_dir():
        raise DatasetError(f"{root}: no AudioCaps audio folder for {split} (looked for audio/{split}/, {split}/, audio/); "
                           "put the clips there or pass audio_dir=")
    index = index_audio(adir)
    patterns = [audio_name] if isinstance(audio_name, str) else list(audio_name or NAME_PATTERNS)

    def find(yt: str, start: float, ac_ids: List[str]) -> Optional[Path]:
        for pat in patterns:
            fields = dict(youtube_id=yt, audiocap_id=ac_ids[0], end_time=start + 10.0,
                          start_time=_start_text(start) if "{start_time}" in pat else start)
            try:
                name = pat.format(**fields)
            except (KeyError, ValueError) as e:
                raise DatasetError(f"audio_name {pat!r}: bad field ({e}); use youtube_id, start_time, audiocap_id, "
                                   "end_time") from None
            hit = index.get(name)
            if hit is not None:
                return hit
        return None

    records = []
    for (yt, start), entry in read_audiocaps_csv(csv_path).items():
        clip_id = f"{yt}_{_start_text(start)}"
        records.append(Record(
            where=f"{csv_path}, line {entry['line']}", clip_id=clip_id,
            audio_path=find(yt, start, entry["audiocap_ids"]),
            captions=entry["captions"], source="audiocaps", duration=10.0,
            extra={"youtube_id": yt, "start_time": start}))
    return build_from_records("audiocaps", split, root, records, on_error=on_error, limit=limit,
                              verify_audio=verify_audio, exclude_freesound_ids=exclude_freesound_ids,
                              missing_hint=f"no file in {adir} named {' or '.join(patterns)} (+ an audio extension); YouTube clips are often gone")
