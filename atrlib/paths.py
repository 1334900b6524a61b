"""Where things live: the repository, the shared data folder, the cache."""
from __future__ import annotations

import importlib.resources
import os
from pathlib import Path
from typing import Optional

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent  # a checkout's root; an installed wheel has no notebooks/ or benchmarks/ there
# files read at run time ship inside the package (pyproject package-data), so a wheel works as a checkout does
RESOURCES = Path(str(importlib.resources.files("atrlib") / "resources"))
GLOSSARY_PATH = RESOURCES / "glossary.md"


def shared_dir() -> Optional[Path]:
    """The folder of shared data and weights, or None.

    Looked up at ``$ATRLIB_SHARED``, then ``../shared`` beside the repository. A user's
    fresh machine has none; callers must then say what to download instead.
    """
    env = os.environ.get("ATRLIB_SHARED")
    candidates = [Path(env)] if env else []
    candidates += [REPO_ROOT.parent / "shared", Path.cwd().parent / "shared"]
    for c in candidates:
        if (c / "README.md").exists() or (c / "data").is_dir():
            return c.resolve()
    return None


def cache_dir() -> Path:
    """Root of atrlib's caches (features, embeddings, generated data, downloads).

    ``$ATRLIB_CACHE`` or ``~/.cache/atrlib``.
    """
    from_env = "ATRLIB_CACHE" in os.environ
    p = Path(os.environ.get("ATRLIB_CACHE", Path.home() / ".cache" / "atrlib"))
    try:
        p.mkdir(parents=True, exist_ok=True)
        if not os.access(p, os.W_OK):
            raise PermissionError(13, "not writable")
    except OSError as e:
        from atrlib.errors import DiskWriteError

        source = "ATRLIB_CACHE" if from_env else "the default, ~/.cache/atrlib"
        raise DiskWriteError(e.errno, f"atrlib's cache folder {p} ({source}) cannot be used: {e.strerror or e}; set "
                                      "ATRLIB_CACHE to a folder you can write to (features, embeddings and generated "
                                      "data are kept there)") from e
    return p
