"""``macs``: MACS, Multi-Annotator Captioned Soundscapes (Martín-Morató & Mesaros, DCASE 2021).

3,930 ten-second clips of TAU Urban Acoustic Scenes 2019 (development set), each described by
several annotators. Annotations are one YAML file (zenodo.org/records/5114771)::

    files:
    - filename: airport-stockholm-12-488-a.wav
      annotations:
      - annotator_id: 354
        sentence: ball game with the ball bouncing and people running
        tags: [adults talking, footsteps]
      - ...

Layout::

    root/
      MACS.yaml
      MACS_competence.csv      (optional, tab-separated annotator_id, competence)
      audio/<filename>         (or TAU-urban-acoustic-scenes-2019-development/audio/, or audio_dir=)

``load_dataset("macs", root=...)``: one split (``train``); each clip's captions are its
annotators' sentences in file order; the item also keeps ``tags`` (per annotator) and
``annotator_ids``. ``min_competence=0.5`` keeps only sentences of annotators whose estimated
competence (MACS_competence.csv) is at least that. TAU recordings are not from Freesound:
items have ``freesound_id=None``.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Dict, Optional

import yaml

from atrlib.data.base import DATASETS, AudioCaptionDataset, root_and_split
from atrlib.data.captions_csv import read_text_utf8
from atrlib.data.records import Record, build_from_records, first_existing, index_audio
from atrlib.errors import DatasetError

ZENODO = "https://zenodo.org/records/5114771"
TAU_ZENODO = "https://zenodo.org/records/2589280"


def read_competence(path: Path) -> Dict[int, float]:
    """``{annotator_id: competence}`` from MACS_competence.csv (tab- or comma-separated)."""
    text = read_text_utf8(path)
    delim = "\t" if "\t" in text.splitlines()[0] else ","
    out = {}
    for line, row in enumerate(csv.DictReader(io.StringIO(text), delimiter=delim), start=2):
        try:
            out[int(row["annotator_id"])] = float(row["competence"])
        except (KeyError, TypeError, ValueError):
            raise DatasetError(f"{path}, line {line}: expected columns annotator_id, competence (numbers)") from None
    return out


def read_macs_yaml(path: Path) -> list:
    """The ``files`` list of MACS.yaml, checked: each entry has ``filename`` and ``annotations``
    with a ``sentence`` each. Errors name the entry."""
    try:
        obj = yaml.safe_load(read_text_utf8(path))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise DatasetError(f"{path}" + (f", line {mark.line + 1}" if mark else "") + f": not valid YAML ({e}); "
                           f"re-download MACS.yaml from {ZENODO}") from None
    files = obj.get("files") if isinstance(obj, dict) else None
    if not isinstance(files, list):
        raise DatasetError(f"{path}: expected a top-level 'files:' list (the MACS layout)")
    for i, f in enumerate(files):
        if not isinstance(f, dict) or "filename" not in f or not isinstance(f.get("annotations"), list):
            raise DatasetError(f"{path}, files[{i}]: needs 'filename' and an 'annotations' list")
        for j, a in enumerate(f["annotations"]):
            if not isinstance(a, dict) or "sentence" not in a:
                raise DatasetError(f"{path}, files[{i}] ({f['filename']}), annotations[{j}]: no 'sentence'")
    return files


@DATASETS.register("macs")
def load_macs(root=None, split: str = "train", on_error: str = "raise", limit: Optional[int] = None,
              audio_dir: Optional[str] = None, min_competence: Optional[float] = None, verify_audio: bool = True,
              exclude_freesound_ids=None, **_) -> AudioCaptionDataset:
    """MACS under ``root`` (layout in the module docstring)."""
    root, split = root_and_split("macs", root, split, {"train": "train"},
                                 "the folder holding MACS.yaml and the TAU audio", display="MACS", note=" (MACS is one training set)")
    ypath = root / "MACS.yaml"
    if not ypath.is_file():
        raise DatasetError(f"{ypath}: not found; download MACS.yaml from {ZENODO} "
                           "(atrlib.data.download.download_macs_annotations(root))")
    adir = root / audio_dir if audio_dir else (
        first_existing(root, ["audio", "TAU-urban-acoustic-scenes-2019-development/audio"]) or root / "audio")
    competence = None
    if min_competence is not None:
        cpath = root / "MACS_competence.csv"
        if not cpath.is_file():
            raise DatasetError(f"{cpath}: needed for min_competence=; download it from {ZENODO}")
        competence = read_competence(cpath)
    index = index_audio(adir)
    records = []
    for i, f in enumerate(read_macs_yaml(ypath)):
        anns = f["annotations"]
        if competence is not None:
            anns = [a for a in anns if competence.get(int(a.get("annotator_id", -1)), 0.0) >= min_competence]
            if not anns:
                continue  # no annotator of this clip passes the threshold
        name = str(f["filename"])
        records.append(Record(
            where=f"{ypath}, files[{i}] ({name})", clip_id=name, audio_path=index.get(name) or adir / name,
            captions=[str(a["sentence"]).strip() for a in anns if str(a["sentence"]).strip()],
            source="macs", duration=10.0,
            extra={"tags": [list(a.get("tags") or []) for a in anns],
                   "annotator_ids": [a.get("annotator_id") for a in anns]}))
    return build_from_records("macs", split, root, records, on_error=on_error, limit=limit, verify_audio=verify_audio,
                              exclude_freesound_ids=exclude_freesound_ids,
                              missing_hint=f"MACS audio is TAU Urban Acoustic Scenes 2019 development ({TAU_ZENODO}); "
                                           f"put the listed files in {adir}")
