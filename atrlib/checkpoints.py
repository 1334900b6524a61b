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

from atrlib.files import dir_mode, explain_os_error, file_mode, write_json
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
        tmp = None
    except OSError as e:
        raise explain_os_error(e, out / name) from e
    except RuntimeError as e:  # torch / safetensors wrap write errors ("No space left on device")
        if "No space left" in str(e) or "Read-only" in str(e) or "Permission denied" in str(e):
            import errno

            code = errno.ENOSPC if "No space" in str(e) else errno.EROFS if "Read-only" in str(e) else errno.EACCES
            raise explain_os_error(OSError(code, str(e)), out / name) from e
        raise
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
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
