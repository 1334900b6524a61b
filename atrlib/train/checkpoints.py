"""Training checkpoints: ``last/`` after every epoch, ``best/`` at each new best, swapped in atomically.

Each is written to a temporary folder and swapped in with two renames, so a kill never leaves
a broken checkpoint (a kill between the renames leaves ``last.old``, which
:func:`find_checkpoint` falls back to). ``trainer.pt`` loads with ``weights_only=True``.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional

import torch

from atrlib.files import SHORT_WRITE, DiskWriteError, dir_mode, explain_os_error, explain_write_failure, file_mode, write_json
from atrlib.models.dual import DualEncoder, save_model


def _swap_in(tmp: Path, final: Path) -> None:
    """Replace folder ``final`` by the complete folder ``tmp`` with two renames; a kill between
    them leaves ``final.old`` (which :func:`find_checkpoint` falls back to)."""
    old = final.with_name(final.name + ".old")
    if old.exists() and final.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)


def _staged(out: Path, name: str, write) -> Path:
    """Write a checkpoint folder through ``write(tmp)`` into a temporary sibling (the user's
    normal folder mode, not mkdtemp's 0700) and swap it in as ``out/name``. A full disk or a
    read-only folder raises :class:`~atrlib.files.DiskWriteError` in words and leaves the
    previous checkpoint and no partial folder."""
    tmp = None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=out))
        os.chmod(tmp, dir_mode())
        write(tmp)
        for f in tmp.iterdir():  # safetensors writes 0600: give every file the user's normal mode
            os.chmod(f, file_mode())
        _swap_in(tmp, out / name)
    except Exception as e:  # (a kill is not an Exception: clean_partial_saves removes its leftovers)
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise explain_os_error(e, out / name) from e
        text = str(e)  # torch / safetensors wrap write errors in RuntimeError ("No space left on device")
        if isinstance(e, RuntimeError) and ("No space left" in text or "Read-only" in text or "Permission denied" in text):
            import errno

            code = errno.ENOSPC if "No space" in text else errno.EROFS if "Read-only" in text else errno.EACCES
            raise explain_os_error(OSError(code, text), out / name) from e
        if isinstance(e, RuntimeError) and any(s in text for s in SHORT_WRITE):  # a short write: the disk filled up
            import errno

            raise DiskWriteError(errno.ENOSPC, f"{explain_write_failure(e, out / name / 'x')} (writing {out / name})") from e
        raise
    return out / name


def save_checkpoint(out: Path, model: DualEncoder, optimizer, scheduler, state: dict) -> Path:
    """``out/last/``: model (safetensors), trainer state (optimizer, scheduler, RNG) and
    ``state.json`` (epoch, step, history, best), written atomically."""
    def write(tmp: Path) -> None:
        save_model(model, tmp)
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict() if scheduler else None,
                    "torch_rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}, tmp / "trainer.pt")
        write_json(tmp / "state.json", state)

    return _staged(out, "last", write)


def find_checkpoint(out: Path) -> Optional[Path]:
    """``out/last`` (or ``last.old`` when a kill fell between the two renames of a swap)."""
    for d in (out / "last", out / "last.old"):
        if all((d / f).exists() for f in ("state.json", "trainer.pt", "model.safetensors", "config.json")):
            return d
    return None


def save_best(out: Path, model: DualEncoder) -> None:
    _staged(out, "best", lambda tmp: save_model(model, tmp))


def clean_partial_saves(out: Path) -> None:
    """Remove temporary folders a kill left mid-save (never a complete checkpoint)."""
    for d in list(out.glob(".last.*")) + list(out.glob(".best.*")):
        shutil.rmtree(d, ignore_errors=True)
