"""Sweeps: many runs of one profile (a grid or list over parameters, folds and seeds), each
trial a papermill batch run (:func:`atrlib.runs.batch.run_profile`) executed as a Ray task.

A *sweep spec* is a YAML file::

    profile: smoke                  # a profile name in notebooks/params/, or a YAML path (relative to this file)
    stages: [02_train]              # the stages every trial runs (default: all of the profile's)
    parameters: {epochs: 1}         # overrides for every trial, as with -p (key or stage.key)
    trials:                         # a list of configurations (each a dict of overrides) ...
      - {loss: infonce}
      - {loss: ntxent, lr: 3e-4}
    grid:                           # ... times every combination of these values
      batch_size: [16, 32]
    seeds: [0, 1, 2]                # = grid over the parameter ``seed``
    folds: 5                        # = grid over ``fold`` = 0..4, with ``folds: 5`` (02_train: k-fold by clip)
    select: {metric: 02_train/best_val_mAP@10, mode: max}   # the chosen trial; validation metrics only
    resources: {num_cpus: 1, num_gpus: 0}                    # per trial (Ray task options)

Trials are ``trials × grid × seeds × folds`` (an empty part counts as one), each merged onto
``parameters``. A trial's id is a readable label of the values it sets plus a hash of all its
overrides, so editing the spec (adding seeds) keeps the finished trials' ids. Every trial is
validated against what the notebooks declare (:func:`atrlib.runs.profiles.resolve_parameters`) before
anything runs.

Sweep folder::

    <sweep>/sweep.json             the spec, its trials (id, label, overrides), the executor
    <sweep>/index.html, summary.md the sweep index: every trial's key numbers (sortable), the chosen trial
    <sweep>/status/<id>.json       one trial's status (pending -> running -> ok | failed), written atomically
    <sweep>/sweep.lock             while a sweep runs: its pid and host (a second sweep into the folder is refused)
    <sweep>/trials/<id>/           the trial's run folder (index.html, params.json, <stage>/metrics.json, ...)
    <sweep>/attempts/<id>-<n>/     an earlier, interrupted or failed attempt moved aside on a re-run

Failure isolation: a failing trial (a failing stage, an exception, a crashed Ray worker) is
recorded as ``failed`` with its error; the others go on; the command exits 1. Resume:
re-running the same spec into the same folder skips trials whose status is ``ok`` (and
``failed`` ones unless ``retry_failed``); a killed sweep loses at most the trials that were
running, whose status stays ``running`` and which run again. The chosen trial is the best by
``select.metric``, which must be a validation metric (a key naming ``val`` and not ``test``).

Execution: ``executor="ray"`` (default) submits one Ray task per trial with the trial's
``resources``; without ``address`` a local Ray is started with ``num_cpus`` CPUs (default all),
no dashboard and a small object store (trials exchange files, not objects); ``address="auto"``
or ``"ray://host:10001"`` joins a cluster, whose nodes must see the sweep folder (shared
storage) and have atrlib installed. ``executor="serial"`` runs the trials one after another in
this process, without Ray.

For the ensemble stage, :func:`sweep_systems` maps each ok trial to its folder holding
``sim_<split>.npz`` (the dict :func:`atrlib.experiments.systems.load_systems` reads).
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import html
import itertools
import json
import os
import re
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union


from atrlib.config import read_yaml_mapping
from atrlib.files import read_json, write_json, write_text_atomic
from atrlib.runs.reporting import flatten_metrics, format_duration, format_value, key_numbers
from atrlib.errors import SweepError

SPEC_KEYS = ("profile", "stages", "parameters", "trials", "grid", "seeds", "folds", "select", "resources",
             "description")
RESOURCE_KEYS = ("num_cpus", "num_gpus", "memory", "resources")  # Ray task options a trial may request
FINISHED = ("ok", "failed")
LOCAL_OBJECT_STORE_BYTES = 100 * 1024**2  # trials exchange files, not objects: keep Ray's store small

__all__ = ["SweepError", "Trial", "SweepSpec", "load_spec", "expand_trials", "run_sweep", "init_ray", "trial_status",
           "sweep_table", "choose_trial", "write_sweep_index", "sweep_systems"]



# --------------------------------------------------------------------------------------
# the spec and its trials
# --------------------------------------------------------------------------------------
@dataclass
class Trial:
    id: str  # folder name: label + hash of the overrides
    label: str  # the values this trial sets beyond the shared parameters, e.g. "loss=ntxent,seed=1"
    overrides: Dict[str, Any]  # every override (shared parameters included), -p syntax


@dataclass
class SweepSpec:
    path: Optional[Path]
    profile: str  # a profile name or an absolute YAML path
    stages: Optional[List[str]]
    parameters: Dict[str, Any]
    trials: List[Trial]
    select_metric: Optional[str]
    select_mode: str
    resources: Dict[str, Any]
    description: str = ""
    raw: dict = field(default_factory=dict)


def _slug(text: str, limit: int = 48) -> str:
    s = re.sub(r"[^A-Za-z0-9._=,+-]+", "_", text).strip("_")
    return s[:limit] or "base"


def _label_value(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))


def expand_trials(parameters: Mapping[str, Any], trials: Sequence[Mapping[str, Any]] = (),
                  grid: Optional[Mapping[str, Sequence[Any]]] = None, seeds: Sequence[Any] = (),
                  folds: int = 0) -> List[Trial]:
    """``trials × grid × seeds × folds`` merged onto ``parameters`` (see the module docstring).

    Raises :class:`SweepError` for an empty grid axis or two identical trials.
    """
    from atrlib.runs.profiles import parse_overrides

    axes: Dict[str, List[Any]] = {}
    for k, values in (grid or {}).items():
        values = list(values) if isinstance(values, (list, tuple)) else [values]
        if not values:
            raise SweepError(f"grid: {k!r} has no values")
        axes[str(k)] = values
    if seeds:
        axes["seed"] = list(seeds)
    if folds:
        if int(folds) < 2:
            raise SweepError(f"folds must be at least 2, got {folds}")
        axes["fold"] = list(range(int(folds)))
    configs = [dict(parse_overrides(t)) for t in trials] or [{}]
    base = parse_overrides(parameters)
    if folds:  # every fold trial also says how many folds there are (notebook 02's ``folds``)
        base = dict(base, folds=int(folds))
    out: List[Trial] = []
    seen: Dict[str, str] = {}
    for cfg in configs:
        for combo in itertools.product(*axes.values()):
            varied = dict(cfg, **dict(zip(axes, combo)))
            overrides = dict(base, **varied)
            digest = hashlib.sha256(json.dumps(overrides, sort_keys=True, default=str).encode()).hexdigest()[:8]
            label = ",".join(f"{k}={_label_value(v)}" for k, v in varied.items()) or "base"
            tid = f"{_slug(label)}-{digest}"
            if tid in seen:
                raise SweepError(f"two trials have the same parameters: {label} (check trials/grid for duplicates)")
            seen[tid] = label
            out.append(Trial(id=tid, label=label, overrides=overrides))
    return out


def load_spec(spec: Union[str, Path, Mapping[str, Any]]) -> SweepSpec:
    """Read and check a sweep spec (a YAML path or the same mapping); see the module docstring."""
    path = None
    if not isinstance(spec, Mapping):
        path = Path(spec).resolve()
        if not path.is_file():
            raise SweepError(f"sweep spec not found: {path}")
        spec = read_yaml_mapping(path, SweepError, "a mapping with 'profile'")
    where = str(path) if path else "sweep spec"
    unknown = set(spec) - set(SPEC_KEYS)
    if unknown:
        raise SweepError(f"{where}: unknown keys {sorted(unknown)}; allowed: {', '.join(SPEC_KEYS)}")
    if not spec.get("profile"):
        raise SweepError(f"{where}: 'profile' is required (a profile name or a YAML path)")
    profile = str(spec["profile"])
    if path is not None and profile.endswith((".yaml", ".yml")) and not Path(profile).is_absolute():
        profile = str((path.parent / profile).resolve())
    for key, kind in (("parameters", Mapping), ("grid", Mapping), ("resources", Mapping), ("select", Mapping),
                      ("trials", list), ("seeds", list)):
        if spec.get(key) is not None and not isinstance(spec[key], kind):
            raise SweepError(f"{where}: {key!r} must be a {'mapping' if kind is Mapping else 'list'}")
    if any(not isinstance(t, Mapping) for t in spec.get("trials") or []):
        raise SweepError(f"{where}: every entry of 'trials' must be a mapping of overrides")
    resources = dict(spec.get("resources") or {})
    bad = set(resources) - set(RESOURCE_KEYS)
    if bad:
        raise SweepError(f"{where}: unknown resources {sorted(bad)}; allowed: {', '.join(RESOURCE_KEYS)}")
    select = dict(spec.get("select") or {})
    mode = str(select.get("mode", "max"))
    if mode not in ("max", "min"):
        raise SweepError(f"{where}: select.mode must be 'max' or 'min', not {mode!r}")
    metric = select.get("metric")
    if metric is not None:
        _check_validation_metric(str(metric))
    stages = spec.get("stages")
    if isinstance(stages, str):
        stages = [s.strip() for s in stages.split(",") if s.strip()]
    from atrlib.config import fix_floats  # "1e-3" is a float here too, as in profiles

    parameters = fix_floats(dict(spec.get("parameters") or {}))
    trials = expand_trials(parameters, fix_floats(list(spec.get("trials") or [])), fix_floats(spec.get("grid")),
                           spec.get("seeds") or [], int(spec.get("folds") or 0))
    return SweepSpec(path=path, profile=profile, stages=list(stages) if stages else None,
                     parameters=parameters, trials=trials,
                     select_metric=str(metric) if metric else None, select_mode=mode, resources=resources,
                     description=str(spec.get("description") or ""), raw=dict(spec))


def _tokens(key: str) -> List[str]:
    return [t.lower() for t in re.split(r"[/_.\s-]+", key) if t]


def _check_validation_metric(key: str) -> None:
    toks = _tokens(key)
    if any(t.startswith("test") or t in ("eval", "evaluation") for t in toks) or not any(t.startswith("val") for t in toks):
        raise SweepError(f"select.metric {key!r}: the chosen trial is picked on validation metrics only; name a "
                         "flattened key with 'val' and without 'test', e.g. 02_train/best_val_mAP@10")


def _validate(spec: SweepSpec):
    """Load the profile and resolve every trial's parameters (raises before anything runs)."""
    from atrlib.runs.profiles import declared_parameters, load_profile, resolve_parameters, select_stages
    from atrlib.errors import ProfileError

    try:
        prof = load_profile(spec.profile)
        select_stages(prof, spec.stages)
        declared = {s.name: declared_parameters(s.notebook) for s in prof.stages}
        for t in spec.trials:
            try:
                resolve_parameters(prof, t.overrides, Path("/tmp/atrlib-sweep-check"), declared)
            except ProfileError as e:
                raise SweepError(f"trial {t.label}: {e}") from e
    except ProfileError as e:
        raise SweepError(str(e)) from e
    return prof


