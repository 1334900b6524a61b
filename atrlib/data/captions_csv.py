"""Reading caption CSVs (``file_name,caption_1..caption_N``) into dataset items, with errors
that name the file, the row and the fix.

Shared by the ``clotho`` and ``folder`` loaders. Row numbers in messages are CSV line numbers
(the header is line 1), so a user can open the file and go straight to the row.
"""
from __future__ import annotations

import csv
import io
import logging
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import List, Optional, Tuple

from atrlib.audio import AudioError, audio_info
from atrlib.data.base import AudioCaptionDataset, ClipItem

log = logging.getLogger(__name__)


class DatasetError(ValueError):
    """Bad dataset input; the message names the file, the row and what to do."""


def read_text_utf8(path: Path, encoding: str = "utf-8") -> str:
    """The whole file as text; a non-UTF-8 file gets an error with the line and the fix."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding)
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DatasetError(
            f"{path}, line {line}: not valid {encoding} (byte 0x{data[e.start]:02x} at offset {e.start}). "
            f"Re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 in.csv > out.csv`) "
            f"or pass encoding='latin-1' if that is what it is."
        ) from None


def _check_relative(name: str, csv_path: Path, line: int) -> None:
    p, w = PurePosixPath(name), PureWindowsPath(name)
    if p.is_absolute() or w.is_absolute() or w.drive or ".." in p.parts or ".." in w.parts:
        raise DatasetError(
            f"{csv_path}, line {line}: file_name {name!r} points outside the dataset folder; "
            "file names must be relative paths inside the audio folder (no '..', no absolute paths)"
        )


def read_caption_rows(csv_path: Path, encoding: str = "utf-8") -> List[Tuple[int, str, List[str]]]:
    """``[(line, file_name, [captions...]), ...]`` from a caption CSV.

    Caption columns are those whose name starts with ``caption`` (``caption_1`` ...,
    ``caption``); empty cells are dropped. Raises :class:`DatasetError` for a missing
    ``file_name`` column, a row without captions, duplicate file names, a path that escapes
    the dataset folder, or a file that is not UTF-8.
    """
    csv_path = Path(csv_path)
    if not csv_path.exists():
        raise DatasetError(f"{csv_path}: caption file not found; check the dataset root and split name")
    text = read_text_utf8(csv_path, encoding)
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise DatasetError(f"{csv_path}: the file is empty; it needs a header 'file_name,caption_1,...'") from None
    if "file_name" not in header:
        raise DatasetError(f"{csv_path}, line 1: no 'file_name' column (columns: {header}); "
                           "the header must be 'file_name,caption_1,...'")
    fcol = header.index("file_name")
    ccols = [i for i, h in enumerate(header) if h.lower().startswith("caption")]
    if not ccols:
        raise DatasetError(f"{csv_path}, line 1: no caption columns (columns: {header}); "
                           "name them 'caption_1', 'caption_2', ...")
    rows, seen = [], {}
    for rec in reader:
        line = reader.line_num
        if not rec or all(not c.strip() for c in rec):
            continue
        if len(rec) <= fcol:
            raise DatasetError(f"{csv_path}, line {line}: row has {len(rec)} fields but no file_name")
        name = rec[fcol].strip()
        if not name:
            raise DatasetError(f"{csv_path}, line {line}: empty file_name")
        _check_relative(name, csv_path, line)
        if name in seen:
            raise DatasetError(f"{csv_path}, line {line}: duplicate file_name {name!r} (first on line {seen[name]}); "
                               "merge the two rows' captions into one row")
        seen[name] = line
        caps = [rec[i].strip() for i in ccols if i < len(rec) and rec[i].strip()]
        if not caps:
            raise DatasetError(f"{csv_path}, line {line}: {name!r} has no captions; add one or remove the row")
        rows.append((line, name, caps))
    return rows


def build_dataset(name: str, split: str, root: Path, audio_dir: Path, csv_path: Path, on_error: str = "raise",
                  limit: Optional[int] = None, encoding: str = "utf-8") -> AudioCaptionDataset:
    """Items for every CSV row whose audio exists and decodes.

    ``on_error="raise"`` (default) stops at the first bad clip with its file and row;
    ``on_error="skip"`` logs each bad clip and keeps going, recording the messages in
    ``dataset.skipped``.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
    if not audio_dir.is_dir():
        raise DatasetError(f"{audio_dir}: audio folder not found (expected beside {csv_path.name}); "
                           "check the dataset root, or download the audio")
    items: List[ClipItem] = []
    skipped: List[str] = []
    base = audio_dir.resolve()
    for line, fname, caps in read_caption_rows(csv_path, encoding):
        if limit and len(items) >= limit:
            break
        path = (audio_dir / fname).resolve()
        try:
            if base not in path.parents:
                raise DatasetError(f"{csv_path}, line {line}: {fname!r} resolves outside {audio_dir} (a symlink?)")
            if not path.exists():
                raise DatasetError(f"{csv_path}, line {line}: audio file {path} is listed but missing; "
                                   "restore it, remove the row, or load with on_error='skip'")
            try:
                dur, sr = audio_info(path)
            except AudioError as e:
                raise DatasetError(f"{csv_path}, line {line}: {e}; or load with on_error='skip'") from None
        except DatasetError as e:
            if on_error == "raise":
                raise
            log.warning("skipping: %s", e)
            skipped.append(str(e))
            continue
        items.append(ClipItem(clip_id=fname, audio_path=str(path), captions=caps, duration=float(dur),
                              sample_rate=int(sr), split=split))
    if skipped:
        log.warning("%s/%s: skipped %d bad clip(s) of %d", name, split, len(skipped), len(skipped) + len(items))
    return AudioCaptionDataset(name=name, split=split, root=root, items=items, skipped=skipped)
