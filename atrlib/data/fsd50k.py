"""``fsd50k``: FSD50K (Fonseca et al., 2022) with captions, in its published layout (zenodo.org/records/4060432).

FSD50K has sound-event labels, not captions; the seed systems made captions themselves:
Samsung 2024 had GPT-4 write one from each clip's labels (a CSV you supply here), Huawei/UPF
2022 used the uploaders' Freesound descriptions and tags (``captions="freesound"``).
Layout::

    root/
      FSD50K.dev_audio/<fname>.wav       FSD50K.eval_audio/<fname>.wav
      FSD50K.ground_truth/dev.csv        fname,labels,mids,split   (split: train / val)
      FSD50K.ground_truth/eval.csv       fname,labels,mids
      FSD50K.metadata/{dev,eval}_clips_info_FSD50K.json   (for captions="freesound":
                                          {fname: {title, description, tags, license, uploader}})
      captions.csv                       (for captions="csv": file_name,caption_1[,caption_2...],
                                          file_name = the FSD50K fname, with or without .wav)

``fname`` is the clip's Freesound id, so every item has ``freesound_id`` and
``exclude_freesound_ids="/data/clotho"`` removes clips that are also in Clotho.

captions:
    ``"csv"`` (default): your captions CSV (``captions_csv=``, default ``root/captions.csv``);
    clips without a row are left out (counted in the log).
    ``"labels"``: one caption made from the ground-truth labels by :func:`tags_to_caption`
    ("the sound of electric guitar and guitar"); labels are listed most specific first in
    FSD50K, so ``max_labels`` (default 2) keeps the leaves and drops the smeared ancestors.
    ``"freesound"``: Huawei/UPF 2022: the uploader's description (HTML removed, at most 500
    characters) and the uploader's tags joined by spaces — two captions per clip.

Splits: ``train`` / ``validation`` (the ``split`` column of dev.csv), ``test`` (eval.csv);
join them with ``+`` (``"train+validation"``) or say ``"all"``.
"""
from __future__ import annotations

import csv
import html
import io
import json
import logging
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from atrlib.data.base import DATASETS, AudioCaptionDataset, resolve_split
from atrlib.data.captions_csv import read_caption_rows, read_text_utf8
from atrlib.data.records import Record, build_from_records, index_audio
from atrlib.errors import DatasetError

log = logging.getLogger(__name__)

ZENODO = "https://zenodo.org/records/4060432"
SPLIT_NAMES = {"train": "train", "validation": "val", "test": "eval"}
_TAG = re.compile(r"<[^>]+>")


def label_text(label: str) -> str:
    """An FSD50K / AudioSet label as words: ``"Electric_guitar"`` -> ``"electric guitar"``."""
    return re.sub(r"\s+", " ", str(label).replace("_", " ")).strip().lower()


def tags_to_caption(labels: Sequence[str], max_labels: Optional[int] = 2, template: str = "the sound of {}") -> str:
    """A caption from tags: ``["Dog", "Bark"]`` -> ``"the sound of dog and bark"``.

    Labels become words (:func:`label_text`), duplicates go, the first ``max_labels`` are
    kept (None: all), joined as ``"x"``, ``"x and y"``, ``"x, y and z"``, put into ``template``.
    """
    words: List[str] = []
    for lab in labels:
        w = label_text(lab)
        if w and w not in words:
            words.append(w)
    if max_labels:
        words = words[:max_labels]
    if not words:
        raise ValueError("tags_to_caption: no labels")
    phrase = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
    return template.format(phrase)


def clean_description(text: str, max_chars: int = 500) -> str:
    """A Freesound description as Huawei/UPF cleaned it: HTML mark-up removed, entities
    decoded, whitespace collapsed, cut to ``max_chars`` characters."""
    text = html.unescape(_TAG.sub(" ", str(text or "")))
    return re.sub(r"\s+", " ", text).strip()[:max_chars].strip()


def read_ground_truth(path: Path) -> List[dict]:
    """Rows of dev.csv / eval.csv as ``{"line", "fname", "labels", "split"}``; errors name the line."""
    if not path.is_file():
        raise DatasetError(f"{path}: not found; download FSD50K.ground_truth.zip from {ZENODO} and unzip it into the root")
    reader = csv.reader(io.StringIO(read_text_utf8(path)), strict=True)
    header = [h.strip() for h in next(reader, [])]
    if "fname" not in header or "labels" not in header:
        raise DatasetError(f"{path}, line 1: expected columns fname,labels,mids[,split] (got {header})")
    fi, li = header.index("fname"), header.index("labels")
    si = header.index("split") if "split" in header else None
    rows = []
    for line, rec in enumerate(reader, start=2):
        if not rec:
            continue
        if len(rec) != len(header):
            raise DatasetError(f"{path}, line {line}: {len(rec)} fields, the header has {len(header)}")
        fname = rec[fi].strip()
        if not fname.isdigit():
            raise DatasetError(f"{path}, line {line}: fname {fname!r} is not a Freesound id")
        rows.append({"line": line, "fname": fname, "labels": [x for x in rec[li].split(",") if x.strip()],
                     "split": rec[si].strip() if si is not None else "eval"})
    return rows