# --------------------------------------------------------------------------------------
# one trial (runs in a Ray worker, or here)
# --------------------------------------------------------------------------------------
LOCK_NAME = "sweep.lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


class SweepLock:
    """One sweep at a time per folder: ``<sweep>/sweep.lock`` (pid, host, start time, a token),
    created exclusively on entry and removed on exit. A lock left by a dead process on this host
    is taken over (stale); one held by a live process, or by another host (whose processes cannot
    be checked from here), is refused with :class:`SweepError` naming the folder, unless
    ``force`` (for a lock you know is stale, e.g. its machine died)."""

    def __init__(self, sweep_dir: Union[str, Path], force: bool = False):
        self.path = Path(sweep_dir) / LOCK_NAME
        self.force = force
        self.token = f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}"
        self.took_over: Optional[Dict[str, Any]] = None  # the stale or forced lock replaced on entry

    def _holder(self) -> Optional[Dict[str, Any]]:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # half-written or unreadable: its writer may still be running

    def __enter__(self) -> "SweepLock":
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": _now(), "token": self.token}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                held = self._holder()
                if held is None:
                    continue  # released meanwhile: try again
                stale = (held.get("host") == socket.gethostname() and isinstance(held.get("pid"), int)
                         and not _pid_alive(held["pid"]))
                if not (stale or self.force):
                    who = (f"process {held.get('pid')} on host {held.get('host')} (since {held.get('started')})"
                           if held else "a process (the lock file is unreadable)")
                    raise SweepError(
                        f"another sweep is writing into {self.path.parent}: {who} holds {self.path}. Wait for it to "
                        "finish, or use another --out folder; if that process is gone (e.g. its machine died), "
                        "re-run with --force or delete the lock file")
                self.took_over = held
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            return self
        raise SweepError(f"could not take the lock {self.path}: it keeps reappearing (another sweep is starting?)")

    def __exit__(self, *exc) -> None:
        held = self._holder()
        if held and held.get("token") == self.token:  # never remove a lock another process took over
            self.path.unlink(missing_ok=True)


