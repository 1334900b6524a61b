"""Batch runs: execute a profile's stage notebooks with papermill into one run folder.

Profiles (the YAML format and the parameter rules) are :mod:`atrlib.runs.profiles`; the command
line is :mod:`atrlib.cli.run`; the records written into the run folder (``run.json``) are
:mod:`atrlib.runs.records`; the kernel and the versions recorded, :mod:`atrlib.runs.environment`.

Run folder layout (default ``reports/<profile>``)::

    <run>/params.json              profile, resolved parameters per stage, overrides, versions, git commit
    <run>/run.json                 the RunResult (status, duration, error per stage); updated after each stage
    <run>/index.html, summary.md   the report (atrlib.runs.reporting.write_index); updated after each stage
    <run>/<stage>/<stage>.ipynb    the executed notebook (partial, up to the error, if it failed)
    <run>/<stage>/<stage>.html     its HTML export (nbconvert)
    <run>/<stage>/metrics.json     whatever the notebook wrote (atrlib.files.write_metrics), ...

Execution: each notebook runs with its working directory set to its own stage folder (so
any file it writes with a relative path lands in the run, never in ``notebooks/``), in a
kernel of the *current* interpreter (``sys.executable``; see :func:`atrlib.runs.environment.resolve_kernel`), with
the folder holding this ``atrlib`` package put first on ``PYTHONPATH`` so the kernel
imports the same atrlib as the runner, installed or not.

A failing stage is recorded as ``failed`` with papermill's error (ename, evalue, cell
index), its partial notebook is still exported to HTML, stages that ``need`` it are
skipped, and independent later stages still run. An existing non-empty run folder is never
mixed with a new run: :func:`run_profile` raises :class:`RunExistsError` unless
``overwrite=True``, which first moves the old run aside to ``<out>.prev-YYYYmmdd-HHMMSS`` —
only a run folder (one holding ``run.json``) is ever moved; any other folder is refused.

``resume=True`` continues a run folder: stages that finished ``ok`` are kept, the others run
again (with ``stages``, only those chosen; the records of the others stay in ``run.json``, the
index and the summary as they were, and a chosen stage's needs may be met by them), and a stage whose notebook declares ``resume`` gets ``resume=True`` so a killed
training continues from its checkpoint. A run whose process died leaves stages ``running``;
the next time the folder is seen they are marked ``interrupted``. Each notebook is executed
into a hidden ``.<stage>.partial.ipynb`` and renamed into place when it ends, so a kill or a
full disk never leaves a truncated ``<stage>.ipynb``.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import time
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

from atrlib.errors import ProfileError, RunExistsError
from atrlib.files import read_metrics, write_json
from atrlib.runs.environment import _environ, environment_info, init_ray, resolve_kernel
from atrlib.runs.profiles import Profile, declared_parameters, default_reports_dir, load_profile, parse_overrides, resolve_parameters, select_stages
from atrlib.runs.records import RunResult, StageResult, _error_record, is_run_folder, mark_interrupted, merged_stages
from atrlib.runs.reporting import write_index


# --------------------------------------------------------------------------------------
# Stages and the run folder
# --------------------------------------------------------------------------------------
def _export_html(exporter, ipynb: Path, html_path: Path) -> None:
    from atrlib.runs.reporting import export_html

    export_html(ipynb, html_path)  # widgets dropped, no CDN scripts: the report opens offline


def _finish_notebook(partial: Path, ipynb: Path, sr: "StageResult") -> None:
    """Move papermill's output into place when it is a complete notebook; a truncated one
    (disk full, killed mid-write) is removed and noted, never left to be read later."""
    import nbformat

    if not partial.is_file():
        return
    try:
        nbformat.read(str(partial), as_version=4)
    except Exception as e:
        partial.unlink(missing_ok=True)
        sr.notes.append(f"the executed notebook could not be written completely ({type(e).__name__}); removed")
        return
    os.replace(partial, ipynb)


def _check_resume(out: Path, prof: "Profile", ov: Mapping[str, Any]) -> "RunResult":
    """The run in ``out`` to continue: it must be a run of the same profile with the same
    overrides (when any are given); stale ``running`` stages are marked interrupted."""
    if not is_run_folder(out):
        raise RunExistsError(f"--resume: {out} holds no run to continue (no run.json); drop --resume to start one")
    previous = mark_interrupted(out)
    if previous.profile != prof.name:
        raise RunExistsError(f"--resume: {out} is a run of profile {previous.profile!r}, not {prof.name!r}")
    if ov:
        old = {k: str(v) for k, v in previous.overrides.items()}
        new = {k: str(v) for k, v in ov.items()}
        if old != new:
            diff = sorted(set(old.items()) ^ set(new.items()))
            raise RunExistsError(f"--resume: the overrides differ from the run's ({diff}); resuming would mix two "
                                 "configurations. Give the same -p values (or none), or start a new run")
    return previous


def _prepare_out(out: Path, overwrite: bool, inputs: Sequence[Any] = ()) -> Optional[Path]:
    """Make ``out`` a fresh empty folder; move a previous run folder aside if allowed
    (:func:`atrlib.files.claim_output`: only a run folder, never a folder holding ``inputs``)."""
    from atrlib.files import claim_output

    if out.is_dir() and is_run_folder(out):
        mark_interrupted(out)  # a run still in progress is never moved
    moved = claim_output(out, "run", overwrite, inputs, what="run folder", error=RunExistsError,
                         also=", --resume to continue it")
    out.mkdir(parents=True, exist_ok=True)
    return moved


# --------------------------------------------------------------------------------------
# Running
def _execute_stage(notebook: str, stage_dir: str, name: str, parameters: dict, kernel: str,
                   kernel_env: Mapping[str, str], cell_progress: bool, execution_timeout: Optional[int],
                   sr: Optional["StageResult"] = None) -> dict:
    """Run one stage notebook into ``stage_dir`` (papermill, then its HTML and metrics.json);
    fills ``sr`` (or a new record) and returns the fields it set. A failing notebook is
    recorded, never raised; an interrupt is recorded and re-raised. Runs here or in an
    executor's worker (:class:`_StageExecutor`)."""
    import papermill
    from nbconvert import HTMLExporter

    sr = sr if sr is not None else StageResult(name=name, notebook=notebook)
    stage_dir = Path(stage_dir)
    stage_dir.mkdir(parents=True, exist_ok=True)
    ipynb = stage_dir / f"{name}.ipynb"
    partial = stage_dir / f".{name}.partial.ipynb"  # papermill rewrites it after each cell
    partial.unlink(missing_ok=True)
    html_path = stage_dir / f"{name}.html"
    t0 = time.perf_counter()
    try:
        with _environ(kernel_env):
            papermill.execute_notebook(
                notebook,
                str(partial),
                parameters=parameters,
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
        _finish_notebook(partial, ipynb, sr)
        if ipynb.is_file():
            sr.output_notebook = str(ipynb)
            try:
                _export_html(HTMLExporter(), ipynb, html_path)
                sr.html = str(html_path)
            except OSError as e:  # disk full, read-only, permission: the stage's report does not exist
                if sr.status == "ok":
                    sr.status = "failed"
                    sr.error = {"ename": "DiskWriteError", "evalue": f"the report page {html_path} could not be "
                                f"written: {e}", "cell_index": None}
                sr.notes.append(f"HTML export failed: {type(e).__name__}: {e}")
            except Exception as e:  # a rendering bug: the executed notebook holds everything
                sr.notes.append(f"HTML export failed: {type(e).__name__}: {e}")
        try:
            sr.metrics = read_metrics(stage_dir)
        except (OSError, json.JSONDecodeError) as e:
            sr.notes.append(f"metrics.json unreadable: {e}")
    return {k: getattr(sr, k) for k in ("status", "error", "duration_s", "output_notebook", "html", "metrics", "notes")}


class _StageExecutor:
    """Stages handed to Ray (``executor="ray"``; a local Ray unless ``address``), 1 CPU each."""

    def __init__(self, kind: str, address: Optional[str] = None):
        if kind != "ray":
            raise ProfileError(f"executor must be 'ray' (or none), not {kind!r}")
        self.started = init_ray(address)
        import ray

        self.ray = ray
        self.remote = ray.remote(_execute_stage).options(num_cpus=1, max_retries=0)

    def submit(self, *args):
        return self.remote.remote(*args)

    def result(self, ref) -> dict:
        try:
            return self.ray.get(ref)
        except Exception as e:  # the worker died: the stage failed
            return {"status": "failed", "error": {"ename": type(e).__name__, "evalue": str(e).splitlines()[0] if str(e) else "",
                                                  "cell_index": None}}

    def close(self, pending) -> None:
        for ref in pending:
            self.ray.cancel(ref, force=True)
        if self.started:
            self.ray.shutdown()


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
    resume: bool = False,
    executor: Optional[str] = None,
    address: Optional[str] = None,
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
    resume : continue the run in ``out``: stages that finished ok are kept, the others run
        again (a stage declaring ``resume`` gets ``resume=True``). Overrides, when given, must
        equal the recorded ones; without them the recorded ones are used.
    executor : ``"ray"`` hands every stage whose ``needs`` are met to Ray (1 CPU each; a local
        Ray unless ``address``, e.g. ``"auto"``), so independent stages run side by side;
        results are still recorded in profile order. Default: one stage after another here.

    Validation errors (:class:`ProfileError`) and :class:`RunExistsError` are raised before
    anything is run or moved. Stage failures are not raised: see ``result.ok``.
    """
    from tqdm.auto import tqdm

    # 1. load and check everything before touching the disk
    if executor not in (None, "ray"):
        raise ProfileError(f"executor must be 'ray' (or none), not {executor!r}")
    prof = profile if isinstance(profile, Profile) else load_profile(profile, Path(notebooks_dir) if notebooks_dir else None)
    ov = parse_overrides(overrides)
    out_dir = Path(out) if out is not None else default_reports_dir() / prof.name
    out_dir = out_dir.resolve()
    previous = _check_resume(out_dir, prof, ov) if resume else None
    if previous is not None and not ov:  # the recorded overrides, typed again from the notebooks
        from atrlib.runs.profiles import RawValue

        ov = {k: RawValue(v) if isinstance(v, str) else v for k, v in previous.overrides.items()}
    done = [s.name for s in previous.stages if s.status == "ok"] if previous is not None else []
    chosen = select_stages(prof, stages, done=done)
    declared = {s.name: declared_parameters(s.notebook) for s in prof.stages}
    resolved = resolve_parameters(prof, ov, out_dir, declared)
    kernel, kernel_env = resolve_kernel(kernel_name)

    # 2. a fresh run folder (or the one resumed), params.json
    if previous is None:
        _prepare_out(out_dir, overwrite, inputs=[prof.path, prof.notebooks_dir])
    started = _dt.datetime.now()
    env_info = environment_info()
    kept = {s.name: s for s in (previous.stages if previous else []) if s.status == "ok"}
    result = RunResult(
        profile=prof.name,
        run_dir=str(out_dir),
        description=prof.description,
        started=started.isoformat(timespec="seconds"),
        overrides=ov,
        environment=env_info,
        stages=merged_stages([s.name for s in prof.stages],
                             {s.name: kept.get(s.name) or StageResult(name=s.name, notebook=str(s.notebook),
                                                                      parameters=resolved[s.name]) for s in chosen},
                             previous),
        pid=os.getpid(),
        host=platform.node(),
    )
    for s in chosen:  # a re-run stage continues its training from the checkpoint
        if s.name not in kept and previous is not None and "resume" in declared[s.name]:
            resolved[s.name]["resume"] = True
    write_json(
        out_dir / ("params.json" if previous is None else f"params.resume-{started:%Y%m%d-%H%M%S}.json"),
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

    # 3. the stages, in order; with an executor, every stage whose needs are met runs ahead
    t_run = time.perf_counter()
    pool = _StageExecutor(executor, address) if executor else None
    ahead: dict[str, Any] = {}

    def submit_ready() -> None:
        if pool is None:
            return
        for st in chosen:
            r = result.stage(st.name)
            if (r.status == "pending" and st.name not in ahead and st.name not in kept
                    and all(result.stage(n).status == "ok" for n in st.needs)):
                r.status = "running"
                ahead[st.name] = pool.submit(str(st.notebook), str(out_dir / st.name), st.name, resolved[st.name],
                                             kernel, kernel_env, False, execution_timeout)
        save()

    bar = tqdm(total=len(chosen), desc=f"run {prof.name}", unit="stage", disable=not progress)
    try:
        submit_ready()
        for stage in chosen:
            sr = result.stage(stage.name)
            bar.set_postfix_str(stage.name)
            if stage.name in kept:
                bar.write(f"  {stage.name}: ok in an earlier attempt, kept")
                bar.update(1)
                continue
            blocked = [n for n in stage.needs if result.stage(n).status != "ok"]
            if blocked:
                sr.status = "skipped"
                sr.skipped_reason = "needs " + ", ".join(f"{n} ({result.stage(n).status})" for n in blocked)
                bar.write(f"  {stage.name}: skipped ({sr.skipped_reason})")
                bar.update(1)
                save()
                continue

            sr.status, sr.error, sr.skipped_reason = "running", None, None
            save()
            if stage.name in ahead:  # handed to the executor earlier: collect it
                for k, v in pool.result(ahead.pop(stage.name)).items():
                    setattr(sr, k, v)
            else:
                _execute_stage(str(stage.notebook), str(out_dir / stage.name), stage.name, resolved[stage.name],
                               kernel, kernel_env, cell_progress, execution_timeout, sr)
            save()
            submit_ready()
            msg = f"  {stage.name}: {sr.status} in {sr.duration_s:.1f} s"
            if sr.error:
                msg += f" ({sr.error.get('ename')}: {sr.error.get('evalue')})"
            bar.write(msg)
            bar.update(1)
    finally:
        bar.close()
        if pool is not None:
            pool.close(list(ahead.values()))
        for sr in result.stages:  # after an interrupt, nothing stays pending
            if sr.status in ("pending", "running"):
                sr.status, sr.skipped_reason = "skipped", "run interrupted"
        result.finished = _dt.datetime.now().isoformat(timespec="seconds")
        result.duration_s = round(time.perf_counter() - t_run, 3)
        save()
    return result
