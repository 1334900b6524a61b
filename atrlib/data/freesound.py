"""Freesound ids: reading them, and keeping evaluation clips out of pre-training corpora.

Clotho's clips come from Freesound, and so do WavCaps' ``FreeSound`` part, all of FSD50K and
parts of LAION-Audio-630K. A pre-training corpus that holds a Clotho validation or
evaluation clip leaks it into training (Samsung 2024 excluded the Clotho test clips' ids
from every external set). Clotho publishes each clip's Freesound id in
``clotho_metadata_{split}.csv`` (columns ``file_name, keywords, sound_id, sound_link,
start_end_samples, manufacturer, license``; the v2 files are ISO-8859-1, the DCASE test file
``clotho_metadata_test.csv`` is ``;``-separated — both are read here).

    ids = clotho_freesound_ids("/data/clotho")                     # validation + evaluation + test
    wav = load_dataset("wavcaps", root=..., exclude_freesound_ids="/data/clotho")
    fsd = exclude_by_freesound_id(load_dataset("fsd50k", root=...), ids)

Every corpus loader takes ``exclude_freesound_ids=`` (anything :func:`exclusion_ids`
accepts) and gives its items a ``freesound_id`` (None where unknown, e.g. AudioCaps, MACS).
"""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Dict, Iterable, Optional, Sequence, Set

from atrlib.data.base import AudioCaptionDataset
from atrlib.errors import DatasetError

CLOTHO_ZENODO = "https://zenodo.org/records/4783391"
DEFAULT_CLOTHO_SPLITS = ("validation", "evaluation", "test")
ID_COLUMNS = ("sound_id", "freesound_id", "id", "fname")  # tried in this order in an id CSV
_URL_ID = re.compile(r"/sounds/(\d+)")
_BARE_ID = re.compile(r"^(\d+)(?:\.[A-Za-z0-9]{2,5})?$")


def freesound_id(value) -> Optional[str]:
    """The Freesound id in ``value`` as a string, or None.

    Accepts an int, a bare id (``"80399"``, ``"80399.wav"``), or any Freesound URL or path
    holding ``/sounds/<id>`` (``https://freesound.org/people/Benboncan/sounds/80399``,
    ``/people/Tempouser/sounds/180913/``, download links).
    """
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    text = str(value).strip()
    m = _BARE_ID.match(text) or _URL_ID.search(text)
    return str(int(m.group(1))) if m else None


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("iso-8859-1")  # Clotho v2 metadata files are ISO-8859-1


def read_id_table(path: str | Path) -> Dict[str, str]:
    """``{row key: freesound id}`` from a CSV with an id column (``sound_id``, ``freesound_id``,
    ``id`` or ``fname``; ``,`` or ``;`` separated; UTF-8 or ISO-8859-1). The row key is
    ``file_name`` when the table has one, else the id. Rows without an id are errors naming the line."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: id table not found")
    text = _decode(path)
    first = text.splitlines()[0] if text else ""
    delim = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(io.StringIO(text), delimiter=delim)
    header = [h.strip() for h in next(reader, [])]
    col = next((c for c in ID_COLUMNS if c in header), None)
    if col is None:
        raise DatasetError(f"{path}, line 1: no id column (columns: {header}); expected one of {', '.join(ID_COLUMNS)} "
                           "(Clotho's clotho_metadata_<split>.csv has 'sound_id')")
    ci = header.index(col)
    fi = header.index("file_name") if "file_name" in header else None
    out: Dict[str, str] = {}
    for line, rec in enumerate(reader, start=2):
        if not rec or all(not c.strip() for c in rec):
            continue
        raw = rec[ci].strip() if ci < len(rec) else ""
        fid = freesound_id(raw)
        if fid is None:
            raise DatasetError(f"{path}, line {line}: {col} {raw!r} is not a Freesound id (digits); fix or remove the row")
        key = rec[fi].strip() if fi is not None and fi < len(rec) else fid
        out[key] = fid
    return out


def locate_clotho_metadata(root: str | Path, split: str) -> Optional[Path]:
    """``clotho_metadata_<split>.csv`` in the official layout or aac-datasets' one, or None."""
    root = Path(root)
    cands = [root / f"clotho_metadata_{split}.csv"]
    cands += [sub / "clotho_csv_files" / f"clotho_metadata_{split}.csv" for sub in sorted(root.glob("CLOTHO_v*"), reverse=True)]
    return next((p for p in cands if p.is_file()), None)


