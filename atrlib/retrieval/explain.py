"""Query by example and "why this match" on top of any retriever's rankings.

- :func:`rank_like` — rank clips by similarity to example sounds (``search --like FILE``):
  the retriever's :meth:`~atrlib.retrieval.retrievers.Retriever.audio_similarity` (for the tag-bridge,
  the cosine of the two clips' AudioSet tag vectors).
- :func:`add_why` — a ``why`` column for a ranking table: the classes that contributed most
  to each score, ``"Dog 0.079 · Bark 0.064 · Whimper (dog) 0.022"`` (``search --explain``, the
  notebook search box). For text queries the listed contributions are terms of the score's
  exact decomposition (:meth:`TagBridgeRetriever.contributions`); retrievers without one get
  an empty column.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

COLUMNS = ["query", "rank", "file", "score", "path"]


def rank_like(retriever, examples: Sequence[str | Path], audio_paths: Sequence[str | Path], top: int = 10,
              exclude_self: bool = True, progress: bool = False) -> pd.DataFrame:
    """Top ``top`` clips for each example sound, best first: columns ``query`` (the example's
    file name), ``rank, file, score, path``. The example itself is left out when it is in the list."""
    examples, audio_paths = [Path(e) for e in examples], [Path(p) for p in audio_paths]
    sim = retriever.audio_similarity(examples, audio_paths, progress=progress)  # (examples, clips)
    rows = []
    for q, ex in enumerate(examples):
        order = [i for i in np.argsort(-sim[q], kind="stable")
                 if not (exclude_self and audio_paths[i].resolve() == ex.resolve())][:top]
        rows += [{"query": ex.name, "rank": r + 1, "file": audio_paths[i].name, "score": float(sim[q, i]),
                  "path": str(audio_paths[i])} for r, i in enumerate(order)]
    return pd.DataFrame(rows, columns=COLUMNS)


def format_why(pairs, digits: int = 3) -> str:
    """``[("Dog", 0.0789), ("Bark", 0.0644)]`` -> ``"Dog 0.079 · Bark 0.064"``."""
    return " · ".join(f"{label} {value:.{digits}f}" for label, value in pairs)


def add_why(table: pd.DataFrame, retriever, top_labels: int = 3, examples: Sequence[str | Path] = ()) -> pd.DataFrame:
    """``table`` (from :func:`atrlib.retrieval.search.rank` or :func:`rank_like`) with a ``why`` column.
    ``examples``: the example files when ``table`` comes from :func:`rank_like` (matched to
    the ``query`` column by file name)."""
    table = table.copy()
    table["why"] = ""
    by_name = {Path(e).name: e for e in examples}
    for q, rows in table.groupby("query", sort=False):
        paths = list(rows["path"])
        if q in by_name and hasattr(retriever, "explain_audio"):
            why = retriever.explain_audio(by_name[q], paths, top=top_labels)
        elif not by_name and hasattr(retriever, "explain"):
            why = retriever.explain([q], paths, top=top_labels)[0]
        else:
            continue
        table.loc[rows.index, "why"] = [format_why(w) for w in why]
    return table
