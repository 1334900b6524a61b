"""Finding pretrained weight files: a small table of known files and one resolver.

:func:`resolve_weights` looks, in order, at

1. an explicit ``path=`` (used as given, not checksummed: it may be your own fine-tune);
2. ``$ATRLIB_WEIGHTS`` (a folder), then ``cache_dir()/"weights"``;
3. the shared folder, ``shared_dir()/"weights"/<subdir>/<file>`` (developers and CI);
4. the official URL: downloaded with a progress bar into ``cache_dir()/"weights"``, the
   checksum verified, then renamed into place (a killed download leaves no partial file).

Trust on first use: a file with no checksum on record (``sha256`` and ``md5`` both None, e.g.
the PaSST and BEATs files, which no one here could download) is not checked against anything
when it is downloaded. Its sha256 is then recorded beside it (``<file>.sha256``, sha256sum
format) and printed; a later copy found in that folder is checked against the record, so the file
cannot change silently after the first download — but the first download itself is trusted.
Compare the printed hash with another copy before relying on it, and put it in the spec.

When nothing is found and the download is impossible (offline, ``download=False``,
``$ATRLIB_OFFLINE=1``) or fails, :class:`WeightsNotFoundError` says which file to fetch
from which URL and where to save it.

Loading a resolved file: :func:`torch_load_weights_only` (``weights_only=True`` with numpy's
array reconstructors allow-listed — numpy data, never arbitrary unpickling).
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Dict, List, Optional

from atrlib.errors import ChecksumError, WeightsFileError, WeightsNotFoundError
from atrlib.paths import cache_dir, shared_dir
from atrlib.remote import WeightSpec, download_file, file_digest, verify_file  # noqa: F401  (part of this module's API)


KNOWN_WEIGHTS: Dict[str, WeightSpec] = {
    s.name: s
    for s in [
        WeightSpec(
            "efficientat-mn04", "mn04_as_mAP_432.pt",
            "https://github.com/fschmid56/EfficientAT/releases/download/v0.0.1/mn04_as_mAP_432.pt",
            sha256="899a8c6217063f6941793102a2780b3dd788ab11fce468d9cf5f0577c453321c", size=4066513,
            subdir="efficientat_mn04",
            note="EfficientAT MobileNetV3 width 0.4, AudioSet mAP .432 (MIT, fschmid56/EfficientAT release v0.0.1)",
        ),
        WeightSpec(
            "efficientat-mn10", "mn10_as_mAP_471.pt",
            "https://github.com/fschmid56/EfficientAT/releases/download/v0.0.1/mn10_as_mAP_471.pt",
            subdir="efficientat_mn10",
            note="EfficientAT MobileNetV3 width 1.0, AudioSet mAP .471 (MIT, fschmid56/EfficientAT release v0.0.1)",
        ),
        WeightSpec(
            "panns-cnn14", "Cnn14_mAP=0.431.pth",
            "https://zenodo.org/record/3987831/files/Cnn14_mAP%3D0.431.pth?download=1",
            size=327428481, md5="541141fa2ee191a88f24a3219fff024e", subdir="panns_cnn14",
            note="PANNs CNN14, AudioSet mAP .431 (Kong et al. 2020; Zenodo record 3987831, CC BY 4.0)",
        ),
        # ResNet38 / Wavegram-Logmel-CNN14: sha256 not verified here (no copy could be downloaded);
        # md5 = the checksum Zenodo publishes for record 3987831, as quoted identically by several
        # independent projects (which quote CNN14's md5 above the same way). Size unknown.
        WeightSpec(
            "panns-resnet38", "ResNet38_mAP=0.434.pth",
            "https://zenodo.org/record/3987831/files/ResNet38_mAP%3D0.434.pth?download=1",
            md5="bf12f36aaabac4e0855e22d3c3239c1b", subdir="panns_resnet38",
            note="PANNs ResNet38, AudioSet mAP .434 (Kong et al. 2020; Zenodo record 3987831, CC BY 4.0)",
        ),
        WeightSpec(
            "panns-wavegram-logmel-cnn14", "Wavegram_Logmel_Cnn14_mAP=0.439.pth",
            "https://zenodo.org/record/3987831/files/Wavegram_Logmel_Cnn14_mAP%3D0.439.pth?download=1",
            md5="17fa9ab65af3c0eb5ffbc5f65552c4e1", subdir="panns_wavegram_logmel_cnn14",
            note="PANNs Wavegram-Logmel-CNN14, AudioSet mAP .439 (Kong et al. 2020; Zenodo record 3987831, CC BY 4.0)",
        ),
        # BEATs / PaSST: no copy could be downloaded here, so no checksum is on record (sha256 None);
        # the URLs are the authors' (BEATs: the SAS link in microsoft/unilm beats/README.md).
        WeightSpec(
            "beats-iter3-plus-as2m", "BEATs_iter3_plus_AS2M.pt",
            "https://valle.blob.core.windows.net/share/BEATs/BEATs_iter3_plus_AS2M.pt?sv=2020-08-04"
            "&st=2023-03-01T07%3A51%3A05Z&se=2033-03-02T07%3A51%3A00Z&sr=c&sp=rl"
            "&sig=QJXmSJG9DbMKf48UDIU1MfzIro8HQOf3sqlNXiflY1I%3D",
            subdir="beats",
            note="BEATs iter3+ pre-trained on AudioSet-2M (Chen et al. 2022; microsoft/unilm, MIT)",
        ),
        WeightSpec(
            "passt-s-swa-ap476", "passt-s-f128-p16-s10-ap.476-swa.pt",
            "https://github.com/kkoutini/PaSST/releases/download/v0.0.1-audioset/passt-s-f128-p16-s10-ap.476-swa.pt",
            subdir="passt",
            note="PaSST-S, 128 mels, patch 16 stride 10, AudioSet mAP .476 (SWA) (Koutini et al. 2022; kkoutini/PaSST release v0.0.1-audioset; see that repository for the licence)",
        ),
        # the URL hear21passt 0.0.26 (models/passt.py default_cfgs) and kkoutini/PaSST models/passt.py
        # name: release v0.0.2-audioset (the stride-10 SWA file is in v0.0.1-audioset); checksum unknown
        # here, so trusted on first use (module docstring)
        WeightSpec(
            "passt-s16-ap468", "passt-s-f128-p16-s16-ap.468.pt",
            "https://github.com/kkoutini/PaSST/releases/download/v0.0.2-audioset/passt-s-f128-p16-s16-ap.468.pt",
            subdir="passt",
            note="PaSST-S, 128 mels, patch 16 stride 16 (no overlap), AudioSet mAP .468 (Koutini et al. 2022; kkoutini/PaSST release v0.0.2-audioset; the DCASE 2025 task 6 baseline's tower; see that repository for the licence)",
        ),
    ]
}


def get_weight_spec(name: str | WeightSpec) -> WeightSpec:
    if isinstance(name, WeightSpec):
        return name
    if name not in KNOWN_WEIGHTS:
        raise KeyError(f"unknown weights {name!r}; known: {', '.join(sorted(KNOWN_WEIGHTS))}")
    return KNOWN_WEIGHTS[name]


def weights_cache_dir() -> Path:
    """Where downloads go: ``cache_dir()/"weights"``."""
    return cache_dir() / "weights"


def _search_dirs(spec: WeightSpec) -> List[Path]:
    dirs: List[Path] = []
    env = os.environ.get("ATRLIB_WEIGHTS")
    if env:
        dirs += [Path(env), Path(env) / spec.subdir] if spec.subdir else [Path(env)]
    dirs.append(weights_cache_dir())
    sd = shared_dir()
    if sd is not None:
        dirs += [sd / "weights" / spec.subdir, sd / "weights"] if spec.subdir else [sd / "weights"]
    return dirs


def _offline() -> bool:
    return os.environ.get("ATRLIB_OFFLINE", "").lower() in ("1", "true", "yes")


def _help(spec: WeightSpec, looked: List[Path], reason: str) -> str:
    target = weights_cache_dir() / spec.filename
    lines = [f"pretrained weights {spec.name!r} ({spec.filename}) are not available: {reason}."]
    if spec.url:
        lines.append(f"Download {spec.url}")
        lines.append(f"  and save it as {target}")
    else:
        lines.append(f"Obtain {spec.filename} and save it as {target}")
    lines.append("  (or put it in the folder named by $ATRLIB_WEIGHTS, or pass path=... to use a copy elsewhere).")
    checks = []
    if spec.sha256:
        checks.append(f"sha256 {spec.sha256}")
    if spec.md5:
        checks.append(f"md5 {spec.md5}")
    if spec.size:
        checks.append(f"{spec.size:,} bytes")
    if checks:
        lines.append("Expected: " + ", ".join(checks) + ".")
    lines.append("Looked in: " + ", ".join(str(d) for d in looked))
    return "\n".join(lines)


def resolve_weights(name: str | WeightSpec, path: Optional[str | Path] = None, download: bool = True,
                    progress: bool = True) -> Path:
    """The local path of weight file ``name`` (a key of :data:`KNOWN_WEIGHTS` or a :class:`WeightSpec`).

    Search order: ``path``; ``$ATRLIB_WEIGHTS``; ``cache_dir()/"weights"``; the shared folder;
    then a verified download into the cache (unless ``download=False`` or ``$ATRLIB_OFFLINE``).
    Raises :class:`WeightsNotFoundError` with the URL and target path when all fail, and
    :class:`ChecksumError` when a download does not match the checksum on record.
    """
    spec = get_weight_spec(name)
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise WeightsNotFoundError(_help(spec, [p], f"path={str(p)!r} does not exist"))
        return p
    looked = _search_dirs(spec)
    for d in looked:
        p = d / spec.filename
        if p.is_file():
            check_recorded_digest(p, spec)
            return p
    if not download or _offline():
        why = "download=False" if not download else "$ATRLIB_OFFLINE is set"
        raise WeightsNotFoundError(_help(spec, looked, f"not found locally and {why}"))
    if not spec.url:
        raise WeightsNotFoundError(_help(spec, looked, "not found locally and no download URL is known"))
    target = weights_cache_dir() / spec.filename
    try:
        got = download_file(spec.url, target, spec=spec, progress=progress)
    except ChecksumError:
        raise
    except Exception as e:  # offline, DNS, HTTP error, disk full, ...
        raise WeightsNotFoundError(_help(spec, looked, f"downloading {spec.url} failed ({type(e).__name__}: {e})")) from e
    if not (spec.sha256 or spec.md5):
        record_first_use(got, spec)
    return got


def _record_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def record_first_use(path: str | Path, spec: WeightSpec) -> str:
    """Trust on first use: write ``path``'s sha256 beside it (``<file>.sha256``) for a file with
    no checksum on record, print it, and return it. The download itself was not verified."""
    path = Path(path)
    digest = file_digest(path, "sha256")
    _record_path(path).write_text(f"{digest}  {path.name}\n")
    print(f"atrlib: no checksum is on record for {spec.name!r}; the download was NOT verified. Trusting it on "
          f"first use: sha256 {digest} recorded in {_record_path(path)}; later loads are checked against it. "
          "Compare it with another copy of the file before relying on it.")
    return digest


def check_recorded_digest(path: str | Path, spec: WeightSpec) -> None:
    """When ``path`` has a first-use record beside it (``<file>.sha256``) and ``spec`` no checksum
    of its own: raise :class:`ChecksumError` unless the file still has the recorded sha256."""
    path = Path(path)
    rec = _record_path(path)
    if spec.sha256 or spec.md5 or not rec.is_file():
        return
    want = rec.read_text().split()[0].lower()
    got = file_digest(path, "sha256")
    if got != want:
        raise ChecksumError(f"{path}: sha256 {got}, but {want} was recorded at its first download ({rec}) for "
                            f"{spec.name!r}; the file changed. Delete both and download again")


# ---------------------------------------------------------------------------------------------
# Loading, safely
# ---------------------------------------------------------------------------------------------
def numpy_safe_globals() -> list:
    """numpy's array / scalar / dtype reconstructors, under both the numpy 1.x names
    (``numpy.core.multiarray``) and 2.x names (``numpy._core.multiarray``), for
    ``torch.serialization.safe_globals``. They rebuild numpy data only; object arrays stay refused."""
    import numpy as np

    try:
        from numpy._core import multiarray as ma
    except ImportError:  # numpy < 1.26
        from numpy.core import multiarray as ma
    out: list = [np.ndarray, np.dtype, ma._reconstruct, ma.scalar]
    for name in ("_reconstruct", "scalar"):
        for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            out.append((getattr(ma, name), f"{module}.{name}"))
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25 pickles dtypes by their DType class
    if dtypes is not None:
        out += [getattr(dtypes, n) for n in dir(dtypes)
                if n.endswith("DType") and n != "ObjectDType" and isinstance(getattr(dtypes, n), type)]
    return out


class UnsafeWeightsFileError(WeightsFileError, pickle.UnpicklingError):
    """A weights file holding pickled objects beyond tensors and numpy data (refused, never run)."""


def torch_load_weights_only(path: str | Path):
    """``torch.load(path, map_location="cpu", weights_only=True)`` that also accepts numpy
    arrays / scalars inside the file (training-state extras in released checkpoints, e.g.
    PANNs' sampler state). Anything else that needs unpickling is refused by torch."""
    import zipfile

    import torch

    check_weights_file(path)
    try:
        with torch.serialization.safe_globals(numpy_safe_globals()):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        text = str(e)
        if "unsupported global" not in text.lower():  # not a refused object: bytes that are no pickle at all
            detail = next((line.strip() for line in text.split("WeightsUnpickler error:")[-1].splitlines()
                           if line.strip()), text.strip())
            raise UnsafeWeightsFileError(f"{path}: cannot be read as a weights file ({detail[:200]}); it is corrupt, "
                                         "truncated or not a PyTorch checkpoint. Download it again, or pass the "
                                         "right file") from e
        raise UnsafeWeightsFileError(f"{path}: holds objects that weights-only loading refuses (only tensors and "
                                     "numpy data are read: such a file could run code); use a checkpoint from a "
                                     "trusted source, saved as a state dict") from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, KeyError, AttributeError, ImportError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise WeightsFileError(f"{path}: cannot be read as a weights file ({type(e).__name__}: {first[:300]}); it is "
                               "corrupt, truncated or not a PyTorch checkpoint. Download it again, or pass the "
                               "right file") from e


def check_weights_file(path: str | Path) -> Path:
    """``path`` must be an existing, non-empty regular file: else an error naming it (before torch reads it)."""
    p = Path(path)
    if not p.exists():
        raise WeightsNotFoundError(f"{p}: no such weights file; check the path (weights= / pretrained=)")
    if not p.is_file():
        raise WeightsFileError(f"{p}: is a folder, not a weights file; name the checkpoint file inside it")
    if p.stat().st_size == 0:
        raise WeightsFileError(f"{p}: the weights file is empty (0 bytes); download it again")
    return p


def tower_weights(name: str, published: Dict[str, str], pretrained=None, weights=None) -> Optional[Path]:
    """The weights file a tower factory loads, by the rule every tower shares: ``weights=PATH``
    or ``pretrained=PATH`` -> that file; ``pretrained=True`` -> the published file of variant
    ``name`` (``published`` maps variant -> a :data:`KNOWN_WEIGHTS` name, resolved with
    :func:`resolve_weights`); ``None`` / ``False`` -> None (random initialisation)."""
    if weights is not None:
        return check_weights_file(weights)
    if pretrained is None or pretrained is False:
        return None
    if isinstance(pretrained, (str, Path)):
        return check_weights_file(pretrained)
    if name not in published:
        raise ValueError(f"no published weights for {name!r}; pass pretrained=<path to a checkpoint>")
    return Path(resolve_weights(published[name]))

