"""Moment-retrieval datasets on disk: Clotho-Moment, CASTELLA and the generator's folders.

Each is a ground-truth JSONL file (:mod:`atrlib.moments.formats`) plus one audio file per
recording, named by its ``vid``. Layout, under ``root``::

    clotho_moment_{split}_release.jsonl   Clotho-Moment, as Lighthouse releases it (data/clotho_moment/)
    castella_{split}_release.jsonl        CASTELLA, as Lighthouse and line/castella release it
    {split}.jsonl                         either, renamed
    annotations.jsonl                     a folder written by generate.py (one split)
    audio/{split}/{vid}.wav               the audio: the first folder of audio/{split}/, audio/,
                                          {split}/ and root itself that holds it (.wav .flac .ogg .mp3)

Splits are ``train``, ``val`` (also ``validation``), ``test``. ``require_audio=False`` reads the
annotations alone (enough to evaluate predictions). A missing recording is a
:class:`~atrlib.errors.DatasetError` that counts them, names the first, lists where it looked and
says how to get the audio: Clotho-Moment's from its authors' release; CASTELLA ships no audio at
all (its recordings are YouTube videos, AudioCaps' sources), so its error points to the authors'
download instructions.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Union

from atrlib.data.base import resolve_split
from atrlib.errors import ConfigError, DatasetError
from atrlib.moments.formats import MomentQuery, read_ground_truth
from atrlib.moments.generate import ANNOTATIONS

SPLIT_NAMES = {"train": "train", "validation": "val", "test": "test"}
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")

CLOTHO_MOMENT_AUDIO = (
    "Clotho-Moment's audio comes from its authors' release (https://h-munakata.github.io/Language-based-Audio-"
    "Moment-Retrieval/, also the Hugging Face dataset lighthouse-emnlp2024/Clotho-Moment); put each recording "
    "as {vid}.wav in {where}")
CASTELLA_AUDIO = (
    "CASTELLA ships no audio: its recordings are YouTube videos (vid is the YouTube id; they are AudioCaps' "
    "sources). Fetch them as its authors describe (https://github.com/h-munakata/CASTELLA-audio, linked from "
    "https://h-munakata.github.io/CASTELLA-demo/) and save each as {vid}.wav in {where}")


@dataclass
class MomentDataset:
    """The queries of one split and the audio file of each recording (``audio``: vid -> path;
    empty when loaded with ``require_audio=False``)."""

    name: str
    split: str
    root: Path
    annotations: Path
    queries: List[MomentQuery]
    audio: Dict[str, Path] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.queries)

    @property
    def recordings(self) -> List[str]:
        """The vids, each once, in the order the queries first name them."""
        return list(dict.fromkeys(q.vid for q in self.queries))


def _find_annotations(root: Path, candidates: Sequence[str], what: str) -> Path:
    for name in candidates:
        if (root / name).is_file():
            return root / name
    found = sorted(p.name for p in root.glob("*.jsonl"))
    raise DatasetError(f"{root}: no {what} annotation file; looked for {', '.join(candidates)}"
                       + (f"; JSONL files here: {', '.join(found)}" if found else ""))


def audio_index(folders: Sequence[Path]) -> Dict[str, Path]:
    """stem -> audio file, the first folder that holds a stem winning (one listing per folder)."""
    index: Dict[str, Path] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        with os.scandir(folder) as entries:
            for e in sorted(entries, key=lambda e: e.name):
                stem, suffix = os.path.splitext(e.name)
                if suffix.lower() in AUDIO_SUFFIXES and e.is_file() and stem not in index:
                    index[stem] = Path(e.path)
    return index


def load_moments(root: Union[str, Path], name: str, annotations: Sequence[str], split: str = "",
                 duration_slack: float = 0.0, require_audio: bool = True, how_to_get_audio: str = "") -> MomentDataset:
    """The common loader: the first of ``annotations`` (file names) found in ``root``, read with
    :func:`~atrlib.moments.formats.read_ground_truth`, and each recording's audio found by vid
    (see the module text). ``how_to_get_audio`` ends a missing-audio error ({where}: the first folder)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{name}: root {root} is not a folder")
    path = _find_annotations(root, annotations, name)
    queries = read_ground_truth(path, duration_slack=duration_slack)
    ds = MomentDataset(name, split, root, path, queries)
    if not require_audio:
        return ds
    folders = ([root / "audio" / split] if split else []) + [root / "audio"] + ([root / split] if split else []) + [root]
    index = audio_index(folders)
    missing = [v for v in ds.recordings if v not in index]
    if missing:
        where = str(folders[0])
        hint = (how_to_get_audio or "put each recording as {vid}.wav in {where}").replace("{where}", where)
        raise DatasetError(f"{path}: no audio for {len(missing)} of {len(ds.recordings)} recordings (first: "
                           f"{missing[0]!r}); looked for {{vid}}{'|'.join(AUDIO_SUFFIXES)} in "
                           f"{', '.join(str(f) for f in folders)}. {hint} — or load with require_audio=False "
                           "to read the annotations alone (enough to evaluate predictions)")
    ds.audio = {v: index[v] for v in ds.recordings}
    return ds


