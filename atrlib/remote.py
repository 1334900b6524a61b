"""Files fetched by URL: a record of what a file should be (name, URL, checksums), a check
against it, and one atomic download (streamed beside the target, verified, then renamed, so a
killed download leaves no partial file). Weights (:mod:`atrlib.models.weights`) and dataset files
(:mod:`atrlib.data.download`) both use it.
"""
from __future__ import annotations

import hashlib
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from atrlib.errors import ChecksumError
from atrlib.files import atomic_path


@dataclass(frozen=True)
class WeightSpec:
    name: str                       # atrlib's name for the file, e.g. "efficientat-mn04"
    filename: str                   # file name on disk, as released
    url: Optional[str]              # official download URL
    sha256: Optional[str] = None    # hex digest; None when unknown
    size: Optional[int] = None      # bytes; None when unknown
    md5: Optional[str] = None       # the publisher's own checksum (Zenodo publishes md5), used when sha256 is None
    subdir: str = ""                # folder under shared_dir()/"weights" that holds it
    note: str = ""                  # what it is, licence


def file_digest(path: str | Path, algo: str = "sha256", chunk: int = 1 << 20) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def verify_file(path: str | Path, spec: WeightSpec) -> None:
    """Raise :class:`ChecksumError` when ``path`` differs in size or checksum from ``spec``."""
    path = Path(path)
    if spec.size is not None and path.stat().st_size != spec.size:
        raise ChecksumError(f"{path}: {path.stat().st_size:,} bytes, expected {spec.size:,} for {spec.name!r}")
    if spec.sha256:
        got = file_digest(path, "sha256")
        if got != spec.sha256.lower():
            raise ChecksumError(f"{path}: sha256 {got}, expected {spec.sha256} for {spec.name!r}")
    elif spec.md5:
        got = file_digest(path, "md5")
        if got != spec.md5.lower():
            raise ChecksumError(f"{path}: md5 {got}, expected {spec.md5} for {spec.name!r}")


def download_file(url: str, dest: str | Path, spec: Optional[WeightSpec] = None, progress: bool = True,
                  timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` atomically: stream into a temp file beside ``dest``, verify
    against ``spec`` (when given), then rename. On any failure the temp file is removed."""
    from tqdm.auto import tqdm

    dest = Path(dest)
    with atomic_path(dest, suffix=".part") as tmp:
        req = urllib.request.Request(url, headers={"User-Agent": "atrlib"})
        with open(tmp, "wb") as out, urllib.request.urlopen(req, timeout=timeout) as resp:
            total = resp.headers.get("Content-Length")
            with tqdm(total=int(total) if total else None, unit="B", unit_scale=True, unit_divisor=1024,
                      desc=dest.name, disable=not progress) as bar:
                for block in iter(lambda: resp.read(1 << 20), b""):
                    out.write(block)
                    bar.update(len(block))
        if spec is not None:
            verify_file(tmp, spec)
    return dest
