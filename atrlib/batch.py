"""Batch runs: execute a profile's stage notebooks with papermill into one run folder.

Profiles (the YAML format and the parameter rules) are :mod:`atrlib.profiles`; the command
line is :mod:`atrlib.cli.run`.

Run folder layout (default ``reports/<profile>``)::

    <run>/params.json              profile, resolved parameters per stage, overrides, versions, git commit
    <run>/run.json                 the RunResult (status, duration, error per stage); updated after each stage
    <run>/index.html, summary.md   the report (atrlib.reporting.write_index); updated after each stage
    <run>/<stage>/<stage>.ipynb    the executed notebook (partial, up to the error, if it failed)
    <run>/<stage>/<stage>.html     its HTML export (nbconvert)
    <run>/<stage>/metrics.json     whatever the notebook wrote (atrlib.files.write_metrics), ...

Execution: each notebook runs with its working directory set to its own stage folder (so
any file it writes with a relative path lands in the run, never in ``notebooks/``), in a
kernel of the *current* interpreter (``sys.executable``; see :func:`resolve_kernel`), with
the folder holding this ``atrlib`` package put first on ``PYTHONPATH`` so the kernel
imports the same atrlib as the runner, installed or not.

A failing stage is recorded as ``failed`` with papermill's error (ename, evalue, cell
index), its partial notebook is still exported to HTML, stages that ``need`` it are
skipped, and independent later stages still run. An existing non-empty run folder is never
mixed with a new run: :func:`run_profile` raises :class:`RunExistsError` unless
``overwrite=True``, which first moves the old run aside to ``<out>.prev-YYYYmmdd-HHMMSS``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import atrlib
from atrlib.files import read_json, read_metrics, write_json
from atrlib.paths import PACKAGE_DIR, REPO_ROOT
from atrlib.profiles import (Profile, declared_parameters, default_reports_dir, load_profile, parse_overrides,
                             resolve_parameters, select_stages)
from atrlib.reporting import write_index

STATUSES = ("ok", "failed", "skipped")


class RunExistsError(FileExistsError):
    """The run folder exists and is not empty, and ``overwrite`` was not given."""


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
    }


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------
@dataclass
class StageResult:
    name: str
    notebook: str  # source notebook
    status: str = "pending"  # pending -> running -> ok | failed | skipped
    duration_s: Optional[float] = None
    output_notebook: Optional[str] = None  # <run>/<stage>/<stage>.ipynb
    html: Optional[str] = None  # <run>/<stage>/<stage>.html
    metrics: Optional[dict] = None  # <run>/<stage>/metrics.json, if written
    error: Optional[dict] = None  # {"ename", "evalue", "cell_index", "exec_count", "traceback"}
    skipped_reason: Optional[str] = None
    parameters: dict = field(default_factory=dict)  # what was injected
    notes: list = field(default_factory=list)  # e.g. an HTML export that failed

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class RunResult:
    profile: str
    run_dir: str
    description: str = ""
    started: str = ""
    finished: Optional[str] = None
    duration_s: Optional[float] = None
    overrides: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    stages: list[StageResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every stage ran and succeeded."""
        return bool(self.stages) and all(s.status == "ok" for s in self.stages)

    @property
    def index(self) -> Path:
        return Path(self.run_dir) / "index.html"

    def stage(self, name: str) -> StageResult:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)

    def counts(self) -> dict[str, int]:
        return {k: sum(s.status == k for s in self.stages) for k in STATUSES}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RunResult":
        d = dict(d)
        d["stages"] = [StageResult(**s) for s in d.get("stages", [])]
        return cls(**d)

    @classmethod
    def load(cls, run_dir: Union[str, Path]) -> "RunResult":
        return cls.from_dict(read_json(Path(run_dir) / "run.json"))


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _error_record(exc: BaseException) -> dict:
    """ename / evalue / cell index of a failed stage (papermill's error or any other)."""
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        tb = "\n".join(_ANSI.sub("", line) for line in (exc.traceback or []))
        return {
            "ename": exc.ename,
            "evalue": exc.evalue,
            "cell_index": exc.cell_index,
            "exec_count": exc.exec_count,
            "traceback": tb[-5000:],
        }
    return {"ename": type(exc).__name__, "evalue": str(exc), "cell_index": None, "exec_count": None, "traceback": None}


