"""``wavcaps``: WavCaps (Mei et al., 2023) in its published layout (huggingface.co/datasets/cvssp/WavCaps).

One JSON file per source, each ``{"num_captions_per_audio": 1, "data": [entry, ...]}``, one
ChatGPT-written caption per clip. Fields per entry (as released):

=====================  ==========================  ==============================================
source                 JSON                        entry fields
=====================  ==========================  ==============================================
``FreeSound``          ``FreeSound/fsd_final.json``  ``id`` (the Freesound id), ``file_name``, ``href``,
                                                   ``tags``, ``description``, ``author``, ``duration``,
                                                   ``download_link``, ``caption``
``BBC_Sound_Effects``  ``BBC_Sound_Effects/         ``id``, ``description``, ``category``, ``caption``,
                       bbc_final.json``             ``duration``, ``download_link``
``SoundBible``         ``SoundBible/sb_final.json``  ``id``, ``title``, ``description``, ``author``,
                                                   ``href``, ``caption``, ``duration``, ``download_link``
``AudioSet_SL``        ``AudioSet_SL/as_final.json``  ``id`` (``Y<youtube id>.wav``), ``caption``, ``duration``
=====================  ==========================  ==============================================

Layout::

    root/
      json_files/{FreeSound,BBC_Sound_Effects,SoundBible,AudioSet_SL}/*_final.json
      Audio/{FreeSound,BBC_Sound_Effects,SoundBible,AudioSet_SL}/<id>.flac   (unzipped from Zip_files/; "audio/" too)

An entry's audio is the file whose name (without extension) is its ``id`` (without ``.wav``).
``load_dataset("wavcaps", root=..., sources=["FreeSound"])``; WavCaps has one split
(``train``). Items: ``source="wavcaps/<Source>"``, ``freesound_id`` for the FreeSound part
(None elsewhere), so ``exclude_freesound_ids="/data/clotho"`` removes Clotho's validation /
evaluation / test clips (aac-datasets' list of FreeSound-part ids also in Clotho,
``blacklist_clotho.full.v2.csv``, holds 7,942 ids).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

from atrlib.data.base import DATASETS, AudioCaptionDataset, root_and_split
from atrlib.data.freesound import freesound_id
from atrlib.data.records import Record, build_from_records, first_existing, index_audio
from atrlib.errors import DatasetError

SOURCES = {  # source -> json file name
    "FreeSound": "fsd_final.json",
    "BBC_Sound_Effects": "bbc_final.json",
    "SoundBible": "sb_final.json",
    "AudioSet_SL": "as_final.json",
}
ALIASES = {"freesound": "FreeSound", "fsd": "FreeSound", "bbc": "BBC_Sound_Effects",
           "bbc_sound_effects": "BBC_Sound_Effects", "soundbible": "SoundBible", "sb": "SoundBible",
           "audioset": "AudioSet_SL", "audioset_sl": "AudioSet_SL", "as": "AudioSet_SL"}
HF_REPO = "https://huggingface.co/datasets/cvssp/WavCaps"


def source_name(name: str) -> str:
    """``"bbc"`` / ``"FreeSound"`` / ... -> the source's folder name."""
    key = ALIASES.get(str(name).lower(), name)
    if key not in SOURCES:
        raise DatasetError(f"unknown WavCaps source {name!r}; use one of {', '.join(SOURCES)} (or {', '.join(ALIASES)})")
    return key


def read_wavcaps_json(path: Path) -> list:
    """The ``data`` list of one WavCaps JSON; errors name the file and entry."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}, line {e.lineno}: not valid JSON ({e.msg}); re-download it from {HF_REPO}") from None
    data = obj.get("data") if isinstance(obj, dict) else obj
    if not isinstance(data, list):
        raise DatasetError(f"{path}: expected {{\"data\": [...]}} (the WavCaps layout), got {type(obj).__name__} "
                           f"with keys {sorted(obj)[:5] if isinstance(obj, dict) else ''}")
    for i, e in enumerate(data):
        if not isinstance(e, dict) or "id" not in e or "caption" not in e:
            raise DatasetError(f"{path}, entry {i}: needs 'id' and 'caption' (got {sorted(e) if isinstance(e, dict) else e!r})")
    return data


def _stem(entry_id: str) -> str:
    s = str(entry_id)
    for ext in (".wav", ".flac", ".mp3"):
        if s.lower().endswith(ext):
            return s[: -len(ext)]
    return s


@DATASETS.register("wavcaps")
def load_wavcaps(root=None, split: str = "train", sources: Optional[Sequence[str]] = None, on_error: str = "raise",
                 limit: Optional[int] = None, verify_audio: bool = True, exclude_freesound_ids=None,
                 json_dir: Optional[str] = None, audio_dir: Optional[str] = None, **_) -> AudioCaptionDataset:
    """WavCaps under ``root`` (layout in the module docstring); ``sources`` default all four."""
    root, split = root_and_split("wavcaps", root, split, {"train": "train"},
                                 "the folder holding json_files/ and Audio/", display="WavCaps", note=" (WavCaps is one training set)")
    jdir = root / json_dir if json_dir else (first_existing(root, ["json_files", "WavCaps/json_files"]) or root / "json_files")
    adir = root / audio_dir if audio_dir else (first_existing(root, ["Audio", "audio", "WavCaps/Audio"]) or root / "Audio")
    wanted = [source_name(s) for s in (sources or SOURCES)]
    records = []
    for src in wanted:
        jpath = first_existing(jdir, [f"{src}/{SOURCES[src]}", SOURCES[src]])
        if jpath is None:
            raise DatasetError(f"{jdir}: no {src}/{SOURCES[src]}; download json_files/ from {HF_REPO} "
                               f"(atrlib.data.download.download_wavcaps_json(root)) or leave {src!r} out of sources=")
        index = index_audio(adir / src)
        for i, e in enumerate(read_wavcaps_json(jpath)):
            sid = _stem(e["id"])
            caption = str(e["caption"]).strip()
            records.append(Record(
                where=f"{jpath}, entry {i} (id {e['id']!r})", clip_id=f"{src}/{sid}",
                audio_path=index.get(sid) or adir / src / f"{sid}.flac",
                captions=[caption] if caption else [], source=f"wavcaps/{src}",
                freesound_id=freesound_id(e["id"]) if src == "FreeSound" else None,
                duration=float(e["duration"]) if e.get("duration") is not None else None))
    return build_from_records("wavcaps", split, root, records, on_error=on_error, limit=limit,
                              verify_audio=verify_audio, exclude_freesound_ids=exclude_freesound_ids,
                              missing_hint=f"unzip the source's archive from {HF_REPO} into {adir}/<source>/")
