"""Ranking clips for sentences (scoring a whole dataset split is :mod:`atrlib.retrieval.scoring`).

- :func:`resolve_retriever` — a registered retriever name (``tagbridge``) or a trained run
  directory (anything :func:`atrlib.models.dual.load_model` reads) -> a :class:`Retriever`.
- :func:`rank` — queries × clips -> a tidy table ``query, rank, file, score``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd


AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aiff", ".aif")


def resolve_retriever(name_or_dir: str, run_dir: Optional[str | Path] = None, **kw):
    """A retriever from a registered name, a trained run directory, or a public model
    (``hf-clap:<hub id or folder>``, ``msclap:<version>``; :mod:`atrlib.retrieval.peers`).

    A relative directory is looked up as given, then under ``run_dir`` (so a batch stage can
    say ``system = "02_train"``).
    """
    from atrlib.registry import name_or_path
    from atrlib.retrieval.retrievers import RETRIEVERS, TrainedRetriever, get_retriever

    text = str(name_or_dir)
    prefix, sep, model = text.partition(":")
    if sep and prefix.lower() in ("hf-clap", "msclap"):  # a public model: hf-clap:<hub id or folder>, msclap:<version>
        from atrlib.retrieval.retrievers import get_retriever as _get

        return _get(prefix.lower(), model=model, **kw)
    if run_dir is not None and text.lower() not in RETRIEVERS and not Path(text).exists() \
            and (Path(run_dir) / text).is_dir():
        text = str(Path(run_dir) / text)
    from atrlib.errors import AtrlibError, ConfigError, WeightsFileError

    try:
        kind, key = name_or_path(text, RETRIEVERS.names(), "retriever")
    except (KeyError, FileNotFoundError) as e:
        msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        raise ConfigError(f"{msg} (a trained run directory{f'; also looked in {run_dir}' if run_dir else ''})") from None
    if kind == "name":
        return get_retriever(key, **kw)
    if not Path(key).is_dir():
        raise ConfigError(f"{key}: a trained run is a folder (with best/ or model.safetensors), not a file")
    try:
        return TrainedRetriever(Path(key), **kw)
    except (AtrlibError, FileNotFoundError):
        raise
    except Exception as e:  # a corrupt, truncated or mismatched config.json / model.safetensors
        if isinstance(e, ValueError) and "score" in str(e):  # a score the run cannot give (its own message)
            raise ConfigError(str(e)) from e
        if not isinstance(e, (OSError, ValueError, RuntimeError, KeyError, TypeError, EOFError)) \
                and type(e).__name__ != "SafetensorError":
            raise
        raise WeightsFileError(f"{key}: the trained model cannot be loaded ({type(e).__name__}: "
                               f"{str(e).splitlines()[0] if str(e) else ''}); its config.json / model.safetensors "
                               "are corrupt, truncated or from another model. Restore them from a backup or train "
                               "the run again") from e


def _inside(path: Path, base: Path) -> bool:
    real = Path(os.path.realpath(path))
    return real == base or base in real.parents


def list_audio(source: str | Path, on_error: str = "raise", encoding: str = "utf-8",
               skipped: Optional[List[str]] = None) -> List[Path]:
    """Audio files of a folder (sorted, recursive) or of a CSV's ``file_name`` column
    (relative to the CSV's folder) — through the same door as the dataset loaders.

    A CSV's names must be relative paths inside its folder (no ``..``, no absolute paths),
    unique, and name existing regular files; a symlink whose target leaves the folder, and
    anything that is not a regular file (``/dev/zero``, a pipe), is refused. Errors name the
    CSV line. ``on_error="skip"`` drops such entries instead and appends a message for each
    to ``skipped``; a folder's out-of-folder links and non-files are always skipped that way.
    """
    from atrlib.audio.io import check_file
    from atrlib.errors import AudioError
    from atrlib.data.captions_csv import read_file_list
    from atrlib.errors import DatasetError

    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
    skipped = skipped if skipped is not None else []
    source = Path(source)
    if source.is_dir():
        base = Path(os.path.realpath(source))
        files = []
        for p in sorted(source.rglob("*")):
            if p.suffix.lower() not in AUDIO_SUFFIXES:
                continue
            if not _inside(p, base):
                skipped.append(f"{p}: a link that leaves {source}; not read")
                continue
            try:
                files.append(check_file(p))
            except AudioError as e:
                skipped.append(str(e))
        if not files:
            raise FileNotFoundError(f"{source}: no audio files ({', '.join(AUDIO_SUFFIXES)}) in this folder")
        return files
    if source.suffix.lower() == ".csv":
        base = Path(os.path.realpath(source.parent))
        out = []
        for line, name in read_file_list(source, encoding):
            path = source.parent / name
            try:
                if not _inside(path, base):
                    raise DatasetError(f"{source}, line {line}: {name!r} resolves outside {source.parent} (a symlink?)")
                try:
                    check_file(path)
                except AudioError as e:
                    raise DatasetError(f"{source}, line {line}: {e}") from None
            except DatasetError as e:
                if on_error == "raise":
                    raise DatasetError(f"{e}; or pass on_error='skip' (command line: --on-error skip)") from None
                skipped.append(str(e))
                continue
            out.append(path)
        if not out:
            raise FileNotFoundError(f"{source}: none of the listed files can be read: {skipped[:3]}")
        return out
    if source.is_file():
        from atrlib.errors import InputFileError

        what = "one audio file" if source.suffix.lower() in AUDIO_SUFFIXES else "a file that is neither"
        raise InputFileError(f"{source}: {what}; give a folder of audio files ({', '.join(AUDIO_SUFFIXES)}) or a "
                             "CSV with a file_name column (put a single clip in a folder of its own)")
    raise FileNotFoundError(f"{source}: no such folder or file; give a folder of audio files or a CSV with a "
                            "file_name column")


def clean_queries(queries: Sequence[str]) -> List[str]:
    """Queries stripped, duplicates dropped (first kept, order kept); an empty list or an
    empty query is a ``ValueError``."""
    out: List[str] = []
    for i, q in enumerate(queries):
        q = str(q).strip()
        if not q:
            raise ValueError(f"query {i + 1} is empty; give a sentence such as 'a dog barking'")
        if q not in out:
            out.append(q)
    if not out:
        raise ValueError("no queries given")
    return out


def embed_audio_checked(retriever, paths: Sequence[str | Path], on_error: str = "raise", progress: bool = True
                        ) -> Tuple[np.ndarray, List[int], List[str]]:
    """(embeddings (kept, d), indices kept, messages of skipped files): clip by clip through
    ``retriever.embed_audio`` so that, with ``on_error="skip"``, one undecodable clip is
    listed and left out instead of aborting the whole search or evaluation."""
    from tqdm.auto import tqdm

    from atrlib.errors import AudioError

    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
    rows, kept, skipped = [], [], []
    for i, p in enumerate(tqdm(list(paths), desc=f"{getattr(retriever, 'name', 'retriever')}: audio",
                               disable=not progress)):
        try:
            rows.append(retriever.embed_audio([p], progress=False)[0])
            kept.append(i)
        except AudioError as e:
            if on_error == "raise":
                raise AudioError(f"{e} (or pass on_error='skip', command line: --on-error skip)") from None
            skipped.append(str(e))
    if not rows:
        raise AudioError(f"none of the {len(paths)} clips could be read: {skipped[:3]}")
    return np.stack(rows).astype(np.float32), kept, skipped


def rank(retriever, queries: Sequence[str], audio_paths: Sequence[str | Path], top: int = 10,
         progress: bool = True, on_error: str = "raise", skipped: Optional[List[str]] = None) -> pd.DataFrame:
    """Top ``top`` clips for each query, best first: columns ``query, rank, file, score``.

    Queries are stripped and ranked once each (duplicates dropped); ``top`` must be >= 1.
    ``on_error="skip"`` leaves out clips that cannot be decoded and appends their messages
    to ``skipped``.
    """
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ValueError(f"top must be an integer >= 1, got {top!r}")
    queries = clean_queries(queries)
    if on_error == "skip":
        from atrlib.retrieval.retrievers import l2_normalize

        a, kept, bad = embed_audio_checked(retriever, audio_paths, on_error, progress)
        if skipped is not None:
            skipped.extend(bad)
        audio_paths = [audio_paths[i] for i in kept]
        sim = l2_normalize(retriever.embed_text(list(queries))) @ l2_normalize(a).T  # (queries, clips)
    else:
        sim = retriever.similarity(list(queries), list(audio_paths), progress=progress)  # (queries, clips)
    if not np.isfinite(sim).all():
        raise ValueError("the retriever gave non-finite scores (NaN/inf); a clip or the model is broken")
    rows = []
    for q, text in enumerate(queries):
        order = np.argsort(-sim[q], kind="stable")[:top]
        rows += [{"query": text, "rank": r + 1, "file": Path(audio_paths[i]).name, "score": float(sim[q, i]),
                  "path": str(audio_paths[i])} for r, i in enumerate(order)]
    return pd.DataFrame(rows, columns=["query", "rank", "file", "score", "path"])


def read_queries(query: Optional[Sequence[str]] = None, queries_file: Optional[str | Path] = None) -> List[str]:
    """The queries of ``--query`` (repeatable) or of a text file (one per line; blank lines
    ignored), cleaned by :func:`clean_queries`; an empty file is an error naming it."""
    if queries_file is not None:
        from atrlib.data.captions_csv import read_text_utf8

        lines = [l.strip() for l in read_text_utf8(Path(queries_file)).splitlines() if l.strip()]
        if not lines:
            raise ValueError(f"{queries_file}: no queries in this file (one sentence per line)")
        return clean_queries(lines)
    return clean_queries(list(query or []))


def prepare_output(path: str | Path, overwrite: bool = False, inputs: Sequence = ()) -> Path:
    """Check, before any work, that the ranking CSV ``path`` can be written and would not
    replace anything but an earlier ranking (:func:`atrlib.files.claim_output`, kind
    ``"search"``): an existing file is refused unless ``overwrite``, which moves an earlier
    ranking CSV aside to ``<path>.prev-<time>`` — never a folder, an input (``inputs``: the
    audio folder or CSV, the store, the example clips) or a file of the user's own."""
    from atrlib.files import check_writable, claim_output

    claim_output(path, "search", overwrite, inputs)
    return check_writable(path)
