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
overrides, the profile and the stages, so editing the spec (adding seeds) keeps the finished
trials' ids, while another profile's or another stage selection's finished trials never count
(each status record also carries that identity, checked on resume). Every trial is
validated against what the notebooks declare (:func:`atrlib.runs.profiles.resolve_parameters`) before
anything runs.

Sweep folder::

    <sweep>/sweep.json             the spec, its trials (id, label, overrides), the executor
    <sweep>/index.html, summary.md the sweep index: every trial's key numbers (sortable), the chosen trial
    <sweep>/status/<id>.json       one trial's status (pending -> running -> ok | failed), written atomically
    <sweep>/sweep.lock             while a sweep runs: its pid and host (a second sweep into the folder is refused;
                                   --force replaces only a stale lock, never a sweep still running on this host)
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

For the ensemble stage, :func:`atrlib.runs.sweep_report.sweep_systems` maps each ok trial to its
folder holding ``sim_<split>.npz`` (the dict :func:`atrlib.experiments.systems.load_systems` reads).

The spec and its trials are :mod:`atrlib.runs.sweep_spec`; the sweep index and the systems,
:mod:`atrlib.runs.sweep_report`; Ray start-up, :func:`atrlib.runs.environment.init_ray`. This
module keeps the lock, one trial, the executors and :func:`run_sweep`.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Union

from atrlib.errors import SweepError
from atrlib.files import write_json
from atrlib.runs.environment import init_ray
from atrlib.runs.reporting import format_duration
from atrlib.runs.sweep_report import _status_path, sweep_table, trial_status, write_sweep_index
from atrlib.runs.sweep_spec import SweepSpec, _validate, load_spec, trial_identity

FINISHED = ("ok", "failed")

__all__ = ["SweepError", "SweepLock", "SweepResult", "run_trial", "run_sweep", "EXECUTORS"]


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


def _holder_running(held: Mapping[str, Any]) -> Optional[bool]:
    """Whether the sweep holding a lock still runs: True / False for a lock of this host (its
    pid alive and started before the lock was taken: a reused pid is not the holder), None when
    this host cannot tell (another host's lock, or an unreadable one)."""
    pid = held.get("pid") if held else None
    if not held or held.get("host") != socket.gethostname() or not isinstance(pid, int):
        return None
    if not _pid_alive(pid):
        return False
    taken_ns, started_ns = held.get("taken_ns"), _process_start_ns(pid)
    if isinstance(taken_ns, int) and started_ns is not None and started_ns > taken_ns + 2_000_000_000:
        return False  # the pid now belongs to a process that started after the lock was taken
    return True


def _process_start_ns(pid: int) -> Optional[int]:
    """When process ``pid`` started (ns since the epoch), from /proc (Linux); None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return int((boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")) * 1e9)
    except (OSError, ValueError, IndexError, StopIteration):
        return None


class SweepLock:
    """One sweep at a time per folder: ``<sweep>/sweep.lock`` (pid, host, start time, a token),
    created exclusively on entry and removed on exit. A lock left by a dead process on this host
    is taken over (stale). One held by a live process on this host is always refused with
    :class:`SweepError` naming the folder and the process — ``force`` never takes it. One held by
    another host (whose processes cannot be checked from here), or an unreadable one, is refused
    unless ``force`` (for a lock you know is stale, e.g. its machine died)."""

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
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": _now(), "token": self.token,
              "taken_ns": time.time_ns()}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                held = self._holder()
                if held is None:
                    continue  # released meanwhile: try again
                running = _holder_running(held)
                who = (f"process {held.get('pid')} on host {held.get('host')} (since {held.get('started')})"
                       if held else "a process (the lock file is unreadable)")
                if running:  # a live sweep on this host: never taken, --force or not
                    raise SweepError(
                        f"another sweep is writing into {self.path.parent}: {who} holds {self.path} and is still "
                        f"running on this host. Wait for it to finish, stop it (kill {held.get('pid')}), or use "
                        "another --out folder; --force only replaces the lock of a sweep that is gone")
                if running is None and not self.force:
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


def tracked_overrides(task: Mapping[str, Any], sweep_dir: Path) -> Dict[str, Any]:
    """A trial's overrides; when they ask for trackers (``report_to``), every trial logs into one
    group named after the sweep, in one place (``<sweep>/tracking``), as a run named by its label
    (the trial's identity and id do not change)."""
    ov = dict(task["overrides"])
    keys = [k for k in ov if k.split(".")[-1] == "report_to" and ov[k]]
    if keys:
        scope = keys[0].rsplit(".", 1)[0] + "." if "." in keys[0] else ""
        ov.setdefault(f"{scope}tracking_group", sweep_dir.name)
        ov.setdefault(f"{scope}tracking_run", str(task["label"]))
        ov.setdefault(f"{scope}tracking_dir", str((sweep_dir / "tracking").resolve()))
    return ov


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
           "identity": task.get("identity") or trial_identity(task["profile"], task["stages"]), "stages": {},
           "error": None}
    write_json(_status_path(sweep_dir, tid), rec)
    if run_dir.exists() and any(run_dir.iterdir()):  # an interrupted or failed attempt: keep it, aside
        dest = sweep_dir / "attempts" / f"{tid}-{rec['attempt'] - 1}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            shutil.rmtree(dest)
        run_dir.rename(dest)
    t0 = time.perf_counter()
    try:
        result = run_profile(task["profile"], out=run_dir, overrides=tracked_overrides(task, sweep_dir),
                             stages=task["stages"], progress=False)
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
                               identity=task["identity"],
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
    ident = trial_identity(sp.profile, sp.stages)
    # a finished trial counts only when it ran this profile and these stages (its id says so; its record too)
    skipped = [t.id for t in sp.trials if records[t.id].get("status") in wanted
               and records[t.id].get("identity") == ident]
    tasks = [{"sweep_dir": str(sweep_dir), "id": t.id, "label": t.label, "profile": sp.profile, "stages": sp.stages,
              "identity": ident, "overrides": t.overrides, "attempt": int(records[t.id].get("attempt") or 0) + 1}
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

