"""The AudioSet ontology as label text: class names, synonyms, descriptions and parents.

The ontology (``ontology.json``: 632 classes with ``id``, ``name``, ``description``,
``child_ids``; Google, CC BY-SA 4.0) is read at run time and never shipped with atrlib. It is
looked up, in order, at

1. an explicit ``path=``;
2. ``$ATRLIB_ONTOLOGY`` (the file, or a folder holding ``ontology.json``);
3. ``cache_dir()/"ontology.json"`` (where :func:`download_ontology` puts it);
4. ``shared_dir()/"data"/"audioset_ontology"/"ontology.json"`` (developers and CI).

A missing file is a :class:`FileNotFoundError` naming the URL and where to save it.

:func:`label_texts` turns the tagger's class list into one list of phrases per class, the
text that label embeddings are made of:

- ``"names"``: the display name as it is (``"Male speech, man speaking"``);
- ``"synonyms"``: the name split at commas into its synonyms (``["Male speech", "man speaking"]``);
  needs no ontology;
- descriptions (``"The sound of droplets of liquid water ..."``) come from
  :meth:`Ontology.description` and are blended in by the retriever with a weight.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Sequence

ONTOLOGY_URL = "https://raw.githubusercontent.com/audioset/ontology/master/ontology.json"
LABEL_TEXTS = ("names", "synonyms")


def synonyms(name: str) -> List[str]:
    """``"Heart sounds, heartbeat"`` -> ``["Heart sounds", "heartbeat"]`` (AudioSet display names
    list synonyms separated by commas); a name without commas stays whole."""
    parts = [p.strip() for p in name.split(",")]
    return [p for p in parts if p] or [name]


def label_texts(names: Sequence[str], mode: str = "synonyms") -> List[List[str]]:
    """One list of phrases per class name (see the module docstring for ``mode``)."""
    if mode not in LABEL_TEXTS:
        raise ValueError(f"label text mode must be one of {LABEL_TEXTS}, not {mode!r}")
    return [[n] if mode == "names" else synonyms(n) for n in names]


def find_ontology(path: Optional[str | Path] = None) -> Optional[Path]:
    """The ontology file from the places in the module docstring, or None when none exists.
    An explicit ``path`` that does not exist is an error (a typo should not fall back silently)."""
    if path is not None:
        p = Path(path).expanduser()
        p = p / "ontology.json" if p.is_dir() else p
        if not p.is_file():
            raise FileNotFoundError(f"{path}: no AudioSet ontology here (ontology.json); download it from {ONTOLOGY_URL}")
        return p
    from atrlib.paths import cache_dir, shared_dir

    cands = []
    env = os.environ.get("ATRLIB_ONTOLOGY")
    if env:
        e = Path(env).expanduser()
        cands.append(e / "ontology.json" if e.is_dir() else e)
    cands.append(cache_dir() / "ontology.json")
    sd = shared_dir()
    if sd is not None:
        cands.append(sd / "data" / "audioset_ontology" / "ontology.json")
    return next((c for c in cands if c.is_file()), None)


def download_ontology(url: str = ONTOLOGY_URL) -> Path:
    """Fetch ``ontology.json`` (about 340 kB) into ``cache_dir()``, checked to parse as the
    ontology before it is put in place. Returns its path."""
    import urllib.request

    from atrlib.files import write_bytes_atomic
    from atrlib.paths import cache_dir

    with urllib.request.urlopen(url, timeout=60) as resp:
        data = resp.read()
    _parse(json.loads(data.decode("utf-8")), url)
    dest = cache_dir() / "ontology.json"
    write_bytes_atomic(dest, data)
    return dest


def _parse(rows, where: str) -> List[dict]:
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) and "id" in r and "name" in r for r in rows):
        raise ValueError(f"{where}: not the AudioSet ontology (a JSON list of classes with 'id' and 'name')")
    return rows


@dataclass
class Ontology:
    """Classes by id and by name, with each class's parents (a class may have several)."""

    classes: Dict[str, dict]          # id -> the class record
    by_name: Dict[str, str]           # name (lower case) -> id
    parents: Dict[str, List[str]]     # id -> parent ids
    source: str = ""                  # the file it was read from

    def find(self, name: str, mid: Optional[str] = None) -> Optional[dict]:
        """The class with this id, else with this display name (case-insensitive), else None."""
        if mid and mid in self.classes:
            return self.classes[mid]
        cid = self.by_name.get(name.strip().lower())
        return self.classes.get(cid) if cid else None

    def description(self, name: str, mid: Optional[str] = None) -> str:
        c = self.find(name, mid)
        return (c or {}).get("description", "") or ""

    def parent_names(self, name: str, mid: Optional[str] = None) -> List[str]:
        c = self.find(name, mid)
        return [self.classes[p]["name"] for p in self.parents.get(c["id"], [])] if c else []


@lru_cache(maxsize=4)
def _load(path: str) -> Ontology:
    try:
        rows = _parse(json.loads(Path(path).read_text(encoding="utf-8")), path)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e}); download the ontology again from {ONTOLOGY_URL}") from e
    classes = {r["id"]: r for r in rows}
    parents: Dict[str, List[str]] = {}
    for r in rows:
        for c in r.get("child_ids", []):
            parents.setdefault(c, []).append(r["id"])
    return Ontology(classes, {r["name"].strip().lower(): r["id"] for r in rows}, parents, source=path)


def load_ontology(path: Optional[str | Path] = None, required: bool = True) -> Optional[Ontology]:
    """The ontology from :func:`find_ontology`; when none is found, FileNotFoundError (``required``)
    or None."""
    p = find_ontology(path)
    if p is None:
        if not required:
            return None
        from atrlib.paths import cache_dir

        raise FileNotFoundError(
            f"the AudioSet ontology (ontology.json, CC BY-SA 4.0) was not found; download it from {ONTOLOGY_URL} "
            f"and save it as {cache_dir() / 'ontology.json'} (or call atrlib.data.ontology.download_ontology()), "
            "or set $ATRLIB_ONTOLOGY to its path")
    return _load(str(p.resolve()))
