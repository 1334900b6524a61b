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
from typing import Callable, List, Optional, Tuple

from atrlib.data.base import AudioCaptionDataset, BadClips, ClipItem, clip_audio_info
from atrlib.errors import DatasetError

log = logging.getLogger(__name__)


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
            f"or pass encoding='latin-1' if that is what it is (command line: --encoding latin-1)."
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
    reader = csv.reader(io.StringIO(text), strict=True)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise DatasetError(f"{csv_path}: the file is empty; it needs a header 'file_name,caption_1,...'") from None
    except csv.Error as e:
        raise DatasetError(f"{csv_path}, line 1: not a valid CSV header ({e})") from None
    if "file_name" not in header:
        raise DatasetError(f"{csv_path}, line 1: no 'file_name' column (columns: {header}); "
                           "the header must be 'file_name,caption_1,...'")
    fcol = header.index("file_name")
    ccols = [i for i, h in enumerate(header) if h.lower().startswith("caption")]
    if not ccols:
        raise DatasetError(f"{csv_path}, line 1: no caption columns (columns: {header}); "
                           "name them 'caption_1', 'caption_2', ...")
    rows, seen = [], {}
    for line, rec in _records(reader, csv_path):
        if not rec or all(not c.strip() for c in rec):
            continue
        if len(rec) > len(header):
            raise DatasetError(
                f"{csv_path}, line {line}: {len(rec)} fields but the header has {len(header)} "
                f"({', '.join(header)}); a caption probably holds an unquoted comma — put the caption in "
                f"double quotes (\"a dog, then rain\")")
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


def _records(reader, csv_path: Path):
    """(first line of the record, fields) for each CSV record; a record that spans lines (a
    quote opened and not closed on its line swallows the rows after it) is an error."""
    prev_end = reader.line_num
    while True:
        start = prev_end + 1
        try:
            rec = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise DatasetError(f"{csv_path}, line {start}: {e}; a quote opened here is never closed — close it "
                               "or remove the stray quote character") from None
        end = reader.line_num
        if end > start or any("\n" in c or "\r" in c for c in rec):
            raise DatasetError(
                f"{csv_path}, line {start}: a quoted field runs over {end - start + 1} lines (to line {end}); an "
                "unterminated quote swallows the rows after it — close the quote or remove the stray quote character")
        prev_end = end
        yield start, rec


def read_file_list(csv_path: Path, encoding: str = "utf-8") -> List[Tuple[int, str]]:
    """``[(line, file_name), ...]`` from a CSV with a ``file_name`` column (captions optional),
    with the same checks as :func:`read_caption_rows`: relative names inside the folder, no
    duplicates, no rows split or merged by stray commas and quotes."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DatasetError(f"{csv_path}: file list not found")
    reader = csv.reader(io.StringIO(read_text_utf8(csv_path, encoding)), strict=True)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise DatasetError(f"{csv_path}: the file is empty; it needs a header with a 'file_name' column") from None
    if "file_name" not in header:
        raise DatasetError(f"{csv_path}, line 1: no 'file_name' column (columns: {header})")
    fcol = header.index("file_name")
    out, seen = [], {}
    for line, rec in _records(reader, csv_path):
        if not rec or all(not c.strip() for c in rec):
            continue
        if len(rec) > len(header):
            raise DatasetError(f"{csv_path}, line {line}: {len(rec)} fields but the header has {len(header)}; "
                               "quote fields that hold commas")
        name = rec[fcol].strip() if fcol < len(rec) else ""
        if not name:
            raise DatasetError(f"{csv_path}, line {line}: empty file_name")
        _check_relative(name, csv_path, line)
        if name in seen:
            raise DatasetError(f"{csv_path}, line {line}: duplicate file_name {name!r} (first on line {seen[name]})")
        seen[name] = line
        out.append((line, name))
    if not out:
        raise DatasetError(f"{csv_path}: no files listed")
    return out


def read_column(csv_path: Path, column: str, encoding: str = "utf-8") -> Optional[dict]:
    """``{file_name: (line, value)}`` of one more column of a caption CSV, or None when the
    header has no such column (the rows were checked by :func:`read_caption_rows`)."""
    reader = csv.reader(io.StringIO(read_text_utf8(Path(csv_path), encoding)), strict=True)
    header = [h.strip() for h in next(reader, [])]
    if column not in header or "file_name" not in header:
        return None
    c, f = header.index(column), header.index("file_name")
    out = {}
    for line, rec in _records(reader, Path(csv_path)):
        if rec and len(rec) > f and rec[f].strip():
            out[rec[f].strip()] = (line, rec[c].strip() if c < len(rec) else "")
    return out


def build_dataset(name: str, split: str, root: Path, audio_dir: Path, csv_path: Path, on_error: str = "raise",
                  limit: Optional[int] = None, encoding: str = "utf-8",
                  select: Optional[Callable[[int, str], Optional[str]]] = None) -> AudioCaptionDataset:
    """Items for every CSV row whose audio exists and decodes.

    ``select(line, file_name)`` (optional) returns the split a row belongs to, or None to
    leave the row out (the ``folder`` dataset's splits); the item's ``split`` is what it returns.

    ``on_error="raise"`` (default) stops at the first bad clip with its file and row;
    ``on_error="skip"`` logs each bad clip and keeps going, recording the messages in
    ``dataset.skipped``.
    """
    bad = BadClips(on_error)
    if not audio_dir.is_dir():
        raise DatasetError(f"{audio_dir}: audio folder not found (expected beside {csv_path.name}); "
                           "check the dataset root, or download the audio")
    items: List[ClipItem] = []
    for line, fname, caps in read_caption_rows(csv_path, encoding):
        if limit and len(items) >= limit:
            break
        item_split = select(line, fname) if select is not None else split
        if item_split is None:
            continue
        path = (audio_dir / fname).resolve()
        info = bad.check(_row_audio, csv_path, line, fname, path, audio_dir)
        if info is None:
            continue
        items.append(ClipItem(clip_id=fname, audio_path=str(path), captions=caps, duration=float(info[0]),
                              sample_rate=int(info[1]), split=item_split))
    if bad.skipped:
        log.warning("%s/%s: skipped %d bad clip(s) of %d", name, split, len(bad.skipped), len(bad.skipped) + len(items))
    return AudioCaptionDataset(name=name, split=split, root=root, items=items, skipped=bad.skipped)


def _row_audio(csv_path: Path, line: int, fname: str, path: Path, audio_dir: Path) -> Tuple[float, int]:
    """(duration, sample rate) of the clip a CSV row lists; a DatasetError names the row and the fix."""
    if audio_dir.resolve() not in path.parents:
        raise DatasetError(f"{csv_path}, line {line}: {fname!r} resolves outside {audio_dir} (a symlink?)")
    if not path.exists():
        raise DatasetError(f"{csv_path}, line {line}: audio file {path} is listed but missing; "
                           "restore it, remove the row, or load with on_error='skip' (command line: --on-error skip)")
    return clip_audio_info(path, f"{csv_path}, line {line}",
                           "or load with on_error='skip' (command line: --on-error skip)")
