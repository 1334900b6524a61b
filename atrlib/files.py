"""Files a run leaves behind: one atomic writer, JSON / ``metrics.json`` I/O, content hashes.

Everything that writes a file the workbench reads back later (metrics, parameters, the
feature cache, similarity matrices, downloaded or converted weights) goes through
:func:`atomic_path`: the bytes go to a temporary file in the destination folder, which is
renamed over the destination only once complete. A killed process or a full disk leaves either
the old file or the new one, never half of one, and no stray temporary file.

A stage's ``metrics.json`` is any JSON object. Nested dicts show in reports as flattened keys
(``{"t2a": {"mAP@10": 0.3}}`` -> ``t2a/mAP@10``); a ``"key_metrics"`` list of flattened keys
names the numbers a run's ``index.html`` shows for the stage.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import errno
import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, Mapping, Optional, Tuple

import numpy as np

from atrlib.errors import DiskWriteError, OutputExistsError

__all__ = [
    "atomic_path", "write_text_atomic", "write_bytes_atomic", "save_npy_atomic", "file_mode", "dir_mode", "DiskWriteError",
    "move_aside", "check_writable", "output_kind", "check_output", "claim_output", "OUTPUT_MARKER",
    "write_json", "read_json", "write_metrics", "read_metrics",
    "file_sha256", "content_hash",
]


def file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give a new file (0o666 less the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def dir_mode() -> int:
    """The mode a plain ``mkdir`` would give a new folder (0o777 less the umask; mkdtemp gives 0700)."""
    return 0o777 & ~_umask()


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


SHORT_WRITE = ("unexpected pos", "PytorchStreamWriter failed writing", "requested and")  # torch, numpy


def _explain(exc: BaseException, path: Path, needed: Optional[int]) -> Optional[str]:
    need = f": about {needed / 1e6:.1f} MB needed" if needed else ""
    if getattr(exc, "errno", None) is None and any(s in str(exc) for s in SHORT_WRITE):
        # torch.save / numpy report a short write without an errno: the disk filled up mid-file
        try:
            free = f", {shutil.disk_usage(path.parent).free / 1e6:.1f} MB free now"
        except OSError:
            free = ""
        return f"the write stopped short (the disk holding {path.parent} is probably full{free}){need}; free space " \
               "or point the output elsewhere"
    if getattr(exc, "errno", None) == errno.ENOSPC:
        return f"no space left on the disk holding {path.parent}{need}; free space or point the output elsewhere"
    if exc.errno in (errno.EROFS,):
        return f"{path.parent} is on a read-only file system; choose a writable output folder"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"no permission to write in {path.parent}; choose a folder you can write to"
    return None


def explain_write_failure(exc: BaseException, path: str | os.PathLike) -> Optional[str]:
    """Words for a failed write of ``path`` (disk full, a short write, read-only, permission),
    or None when ``exc`` is none of those."""
    return _explain(exc, Path(path), None)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp", needed_bytes: Optional[int] = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed over ``path``.

    Parent folders are created. The file gets the user's normal mode (not mkstemp's 0600).
    On any exception the temporary file is removed and the exception re-raised; disk-full,
    read-only and permission errors are re-raised as :class:`DiskWriteError` saying, in words,
    what happened and where.
    """
    path = Path(path)
    tmp: Optional[str] = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
        os.close(fd)
        os.chmod(tmp, file_mode())
        yield Path(tmp)
        os.replace(tmp, path)
        tmp = None
    except (OSError, RuntimeError) as e:
        msg = _explain(e, path, needed_bytes)
        if msg is not None and not isinstance(e, DiskWriteError):
            raise DiskWriteError(getattr(e, "errno", None) or errno.ENOSPC, f"{msg} (writing {path})") from e
        raise
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def explain_os_error(exc: OSError, path: str | os.PathLike, needed_bytes: Optional[int] = None) -> OSError:
    """``exc`` as a :class:`DiskWriteError` in words when it is disk-full / read-only /
    permission, else ``exc`` itself (for ``raise explain_os_error(e, path) from e``)."""
    if isinstance(exc, DiskWriteError):
        return exc
    msg = _explain(exc, Path(path) if not Path(path).is_dir() else Path(path) / "x", needed_bytes)
    return DiskWriteError(exc.errno, f"{msg} (writing {path})") if msg else exc