def clotho_freesound_ids(root: str | Path, splits: Sequence[str] = DEFAULT_CLOTHO_SPLITS) -> Set[str]:
    """Freesound ids of Clotho's clips in ``splits`` (default validation, evaluation and the
    DCASE test set), read from ``clotho_metadata_<split>.csv`` under ``root``. Splits whose
    file is absent are passed over; none found at all is an error saying where to get them."""
    ids: Set[str] = set()
    found = []
    for split in splits:
        p = locate_clotho_metadata(root, split)
        if p is not None:
            ids |= set(read_id_table(p).values())
            found.append(split)
    if not found:
        raise DatasetError(
            f"{root}: no clotho_metadata_{{{','.join(splits)}}}.csv here (nor under CLOTHO_v*/clotho_csv_files/); "
            f"download them from {CLOTHO_ZENODO} (atrlib.data.download.download_clotho_csvs(root)) — they hold the "
            "Freesound ids ('sound_id') needed to exclude Clotho's clips from other corpora")
    return ids


def exclusion_ids(spec) -> Set[str]:
    """A set of Freesound ids (strings) from ``spec``:

    - None: the empty set;
    - ids (ints or strings, URLs allowed) in a list / set / tuple;
    - a folder: a Clotho root, read with :func:`clotho_freesound_ids` (validation,
      evaluation and test);
    - a ``.csv`` file: its id column (:func:`read_id_table`: a Clotho metadata CSV, aac-datasets'
      WavCaps blacklist ``index,id``, or any ``sound_id`` / ``freesound_id`` / ``id`` table);
    - any other file: one id per line (``#`` comments allowed).
    """
    if spec is None:
        return set()
    if isinstance(spec, (str, Path)):
        p = Path(spec)
        if p.is_dir():
            return clotho_freesound_ids(p)
        if not p.is_file():
            raise DatasetError(f"exclude_freesound_ids: {p} is neither a Clotho folder nor an id file")
        if p.suffix.lower() == ".csv":
            return set(read_id_table(p).values())
        out = set()
        for line, text in enumerate(_decode(p).splitlines(), start=1):
            text = text.split("#", 1)[0].strip()
            if text:
                fid = freesound_id(text)
                if fid is None:
                    raise DatasetError(f"{p}, line {line}: {text!r} is not a Freesound id")
                out.add(fid)
        return out
    if isinstance(spec, Iterable):
        out = set()
        for v in spec:
            fid = freesound_id(v)
            if fid is None:
                raise DatasetError(f"exclude_freesound_ids: {v!r} is not a Freesound id")
            out.add(fid)
        return out
    raise TypeError(f"exclude_freesound_ids: cannot read ids from {type(spec).__name__}")


def exclude_by_freesound_id(dataset: AudioCaptionDataset, ids) -> AudioCaptionDataset:
    """A copy of ``dataset`` without the clips whose ``freesound_id`` is in ``ids`` (anything
    :func:`exclusion_ids` accepts); one line saying how many went is added to ``skipped``."""
    drop = exclusion_ids(ids)
    keep = [it for it in dataset.items if it.get("freesound_id") not in drop]
    n = len(dataset.items) - len(keep)
    skipped = list(dataset.skipped)
    if n:
        skipped.append(f"{dataset.name}/{dataset.split}: excluded {n} clip(s) whose Freesound id is in the exclusion set")
    return AudioCaptionDataset(dataset.name, dataset.split, dataset.root, keep, skipped)


def attach_clotho_ids(dataset: AudioCaptionDataset, root: Optional[str | Path] = None) -> AudioCaptionDataset:
    """Give each item of a ``clotho`` dataset its ``freesound_id`` (from the split's metadata
    CSV under ``root``, default the dataset's root) and ``source="clotho"``, in place; items
    whose file is not in the metadata get None. Returns the dataset."""
    root = Path(root if root is not None else dataset.root)
    p = locate_clotho_metadata(root, dataset.split)
    if p is None:
        raise DatasetError(f"{root}: clotho_metadata_{dataset.split}.csv not found; download it from {CLOTHO_ZENODO}")
    table = read_id_table(p)
    for it in dataset.items:
        it["freesound_id"] = table.get(it["clip_id"])  # type: ignore[typeddict-unknown-key]
        it.setdefault("source", "clotho")  # type: ignore[typeddict-item]
    return dataset
