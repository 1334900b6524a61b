"""Downloading the public parts of the corpora, atomically and with the publishers' checksums.

Every file goes through :func:`atrlib.models.weights.download_file` (streamed into a temp file
beside the target, checksum verified, then renamed: a killed or corrupt download leaves
nothing behind). A file already present with the right checksum is not fetched again.

==========================  =================================================  ==================
helper                      what                                               checksum
==========================  =================================================  ==================
``download_clotho_csvs``    Clotho v2.1 captions + metadata CSVs (Zenodo       md5 (Zenodo's)
                            4783391) and the DCASE test metadata (3865658);
                            ``audio=True`` adds the 7z audio archives
``download_audiocaps_csvs`` AudioCaps train/val/test CSVs (GitHub cdjkim)      none published
``download_macs_annotations`` MACS.yaml, MACS_competence.csv, LICENSE.txt       md5 (Zenodo's)
                            (Zenodo 5114771)
``download_wavcaps_json``   WavCaps JSON metadata per source (Hugging Face      none published
                            cvssp/WavCaps at a pinned revision)
``download_fsd50k_metadata`` FSD50K ground truth + metadata zips (Zenodo         md5 (Zenodo's)
                            4060432), unzipped into the root
==========================  =================================================  ==================

Audio that is not freely downloadable as one file (AudioCaps: YouTube; WavCaps: multi-part
zips of hundreds of GB; TAU audio for MACS: 21 zips) is left to the user; each loader's error
says where to get it. ``mirror=`` replaces the host (a local copy, or ``file://`` in tests).
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

from atrlib.errors import ChecksumError
from atrlib.remote import WeightSpec, download_file, verify_file

__all__ = ["ChecksumError", "DataFile", "fetch", "fetch_all", "download_clotho_csvs", "download_audiocaps_csvs",
           "download_macs_annotations", "download_wavcaps_json", "download_fsd50k_metadata"]

DataFile = WeightSpec  # name, filename, url, sha256, size, md5: the same record as a weight file

_CLOTHO = "https://zenodo.org/records/4783391/files/"
_CLOTHO_TEST = "https://zenodo.org/records/3865658/files/"


def _z(base: str, fname: str, md5: str) -> DataFile:
    """A Zenodo file with its published md5; atrlib's name for it is the file name."""
    return DataFile(fname, fname, f"{base}{fname}?download=1", md5=md5)


CLOTHO_FILES: Dict[str, List[DataFile]] = {  # split -> files (md5 as published on Zenodo)
    "development": [
        _z(_CLOTHO, "clotho_captions_development.csv", "d4090b39ce9f2491908eebf4d5b09bae"),
        _z(_CLOTHO, "clotho_metadata_development.csv", "170d20935ecfdf161ce1bb154118cda5"),
    ],
    "validation": [
        _z(_CLOTHO, "clotho_captions_validation.csv", "5879e023032b22a2c930aaa0528bead4"),
        _z(_CLOTHO, "clotho_metadata_validation.csv", "2e010427c56b1ce6008b0f03f41048ce"),
    ],
    "evaluation": [
        _z(_CLOTHO, "clotho_captions_evaluation.csv", "1b16b9e57cf7bdb7f13a13802aeb57e2"),
        _z(_CLOTHO, "clotho_metadata_evaluation.csv", "13946f054d4e1bf48079813aac61bf77"),
    ],
    "test": [
        _z(_CLOTHO_TEST, "clotho_metadata_test.csv", "52f8ad01c229a310a0ff8043df480e21"),
    ],
}
CLOTHO_AUDIO: Dict[str, DataFile] = {
    "development": _z(_CLOTHO, "clotho_audio_development.7z", "c8b05bc7acdb13895bb3c6a29608667e"),
    "validation": _z(_CLOTHO, "clotho_audio_validation.7z", "7dba730be08bada48bd15dc4e668df59"),
    "evaluation": _z(_CLOTHO, "clotho_audio_evaluation.7z", "4569624ccadf96223f19cb59fe4f849f"),
    "test": _z(_CLOTHO_TEST, "clotho_audio_test.7z", "9b3fe72560a621641ff4351ba1154349"),
}
_AUDIOCAPS = "https://raw.githubusercontent.com/cdjkim/audiocaps/master/dataset/"
AUDIOCAPS_FILES = [DataFile(f"audiocaps-{s}", f"{s}.csv", _AUDIOCAPS + f"{s}.csv") for s in ("train", "val", "test")]
_MACS = "https://zenodo.org/records/5114771/files/"
MACS_FILES = [
    _z(_MACS, "MACS.yaml", "23fcb2ebd0b109094034ef9e87972256"),
    _z(_MACS, "MACS_competence.csv", "4dfe9f951f0af9f29cb7952ec030370a"),
    _z(_MACS, "LICENSE.txt", "d3086f4517cccc32c1bb3a081b07cfa1"),
]
WAVCAPS_REVISION = "85a0c21e26fa7696a5a74ce54fada99a9b43c6de"  # the revision aac-datasets pins
_WAVCAPS = f"https://huggingface.co/datasets/cvssp/WavCaps/resolve/{WAVCAPS_REVISION}/json_files/"
WAVCAPS_FILES = {src: DataFile(f"wavcaps-{src}", f"{src}/{name}", _WAVCAPS + f"{src}/{name}")
                 for src, name in [("FreeSound", "fsd_final.json"), ("BBC_Sound_Effects", "bbc_final.json"),
                                   ("SoundBible", "sb_final.json"), ("AudioSet_SL", "as_final.json")]}
