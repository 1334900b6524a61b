import os
from pathlib import Path

import pytest

import atrlib  # noqa: F401  (thread settings before torch)
from atrlib.paths import shared_dir


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    if not _has_cuda():
        skip = pytest.mark.skip(reason="needs a CUDA GPU; none on this machine")
        for it in items:
            if "gpu" in it.keywords:
                it.add_marker(skip)


@pytest.fixture(scope="session")
def shared() -> Path:
    """../shared (or $ATRLIB_SHARED); skips the test with the reason when absent."""
    d = shared_dir()
    if d is None:
        pytest.skip("../shared (or $ATRLIB_SHARED) is absent: real Clotho clips / weights not available here")
    return d


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """The test session uses its own atrlib cache (features, embeddings, generated data),
    never the user's ~/.cache/atrlib; subprocesses inherit it. Session-scoped so that
    module-scoped fixtures (the notebook run) see it too."""
    old = os.environ.get("ATRLIB_CACHE")
    os.environ["ATRLIB_CACHE"] = str(tmp_path_factory.getbasetemp() / "atrlib-cache")
    yield
    if old is None:
        os.environ.pop("ATRLIB_CACHE", None)
    else:
        os.environ["ATRLIB_CACHE"] = old
