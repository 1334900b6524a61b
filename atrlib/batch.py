"""Batch runs: execute a profile's stage notebooks with papermill into one run folder.

A *profile* is ``notebooks/params/NAME.yaml``::

    description: tiny run for tests
    defaults:            # offered to every stage; each stage gets only those its notebook declares
      dataset: synth
      size: tiny
    stages:
      - notebook: 01_data.ipynb       # relative to the notebooks dir
        parameters: {max_clips: 20}   # stage-specific, override defaults
      - notebook: 02_train.ipynb
      - notebook: 03_evaluate.ipynb
        needs: [02_train]             # skipped (and recorded so) if 02_train failed or was skipped

Rules, in the order they apply:

* Stage name = notebook stem (``01_data``). A stage entry may also be just the notebook
  file name. ``needs`` names earlier stages.
* A stage's parameters are: ``defaults`` it declares < its own ``parameters`` < ``-p key=value``
  overrides < ``-p stage.key=value`` overrides. Only parameters the notebook declares (its
  cell tagged ``parameters``, read with ``papermill.inspect_notebook``) are injected; a
  stage ``parameters`` entry or an override that no stage declares is an error that lists
  the declared ones, raised before anything runs. ``-p`` values are YAML scalars
  (``-p epochs=3`` is the int 3, ``-p lr=1e-3`` a float, ``-p name=abc`` a string).
  Unlike plain PyYAML, ``1e-3`` (no dot) is read as a float here and in profiles.
* The runner always offers ``out_dir`` (the stage's folder) and ``run_dir`` (the run
  root), both absolute; later stages read earlier ones' files from
  ``<run_dir>/<stage>/...``. They cannot be overridden.

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

CLI: ``python -m atrlib run --profile NAME|FILE.yaml [--out DIR] [-p key=value ...]
[--stages a,b] [--overwrite] [--list]``.
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
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import yaml

import atrlib
from atrlib.paths import PACKAGE_DIR, REPO_ROOT
from atrlib.files import read_json, read_metrics, write_json
from atrlib.reporting import write_index

RUNNER_PARAMS = ("out_dir", "run_dir")  # always offered by the runner; not overridable
STATUSES = ("ok", "failed", "skipped")

__all__ = [
    "ProfileError",
    "RunExistsError",
    "Stage",
    "Profile",
    "StageResult",
    "RunResult",
    "load_profile",
    "find_profile",
    "list_profiles",
    "parse_overrides",
    "resolve_parameters",
    "resolve_kernel",
    "run_profile",
    "add_arguments",
    "main",
]


class ProfileError(ValueError):
    """A profile, an override or a stage selection is invalid (raised before anything runs)."""


class RunExistsError(FileExistsError):
    """The run folder exists and is not empty, and ``overwrite`` was not given."""


# --------------------------------------------------------------------------------------
# Profiles
# --------------------------------------------------------------------------------------
def default_notebooks_dir() -> Path:
    """``notebooks/`` of the repository atrlib lives in, else ``./notebooks``."""
    repo = REPO_ROOT / "notebooks"
    return repo if repo.is_dir() else Path.cwd() / "notebooks"


def default_reports_dir() -> Path:
    """``reports/`` of the repository atrlib lives in, else ``./reports``."""
    return REPO_ROOT / "reports" if (REPO_ROOT / "notebooks").is_dir() else Path.cwd() / "reports"


@dataclass
class Stage:
    name: str  # notebook stem, e.g. "01_data"
    notebook: Path  # absolute path of the source notebook
    parameters: dict[str, Any] = field(default_factory=dict)  # stage-specific, from the profile
    needs: list[str] = field(default_factory=list)  # earlier stages that must be ok


@dataclass
class Profile:
    name: str
    path: Path
    description: str
    defaults: dict[str, Any]
    stages: list[Stage]
    notebooks_dir: Path

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)


def list_profiles(notebooks_dir: Optional[Path] = None) -> list[str]:
    """Names of the profiles in ``<notebooks_dir>/params/``."""
    d = Path(notebooks_dir or default_notebooks_dir()) / "params"
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def find_profile(profile: Union[str, Path], notebooks_dir: Optional[Path] = None) -> Path:
    """A profile's YAML file: an existing path (``x.yaml``), or a name in ``<notebooks_dir>/params/``."""
    p = Path(profile)
    if p.suffix in (".yaml", ".yml") or p.is_file():
        if not p.is_file():
            raise ProfileError(f"profile file not found: {p}")
        return p.resolve()
    d = Path(notebooks_dir or default_notebooks_dir()) / "params"
    for suffix in (".yaml", ".yml"):
        if (d / f"{profile}{suffix}").is_file():
            return (d / f"{profile}{suffix}").resolve()
    known = ", ".join(list_profiles(d.parent)) or "(none)"
    raise ProfileError(f"no profile {str(profile)!r} in {d}; available: {known}")