_FSD50K = "https://zenodo.org/records/4060432/files/"
FSD50K_FILES = [
    DataFile("fsd50k-ground-truth", "FSD50K.ground_truth.zip", _FSD50K + "FSD50K.ground_truth.zip?download=1", md5="ca27382c195e37d2269c4c866dd73485"),
    DataFile("fsd50k-metadata", "FSD50K.metadata.zip", _FSD50K + "FSD50K.metadata.zip?download=1", md5="b9ea0c829a411c1d42adb9da539ed237"),
]


def _url(spec: DataFile, mirror: Optional[str]) -> str:
    if not mirror:
        return spec.url
    return mirror.rstrip("/") + "/" + spec.filename


def fetch(spec: DataFile, dest_dir: str | Path, mirror: Optional[str] = None, force: bool = False,
          progress: bool = True) -> Path:
    """``dest_dir/spec.filename``, downloaded from ``spec.url`` (or ``mirror/filename``) unless
    it is already there with the right checksum. A checksum mismatch raises
    :class:`~atrlib.models.weights.ChecksumError` naming the file, and leaves no file behind."""
    dest = Path(dest_dir) / spec.filename
    if dest.is_file() and not force:
        try:
            verify_file(dest, spec)
            return dest
        except ChecksumError:
            pass  # a stale or damaged copy: fetch it again (atomically replaced)
    url = _url(spec, mirror)
    try:
        return download_file(url, dest, spec if (spec.md5 or spec.sha256 or spec.size) else None, progress=progress)
    except ChecksumError as e:
        raise ChecksumError(f"{e} (downloaded from {url}); the file was not kept — retry, or report the changed "
                            "file upstream") from None
    except OSError as e:
        raise OSError(f"could not download {url} to {dest}: {e}. Download it by hand and put it there.") from e


def fetch_all(specs: Iterable[DataFile], dest_dir: str | Path, mirror: Optional[str] = None, force: bool = False,
              progress: bool = True) -> List[Path]:
    return [fetch(s, dest_dir, mirror=mirror, force=force, progress=progress) for s in specs]


def download_clotho_csvs(root: str | Path, splits: Sequence[str] = ("development", "validation", "evaluation", "test"),
                         audio: bool = False, mirror: Optional[str] = None, progress: bool = True) -> List[Path]:
    """Clotho v2.1 caption and metadata CSVs (and with ``audio=True`` the 7z archives, which
    you unpack with ``7z x``) into ``root`` — the layout ``load_dataset("clotho")`` and
    :func:`atrlib.data.freesound.clotho_freesound_ids` read."""
    unknown = [s for s in splits if s not in CLOTHO_FILES]
    if unknown:
        raise ValueError(f"unknown Clotho split(s) {unknown}; use {', '.join(CLOTHO_FILES)}")
    specs = [f for s in splits for f in CLOTHO_FILES[s]] + ([CLOTHO_AUDIO[s] for s in splits] if audio else [])
    return fetch_all(specs, root, mirror=mirror, progress=progress)


def download_audiocaps_csvs(root: str | Path, mirror: Optional[str] = None, progress: bool = True) -> List[Path]:
    """AudioCaps train/val/test CSVs into ``root`` (no checksum is published for them)."""
    return fetch_all(AUDIOCAPS_FILES, root, mirror=mirror, progress=progress)


def download_macs_annotations(root: str | Path, mirror: Optional[str] = None, progress: bool = True) -> List[Path]:
    """MACS.yaml, MACS_competence.csv and the licence into ``root`` (md5-checked)."""
    return fetch_all(MACS_FILES, root, mirror=mirror, progress=progress)


def download_wavcaps_json(root: str | Path, sources: Sequence[str] = tuple(WAVCAPS_FILES),
                          mirror: Optional[str] = None, progress: bool = True) -> List[Path]:
    """WavCaps JSON metadata into ``root/json_files/<Source>/`` (the layout ``load_dataset("wavcaps")`` reads)."""
    from atrlib.data.wavcaps import source_name

    return fetch_all([WAVCAPS_FILES[source_name(s)] for s in sources], Path(root) / "json_files", mirror=mirror,
                     progress=progress)


def download_fsd50k_metadata(root: str | Path, mirror: Optional[str] = None, progress: bool = True) -> List[Path]:
    """FSD50K.ground_truth/ and FSD50K.metadata/ into ``root`` (zips md5-checked, then unzipped
    with every member kept inside ``root``)."""
    root = Path(root)
    zips = fetch_all(FSD50K_FILES, root, mirror=mirror, progress=progress)
    for z in zips:
        safe_unzip(z, root)
    return zips


def safe_unzip(archive: Path, dest: Path) -> None:
    """Extract ``archive`` into ``dest``, refusing members that would land outside it."""
    dest = Path(dest).resolve()
    with zipfile.ZipFile(archive) as zf:
        for m in zf.namelist():
            target = (dest / m).resolve()
            if target != dest and dest not in target.parents:
                raise ValueError(f"{archive}: member {m!r} would be written outside {dest}; not extracting")
        zf.extractall(dest)