def check_writable(path: str | os.PathLike, what: str = "output") -> Path:
    """Fail early, before any work, when ``path`` (a file or folder to be written) cannot be
    written: its nearest existing parent must be a writable folder. Creates nothing.

    Raises :class:`DiskWriteError` naming the path (read-only / permission), or
    ``NotADirectoryError`` when a parent is a file.
    """
    path = Path(path).absolute()
    parent = path if path.is_dir() else path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise NotADirectoryError(f"{what} {path}: {parent} is a file, not a folder")
    try:  # a real probe: os.access lies for root and on read-only mounts
        fd, probe = tempfile.mkstemp(prefix=".atrlib-write-check.", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.EINVAL, errno.EPERM, errno.EACCES, errno.EROFS, errno.EISDIR):
            raise DiskWriteError(f"{what} {path}: cannot write into {parent} ({e.strerror or e}); choose a folder "
                                 f"you can write to") from e
        raise explain_os_error(e, parent / "x") from e
    return path


def move_aside(path: str | os.PathLike) -> Path:
    """Rename ``path`` (file or folder) to ``<path>.prev-YYYYmmdd-HHMMSS[-k]`` beside it and
    return the new path: an earlier result is kept, never destroyed or mixed with a new one."""
    path = Path(path)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    moved = path.with_name(f"{path.name}.prev-{stamp}")
    k = 1
    while moved.exists():
        moved = path.with_name(f"{path.name}.prev-{stamp}-{k}")
        k += 1
    os.rename(path, moved)
    return moved


# --------------------------------------------------------------------------------------
# Outputs: what ``--overwrite`` may move aside (only what the command itself wrote before)
# --------------------------------------------------------------------------------------
OUTPUT_MARKER = "atrlib_output"  # key of an output folder's metrics.json naming its kind ("evaluation")
SEARCH_COLUMNS = ("query", "rank", "file", "score")  # the first columns of a ranking CSV `atrlib search` writes
_EVALUATION_FILES = ("metrics.json", "params.json", "rerank.json")  # with sim_*.npz: all `atrlib evaluate` writes
OUTPUT_KINDS = {  # kind -> how a message names it (and the files that mark it)
    "search": "a ranking CSV written by `atrlib search` (columns query,rank,file,score)",
    "evaluation": "an evaluation written by `atrlib evaluate` (metrics.json, sim_*.npz)",
    "training": "a training run (best/, last/, history.json)",
    "run": "a run folder of `atrlib run` (run.json)",
    "store": "an embedding store (store.json)",
    "sweep": "a sweep folder (sweep.json)",
    "model": "a saved model (config.json + model.safetensors)",
}


def _csv_columns(path: Path) -> Tuple[str, ...]:
    try:
        with open(path, "rb") as f:
            head = f.read(4096).split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    except OSError:
        return ()
    return tuple(c.strip().strip('"') for c in head.split(","))