def load_profile(profile: Union[str, Path], notebooks_dir: Optional[Path] = None) -> Profile:
    """Read and check a profile (see the module docstring for the format).

    ``profile`` is a name in ``<notebooks_dir>/params/`` or a path to a YAML file. Without
    ``notebooks_dir``, notebooks are looked up in the folder above the profile's ``params/``
    folder when it lives in one (``notebooks/params/x.yaml`` -> ``notebooks/``), else in
    the repository's ``notebooks/``.
    """
    path = find_profile(profile, notebooks_dir)
    if notebooks_dir is None:
        notebooks_dir = path.parent.parent if path.parent.name == "params" else default_notebooks_dir()
    notebooks_dir = Path(notebooks_dir).resolve()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ProfileError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: expected a mapping with 'stages', got {type(data).__name__}")
    unknown = set(data) - {"description", "defaults", "stages"}
    if unknown:
        raise ProfileError(f"{path}: unknown top-level keys {sorted(unknown)}; allowed: description, defaults, stages")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise ProfileError(f"{path}: 'defaults' must be a mapping")
    defaults = _fix_floats(defaults)
    raw_stages = data.get("stages")
    if not isinstance(raw_stages, list) or not raw_stages:
        raise ProfileError(f"{path}: 'stages' must be a non-empty list")

    stages: list[Stage] = []
    for i, entry in enumerate(raw_stages):
        if isinstance(entry, str):
            entry = {"notebook": entry}
        if not isinstance(entry, dict) or "notebook" not in entry:
            raise ProfileError(f"{path}: stage {i + 1} needs a 'notebook' entry")
        bad = set(entry) - {"notebook", "parameters", "needs"}
        if bad:
            raise ProfileError(f"{path}: stage {entry['notebook']}: unknown keys {sorted(bad)}; allowed: notebook, parameters, needs")
        nb = notebooks_dir / str(entry["notebook"])
        name = nb.stem
        if not nb.is_file():
            raise ProfileError(f"{path}: stage {name}: notebook not found: {nb}")
        if any(s.name == name for s in stages):
            raise ProfileError(f"{path}: stage {name} appears twice")
        params = entry.get("parameters") or {}
        if not isinstance(params, dict):
            raise ProfileError(f"{path}: stage {name}: 'parameters' must be a mapping")
        params = _fix_floats(params)
        needs = entry.get("needs") or []
        needs = [needs] if isinstance(needs, str) else list(needs)
        earlier = [s.name for s in stages]
        for n in needs:
            if n not in earlier:
                raise ProfileError(f"{path}: stage {name} needs {n!r}, which is not an earlier stage ({', '.join(earlier) or 'none'})")
        stages.append(Stage(name=name, notebook=nb, parameters=dict(params), needs=[str(n) for n in needs]))
    return Profile(
        name=path.stem,
        path=path,
        description=str(data.get("description") or ""),
        defaults=dict(defaults),
        stages=stages,
        notebooks_dir=notebooks_dir,
    )


# --------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------
_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _fix_floats(value: Any) -> Any:
    """``"1e-3"`` -> ``0.001``: PyYAML (YAML 1.1) reads exponents without a dot as strings."""
    if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        return float(value)
    if isinstance(value, list):
        return [_fix_floats(v) for v in value]
    if isinstance(value, dict):
        return {k: _fix_floats(v) for k, v in value.items()}
    return value


