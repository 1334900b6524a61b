"""``folder``: any folder of audio files plus a caption CSV — for a user's own sounds.

Layout::

    root/
      captions.csv        file_name,caption_1[,caption_2,...]  (UTF-8; file names relative to root)
      *.wav | *.mp3 | *.flac | *.ogg

``load_dataset("folder", root="my_sounds")``; ``csv=`` names another CSV,
``audio_dir=`` another audio folder (relative to root). ``split`` is a label only.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from atrlib.data.base import DATASETS, AudioCaptionDataset
from atrlib.data.captions_csv import DatasetError, build_dataset


@DATASETS.register("folder")
def load_folder(root=None, split: str = "all", csv: str = "captions.csv", audio_dir: str = ".",
                on_error: str = "raise", limit: Optional[int] = None, encoding: str = "utf-8",
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
    return build_dataset("folder", split, root, root / audio_dir, csv_path, on_error=on_error, limit=limit,
                         encoding=encoding)