def _now() -> str:
    return _dt.datetime.now().isoformat(timespec="seconds")


def _status_path(sweep_dir: Path, tid: str) -> Path:
    return sweep_dir / "status" / f"{tid}.json"


def trial_status(sweep_dir: Union[str, Path], tid: str) -> dict:
    """A trial's status record (``{"status": "pending"}`` when it never started)."""
    p = _status_path(Path(sweep_dir), tid)
    try:
        return read_json(p)
    except (OSError, json.JSONDecodeError):
        return {"id": tid, "status": "pending", "attempt": 0}


def run_trial(task: Mapping[str, Any]) -> dict:
    """Run one trial into ``<sweep>/trials/<id>`` and write its status; returns the status record.

    ``task``: ``sweep_dir``, ``id``, ``label``, ``profile``, ``stages``, ``overrides``,
    ``attempt``. Never raises for a failing trial: the error goes into the record.
    """
    from atrlib.runs.batch import run_profile

    sweep_dir, tid = Path(task["sweep_dir"]), str(task["id"])
    run_dir = sweep_dir / "trials" / tid
    rec = {"id": tid, "label": task["label"], "status": "running", "attempt": int(task["attempt"]),
           "started": _now(), "finished": None, "duration_s": None, "host": socket.gethostname(), "pid": os.getpid(),
           "gpus": os.environ.get("CUDA_VISIBLE_DEVICES"), "run_dir": str(run_dir), "overrides": task["overrides"],
           "stages": {}, "error": None}
    write_json(_status_path(sweep_dir, tid), rec)
    if run_dir.exists() and any(run_dir.iterdir()):  # an interrupted or failed attempt: keep it, aside
        dest = sweep_dir / "attempts" / f"{tid}-{rec['attempt'] - 1}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            shutil.rmtree(dest)
        run_dir.rename(dest)
    t0 = time.perf_counter()
    try:
        result = run_profile(task["profile"], out=run_dir, overrides=task["overrides"], stages=task["stages"],
                             progress=False)
        rec["stages"] = {s.name: {"status": s.status, "metrics": s.metrics, "error": s.error and
                                  {k: s.error.get(k) for k in ("ename", "evalue", "cell_index")},
                                  "skipped_reason": s.skipped_reason} for s in result.stages}
        failed = [s for s in result.stages if s.status != "ok"]
        rec["status"] = "failed" if failed else "ok"
        if failed:
            s = failed[0]
            rec["error"] = (f"{s.name}: {s.error.get('ename')}: {s.error.get('evalue')}" if s.error
                            else f"{s.name}: {s.status} ({s.skipped_reason})")
    except Exception as e:  # a broken trial is recorded, never raised
        rec["status"], rec["error"] = "failed", f"{type(e).__name__}: {e}"
    rec["finished"] = _now()
    rec["duration_s"] = round(time.perf_counter() - t0, 3)
    write_json(_status_path(sweep_dir, tid), rec)
    return rec