def _parse_value(text: str) -> Any:
    """A ``-p`` value as a YAML scalar (3 -> int, 1e-3 -> float, true -> bool, [1, 2] -> list)."""
    if text == "":
        return ""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    # dates and other YAML-only types would not survive papermill's literal injection
    if not isinstance(value, (str, int, float, bool, list, dict, type(None))):
        return text
    return _fix_floats(value)


def parse_overrides(overrides: Union[Mapping[str, Any], Iterable[str], None]) -> dict[str, Any]:
    """``["epochs=3", "02_train.lr=1e-3"]`` (or a dict) -> ``{"epochs": 3, "02_train.lr": 0.001}``."""
    if not overrides:
        return {}
    if isinstance(overrides, Mapping):
        return {str(k): v for k, v in overrides.items()}
    out: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ProfileError(f"-p expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ProfileError(f"-p expects key=value, got {item!r}")
        out[key] = _parse_value(value)
    return out


def declared_parameters(notebook: Path) -> dict[str, dict]:
    """The parameters a notebook declares in its ``parameters`` cell (name -> papermill's info)."""
    import papermill

    return papermill.inspect_notebook(str(notebook))


def resolve_parameters(
    profile: Profile,
    overrides: Mapping[str, Any],
    run_dir: Path,
    declared: Optional[Mapping[str, Mapping[str, Any]]] = None,
) -> dict[str, dict[str, Any]]:
    """Parameters to inject per stage (all stages of the profile), checking every name.

    ``declared`` maps stage name -> declared parameter names (read from the notebooks when
    not given). Raises :class:`ProfileError` for a stage parameter its notebook does not
    declare, an override no stage declares, a ``stage.key`` override naming an unknown
    stage or a key that stage does not declare, or an override of ``out_dir``/``run_dir``.
    """
    if declared is None:
        declared = {s.name: declared_parameters(s.notebook) for s in profile.stages}
    run_dir = Path(run_dir).resolve()
    names = [s.name for s in profile.stages]

    def listing(stage: Optional[str] = None) -> str:
        if stage is not None:
            return f"{stage} declares: {', '.join(declared[stage]) or '(nothing)'}"
        return "; ".join(f"{s} declares: {', '.join(declared[s]) or '(nothing)'}" for s in names)

    global_ov: dict[str, Any] = {}
    stage_ov: dict[str, dict[str, Any]] = {n: {} for n in names}
    for key, value in overrides.items():
        stage, _, pkey = key.rpartition(".")
        if pkey in RUNNER_PARAMS:
            raise ProfileError(f"-p {key}: out_dir and run_dir are set by the runner (use --out)")
        if stage:
            if stage not in stage_ov:
                raise ProfileError(f"-p {key}: no stage {stage!r} in profile {profile.name}; stages: {', '.join(names)}")
            if pkey not in declared[stage]:
                raise ProfileError(f"-p {key}: stage {stage} does not declare {pkey!r}; {listing(stage)}")
            stage_ov[stage][pkey] = value
        else:
            if not any(pkey in declared[s] for s in names):
                raise ProfileError(f"-p {key}: no stage declares {pkey!r}; {listing()}")
            global_ov[pkey] = value

    resolved: dict[str, dict[str, Any]] = {}
    for s in profile.stages:
        decl = declared[s.name]
        for k in s.parameters:
            if k in RUNNER_PARAMS:
                raise ProfileError(f"{profile.path}: stage {s.name}: {k} is set by the runner")
            if k not in decl:
                raise ProfileError(f"{profile.path}: stage {s.name} sets {k!r}, which its notebook does not declare; {listing(s.name)}")
        params = {k: v for k, v in profile.defaults.items() if k in decl}
        params.update(s.parameters)
        params.update({k: v for k, v in global_ov.items() if k in decl})
        params.update(stage_ov[s.name])
        runner = {"out_dir": str(run_dir / s.name), "run_dir": str(run_dir)}
        params.update({k: v for k, v in runner.items() if k in decl})
        resolved[s.name] = params
    return resolved


def select_stages(profile: Profile, stages: Optional[Sequence[str]]) -> list[Stage]:
    """The profile's stages to run, in profile order; every needed stage must be selected too."""
    if not stages:
        return list(profile.stages)
    wanted = [s.strip() for item in stages for s in str(item).split(",") if s.strip()]
    names = [s.name for s in profile.stages]
    unknown = [w for w in wanted if w not in names]
    if unknown:
        raise ProfileError(f"--stages: unknown {', '.join(unknown)}; profile {profile.name} has: {', '.join(names)}")
    chosen = [s for s in profile.stages if s.name in wanted]
    for s in chosen:
        missing = [n for n in s.needs if n not in wanted]
        if missing:
            raise ProfileError(f"--stages: {s.name} needs {', '.join(missing)}; select it too (--stages {','.join(sorted(set(wanted) | set(missing), key=names.index))})")
    return chosen


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


# --------------------------------------------------------------------------------------
# CLI: python -m atrlib run
# --------------------------------------------------------------------------------------
def add_arguments(parser) -> None:
    """Arguments of ``python -m atrlib run``."""
    parser.add_argument("--profile", help="profile name in notebooks/params/ or path to a YAML file")
    parser.add_argument("--out", type=Path, help="run folder (default reports/<profile>)")
    parser.add_argument("-p", "--param", dest="params", action="append", default=[], metavar="KEY=VALUE",
                        help="override a parameter (YAML value); 'stage.key=value' for one stage; repeatable")
    parser.add_argument("--stages", action="append", metavar="A,B",
                        help="run only these stages (comma-separated, repeatable); needed stages must be included")
    parser.add_argument("--overwrite", action="store_true",
                        help="move an existing run folder aside to <out>.prev-<time> instead of refusing")
    parser.add_argument("--list", action="store_true",
                        help="list the profiles, or with --profile its stages and resolved parameters, and exit")
    parser.add_argument("--notebooks", type=Path, help="folder of the stage notebooks (default notebooks/)")
    parser.add_argument("--kernel", help="jupyter kernel name (default: one running this python)")
    parser.add_argument("--cell-progress", action="store_true", help="show papermill's per-cell progress bar")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _print_listing(args) -> int:
    if not args.profile:
        names = list_profiles(args.notebooks)
        print("profiles:", ", ".join(names) if names else "(none)")
        return 0
    prof = load_profile(args.profile, args.notebooks)
    ov = parse_overrides(args.params)
    out = (args.out or default_reports_dir() / prof.name).resolve()
    chosen = select_stages(prof, args.stages)
    resolved = resolve_parameters(prof, ov, out)
    print(f"profile {prof.name} ({prof.path})" + (f": {prof.description}" if prof.description else ""))
    print(f"run folder: {out}")
    for s in chosen:
        needs = f"  (needs {', '.join(s.needs)})" if s.needs else ""
        print(f"- {s.name}: {s.notebook.name}{needs}")
        for k, v in resolved[s.name].items():
            print(f"    {k} = {v!r}")
    return 0


def main(args) -> int:
    """Run a profile's stage notebooks with papermill and write reports/<run>/index.html."""
    try:
        if args.list:
            return _print_listing(args)
        if not args.profile:
            print("error: --profile is required (see --list)", file=sys.stderr)
            return 2
        result = run_profile(
            args.profile,
            out=args.out,
            overrides=args.params,
            stages=args.stages,
            notebooks_dir=args.notebooks,
            overwrite=args.overwrite,
            kernel_name=args.kernel,
            progress=not args.no_progress,
            cell_progress=args.cell_progress,
        )
    except (ProfileError, RunExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    c = result.counts()
    print(f"{c['ok']} ok, {c['failed']} failed, {c['skipped']} skipped in {result.duration_s:.1f} s")
    for s in result.stages:
        if s.status == "failed" and s.error:
            print(f"  {s.name} failed: {s.error.get('ename')}: {s.error.get('evalue')}  -> {s.html or s.output_notebook}")
    print(result.index)
    return 0 if result.ok else 1