def _splits(split: str) -> List[str]:
    if str(split).lower() == "all":
        return ["train", "val", "eval"]
    out = []
    for part in str(split).split("+"):
        try:
            out.append(resolve_split(part.strip(), SPLIT_NAMES, "FSD50K"))
        except ValueError as e:
            raise DatasetError(f"{e}; join several with '+' or say 'all'") from None
    return out


@DATASETS.register("fsd50k")
def load_fsd50k(root=None, split: str = "train", captions: str = "csv", captions_csv: Optional[str] = None,
                max_labels: Optional[int] = 2, on_error: str = "raise", limit: Optional[int] = None,
                verify_audio: bool = True, exclude_freesound_ids=None, **_) -> AudioCaptionDataset:
    """FSD50K ``split`` under ``root`` with ``captions`` from a CSV, the labels or the uploaders
    (see the module docstring)."""
    if root is None:
        raise DatasetError("fsd50k needs root=: the folder holding FSD50K.ground_truth/ and the audio folders")
    if captions not in ("csv", "labels", "freesound"):
        raise DatasetError(f"captions must be 'csv', 'labels' or 'freesound', not {captions!r}")
    root = Path(root)
    wanted = _splits(split)
    gt = root / "FSD50K.ground_truth"
    rows = []
    if {"train", "val"} & set(wanted):
        rows += [dict(r, file=gt / "dev.csv", part="dev") for r in read_ground_truth(gt / "dev.csv") if r["split"] in wanted]
    if "eval" in wanted:
        rows += [dict(r, file=gt / "eval.csv", part="eval") for r in read_ground_truth(gt / "eval.csv")]

    caption_rows: Dict[str, List[str]] = {}
    if captions == "csv":
        cpath = Path(captions_csv) if captions_csv else root / "captions.csv"
        if not cpath.is_file():
            raise DatasetError(f"{cpath}: no captions CSV. FSD50K has labels, not captions: supply a CSV "
                               "file_name,caption_1[,...] (file_name = the FSD50K fname), or load with "
                               "captions='labels' (tag-made) or captions='freesound' (uploaders' descriptions)")
        for _line, name, caps in read_caption_rows(cpath):
            caption_rows[Path(name).stem if name.lower().endswith(".wav") else name] = caps
    info: Dict[str, dict] = {}
    if captions == "freesound":
        for part in sorted({r["part"] for r in rows}):
            ipath = root / "FSD50K.metadata" / f"{part}_clips_info_FSD50K.json"
            if not ipath.is_file():
                raise DatasetError(f"{ipath}: not found (needed for captions='freesound'); download "
                                   f"FSD50K.metadata.zip from {ZENODO}")
            try:
                info.update(json.loads(ipath.read_text(encoding="utf-8")))
            except json.JSONDecodeError as e:
                raise DatasetError(f"{ipath}, line {e.lineno}: not valid JSON ({e.msg})") from None

    indexes = {part: index_audio(root / f"FSD50K.{part}_audio") for part in {r["part"] for r in rows}}
    records, uncaptioned = [], 0
    for r in rows:
        where = f"{r['file']}, line {r['line']}"
        if captions == "csv":
            caps = caption_rows.get(r["fname"])
            if caps is None:
                uncaptioned += 1
                continue
        elif captions == "labels":
            caps = [tags_to_caption(r["labels"], max_labels)]
        else:
            meta = info.get(r["fname"], {})
            desc = clean_description(meta.get("description", ""))
            tags = " ".join(str(t) for t in meta.get("tags") or [])
            caps = [c for c in (desc, tags) if c]
        records.append(Record(
            where=where, clip_id=r["fname"], source="fsd50k", freesound_id=str(int(r["fname"])),
            audio_path=indexes[r["part"]].get(r["fname"]) or root / f"FSD50K.{r['part']}_audio" / f"{r['fname']}.wav",
            captions=caps, extra={"labels": r["labels"], "fsd50k_split": r["split"]}))
    if uncaptioned:
        log.warning("fsd50k/%s: %d clip(s) have no row in the captions CSV and are left out", split, uncaptioned)
    ds = build_from_records("fsd50k", "+".join(wanted), root, records, on_error=on_error, limit=limit,
                            verify_audio=verify_audio, exclude_freesound_ids=exclude_freesound_ids,
                            missing_hint=f"download the FSD50K audio from {ZENODO}")
    for it in ds.items:  # each item says which FSD50K split it is in
        it["split"] = it.pop("fsd50k_split")  # type: ignore[typeddict-item]
    return ds
