"""Test-only access to the authors' reference code (never imported by atrlib itself).

- ``torchaudio/compliance/kaldi.py`` from the PyPI torchaudio 2.11.1 wheel: torchaudio has
  no build for our torch, but that one file is pure torch (apart from ``create_dct``, used
  only for MFCCs). :func:`kaldi_reference` finds it in pytest's cache folder or fetches the
  wheel once with ``pip download --no-deps`` and extracts it; :func:`stub_torchaudio` makes it
  importable as ``torchaudio.compliance.kaldi`` under a stub ``torchaudio`` package.
- ``openbeats`` 0.1.1 (MIT port of the BEATs encoder) and ``hear21passt`` 0.0.26 (PaSST): both
  import torchaudio at module level, so they are imported under the stub (openbeats' optional
  transformers adapters are blocked there: we never use them). hear21passt's helper
  module imports ``timm.models._hub.download_cached_file`` (only used to download weights);
  timm itself cannot import without torchvision, so a stub ``timm.models._hub`` stands in.

Tests skip with the reason when a piece is missing.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import importlib.util
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import pytest

TORCHAUDIO_WHEEL = "torchaudio==2.11.1"
KALDI_MEMBER = "torchaudio/compliance/kaldi.py"


def reference_cache(config, name: str) -> Path:
    """A folder that outlives the test session for downloaded reference files: pytest's cache
    (``.pytest_cache``), or the system temp folder when the cache plugin is off (``-p no:cacheprovider``)."""
    cache = getattr(config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir(name))
    import tempfile

    d = Path(tempfile.gettempdir()) / f"atrlib-{name}"
    d.mkdir(parents=True, exist_ok=True)
    return d


def kaldi_reference(cache_root: Path) -> Path:
    """Path of torchaudio's ``kaldi.py`` in ``cache_root`` (pytest's cache folder), fetching it
    with pip once; skips the test with the reason when that fails."""
    target = Path(cache_root) / "kaldi.py"
    if target.is_file():
        return target
    wheels = Path(cache_root) / "wheel"
    wheels.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", TORCHAUDIO_WHEEL, "-d", str(wheels)]
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=300)
        wheel = next(wheels.glob("torchaudio-*.whl"))
        with zipfile.ZipFile(wheel) as z:
            target.write_bytes(z.read(KALDI_MEMBER))
    except Exception as e:  # offline, no pip, unexpected wheel layout
        pytest.skip(f"reference Kaldi fbank unavailable: `pip download --no-deps {TORCHAUDIO_WHEEL}` "
                    f"failed ({type(e).__name__}: {str(e)[:200]})")
    return target


@contextlib.contextmanager
def stub_torchaudio(kaldi_py: Path):
    """``sys.modules`` holds a stub ``torchaudio`` (with the real ``compliance.kaldi``) and a stub
    ``timm.models._hub`` inside the block; the previous entries come back afterwards (modules
    imported inside keep their references to the stubs)."""
    # openbeats optionally imports two transformers modules (adapters we never use); blocking them
    # keeps transformers from probing the stub (it would take torchaudio for installed)
    blocked = ["transformers.models.bart.modeling_bart",
               "transformers.models.wav2vec2_conformer.modeling_wav2vec2_conformer"]
    if "transformers" not in sys.modules:
        blocked.append("transformers")
    names = ["torchaudio", "torchaudio.compliance", "torchaudio.compliance.kaldi", "torchaudio.functional",
             "torchaudio.transforms", "timm", "timm.models", "timm.models._hub"] + blocked
    saved = {n: sys.modules.get(n) for n in names}
    for n in blocked:
        sys.modules[n] = None  # importing it raises ImportError, which openbeats catches

    def _unavailable(*args, **kwargs):
        raise RuntimeError("not available in the torchaudio test stub")

    ta = types.ModuleType("torchaudio")
    ta.__path__ = []
    ta.functional = types.ModuleType("torchaudio.functional")
    ta.functional.create_dct = _unavailable
    ta.transforms = types.ModuleType("torchaudio.transforms")
    ta.transforms.FrequencyMasking = ta.transforms.TimeMasking = _unavailable
    ta.compliance = types.ModuleType("torchaudio.compliance")
    ta.compliance.__path__ = []
    timm = types.ModuleType("timm")
    timm.__path__ = []
    timm.models = types.ModuleType("timm.models")
    timm.models.__path__ = []
    timm.models._hub = types.ModuleType("timm.models._hub")
    timm.models._hub.download_cached_file = _unavailable
    for mod in (ta, ta.functional, ta.transforms, ta.compliance, timm, timm.models, timm.models._hub):
        mod.__spec__ = importlib.machinery.ModuleSpec(mod.__name__, None, is_package=hasattr(mod, "__path__"))
        sys.modules[mod.__name__] = mod
    try:
        spec = importlib.util.spec_from_file_location("torchaudio.compliance.kaldi", str(kaldi_py))
        kaldi = importlib.util.module_from_spec(spec)
        sys.modules["torchaudio.compliance.kaldi"] = kaldi
        spec.loader.exec_module(kaldi)
        ta.compliance.kaldi = kaldi
        yield kaldi
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


def import_reference(module: str, kaldi_py: Path, pip_name: str):
    """Import a reference module under the stub; skip with an install hint when absent."""
    top = module.split(".")[0]
    if importlib.util.find_spec(top) is None:
        pytest.skip(f"reference implementation absent: pip install --no-deps {pip_name}")
    with stub_torchaudio(kaldi_py):
        return importlib.import_module(module)
