"""The kernel, the machine and the package versions of a run, and Ray start-up.

A batch run executes its notebooks in a kernel of the current interpreter
(:func:`resolve_kernel`, with this atrlib first on ``PYTHONPATH``) and records where it ran
(:func:`environment_info`: the atrlib, Python, torch, numpy and papermill versions, the host,
the git commit) in ``params.json`` and ``run.json``. :func:`init_ray` joins a Ray cluster or
starts a small local one, for a sweep's trials and for the stages a batch run hands to Ray.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import os
import platform
import subprocess
import sys
from typing import Any, Mapping, Optional

import atrlib
from atrlib.errors import SweepError
from atrlib.files import read_json, write_json
from atrlib.paths import PACKAGE_DIR, REPO_ROOT

LOCAL_OBJECT_STORE_BYTES = 100 * 1024**2  # trials exchange files, not objects: keep Ray's store small

__all__ = ["resolve_kernel", "environment_info", "init_ray", "LOCAL_OBJECT_STORE_BYTES"]


# --------------------------------------------------------------------------------------
# Kernel and environment
# --------------------------------------------------------------------------------------
def resolve_kernel(kernel_name: Optional[str] = None) -> tuple[str, dict[str, str]]:
    """A kernel name that runs the current interpreter, and env vars the kernel needs.

    The ``python3`` kernelspec is used when it starts this interpreter (jupyter_client
    replaces a bare ``python``/``python3`` with ``sys.executable``; a venv's own spec does
    exactly that). If the first ``python3`` spec found points at another Python (e.g. a
    system one), a private spec ``atrlib-<hash>`` running ``sys.executable`` is written to
    ``<atrlib cache>/jupyter/kernels/`` and that folder is put on ``JUPYTER_PATH``.
    ``kernel_name`` given explicitly is used as is. The env also always puts the folder
    holding this atrlib package first on ``PYTHONPATH``.
    """
    env = {"PYTHONPATH": os.pathsep.join(p for p in (str(PACKAGE_DIR.parent), os.environ.get("PYTHONPATH", "")) if p)}
    if kernel_name:
        return kernel_name, env
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    exe = os.path.abspath(sys.executable)
    bare = {"python", f"python{sys.version_info[0]}", f"python{sys.version_info[0]}.{sys.version_info[1]}"}
    try:
        argv0 = KernelSpecManager().get_kernel_spec("python3").argv[0]
        if argv0 in bare or os.path.abspath(argv0) == exe:
            return "python3", env
    except NoSuchKernel:
        pass
    from atrlib.paths import cache_dir

    root = cache_dir() / "jupyter"
    name = "atrlib-" + hashlib.sha1(exe.encode()).hexdigest()[:10]
    spec_dir = root / "kernels" / name
    spec = {
        "argv": [exe, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"atrlib ({exe})",
        "language": "python",
    }
    if not (spec_dir / "kernel.json").is_file() or read_json(spec_dir / "kernel.json") != spec:
        write_json(spec_dir / "kernel.json", spec)
    env["JUPYTER_PATH"] = os.pathsep.join(p for p in (str(root), os.environ.get("JUPYTER_PATH", "")) if p)
    return name, env


@contextlib.contextmanager
def _environ(extra: Mapping[str, str]):
    """Set environment variables for the duration (the kernel inherits them)."""
    old = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _version(pkg: str) -> Optional[str]:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> Optional[str]:
    if not (REPO_ROOT / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "--no-optional-locks", "-C", str(REPO_ROOT), *args],
            capture_output=True, text=True, timeout=10, check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_info() -> dict[str, Optional[str]]:
    """The CPU model and its widest vector unit (AMX, AVX-512, AVX2, ...) from ``/proc/cpuinfo``
    (Linux; the platform's processor string elsewhere). Training trajectories move with the
    floating-point kernels these select, so a number's machine is part of the number."""
    model, flags = None, set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = (x.strip() for x in line.partition(":"))
                if key == "model name" and not model:
                    model = value
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    model = model or platform.processor() or None
    units = [("amx_tile", "AMX"), ("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"), ("sse4_2", "SSE4.2"),
             ("asimd", "NEON")]
    widest = [name for flag, name in units if flag in flags]
    return {"cpu": model, "vector_unit": " + ".join(widest[:2]) if widest else None, "cpu_count": str(os.cpu_count())}


def machine_text(env: Mapping[str, Any]) -> str:
    """``"Intel(R) Xeon(R) … (AVX-512 + AVX2, 2 cores)"`` from :func:`environment_info`'s dict."""
    cpu = env.get("cpu") or "unknown CPU"
    extra = ", ".join(x for x in (env.get("vector_unit"), f"{env['cpu_count']} cores" if env.get("cpu_count") else "") if x)
    return f"{cpu} ({extra})" if extra else cpu


def environment_info() -> dict[str, Any]:
    """Versions and the git commit, for params.json / run.json (no heavy imports)."""
    commit = _git("rev-parse", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {
        "atrlib": atrlib.__version__,
        "atrlib_path": str(PACKAGE_DIR),
        "python": platform.python_version(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "host": platform.node(),
        "torch": _version("torch"),
        "numpy": _version("numpy"),
        "papermill": _version("papermill"),
        "git_commit": (commit + ("-dirty" if dirty else "")) if commit else None,
        **cpu_info(),
    }


# --------------------------------------------------------------------------------------
# Ray
# --------------------------------------------------------------------------------------
def init_ray(address: Optional[str] = None, num_cpus: Optional[int] = None, num_gpus: Optional[int] = None) -> bool:
    """Connect to Ray unless already connected: a cluster at ``address`` (``"auto"``,
    ``"ray://host:10001"``), else a local Ray with ``num_cpus`` (default all), no dashboard and
    a small object store. Returns True when this call connected (the caller shuts it down)."""
    try:
        import ray
    except ImportError as e:
        raise SweepError("the ray executor needs Ray: pip install 'atrlib[ray]' (or ray), or use --executor serial") from e
    if ray.is_initialized():
        return False
    # workers import this atrlib even when it is not installed (a checkout)
    pythonpath = os.pathsep.join(p for p in (str(PACKAGE_DIR.parent), os.environ.get("PYTHONPATH")) if p)
    kw = {"runtime_env": {"env_vars": {"PYTHONPATH": pythonpath}}, "log_to_driver": False}
    if address:
        ray.init(address=address, **kw)
    else:
        ray.init(num_cpus=num_cpus or os.cpu_count() or 1, num_gpus=num_gpus, include_dashboard=False,
                 object_store_memory=LOCAL_OBJECT_STORE_BYTES, **kw)
    return True