def _split(split: str, dataset: str) -> str:
    try:
        return resolve_split(split, SPLIT_NAMES, dataset)
    except ValueError as e:
        raise DatasetError(str(e)) from None


def load_clotho_moment(root: Union[str, Path], split: str = "test", require_audio: bool = True) -> MomentDataset:
    """Clotho-Moment (Munakata et al., ICASSP 2025; 60-s recordings, one window per query):
    ``clotho_moment_{split}_release.jsonl`` or ``{split}.jsonl`` in ``root``, audio by vid."""
    split = _split(split, "Clotho-Moment")
    return load_moments(root, "clotho-moment", (f"clotho_moment_{split}_release.jsonl", f"{split}.jsonl"), split,
                        require_audio=require_audio, how_to_get_audio=CLOTHO_MOMENT_AUDIO)


def load_castella(root: Union[str, Path], split: str = "test", require_audio: bool = True,
                  duration_slack: float = 1.0) -> MomentDataset:
    """CASTELLA (Munakata et al., ICASSP 2026; 1-5 min YouTube recordings, up to 24 windows per
    query): ``castella_{split}_release.jsonl`` or ``{split}.jsonl`` in ``root``, audio by vid.

    ``duration_slack`` (s) defaults to 1: the release's durations are whole seconds rounded
    down, and 162 / 12 / 99 windows of train / val / test end 1 s after them (one train window,
    [299, 4800] of a 299-s recording, is an annotation error and stays one)."""
    split = _split(split, "CASTELLA")
    return load_moments(root, "castella", (f"castella_{split}_release.jsonl", f"{split}.jsonl"), split,
                        duration_slack=duration_slack, require_audio=require_audio, how_to_get_audio=CASTELLA_AUDIO)


def load_generated(root: Union[str, Path], require_audio: bool = True) -> MomentDataset:
    """A folder written by :func:`atrlib.moments.generate.generate_moments`: ``annotations.jsonl``
    beside ``{vid}.wav`` (one split)."""
    return load_moments(root, "generated", (ANNOTATIONS,), "", require_audio=require_audio)


MOMENT_DATASETS: Dict[str, Callable[..., MomentDataset]] = {
    "clotho-moment": load_clotho_moment, "castella": load_castella, "generated": load_generated}


def load_moment_dataset(name: str, root: Union[str, Path], split: Optional[str] = None, **kw) -> MomentDataset:
    """``load_moment_dataset("castella", root, "test", require_audio=False)``: a loader by name
    (``clotho-moment``, ``castella``, ``generated``); without ``split`` the loader's default
    (``generated`` takes none)."""
    if name.lower() not in MOMENT_DATASETS:
        raise ConfigError(f"unknown moment dataset {name!r}; use one of {', '.join(MOMENT_DATASETS)}")
    return MOMENT_DATASETS[name.lower()](root, **({} if split is None else {"split": split}), **kw)
