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

from atrlib.files import write_json
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


def save_checkpoint(out: Path, model: DualEncoder, optimizer, scheduler, state: dict) -> Path:
    """``out/last/``: model (safetensors), trainer state (optimizer, scheduler, RNG) and
    ``state.json`` (epoch, step, history, best), written atomically."""
    tmp = Path(tempfile.mkdtemp(prefix=".last.", dir=out))
    save_model(model, tmp)
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict() if scheduler else None,
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}, tmp / "trainer.pt")
    write_json(tmp / "state.json", state)
    _swap_in(tmp, out / "last")
    return out / "last"


def find_checkpoint(out: Path) -> Optional[Path]:
    """``out/last`` (or ``last.old`` when a kill fell between the two renames of a swap)."""
    for d in (out / "last", out / "last.old"):
        if all((d / f).exists() for f in ("state.json", "trainer.pt", "model.safetensors", "config.json")):
            return d
    return None


def save_best(out: Path, model: DualEncoder) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=".best.", dir=out))
    save_model(model, tmp)
    _swap_in(tmp, out / "best")


def clean_partial_saves(out: Path) -> None:
    """Remove temporary folders a kill left mid-save (never a complete checkpoint)."""
    for d in list(out.glob(".last.*")) + list(out.glob(".best.*")):
        shutil.rmtree(d, ignore_errors=True)