# --------------------------------------------------------------------------------------
# executors
# --------------------------------------------------------------------------------------
def _serial(tasks: List[dict], resources: dict, on_done: Callable[[dict, dict], None], **_) -> None:
    for t in tasks:
        on_done(t, run_trial(t))


def init_ray(address: Optional[str] = None, num_cpus: Optional[int] = None, num_gpus: Optional[int] = None) -> bool:
    """Connect to Ray unless already connected: a cluster at ``address`` (``"auto"``,
    ``"ray://host:10001"``), else a local Ray with ``num_cpus`` (default all), no dashboard and
    a small object store. Returns True when this call connected (the caller shuts it down)."""
    try:
        import ray
    except ImportError as e:
        raise SweepError("the ray executor needs Ray: pip install 'atrlib[ray]' (or ray), or use --executor serial") from e
    from atrlib.paths import PACKAGE_DIR

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


def _ray(tasks: List[dict], resources: dict, on_done: Callable[[dict, dict], None], address: Optional[str] = None,
         num_cpus: Optional[int] = None, num_gpus: Optional[int] = None) -> None:
    started = init_ray(address, num_cpus, num_gpus)
    import ray

    opts = {k: v for k, v in resources.items() if v is not None}
    opts.setdefault("num_cpus", 1)
    remote = ray.remote(run_trial).options(max_retries=0, **opts)  # a failure is recorded, not retried blindly
    pending = {remote.remote(t): t for t in tasks}
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                task = pending.pop(ref)
                try:
                    rec = ray.get(ref)
                except Exception as e:  # the worker died (killed, out of memory): the trial failed
                    rec = dict(trial_status(task["sweep_dir"], task["id"]), status="failed", finished=_now(),
                               error=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
                    write_json(_status_path(Path(task["sweep_dir"]), task["id"]), rec)
                on_done(task, rec)
    finally:
        for ref in pending:  # interrupted: stop what still runs (its status stays "running")
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()


EXECUTORS: Dict[str, Callable[..., None]] = {"ray": _ray, "serial": _serial}


# --------------------------------------------------------------------------------------
# the sweep
# --------------------------------------------------------------------------------------
@dataclass
class SweepResult:
    sweep_dir: Path
    records: Dict[str, dict]  # trial id -> status record
    ran: List[str]  # ids run by this call
    skipped: List[str]  # ids finished earlier and not run again
    chosen: Optional[str]  # id of the chosen trial
    select_metric: Optional[str]
    index: Path

    @property
    def ok(self) -> bool:
        return all(r.get("status") == "ok" for r in self.records.values())

    def counts(self) -> Dict[str, int]:
        keys = ("ok", "failed", "running", "pending")
        return {k: sum(r.get("status") == k for r in self.records.values()) for k in keys}


def run_sweep(spec: Union[str, Path, Mapping[str, Any], SweepSpec], out: Union[str, Path],
              executor: str = "ray", address: Optional[str] = None, num_cpus: Optional[int] = None,
              num_gpus: Optional[int] = None, resources: Optional[Mapping[str, Any]] = None,
              retry_failed: bool = False, progress: bool = True, force: bool = False) -> SweepResult:
    """Run (or resume) a sweep into ``out``; returns a :class:`SweepResult`.

    ``executor``: ``"ray"`` or ``"serial"``; ``address``: a Ray cluster (``"auto"``) instead of a
    local Ray with ``num_cpus`` / ``num_gpus``; ``resources`` override the spec's per-trial
    requests; ``retry_failed`` runs failed trials again. Invalid specs raise
    :class:`SweepError` before anything runs; failing trials never raise. One sweep at a time
    writes into a folder (:class:`SweepLock`; ``force`` replaces a lock known to be stale).
    """
    sp = spec if isinstance(spec, SweepSpec) else load_spec(spec)
    if executor not in EXECUTORS:
        raise SweepError(f"executor must be one of {', '.join(EXECUTORS)}, not {executor!r}")
    _validate(sp)
    sweep_dir = Path(out).resolve()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with SweepLock(sweep_dir, force=force) as lock:
        if lock.took_over is not None and progress:
            print(f"replaced the lock of process {lock.took_over.get('pid')} on {lock.took_over.get('host')} "
                  f"({'--force' if force else 'no longer running'})", flush=True)
        return _run_locked(sp, sweep_dir, executor, address, num_cpus, num_gpus, resources, retry_failed, progress)


def _run_locked(sp: SweepSpec, sweep_dir: Path, executor: str, address: Optional[str], num_cpus: Optional[int],
                num_gpus: Optional[int], resources: Optional[Mapping[str, Any]], retry_failed: bool,
                progress: bool) -> SweepResult:
    req = dict(sp.resources, **{k: v for k, v in (resources or {}).items() if v is not None})
    write_json(sweep_dir / "sweep.json", {
        "spec_path": str(sp.path) if sp.path else None, "spec": sp.raw, "profile": sp.profile, "stages": sp.stages,
        "description": sp.description, "updated": _now(), "executor": executor, "address": address,
        "resources": req, "select": {"metric": sp.select_metric, "mode": sp.select_mode},
        "trials": [{"id": t.id, "label": t.label, "overrides": t.overrides} for t in sp.trials],
    })
    records = {t.id: trial_status(sweep_dir, t.id) for t in sp.trials}
    wanted = ("ok", "failed") if not retry_failed else ("ok",)
    skipped = [t.id for t in sp.trials if records[t.id].get("status") in wanted]
    tasks = [{"sweep_dir": str(sweep_dir), "id": t.id, "label": t.label, "profile": sp.profile, "stages": sp.stages,
              "overrides": t.overrides, "attempt": int(records[t.id].get("attempt") or 0) + 1}
             for t in sp.trials if t.id not in skipped]
    if progress:
        print(f"sweep {sweep_dir}: {len(sp.trials)} trials, {len(skipped)} finished earlier, {len(tasks)} to run "
              f"({executor}{' at ' + address if address else ''})", flush=True)

    def on_done(task: dict, rec: dict) -> None:
        records[task["id"]] = rec
        write_sweep_index(sweep_dir)
        if progress:
            msg = f"  {rec.get('status'):6s} {task['label']}  ({format_duration(rec.get('duration_s'))})"
            print(msg + (f"  {rec['error']}" if rec.get("error") else ""), flush=True)

    write_sweep_index(sweep_dir)
    if tasks:
        EXECUTORS[executor](tasks, req, on_done, address=address, num_cpus=num_cpus, num_gpus=num_gpus)
    index = write_sweep_index(sweep_dir)
    table = sweep_table(sweep_dir)
    return SweepResult(sweep_dir, {t.id: trial_status(sweep_dir, t.id) for t in sp.trials}, [t["id"] for t in tasks],
                       skipped, table["chosen"], table["metric"], index)


# --------------------------------------------------------------------------------------
# the sweep index
# --------------------------------------------------------------------------------------
def _trial_metrics(rec: Mapping[str, Any]) -> Dict[str, Any]:
    """Every stage's flattened metrics, keys prefixed with the stage name."""
    out: Dict[str, Any] = {}
    for stage, st in (rec.get("stages") or {}).items():
        m = st.get("metrics") or {}
        out.update({f"{stage}/{k}": v for k, v in flatten_metrics({k: v for k, v in m.items() if k != "key_metrics"}).items()})
    return out


def _key_columns(recs: Sequence[Mapping[str, Any]]) -> List[str]:
    cols: List[str] = []
    for rec in recs:
        for stage, st in (rec.get("stages") or {}).items():
            for k, v in key_numbers(st.get("metrics")):
                key = f"{stage}/{k}"
                if key not in cols and (v is None or isinstance(v, (int, float))):
                    cols.append(key)
    return cols


def choose_trial(rows: Sequence[Mapping[str, Any]], metric: Optional[str], mode: str = "max") -> Optional[int]:
    """Index of the best ok row by ``metric`` (a validation metric; ties: the first), or None."""
    if not metric:
        return None
    _check_validation_metric(metric)
    best, best_i = None, None
    for i, r in enumerate(rows):
        v = r["metrics"].get(metric)
        if r["status"] != "ok" or not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if best is None or (v > best if mode == "max" else v < best):
            best, best_i = v, i
    return best_i


def _default_metric(rows: Sequence[Mapping[str, Any]]) -> Optional[str]:
    for r in rows:
        for k, v in r["metrics"].items():
            if isinstance(v, (int, float)) and k.endswith("mAP@10"):
                try:
                    _check_validation_metric(k)
                    return k
                except SweepError:
                    continue
    return None


def sweep_table(sweep_dir: Union[str, Path]) -> dict:
    """Rows of the sweep index: ``{"rows", "params", "columns", "metric", "mode", "chosen"}``.

    Each row: id, label, status, attempt, duration_s, error, overrides, metrics (flattened,
    ``stage/key``). ``chosen`` is the id of the best ok trial by the validation metric.
    """
    sweep_dir = Path(sweep_dir)
    info = read_json(sweep_dir / "sweep.json")
    rows = []
    for t in info["trials"]:
        rec = trial_status(sweep_dir, t["id"])
        rows.append({"id": t["id"], "label": t["label"], "status": rec.get("status", "pending"),
                     "attempt": rec.get("attempt", 0), "duration_s": rec.get("duration_s"), "error": rec.get("error"),
                     "host": rec.get("host"), "overrides": t["overrides"], "metrics": _trial_metrics(rec), "rec": rec})
    params = [k for k in dict.fromkeys(k for r in rows for k in r["overrides"])  # the parameters that vary
              if len({json.dumps(r["overrides"].get(k), sort_keys=True, default=str) for r in rows}) > 1]
    metric = (info.get("select") or {}).get("metric") or _default_metric(rows)
    mode = (info.get("select") or {}).get("mode") or "max"
    columns = _key_columns([r["rec"] for r in rows])
    if metric and metric not in columns:
        columns.insert(0, metric)
    i = choose_trial(rows, metric, mode)
    return {"rows": rows, "params": params, "columns": columns, "metric": metric, "mode": mode,
            "chosen": rows[i]["id"] if i is not None else None, "info": info}


_SORT_JS = """
document.querySelectorAll('table.sweep th').forEach(function(th, col){
  th.addEventListener('click', function(){
    var tb = th.closest('table').tBodies[0], rows = Array.from(tb.rows);
    var dir = th.dataset.dir === 'asc' ? -1 : 1; th.dataset.dir = dir === 1 ? 'asc' : 'desc';
    rows.sort(function(a, b){
      var x = a.cells[col].dataset.v ?? a.cells[col].textContent, y = b.cells[col].dataset.v ?? b.cells[col].textContent;
      var nx = parseFloat(x), ny = parseFloat(y);
      if (!isNaN(nx) && !isNaN(ny)) return dir * (nx - ny);
      if (isNaN(nx) !== isNaN(ny)) return isNaN(nx) ? 1 : -1;
      return dir * x.localeCompare(y);
    });
    rows.forEach(function(r){ tb.appendChild(r); });
  });
});
"""
_CSS = """
body{font-family:-apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:2rem auto;
     max-width:1300px;padding:0 1rem;color:#1f2328;line-height:1.45}
table{border-collapse:collapse;width:100%;margin:1rem 0;font-size:.9rem}
th,td{border-bottom:1px solid #d1d9e0;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa;font-weight:600;cursor:pointer;user-select:none} td.num{text-align:right;white-space:nowrap}
tr.chosen{background:#dafbe1} .badge{padding:.1rem .5rem;border-radius:1rem;font-size:.8rem;font-weight:600;color:#fff}
.ok{background:#1a7f37} .failed{background:#cf222e} .pending,.running{background:#9a6700}
.error{color:#cf222e;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.8rem} .note{color:#59636e}
"""


def _render_html(sweep_dir: Path, tab: dict) -> str:
    esc = html.escape
    info, rows = tab["info"], tab["rows"]
    counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "failed", "running", "pending")}
    title = f"atrlib sweep: {sweep_dir.name}"
    head = (["trial", "status"] + [f"{p}" for p in tab["params"]] + ["duration"]
            + [c + (" (selects)" if c == tab["metric"] else "") for c in tab["columns"]] + ["report"])
    body = []
    for r in rows:
        report = sweep_dir / "trials" / r["id"] / "index.html"
        link = f'<a href="trials/{esc(r["id"])}/index.html">report</a>' if report.exists() else "—"
        cells = [f'<td data-v="{esc(r["label"])}"><strong>{esc(r["label"])}</strong>'
                 + (" ★ chosen" if r["id"] == tab["chosen"] else "")
                 + (f'<br><span class="error">{esc(str(r["error"]))}</span>' if r["error"] else "") + "</td>",
                 f'<td><span class="badge {esc(r["status"])}">{esc(r["status"])}</span></td>']
        cells += [f"<td>{esc(format_value(r['overrides'].get(p)))}</td>" for p in tab["params"]]
        d = r["duration_s"]
        cells.append(f'<td class=num data-v="{d if d is not None else ""}">{esc(format_duration(d))}</td>')
        for c in tab["columns"]:
            v = r["metrics"].get(c)
            dv = v if isinstance(v, (int, float)) and not isinstance(v, bool) else ""
            cells.append(f'<td class=num data-v="{dv}">{esc(format_value(v))}</td>')
        cells.append(f"<td>{link}</td>")
        body.append(f'<tr class="{"chosen" if r["id"] == tab["chosen"] else ""}">' + "".join(cells) + "</tr>")
    chosen = next((r for r in rows if r["id"] == tab["chosen"]), None)
    choice = (f"chosen: <strong>{esc(chosen['label'])}</strong> — best {esc(str(tab['metric']))} ({tab['mode']}) "
              f"= {esc(format_value(chosen['metrics'].get(tab['metric'])))}, on validation only" if chosen
              else "no trial chosen yet (none finished ok with the selection metric)")
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{esc(title)}</title>",
        f"<style>{_CSS}</style></head><body>", f"<h1>{esc(title)}</h1>",
        f'<p class="note">profile {esc(str(info.get("profile")))}; stages {esc(", ".join(info.get("stages") or ["all"]))}; '
        f'{len(rows)} trials: ' + ", ".join(f"{n} {s}" for s, n in counts.items() if n) + f"; updated {esc(str(info.get('updated')))}</p>",
        f"<p>{choice}</p>", '<p class="note">click a column header to sort</p>',
        '<table class="sweep"><thead><tr>' + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead><tbody>",
        "\n".join(body), "</tbody></table>", f"<script>{_SORT_JS}</script>", "</body></html>", ""])


