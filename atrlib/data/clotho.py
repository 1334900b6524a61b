"""``clotho``: the Clotho dataset (Drossos et al., 2020) in its official layout.

Layout (as unpacked from Zenodo; v1 has development/evaluation, v2 adds validation)::

    root/
      clotho_audio_development/*.wav      clotho_captions_development.csv
      clotho_audio_validation/*.wav       clotho_captions_validation.csv
      clotho_audio_evaluation/*.wav       clotho_captions_evaluation.csv
      clotho_metadata_{split}.csv         (optional: keywords, sound_id, licence ...)

The layout aac-datasets downloads (``root/CLOTHO_v2.1/clotho_audio_files/<split>/`` and
``root/CLOTHO_v2.1/clotho_csv_files/clotho_captions_<split>.csv``) is found too.

Captions CSV: ``file_name,caption_1..caption_5`` (UTF-8). ``load_dataset("clotho",
root=..., split="evaluation")`` works offline on a local copy; ``download=True`` fetches the
split through the optional ``aac-datasets`` package (``pip install atrlib[download]``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Tuple

from atrlib.data.base import DATASETS, AudioCaptionDataset, root_and_split
from atrlib.data.captions_csv import build_dataset
from atrlib.errors import DatasetError

SPLITS = ("development", "validation", "evaluation")
SPLIT_NAMES = {"train": "development", "validation": "validation", "test": "evaluation"}
ZENODO = "https://zenodo.org/records/4783391"  # Clotho v2.1


def locate(root: Path, split: str) -> Tuple[Path, Path]:
    """(audio folder, captions csv) for a split in either known layout."""
    official = (root / f"clotho_audio_{split}", root / f"clotho_captions_{split}.csv")
    if official[1].exists():
        return official
    for sub in sorted(root.glob("CLOTHO_v*"), reverse=True):
        aac = (sub / "clotho_audio_files" / split, sub / "clotho_csv_files" / f"clotho_captions_{split}.csv")
        if aac[1].exists():
            return aac
    raise DatasetError(
        f"{root}: no Clotho {split} split here (looked for clotho_captions_{split}.csv and "
        f"CLOTHO_v*/clotho_csv_files/). Download clotho_audio_{split}.7z and clotho_captions_{split}.csv "
        f"from {ZENODO} and unpack them into {root}, or pass download=True with aac-datasets installed."
    )


def download_clotho(root: Path, split: str) -> None:
    """Download one split through aac-datasets (needs network and `pip install aac-datasets`)."""
    try:
        from aac_datasets import Clotho
    except ImportError:
        raise DatasetError(
            "download=True needs the optional aac-datasets package (`pip install 'atrlib[download]'`; it needs "
            f"torchaudio). Or download the split by hand from {ZENODO} into {root}."
        ) from None
    Clotho(root=str(root), subset=split, download=True, verbose=1)


@DATASETS.register("clotho")
def load_clotho(root=None, split: str = "evaluation", on_error: str = "raise", limit: Optional[int] = None,
                download: bool = False, encoding: str = "utf-8", **_) -> AudioCaptionDataset:
    root, split = root_and_split("clotho", root, split, SPLIT_NAMES,
                                 "the folder holding clotho_captions_<split>.csv and the audio folders", display="Clotho")
    try:
        audio_dir, csv_path = locate(root, split)
    except DatasetError:
        if not download:
            raise
        download_clotho(root, split)
        audio_dir, csv_path = locate(root, split)
    return build_dataset("clotho", split, root, audio_dir, csv_path, on_error=on_error, limit=limit, encoding=encoding)


def sample_layout(source: AudioCaptionDataset, out, counts: Sequence[int] = (3, 2, 2)) -> Path:
    """A small Clotho folder in the official layout from the clips of ``source`` (any loaded
    split, e.g. a few real evaluation clips): the first ``counts[0]`` clips become
    ``development``, the next ``counts[1]`` ``validation``, the next ``counts[2]``
    ``evaluation``, each with its captions CSV (five caption columns; a clip with fewer repeats
    its last caption). Audio is copied (the loader refuses links out of its folder). For dry runs
    (``fast_dev_run``) on real audio; returns ``out``."""
    import csv
    import shutil

    out = Path(out)
    need = sum(counts)
    if len(source) < need:
        raise DatasetError(f"{source.name}/{source.split}: {len(source)} clips, but the layout needs {need} "
                           f"({' + '.join(map(str, counts))} for {', '.join(SPLITS)})")
    start = 0
    for split, n in zip(SPLITS, counts):
        folder = out / f"clotho_audio_{split}"
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for item in source.items[start:start + n]:
            src = Path(item["audio_path"])
            dst = folder / src.name
            if not dst.exists():
                shutil.copyfile(src, dst)
            caps = list(item["captions"])[:5]
            rows.append([src.name] + caps + [caps[-1]] * (5 - len(caps)))
        start += n
        with open(out / f"clotho_captions_{split}.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["file_name"] + [f"caption_{k}" for k in range(1, 6)])
            w.writerows(rows)
    return out