def output_kind(path: str | os.PathLike) -> Optional[str]:
    """Which atrlib output ``path`` is, recognised by the files each writer leaves: a key of
    :data:`OUTPUT_KINDS`, or None for anything else (a user's own file or folder, a missing path).

    An evaluation folder carries ``"atrlib_output": "evaluation"`` in its ``metrics.json``; one
    written before that marker existed is recognised when it holds nothing but what
    ``atrlib evaluate`` writes. A training run is recognised by ``best/``, ``last/`` or
    ``history.json``; a batch run by ``run.json``; a ranking CSV by its header."""
    p = Path(path)
    if p.is_file():
        return "search" if _csv_columns(p)[:len(SEARCH_COLUMNS)] == SEARCH_COLUMNS else None
    if not p.is_dir():
        return None
    for marker, kind in (("run.json", "run"), ("sweep.json", "sweep"), ("store.json", "store")):
        if (p / marker).is_file():
            return kind
    if any((p / m).exists() for m in ("best", "last", "last.old", "history.json")):
        return "training"
    if (p / "config.json").is_file() and (p / "model.safetensors").is_file():
        return "model"
    try:
        data = read_json(p / "metrics.json") if (p / "metrics.json").is_file() else None
    except (OSError, ValueError):
        data = None
    if isinstance(data, dict) and data.get(OUTPUT_MARKER) in OUTPUT_KINDS:
        return str(data[OUTPUT_MARKER])
    names = [c.name for c in p.iterdir()]
    if names and all(n in _EVALUATION_FILES or (n.startswith("sim_") and n.endswith(".npz")) for n in names) \
            and any(n == "metrics.json" or n.endswith(".npz") for n in names):
        return "evaluation"
    return None


def _same_or_inside(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def check_output(path: str | os.PathLike, kind: str, overwrite: bool = False, inputs: Iterable[Any] = (),
                 what: str = "--out", error: type = OutputExistsError, also: str = "") -> bool:
    """Check, before any work, that ``path`` may receive a new output of ``kind`` (a key of
    :data:`OUTPUT_KINDS`); True when an earlier output of that kind is there to move aside.

    The one rule of every command with ``--overwrite``: a new or empty path is fine; an
    existing one is refused unless ``overwrite``, and even then only an earlier output of the
    same ``kind`` (:func:`output_kind`) is moved — never one of ``inputs`` (the files and
    folders the command reads) or a folder holding one, never a user's own file or folder, never
    a run of another kind, never the working directory. ``error`` is raised (default
    :class:`OutputExistsError`) with a message saying why and what to do; ``also`` adds an
    option to the "pass --overwrite" hint (e.g. ``", --resume to continue it"``).
    """
    out = Path(path)
    real = Path(os.path.realpath(out))
    for inp in inputs:
        if inp is None or str(inp) == "" or not Path(inp).exists():
            continue
        src = Path(os.path.realpath(inp))
        if _same_or_inside(src, real):
            which = "is" if src == real else f"holds {inp}, which is"
            raise error(f"{what} {out} {which} an input of this command; an output never replaces or moves "
                        f"what the command reads. Choose another {what}")
    file_kind = kind == "search"
    if out.exists() and out.is_dir() == file_kind:
        shape = "a folder; it names the CSV file to write" if file_kind else "a file; it names the folder to write into"
        raise error(f"{what} {out} is {shape}. Choose another {what}")
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        check_writable(out, what)
        return False
    found = output_kind(out)
    noun = OUTPUT_KINDS[kind].split(" (")[0]
    if found == kind and not overwrite:
        raise error(f"{what} {out} already holds {OUTPUT_KINDS[kind]} (it already exists); refusing to replace an "
                    f"earlier result. Pass --overwrite to move it aside to {out.name}.prev-<time>{also}, or choose "
                    f"another {what}")
    if found != kind:
        is_what = OUTPUT_KINDS[found] if found else "not something atrlib wrote (a file or folder of your own)"
        tail = ("--overwrite only moves aside an earlier output of this command, never other files or runs"
                if overwrite else "refusing to write into it")
        raise error(f"{what} {out} already exists and is {is_what}, not {noun}; {tail}. Choose a new or empty {what}")
    cwd = Path.cwd().resolve()
    if _same_or_inside(cwd, real):
        raise error(f"{what} {out} holds the current working directory; run from elsewhere to move it aside")
    check_writable(out.parent, what)
    return True


def claim_output(path: str | os.PathLike, kind: str, overwrite: bool = False, inputs: Iterable[Any] = (),
                 what: str = "--out", error: type = OutputExistsError, also: str = "") -> Optional[Path]:
    """:func:`check_output`, then move the earlier output aside; returns where it went (None: nothing moved)."""
    if not check_output(path, kind, overwrite, inputs, what, error, also):
        return None
    moved = move_aside(path)
    short = {"search": "ranking", "training": "training run"}.get(kind, kind)
    print(f"moved the previous {short} {Path(path)} -> {moved}")
    return moved


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically, flushed to disk before the rename."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically, flushed to disk before the rename."""
    with atomic_path(path, needed_bytes=len(data)) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def save_npy_atomic(path: str | os.PathLike, value: np.ndarray) -> Path:
    """``np.save`` atomically: never a half-written ``.npy``."""
    arr = np.asarray(value)
    with atomic_path(path, needed_bytes=arr.nbytes) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, arr, allow_pickle=False)
    return Path(path)


