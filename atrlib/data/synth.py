"""The embedded procedural dataset ``synth``: synthesised clips with grammar-made captions.

Nothing is downloaded or committed: :func:`generate_synth` builds the whole dataset from a
seed with numpy (deterministic: same parameters give byte-identical files) and
:func:`load_synth` (registered as ``"synth"``) reads it back as an
:class:`~atrlib.data.base.AudioCaptionDataset`. It is the default dataset of ``make demo``:
small enough to generate and train on a laptop CPU in minutes, structured enough that
retrieval is learnable but not trivial.

The clips' attribute space is :mod:`atrlib.data.synth_scenes`, their sound
:mod:`atrlib.data.synth_audio` and their captions :mod:`atrlib.data.synth_captions`;
this module samples whole clip specs, writes them to disk and loads them back.

On-disk layout (Clotho-like), under ``root``
(default ``cache_dir()/"synth"/f"{size}-seed{seed}-sr{sample_rate}"``)::

    root/synth_audio_{split}/{clip_id}.wav     mono PCM_16 wav at sample_rate
    root/synth_captions_{split}.csv            file_name,caption_1,...,caption_5 (UTF-8)
    root/synth_metadata_{split}.json           {"split", "sample_rate", "clip_seconds",
                                               "generator_version", "clips": [spec, ...]}
    root/DONE                                  JSON: generator version, parameters, hash

for split in ``train``, ``validation``, ``test`` (clip ids ``train_0007``, ``val_0003``,
``test_0012``). A *spec* (one entry of ``clips``) holds the clip id, duration, family,
variant, background, events (attributes, onset/offset in seconds, levels, frequencies,
noise seeds), relations and captions; :func:`render_clip` turns a spec back into the
exact samples.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np

from atrlib.data.base import DATASETS, AudioCaptionDataset, ClipItem, resolve_split
from atrlib.data.synth_audio import render_clip
from atrlib.data.synth_captions import N_CAPTIONS, describe_clip, make_captions
from atrlib.data.synth_scenes import (ATTR_VALUES, BACKGROUNDS, EVENT_ATTRS, EVENT_KINDS, RELATIONS, SAMPLE_RATE, _mutate,
                                      _realise,
                                      _sample_attributes)
from atrlib.paths import cache_dir

GENERATOR_VERSION = "synth-1"
SPLITS = ("train", "validation", "test")
_ID_PREFIX = {"train": "train", "validation": "val", "test": "test"}


@dataclass(frozen=True)
class SynthSize:
    """How many clips per split and how long each one is."""

    n_train: int
    n_validation: int
    n_test: int
    clip_seconds: float

    def count(self, split: str) -> int:
        return {"train": self.n_train, "validation": self.n_validation, "test": self.n_test}[split]


SIZES: Dict[str, SynthSize] = {
    "tiny": SynthSize(24, 8, 8, 3.0),     # tests
    "smoke": SynthSize(64, 24, 24, 4.0),  # notebook smoke runs
    "demo": SynthSize(320, 80, 80, 5.0),  # make demo
}


def sample_clip_specs(n: int, seed: int = 0, split: str = "train", clip_seconds: float = 5.0) -> List[dict]:
    """The realised specs (with captions) of the first ``n`` clips of ``split`` for ``seed``.

    Pure and cheap (no audio). Clips come in families (a base and 0-2 one-change variants,
    adjacent in the list); each split draws from its own random stream, so splits share no
    clip. ``generate_synth`` writes exactly these specs.
    """
    split = canonical_split(split)
    rng = np.random.default_rng([int(seed), SPLITS.index(split), 0x5EED])
    specs: List[dict] = []
    family = 0
    while len(specs) < n:
        base = _sample_attributes(rng)
        group = [(base, "base")]
        for _ in range(int(rng.choice([0, 1, 2], p=[0.2, 0.45, 0.35]))):
            new, how = _mutate(base, rng)
            if new is not None and all(new != g for g, _ in group):
                group.append((new, how))
        seen = set()
        for attrs, how in group:
            if len(specs) >= n:
                break
            clip_id = f"{_ID_PREFIX[split]}_{len(specs):04d}"
            spec = {"clip_id": clip_id, "file_name": f"{clip_id}.wav", "family": family, "variant": how,
                    **_realise(attrs, clip_seconds, rng)}
            if describe_clip(spec) in seen:  # fitting the layout undid the change (long -> short)
                continue
            seen.add(describe_clip(spec))
            spec["captions"] = make_captions(spec, rng)
            specs.append(spec)
        family += 1
    return specs


# ----------------------------------------------------------------------------- on disk
def canonical_split(split: str) -> str:
    """``train``/``validation``/``test``; accepts ``development``, ``evaluation``, ``val``, ..."""
    return resolve_split(split, {"train": "train", "validation": "validation", "test": "test"}, "synth")


def resolve_size(size: Union[str, int]) -> SynthSize:
    """A named size (``tiny``, ``smoke``, ``demo``) or an int: that many train clips of 5 s and
    25 % as many (at least 1) for validation and test."""
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        if size < 1:
            raise ValueError(f"synth size must be >= 1 train clips, got {size}")
        k = max(1, int(round(size / 4)))
        return SynthSize(int(size), k, k, 5.0)
    if isinstance(size, str) and size.lower() in SIZES:
        return SIZES[size.lower()]
    if isinstance(size, str) and size.isdigit():
        return resolve_size(int(size))
    from atrlib.errors import ConfigError

    raise ConfigError(f"unknown synth size {size!r}; use one of {', '.join(SIZES)} or a number of train clips")


def default_root(size: Union[str, int] = "demo", seed: int = 0, sample_rate: int = SAMPLE_RATE) -> Path:
    """``cache_dir()/"synth"/f"{size}-seed{seed}-sr{sample_rate}"``."""
    return cache_dir() / "synth" / f"{str(size).lower()}-seed{int(seed)}-sr{int(sample_rate)}"


def _marker(size: SynthSize, seed: int, sample_rate: int) -> dict:
    params = {"size": asdict(size), "seed": int(seed), "sample_rate": int(sample_rate)}
    blob = json.dumps({"version": GENERATOR_VERSION, "params": params}, sort_keys=True)
    return {"generator": "atrlib.data.synth", "version": GENERATOR_VERSION, "params": params,
            "hash": hashlib.sha256(blob.encode()).hexdigest()}


def _marker_matches(root: Path, marker: dict) -> bool:
    try:
        return json.loads((root / "DONE").read_text(encoding="utf-8")).get("hash") == marker["hash"]
    except (OSError, ValueError, AttributeError):
        return False


def _is_ours(name: str) -> bool:
    return name == "DONE" or any(
        name == f"synth_audio_{s}" or name == f"synth_captions_{s}.csv" or name == f"synth_metadata_{s}.json"
        for s in SPLITS)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # ours, from an earlier failed call in this process (generation is synchronous)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _clean_leftovers(root: Path) -> List[Path]:
    """Remove ``.{name}.tmp-PID-*`` / ``.{name}.old-PID-*`` siblings left by dead processes."""
    removed = []
    for p in root.parent.glob(f".{root.name}.*-*-*"):
        tag, _, rest = p.name[len(root.name) + 2:].partition("-")
        pid = rest.split("-", 1)[0]
        if tag in ("tmp", "old") and pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def _write_split(folder: Path, split: str, size: SynthSize, seed: int, sample_rate: int, bar) -> None:
    import soundfile as sf

    specs = sample_clip_specs(size.count(split), seed, split, size.clip_seconds)
    audio_dir = folder / f"synth_audio_{split}"
    audio_dir.mkdir()
    for spec in specs:
        sf.write(str(audio_dir / spec["file_name"]), render_clip(spec, sample_rate), sample_rate, subtype="PCM_16")
        bar.update(1)
    with open(folder / f"synth_captions_{split}.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file_name"] + [f"caption_{k + 1}" for k in range(N_CAPTIONS)])
        for spec in specs:
            w.writerow([spec["file_name"]] + spec["captions"])
    meta = {"split": split, "sample_rate": int(sample_rate), "clip_seconds": size.clip_seconds,
            "generator_version": GENERATOR_VERSION, "clips": specs}
    (folder / f"synth_metadata_{split}.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")


def generate_synth(root: Optional[Union[str, Path]] = None, size: Union[str, int] = "demo", seed: int = 0,
                   sample_rate: int = SAMPLE_RATE) -> Path:
    """Generate the dataset into ``root`` (default :func:`default_root`) unless it is there.

    Parameters: ``size`` (``tiny`` 24/8/8 clips of 3 s, ``smoke`` 64/24/24 of 4 s, ``demo``
    320/80/80 of 5 s, or an int number of train clips), ``seed`` (int; the same parameters
    always give byte-identical files), ``sample_rate`` (Hz, >= 8000). Returns ``root``.

    Atomic: everything is written into a temporary sibling ``.{name}.tmp-PID-XXXX`` and
    renamed into place, with a ``DONE`` marker (generator version + parameter hash) written
    last. A ``root`` whose marker matches is reused untouched; one with a missing or
    different marker that holds only synth files is regenerated and swapped in; one that
    holds anything else raises ``FileExistsError``. Temporary folders left by killed runs
    (their process is gone) are removed.
    """
    cfg = resolve_size(size)
    if isinstance(sample_rate, bool) or int(sample_rate) != sample_rate or sample_rate < 8000:
        raise ValueError(f"sample_rate must be an int >= 8000 Hz, got {sample_rate!r}")
    sample_rate, seed = int(sample_rate), int(seed)
    root = Path(root).expanduser().absolute() if root is not None else default_root(size, seed, sample_rate)
    marker = _marker(cfg, seed, sample_rate)
    if root.is_dir() and _marker_matches(root, marker):
        return root
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"synth root {root} exists and is not a folder; pass another root")
    if root.is_dir():
        foreign = sorted(p.name for p in root.iterdir() if not _is_ours(p.name))
        if foreign:
            raise FileExistsError(
                f"synth root {root} holds files that are not a synth dataset ({', '.join(foreign[:5])}"
                f"{', ...' if len(foreign) > 5 else ''}); pass another root, or empty the folder to let "
                f"generate_synth overwrite it")
    root.parent.mkdir(parents=True, exist_ok=True)
    _clean_leftovers(root)

    from tqdm.auto import tqdm

    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        total = cfg.n_train + cfg.n_validation + cfg.n_test
        with tqdm(total=total, desc=f"synth {size} seed {seed}", unit="clip", disable=total < 200) as bar:
            for split in SPLITS:
                _write_split(tmp, split, cfg, seed, sample_rate, bar)
        (tmp / "DONE").write_text(json.dumps(marker, indent=1), encoding="utf-8")
        if root.is_dir():  # stale or empty: move it aside, swap ours in, then delete it
            old = root.parent / f".{root.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            os.rename(root, old)
            os.rename(tmp, root)
            shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                os.rename(tmp, root)
            except OSError:
                if root.is_dir() and _marker_matches(root, marker):  # another process won the race
                    return root
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def synth_metadata(root: Optional[Union[str, Path]] = None, split: str = "train", size: Union[str, int] = "demo",
                   seed: int = 0, sample_rate: int = SAMPLE_RATE) -> List[dict]:
    """The specs (attributes, events, timings, captions) of every clip of ``split``, in
    dataset order; generates the dataset first if needed."""
    split = canonical_split(split)
    root = generate_synth(root, size, seed, sample_rate)
    return json.loads((root / f"synth_metadata_{split}.json").read_text(encoding="utf-8"))["clips"]


@DATASETS.register("synth")
def load_synth(root: Optional[Union[str, Path]] = None, split: str = "train", size: Union[str, int] = "demo",
               seed: int = 0, sample_rate: int = SAMPLE_RATE, limit: Optional[int] = None, on_error: str = "raise",
               **kw) -> AudioCaptionDataset:
    """Load (generating on first use) one split of the synth dataset.

    Parameters: ``root`` (dataset folder; default :func:`default_root`), ``split``
    (``train``/``validation``/``test``, or ``development``/``evaluation``), ``size``
    (``tiny``/``smoke``/``demo`` or an int), ``seed``, ``sample_rate`` (Hz), ``limit``
    (first n clips; None = all). ``on_error`` is accepted for symmetry with the other
    loaders (generated files are never bad). Items carry the canonical split name.
    """
    if kw:
        raise TypeError(f"load_synth got unexpected arguments {sorted(kw)}; it takes root, split, size, "
                        f"seed, sample_rate, limit, on_error")
    split = canonical_split(split)
    root = generate_synth(root, size, seed, sample_rate)
    specs = {s["file_name"]: s for s in synth_metadata(root, split, size, seed, sample_rate)}
    audio_dir = (root / f"synth_audio_{split}").resolve()
    items: List[ClipItem] = []
    with open(root / f"synth_captions_{split}.csv", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            spec = specs[row["file_name"]]
            items.append(ClipItem(clip_id=spec["clip_id"], audio_path=str(audio_dir / row["file_name"]),
                                  captions=[row[f"caption_{k + 1}"] for k in range(N_CAPTIONS)],
                                  duration=float(spec["duration"]), sample_rate=int(sample_rate), split=split))
    return AudioCaptionDataset("synth", split, root, items).subset(limit)


__all__ = ["SIZES", "SPLITS", "EVENT_KINDS", "EVENT_ATTRS", "ATTR_VALUES", "BACKGROUNDS", "RELATIONS",
           "GENERATOR_VERSION", "SynthSize", "resolve_size", "canonical_split", "default_root",
           "sample_clip_specs", "make_captions", "render_clip", "describe_clip", "generate_synth",
           "synth_metadata", "load_synth"]