def _render_md(sweep_dir: Path, tab: dict) -> str:
    def md(x: Any) -> str:
        return html.escape(str(x), quote=False).replace("|", "\\|").replace("\n", " ")

    rows = tab["rows"]
    head = ["trial", "status"] + tab["params"] + ["duration"] + tab["columns"]
    lines = [f"# atrlib sweep: {md(sweep_dir.name)}", ""]
    chosen = next((r for r in rows if r["id"] == tab["chosen"]), None)
    lines += [f"Chosen on validation ({md(tab['metric'])}, {tab['mode']}): **{md(chosen['label'])}**" if chosen
              else "No trial chosen yet.", "", "| " + " | ".join(md(h) for h in head) + " |",
              "|" + "---|" * len(head)]
    for r in rows:
        cells = [f"[{md(r['label'])}](trials/{r['id']}/index.html)" + (" ★" if r is chosen else ""),
                 md(r["status"]) + (f": {md(r['error'])}" if r["error"] else "")]
        cells += [md(format_value(r["overrides"].get(p))) for p in tab["params"]]
        cells += [format_duration(r["duration_s"])] + [md(format_value(r["metrics"].get(c))) for c in tab["columns"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_sweep_index(sweep_dir: Union[str, Path]) -> Path:
    """Write ``<sweep>/index.html`` (sortable) and ``<sweep>/summary.md``; returns the HTML path."""
    sweep_dir = Path(sweep_dir)
    tab = sweep_table(sweep_dir)
    write_text_atomic(sweep_dir / "summary.md", _render_md(sweep_dir, tab))
    return write_text_atomic(sweep_dir / "index.html", _render_html(sweep_dir, tab))


# --------------------------------------------------------------------------------------
# the ensemble stage reads a sweep
# --------------------------------------------------------------------------------------
def sweep_systems(sweep_dir: Union[str, Path], splits: Sequence[str] = ("validation", "test"),
                  only_ok: bool = True) -> Dict[str, Path]:
    """name -> folder holding a similarity file for every split in ``splits`` (names or roles,
    as :func:`atrlib.retrieval.simfile.sim_path` resolves them), for every (ok) trial of a
    sweep: the dict :func:`atrlib.experiments.systems.load_systems` takes. The ensemble
    notebook reads a sweep with ``systems = ["sweep:<sweep folder>"]``.

    Names are trial labels; when a trial has several such folders (stages, sub-runs), the
    folder's path inside the trial is appended (``"seed=1/02_train"``).
    """
    from atrlib.retrieval.simfile import sim_path

    def has(d: Path, split: str) -> bool:
        try:
            return sim_path(d, split).is_file()
        except FileNotFoundError:
            return False

    sweep_dir = Path(sweep_dir)
    if not (sweep_dir / "sweep.json").is_file():
        raise FileNotFoundError(f"{sweep_dir}: no sweep.json here; run `python -m atrlib sweep SPEC --out {sweep_dir}` first")
    found: Dict[str, Path] = {}
    for t in read_json(sweep_dir / "sweep.json")["trials"]:
        if only_ok and trial_status(sweep_dir, t["id"]).get("status") != "ok":
            continue
        run = sweep_dir / "trials" / t["id"]
        hits = sorted({p.parent for p in run.rglob("sim_*.npz") if all(has(p.parent, s) for s in splits)})
        for d in hits:
            found[t["label"] if len(hits) == 1 else f"{t['label']}/{d.relative_to(run).as_posix()}"] = d
    return found