# --------------------------------------------------------------------------------------
# JSON and metrics.json
# --------------------------------------------------------------------------------------
def _to_jsonable(obj: Any) -> Any:
    """Plain JSON types from numpy scalars/arrays, tensors, paths, dataclasses, sets, dates.

    Non-finite floats (NaN, ±inf) become ``None`` so the file is strict JSON that any
    reader (browsers, jq, pandas) accepts.
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):  # includes numpy.float64
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return [_to_jsonable(v) for v in sorted(obj, key=repr)]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (_dt.datetime, _dt.date)):
        return obj.isoformat()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _to_jsonable(dataclasses.asdict(obj))
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return _to_jsonable(obj.to_dict())
    # numpy scalars and arrays, torch tensors: .tolist() gives Python numbers / nested lists
    if hasattr(obj, "tolist") and callable(obj.tolist):
        return _to_jsonable(obj.tolist())
    if hasattr(obj, "item") and callable(obj.item):
        return _to_jsonable(obj.item())
    raise TypeError(f"cannot write {type(obj).__name__} to JSON: {obj!r:.80}")


def write_json(path: str | os.PathLike, obj: Any, *, indent: int = 2) -> Path:
    """Write ``obj`` to ``path`` as JSON, atomically.

    The text is built first (so an unserialisable object leaves no file behind). Handles numpy
    scalars/arrays and tensors; NaN/inf are written as ``null``. Returns the path.
    """
    text = json.dumps(_to_jsonable(obj), indent=indent, ensure_ascii=False, allow_nan=False) + "\n"
    return write_text_atomic(path, text)


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_metrics(out_dir: str | os.PathLike, metrics: Mapping[str, Any], params: Optional[Mapping[str, Any]] = None,
                  *, key_metrics: Optional[Iterable[str]] = None) -> Path:
    """Write ``<out_dir>/metrics.json`` (and ``<out_dir>/params.json`` when ``params`` is given).

    ``key_metrics`` (flattened keys such as ``"t2a/mAP@10"``) is stored in the file as
    ``"key_metrics"``; the run's ``index.html`` then shows exactly those numbers for this
    stage. Returns the path of ``metrics.json``.
    """
    out_dir = Path(out_dir)
    record = dict(metrics)
    if key_metrics is not None:
        record["key_metrics"] = list(key_metrics)
    path = write_json(out_dir / "metrics.json", record)
    if params is not None:
        write_json(out_dir / "params.json", dict(params))
    return path


def read_metrics(stage_dir: str | os.PathLike) -> Optional[dict]:
    """``<stage_dir>/metrics.json`` as a dict, or None when the stage wrote none."""
    p = Path(stage_dir) / "metrics.json"
    if not p.is_file():
        return None
    data = read_json(p)
    return data if isinstance(data, dict) else {"value": data}


# --------------------------------------------------------------------------------------
# Content hashes
# --------------------------------------------------------------------------------------
def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes (the feature cache and the leakage audit key on it)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


_HASH_MEMO: Dict[Tuple[str, int, int], str] = {}


def content_hash(path: str | os.PathLike) -> str:
    """:func:`file_sha256`, memoised per (path, size, mtime) within the process."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASH_MEMO:
        _HASH_MEMO[key] = file_sha256(p)
    return _HASH_MEMO[key]
