"""Checks made before any work starts: parameter values, the output folder, a resumed run's
configuration, and train / validation / test splits that share clips.

Each check fails with a message that names the parameter, folder or clips and the fix, so a
mistake costs a second, not an hour of training followed by a silently wrong result.

(The value rules of each field — ``epochs=abc``, ``batch_size=0`` … — live beside the fields, in
:mod:`atrlib.train.config`.)
- :func:`prepare_out_dir` — a training folder that already holds a run is refused unless the
  run is resumed (same configuration, else the differences are named) or moved aside.
- :func:`split_overlap` / :func:`check_split_overlap` — clips present in more than one split.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

from atrlib.errors import PreflightError


# --------------------------------------------------------------------------------------------
# the training folder
# --------------------------------------------------------------------------------------------
RUN_MARKERS = ("metrics.json", "history.json", "best", "last", "last.old")
# fields that may change between a run and its resumption: bookkeeping and hardware, and where
# to stop (epochs, patience: continuing a finished run for more epochs is a resume, not a new run;
# the history records each epoch's learning rate)
RESUME_FREE = ("resume", "overwrite", "progress", "log_every", "_debug_exit_at_step", "num_workers", "report_to",
               "tracking_dir", "tracking_group", "tracking_run",
               "embed_batch_size", "device", "out_dir", "preload_audio", "epochs", "patience")


def holds_run(folder: Path) -> List[str]:
    """Which training outputs ``folder`` holds (empty: none)."""
    return [m for m in RUN_MARKERS if (Path(folder) / m).exists()]


def config_differences(old: Mapping[str, Any], new: Mapping[str, Any],
                       ignore: Iterable[str] = RESUME_FREE) -> Dict[str, Tuple[Any, Any]]:
    """``{field: (old, new)}`` for every field whose value differs (JSON-normalised). A field
    the old configuration lacks (a run made before the option existed) counts as its
    :class:`~atrlib.train.config.TrainConfig` default, so adding an option does not orphan old runs."""
    import json
    from dataclasses import MISSING, fields

    from atrlib.train.config import TrainConfig

    def norm(v):
        return json.loads(json.dumps(v, default=str))

    defaults = {f.name: (f.default if f.default is not MISSING else f.default_factory())
                for f in fields(TrainConfig) if f.default is not MISSING or f.default_factory is not MISSING}
    old = {**{k: v for k, v in defaults.items() if k not in old and k in new}, **old}
    skip = set(ignore)
    keys = (set(old) | set(new)) - skip
    return {k: (old.get(k), new.get(k)) for k in sorted(keys) if norm(old.get(k)) != norm(new.get(k))}


def schedule_follows_epochs(cfg: Mapping[str, Any]) -> bool:
    """Whether the learning rate at a step depends on the total number of epochs: the cosine
    schedule decays over all steps, and a warm-up given as a fraction is a share of all steps."""
    warmup = float(cfg.get("warmup", 0.05))
    scheduler = cfg.get("scheduler", "cosine")
    return scheduler == "cosine" or (scheduler == "none" and 0 < warmup < 1)


def describe_schedule(cfg: Mapping[str, Any]) -> str:
    warmup = float(cfg.get("warmup", 0.05))
    w = f"a warm-up of {warmup:g} of all steps" if 0 < warmup < 1 else (f"{warmup:g} warm-up steps" if warmup else "")
    return ", ".join(x for x in (f"{cfg.get('scheduler', 'cosine')}", w) if x)


def prepare_out_dir(cfg) -> Optional[Path]:
    """Make ``cfg.out_dir`` safe to train into; returns where an earlier run was moved, if any.

    - empty or new folder: fine;
    - it holds a run and ``cfg.resume``: the checkpoint's configuration must equal ``cfg``
      (except :data:`RESUME_FREE` fields), else :class:`PreflightError` naming each difference;
    - it holds a run and ``cfg.overwrite``: the folder is moved aside to ``<out_dir>.prev-<time>``;
    - it holds a run otherwise: :class:`PreflightError` saying what is there and the options.
    """
    from atrlib.files import check_writable, move_aside, read_json

    out = Path(cfg.out_dir)
    check_writable(out, "training out_dir")
    found = holds_run(out) if out.is_dir() else []
    if not found:
        return None
    if cfg.resume:
        state = None
        for d in ("last", "last.old"):
            if (out / d / "state.json").is_file():
                state = read_json(out / d / "state.json")
                break
        if state is None and (out / "params.json").is_file():
            state = {"config": read_json(out / "params.json")}
        old = (state or {}).get("config")
        if old is not None:
            new = cfg.to_dict()
            if ("epochs" in old and old["epochs"] != new["epochs"] and schedule_follows_epochs(new)):
                raise PreflightError(
                    f"{out}: cannot resume with epochs {old['epochs']} -> {new['epochs']}: the learning-rate "
                    f"schedule ({describe_schedule(new)}) is laid out over all epochs, so the resumed run would "
                    f"continue a different schedule than a fresh {new['epochs']}-epoch run and its result would match "
                    f"neither. Resume with epochs={old['epochs']}, train a fresh run with epochs={new['epochs']} into "
                    f"a new out_dir, or use scheduler=plateau (or none without a fractional warm-up), whose schedule "
                    f"does not depend on the number of epochs.")
            diff = config_differences(old, new)
            if diff:
                listing = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
                raise PreflightError(
                    f"{out}: cannot resume with a changed configuration ({listing}); resuming would mix two "
                    f"trainings in one history. Resume with the original values, or train into a new out_dir "
                    f"(or pass overwrite=True with resume=False to move the old run aside).")
        return None
    if getattr(cfg, "overwrite", False):
        moved = move_aside(out)
        print(f"moved the previous training run {out} -> {moved}")
        return moved
    raise PreflightError(
        f"{out} already holds a training run ({', '.join(found)}); refusing to replace it. Pass resume=True "
        f"to continue it, overwrite=True to move it aside to {out.name}.prev-<time>, or choose another out_dir.")


# --------------------------------------------------------------------------------------------
# splits that share clips
# --------------------------------------------------------------------------------------------
def _clip_key(item) -> str:
    return os.path.realpath(item["audio_path"])


def split_overlap(data: Mapping[str, Any]) -> Dict[str, List[str]]:
    """``{"train/test": [clip ids...], ...}`` for each pair of splits in ``data`` (role ->
    dataset) that share audio files (same real path). Empty when the splits are disjoint."""
    roles = [r for r in ("train", "val", "test") if r in data] + [r for r in data if r not in ("train", "val", "test")]
    keys = {r: {_clip_key(it): it["clip_id"] for it in data[r].items} for r in roles}
    out: Dict[str, List[str]] = {}
    for i, a in enumerate(roles):
        for b in roles[i + 1:]:
            shared = sorted(keys[a][k] for k in set(keys[a]) & set(keys[b]))
            if shared:
                out[f"{data[a].split}/{data[b].split}" if data[a].split != data[b].split else f"{a}/{b}"] = shared
    return out


def overlap_note(overlap: Mapping[str, List[str]]) -> str:
    """One sentence for reports: which splits share how many clips, and what that means."""
    parts = ", ".join(f"{k}: {len(v)} clip{'s' if len(v) != 1 else ''}" for k, v in overlap.items())
    return (f"Training and evaluation share clips ({parts}); scores on shared clips measure memory, "
            "not retrieval of unseen sounds, and are not comparable with results on disjoint splits.")


def check_split_overlap(data: Mapping[str, Any], allow: bool = False) -> Dict[str, List[str]]:
    """Raise :class:`PreflightError` naming the shared clips unless ``allow``; returns the overlap."""
    overlap = split_overlap(data)
    if overlap and not allow:
        lines = "; ".join(f"{k} share {len(v)} clip(s): {', '.join(v[:5])}{' ...' if len(v) > 5 else ''}"
                          for k, v in overlap.items())
        raise PreflightError(
            f"the splits overlap ({lines}): the model would be tested on clips it trained on. Give the dataset real "
            f"splits (folder: a 'split' column in captions.csv, or the seeded split by file name), or pass "
            f"allow_split_overlap=True to train anyway (metrics.json then records the overlap).")
    return overlap
