"""The records a run folder keeps: each stage's outcome, the run's, and what a run folder is.

:class:`RunResult` (saved as ``<run>/run.json`` after every stage) holds one
:class:`StageResult` per stage: status, duration, parameters, metrics, error and notes. A runner
that was killed leaves stages ``running``; :func:`mark_interrupted` marks them ``interrupted``
the next time the folder is seen, unless the run's process is still alive. :func:`merged_stages`
keeps a resumed run's earlier records beside the stages run again. :func:`is_run_folder`
tells a folder the batch runner made (it holds ``run.json``) from any other.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

from atrlib.errors import RunExistsError
from atrlib.files import read_json, write_json
from atrlib.runs.reporting import write_index

STATUSES = ("ok", "failed", "skipped", "interrupted")


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
    pid: Optional[int] = None  # the runner's process (to tell a live run from a killed one)
    host: Optional[str] = None

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


def _alive(pid: Optional[int], host: Optional[str]) -> bool:
    if not pid or host != platform.node():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def mark_interrupted(run_dir: Union[str, Path]) -> Optional[RunResult]:
    """Load ``<run_dir>/run.json``; stages left ``running`` / ``pending`` by a runner that is
    gone are marked ``interrupted`` (and the file rewritten). None when there is no run.json;
    :class:`RunExistsError` when the run's process is still alive."""
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        return None
    try:
        result = RunResult.load(run_dir)
    except (OSError, ValueError, TypeError) as e:
        raise RunExistsError(f"{path} cannot be read ({e}); move the folder away by hand") from None
    open_stages = [s for s in result.stages if s.status in ("running", "pending")]
    if open_stages and result.finished is None and _alive(result.pid, result.host):
        raise RunExistsError(f"{run_dir} is in use by a run still in progress (process {result.pid}); "
                             "wait for it or stop it first")
    if open_stages:
        for s in open_stages:
            s.status, s.skipped_reason = "interrupted", "the run was killed before this stage finished"
        result.finished = result.finished or _dt.datetime.now().isoformat(timespec="seconds")
        write_json(path, result)
        try:
            write_index(Path(run_dir), result)
        except Exception:  # the report is secondary; run.json is what resume reads
            pass
    return result


def merged_stages(all_stages: Sequence[str], chosen: Mapping[str, StageResult],
                  previous: Optional[RunResult]) -> list[StageResult]:
    """The stage records of a run folder after this call: those of the ``chosen`` stages (name
    -> record), and, for a resumed run, every earlier record of a stage not chosen this time —
    kept as it was, so ``run --resume --stages 04,05`` never drops the finished 01-03 from
    ``run.json``, the index or the summary. Profile order (``all_stages``); earlier stages the
    profile no longer lists come last."""
    earlier = {s.name: s for s in (previous.stages if previous else [])}
    order = list(all_stages) + [n for n in earlier if n not in all_stages]
    return [chosen[n] if n in chosen else earlier[n] for n in order if n in chosen or n in earlier]


def is_run_folder(path: Path) -> bool:
    """True for a folder this runner made (it holds ``run.json``)."""
    return (Path(path) / "run.json").is_file()
