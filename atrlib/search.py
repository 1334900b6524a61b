"""Ranking clips for sentences (scoring a whole dataset split is :mod:`atrlib.scoring`).

- :func:`resolve_retriever` — a registered retriever name (``tagbridge``) or a trained run
  directory (anything :func:`atrlib.models.dual.load_model` reads) -> a :class:`Retriever`.
- :func:`rank` — queries × clips -> a tidy table ``query, rank, file, score``.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import pandas as pd


AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aiff", ".aif")


def resolve_retriever(name_or_dir: str, run_dir: Optional[str | Path] = None, **kw):
    """A retriever from a registered name or a trained run directory.

    A relative directory is looked up as given, then under ``run_dir`` (so a batch stage can
    say ``system = "02_train"``).
    """
    from atrlib.retrievers import RETRIEVERS, TrainedRetriever, get_retriever

    if name_or_dir in RETRIEVERS:
        return get_retriever(name_or_dir, **kw)
    for cand in [Path(name_or_dir)] + ([Path(run_dir) / name_or_dir] if run_dir else []):
        if cand.is_dir():
            return TrainedRetriever(cand, **kw)
    raise ValueError(
        f"{name_or_dir!r} is neither a registered retriever ({', '.join(RETRIEVERS.names())}) nor a trained run "
        f"directory" + (f" (also looked in {run_dir})" if run_dir else "")
    )


def list_audio(source: str | Path) -> List[Path]:
    """Audio files of a folder (sorted, recursive) or of a CSV's ``file_name`` column
    (relative to the CSV's folder)."""
    source = Path(source)
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"{source}: no audio files ({', '.join(AUDIO_SUFFIXES)}) in this folder")
        return files
    if source.suffix.lower() == ".csv":
        from atrlib.data.captions_csv import read_text_utf8

        import io

        df = pd.read_csv(io.StringIO(read_text_utf8(source)))
        if "file_name" not in df.columns:
            raise ValueError(f"{source}: no 'file_name' column")
        return [source.parent / f for f in df["file_name"]]
    raise FileNotFoundError(f"{source}: not a folder of audio files or a CSV with a file_name column")


def rank(retriever, queries: Sequence[str], audio_paths: Sequence[str | Path], top: int = 10,
         progress: bool = True) -> pd.DataFrame:
    """Top ``top`` clips for each query, best first: columns ``query, rank, file, score``."""
    sim = retriever.similarity(list(queries), list(audio_paths), progress=progress)  # (queries, clips)
    rows = []
    for q, text in enumerate(queries):
        order = np.argsort(-sim[q], kind="stable")[:top]
        rows += [{"query": text, "rank": r + 1, "file": Path(audio_paths[i]).name, "score": float(sim[q, i]),
                  "path": str(audio_paths[i])} for r, i in enumerate(order)]
    return pd.DataFrame(rows, columns=["query", "rank", "file", "score", "path"])
