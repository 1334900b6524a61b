"""``folder``: any folder of audio files plus a caption CSV — for a user's own sounds.

Layout::

    root/
      captions.csv        file_name,caption_1[,caption_2,...][,split]  (UTF-8; file names relative to root)
      *.wav | *.mp3 | *.flac | *.ogg

``load_dataset("folder", root="my_sounds", split="train")``; ``csv=`` names another CSV,
``audio_dir=`` another audio folder (relative to root).

Splits are real: every clip is in exactly one of ``train``, ``validation``, ``test``, so a
model is never tested on the clips it trained on.

- With a ``split`` column, each row says its split (``train`` / ``validation`` / ``test``, or
  ``development`` / ``val`` / ``evaluation`` ...); any other value is an error naming the line.
- Without one, a clip's split comes from a hash of its file name and ``split_seed``, cut at
  ``split_ratios`` (default 80 / 10 / 10 %). It depends on nothing but the name, so adding or
  removing other files never moves a clip between splits.
- ``split="all"`` (the default) gives every clip, each item recording its split.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional, Sequence

from atrlib.data.base import DATASETS, AudioCaptionDataset
from atrlib.data.captions_csv import build_dataset, read_column
from atrlib.errors import DatasetError

SPLITS = ("train", "validation", "test")
ALIASES = {"train": "train", "development": "train", "dev": "train",
           "validation": "validation", "val": "validation", "valid": "validation",
           "test": "test", "evaluation": "test", "eval": "test"}


def hashed_split(file_name: str, ratios: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0) -> str:
    """The split of one clip from sha256(seed, file name): stable whatever other files exist."""
    u = int(hashlib.sha256(f"{seed}:{file_name}".encode("utf-8")).hexdigest()[:13], 16) / 16 ** 13  # [0, 1)
    edge = 0.0
    for name, r in zip(SPLITS, ratios):
        edge += r
        if u < edge:
            return name
    return SPLITS[-1]


@DATASETS.register("folder")
def load_folder(root=None, split: str = "all", csv: str = "captions.csv", audio_dir: str = ".",
                on_error: str = "raise", limit: Optional[int] = None, encoding: str = "utf-8",
                split_ratios: Sequence[float] = (0.8, 0.1, 0.1), split_seed: int = 0,
                **_) -> AudioCaptionDataset:
    if root is None:
        raise DatasetError("the folder dataset needs root=: a folder with audio files and a captions.csv")
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: folder not found")
    csv_path = root / csv
    if not csv_path.exists():
        found = sorted(p.name for p in root.glob("*.csv"))
        raise DatasetError(f"{csv_path}: caption CSV not found" + (f"; CSVs here: {found} (pass csv=...)" if found else
                           "; create one with columns file_name,caption_1"))
    want = "all" if str(split).lower() == "all" else ALIASES.get(str(split).lower())
    if want is None:
        raise DatasetError(f"unknown folder split {split!r}; use all, train, validation or test "
                           f"(also {', '.join(a for a in ALIASES if a not in SPLITS)})")
    ratios = [float(r) for r in split_ratios]
    if len(ratios) != 3 or any(r < 0 for r in ratios) or abs(sum(ratios) - 1.0) > 1e-6:
        raise DatasetError(f"split_ratios must be three non-negative numbers (train, validation, test) summing to 1, "
                           f"got {list(split_ratios)}")
    column = read_column(csv_path, "split", encoding)

    def split_of(line: int, name: str) -> str:
        if column is None:
            return hashed_split(name, ratios, split_seed)
        value = column.get(name, (line, ""))[1]
        s = ALIASES.get(value.lower())
        if s is None:
            raise DatasetError(f"{csv_path}, line {line}: split {value!r} for {name!r}; use train, validation or test")
        return s

    def select(line: int, name: str) -> Optional[str]:
        s = split_of(line, name)
        return s if want in ("all", s) else None

    ds = build_dataset("folder", want, root, root / audio_dir, csv_path, on_error=on_error, limit=limit,
                       encoding=encoding, select=select)
    if not len(ds):
        how = "its 'split' column" if column is not None else f"file-name hashes at ratios {ratios} (seed {split_seed})"
        raise DatasetError(f"{csv_path}: the {want} split is empty (clips are assigned by {how}); add a 'split' "
                           "column to the CSV or change split_ratios")
    return ds
