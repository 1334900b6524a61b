import os
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one pytest-xdist worker per core: each worker (and the kernels and
    # subprocesses it starts) then computes on one thread instead of every worker's thread pool
    # fighting over every core. Set before anything imports torch; a value already set wins.
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import atrlib  # noqa: F401  (thread settings before torch)
from atrlib.paths import shared_dir


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


# Scheduling under pytest-xdist (`make test`: --dist loadfile, one test file per unit of work, so a
# file's module-scoped fixtures — a smoke run, a local Ray, trained towers — are built once). The
# longest files are handed out first, so no worker starts one of them while the other has nothing
# left to do. (--dist loadgroup would also spread one file's independent tests, but it does not
# group under pytest 9.2, whose node ids xdist 3.8 can no longer tag.)
LONG_FIRST = ("tests/recipes/test_recipes.py", "tests/runs/test_notebooks.py", "tests/runs/test_sweep.py",
              "tests/cli/test_reliability_clotho.py", "tests/train/test_training_synth.py",
              "tests/experiments/test_kfold.py", "tests/retrieval/test_retrievers.py", "tests/train/test_training.py")


def pytest_collection_modifyitems(config, items):
    rank = {f: i for i, f in enumerate(LONG_FIRST)}
    items.sort(key=lambda it: rank.get(it.nodeid.split("::")[0], len(LONG_FIRST)))  # stable: order kept within
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