def _export_html(exporter, ipynb: Path, html_path: Path) -> None:
    import nbformat

    body, _ = exporter.from_notebook_node(nbformat.read(str(ipynb), as_version=4))
    html_path.write_text(body, encoding="utf-8")


def _prepare_out(out: Path, overwrite: bool) -> Optional[Path]:
    """Make ``out`` a fresh empty folder; move a previous non-empty one aside if allowed."""
    if out.exists() and not out.is_dir():
        raise RunExistsError(f"{out} exists and is not a folder")
    moved = None
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise RunExistsError(
                f"run folder {out} already exists and is not empty; pass overwrite=True (--overwrite) "
                f"to move it aside to {out.name}.prev-<time>, or choose another --out"
            )
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        moved = out.with_name(f"{out.name}.prev-{stamp}")
        k = 1
        while moved.exists():
            moved = out.with_name(f"{out.name}.prev-{stamp}-{k}")
            k += 1
        out.rename(moved)
        print(f"moved the previous run {out} -> {moved}")
    out.mkdir(parents=True, exist_ok=True)
    return moved


# --------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------
def run_profile(
    profile: Union[str, Path, Profile],
    out: Optional[Union[str, Path]] = None,
    overrides: Union[Mapping[str, Any], Sequence[str], None] = (),
    stages: Optional[Sequence[str]] = None,
    notebooks_dir: Optional[Union[str, Path]] = None,
    overwrite: bool = False,
    kernel_name: Optional[str] = None,
    progress: bool = True,
    cell_progress: bool = False,
    execution_timeout: Optional[int] = None,
) -> RunResult:
    """Run a profile's stage notebooks into one run folder; returns the :class:`RunResult`.

    Parameters
    ----------
    profile : name in ``<notebooks_dir>/params/``, path to a YAML file, or a loaded Profile.
    out : run folder; default ``reports/<profile name>``.
    overrides : ``["key=value", "stage.key=value"]`` or a dict of the same keys; values in
        the list form are parsed as YAML scalars. Override defaults and stage parameters.
    stages : names of the stages to run (default all); stages they need must be included.
    notebooks_dir : where stage notebooks live (default: see :func:`load_profile`).
    overwrite : move an existing non-empty run folder aside (``<out>.prev-<time>``) instead
        of raising :class:`RunExistsError`.
    kernel_name : jupyter kernel to use (default: one running this interpreter).
    progress : a tqdm bar across stages; ``cell_progress`` adds papermill's per-cell bar.
    execution_timeout : seconds per cell (default none).

    Validation errors (:class:`ProfileError`) and :class:`RunExistsError` are raised before
    anything is run or moved. Stage failures are not raised: see ``result.ok``.
    """
    import papermill
    from nbconvert import HTMLExporter
    from tqdm.auto import tqdm

    # 1. load and check everything before touching the disk
    prof = profile if isinstance(profile, Profile) else load_profile(profile, Path(notebooks_dir) if notebooks_dir else None)
    ov = parse_overrides(overrides)
    out_dir = Path(out) if out is not None else default_reports_dir() / prof.name
    out_dir = out_dir.resolve()
    chosen = select_stages(prof, stages)
    declared = {s.name: declared_parameters(s.notebook) for s in prof.stages}
    resolved = resolve_parameters(prof, ov, out_dir, declared)
    kernel, kernel_env = resolve_kernel(kernel_name)

    # 2. a fresh run folder, params.json
    _prepare_out(out_dir, overwrite)
    started = _dt.datetime.now()
    env_info = environment_info()
    result = RunResult(
        profile=prof.name,
        run_dir=str(out_dir),
        description=prof.description,
        started=started.isoformat(timespec="seconds"),
        overrides=ov,
        environment=env_info,
        stages=[StageResult(name=s.name, notebook=str(s.notebook), parameters=resolved[s.name]) for s in chosen],
    )
    write_json(
        out_dir / "params.json",
        {
            "profile": prof.name,
            "profile_path": str(prof.path),
            "profile_content": prof.path.read_text(encoding="utf-8"),
            "description": prof.description,
            "notebooks_dir": str(prof.notebooks_dir),
            "started": result.started,
            "overrides": ov,
            "stages": [s.name for s in chosen],
            "parameters": {s.name: resolved[s.name] for s in chosen},
            "declared": {s.name: list(declared[s.name]) for s in chosen},
            "kernel": kernel,
            "environment": env_info,
        },
    )

    def save() -> None:
        write_json(out_dir / "run.json", result)
        write_index(out_dir, result)

    save()

    # 3. the stages, in order
    exporter = HTMLExporter()
    t_run = time.perf_counter()
    bar = tqdm(total=len(chosen), desc=f"run {prof.name}", unit="stage", disable=not progress)
    try:
        for stage, sr in zip(chosen, result.stages):
            bar.set_postfix_str(stage.name)
            blocked = [n for n in stage.needs if result.stage(n).status != "ok"]
            if blocked:
                sr.status = "skipped"
                sr.skipped_reason = "needs " + ", ".join(f"{n} ({result.stage(n).status})" for n in blocked)
                bar.write(f"  {stage.name}: skipped ({sr.skipped_reason})")
                bar.update(1)
                save()
                continue

            stage_dir = out_dir / stage.name
            stage_dir.mkdir(parents=True, exist_ok=True)
            ipynb = stage_dir / f"{stage.name}.ipynb"
            html_path = stage_dir / f"{stage.name}.html"
            sr.status = "running"
            save()
            t0 = time.perf_counter()
            try:
                with _environ(kernel_env):
                    papermill.execute_notebook(
                        str(stage.notebook),
                        str(ipynb),
                        parameters=resolved[stage.name],
                        kernel_name=kernel,
                        cwd=str(stage_dir),
                        progress_bar=cell_progress,
                        execution_timeout=execution_timeout,
                        # ipykernel's startup warnings (e.g. "running over TCP without
                        # encryption") on every stage are noise; cell output is unaffected
                        extra_arguments=["--IPKernelApp.log_level=ERROR"],
                    )
                sr.status = "ok"
            except KeyboardInterrupt:
                sr.status = "failed"
                sr.error = {"ename": "KeyboardInterrupt", "evalue": "interrupted", "cell_index": None}
                raise
            except Exception as e:  # a failed stage is recorded, never raised
                sr.status = "failed"
                sr.error = _error_record(e)
            finally:
                sr.duration_s = round(time.perf_counter() - t0, 3)
                if ipynb.is_file():
                    sr.output_notebook = str(ipynb)
                    try:
                        _export_html(exporter, ipynb, html_path)
                        sr.html = str(html_path)
                    except Exception as e:  # the run stays usable without the HTML
                        sr.notes.append(f"HTML export failed: {type(e).__name__}: {e}")
                try:
                    sr.metrics = read_metrics(stage_dir)
                except (OSError, json.JSONDecodeError) as e:
                    sr.notes.append(f"metrics.json unreadable: {e}")
                save()
            msg = f"  {stage.name}: {sr.status} in {sr.duration_s:.1f} s"
            if sr.error:
                msg += f" ({sr.error.get('ename')}: {sr.error.get('evalue')})"
            bar.write(msg)
            bar.update(1)
    finally:
        bar.close()
        for sr in result.stages:  # after an interrupt, nothing stays pending
            if sr.status in ("pending", "running"):
                sr.status, sr.skipped_reason = "skipped", "run interrupted"
        result.finished = _dt.datetime.now().isoformat(timespec="seconds")
        result.duration_s = round(time.perf_counter() - t_run, 3)
        save()
    return result
