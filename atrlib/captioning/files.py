"""Captions on disk in the challenge's formats (DCASE task 6a / Clotho):

- ``predictions.csv`` — ``file_name,caption_predicted``, one row per clip;
- ``references.csv`` — ``file_name,caption_1,…,caption_5`` (as many caption columns as the
  clip with most references; Clotho's ``clotho_captions_<split>.csv`` has this layout);
- ``metrics.json`` — every metric's corpus value with its bootstrap 95 % interval, the
  missing ones with their reason and fix, the tokenizer, the clip count.

Readers check what they read and name the file (and line) in an
:class:`~atrlib.errors.InputFileError`: a missing column, an empty file, a duplicate or
empty file name, a clip without references.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Dict, List, Mapping, Sequence

PRED_COLUMNS = ("file_name", "caption_predicted")


def _rows(path, what: str):
    from atrlib.data.captions_csv import read_text_utf8
    from atrlib.errors import InputFileError

    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"{p}: {what} file not found")
    text = read_text_utf8(p)
    try:
        rows = list(csv.reader(io.StringIO(text), strict=True))
    except csv.Error as e:
        raise InputFileError(f"{p}: not a readable CSV ({e}); quote captions that hold commas") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise InputFileError(f"{p}: the {what} file is empty; it needs a header "
                             + ("file_name,caption_predicted" if what == "predictions" else
                                "file_name,caption_1,...,caption_5") + " and one row per clip")
    header = [h.strip() for h in rows[0]]
    if "file_name" not in header:
        raise InputFileError(f"{p}: no 'file_name' column in the header {header}")
    return p, header, rows[1:]


def _named_rows(p: Path, header: List[str], rows):
    """(line number, file_name, row) for each data row; an empty or repeated file_name is an
    error naming the line."""
    from atrlib.errors import InputFileError

    i, seen = header.index("file_name"), set()
    for line, r in enumerate(rows, 2):
        name = r[i].strip() if i < len(r) else ""
        if not name:
            raise InputFileError(f"{p}, line {line}: empty file_name")
        if name in seen:
            raise InputFileError(f"{p}, line {line}: {name} is listed twice")
        seen.add(name)
        yield line, name, r


def read_predictions(path) -> Dict[str, str]:
    """file_name -> predicted caption."""
    from atrlib.errors import InputFileError

    p, header, rows = _rows(path, "predictions")
    if "caption_predicted" not in header:
        raise InputFileError(f"{p}: no 'caption_predicted' column in the header {header}")
    j = header.index("caption_predicted")
    out: Dict[str, str] = {}
    for _, name, r in _named_rows(p, header, rows):
        out[name] = r[j].strip() if j < len(r) else ""
    if not out:
        raise InputFileError(f"{p}: no predictions (only a header)")
    return out


def read_references(path) -> Dict[str, List[str]]:
    """file_name -> its reference captions (the ``caption_*`` columns, empty cells dropped)."""
    from atrlib.errors import InputFileError

    p, header, rows = _rows(path, "references")
    cols = [k for k, h in enumerate(header) if h.startswith("caption_")]
    if not cols:
        raise InputFileError(f"{p}: no caption_1 ... caption_N columns in the header {header}")
    out: Dict[str, List[str]] = {}
    for line, name, r in _named_rows(p, header, rows):
        refs = [r[k].strip() for k in cols if k < len(r) and r[k].strip()]
        if not refs:
            raise InputFileError(f"{p}, line {line}: {name} has no reference caption")
        out[name] = refs
    if not out:
        raise InputFileError(f"{p}: no references (only a header)")
    return out


def _write_csv(path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> Path:
    from atrlib.files import write_text_atomic

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return write_text_atomic(path, buf.getvalue())


def write_predictions(path, file_names: Sequence[str], captions: Sequence[str]) -> Path:
    if len(file_names) != len(captions):
        raise ValueError(f"{len(file_names)} file names but {len(captions)} captions")
    return _write_csv(path, PRED_COLUMNS, [(f, c) for f, c in zip(file_names, captions)])


def write_references(path, references: Mapping[str, Sequence[str]]) -> Path:
    k = max((len(r) for r in references.values()), default=5)
    return _write_csv(path, ["file_name"] + [f"caption_{i + 1}" for i in range(k)],
                      [[f] + list(r) + [""] * (k - len(r)) for f, r in references.items()])


def match(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]], pred_path="predictions",
          ref_path="references"):
    """(file names, candidates, reference lists) of the clips in both; a clip with references but
    no prediction, or a prediction without references, is an error naming both files."""
    from atrlib.errors import InputFileError

    no_pred = [f for f in references if f not in predictions]
    no_ref = [f for f in predictions if f not in references]
    if no_pred or no_ref:
        parts = ([f"{len(no_pred)} clip(s) of {ref_path} have no prediction in {pred_path} (e.g. {no_pred[:3]})"]
                 if no_pred else []) + ([f"{len(no_ref)} prediction(s) in {pred_path} have no references in "
                                         f"{ref_path} (e.g. {no_ref[:3]})"] if no_ref else [])
        raise InputFileError("; ".join(parts))
    names = list(references)
    return names, [predictions[f] for f in names], [list(references[f]) for f in names]


def score_files(pred_path, ref_path, **kw):
    """:func:`~atrlib.captioning.evaluate.evaluate_captions` of a predictions file against a
    references file (clips matched by file name)."""
    from atrlib.captioning.evaluate import evaluate_captions

    names, cands, refs = match(read_predictions(pred_path), read_references(ref_path), pred_path, ref_path)
    return evaluate_captions(cands, refs, clip_ids=names, **kw)


def write_caption_metrics(path, scores, **extra) -> Path:
    """``metrics.json``: ``{metric: {value, low, high}, missing: {...}, tokenizer, n_clips, ...extra}``."""
    from atrlib.files import write_json

    return write_json(path, {**scores.to_dict(), **extra})
