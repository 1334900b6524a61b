"""The dataset item, the dataset class every loader returns, and the dataset registry."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple, TypedDict, TypeVar

T = TypeVar("T")

from atrlib.audio.io import audio_info
from atrlib.errors import AudioError, DatasetError
from atrlib.registry import Registry

log = logging.getLogger("atrlib.data")

# The one split-alias table: every dataset names its three roles in its own words (Clotho:
# development / validation / evaluation; synth: train / validation / test) and accepts the others.
SPLIT_ROLES = {
    "train": ("train", "development", "dev"),
    "validation": ("validation", "val", "valid"),
    "test": ("test", "evaluation", "eval"),
}


def resolve_split(split: str, names: dict, dataset: str) -> str:
    """``split`` (any alias of a role, any case) -> the dataset's own name for that role.

    ``names`` maps role -> the dataset's name, e.g. ``{"train": "development", ...}``.
    """
    s = str(split).lower()
    for role, aliases in SPLIT_ROLES.items():
        if s in aliases or s == names.get(role):
            if role in names:
                return names[role]
    known = ", ".join(f"{n} (also {', '.join(a for a in SPLIT_ROLES[r] if a != n)})" for r, n in names.items())
    raise ValueError(f"unknown {dataset} split {split!r}; use one of {known}")


class _ClipItemRequired(TypedDict):
    clip_id: str          # unique within the dataset; the file name for Clotho
    audio_path: str       # absolute path of the audio file
    captions: List[str]   # one or more captions, raw (not normalised)
    duration: float       # seconds
    sample_rate: int      # Hz of the file on disk
    split: str            # "development", "validation", "evaluation", "train", "test", ...


class ClipItem(_ClipItemRequired, total=False):
    """One audio clip and its captions (as aac-datasets' items are TypedDicts)."""

    source: str           # the corpus it came from (mixtures: "audiocaps", "wavcaps", ...)
    freesound_id: int     # where known: the Freesound sound id (cross-corpus leakage checks)


@dataclass
class AudioCaptionDataset:
    """A list of :class:`ClipItem` with helpers for retrieval.

    Captions are flattened in clip order: query ``j`` is caption ``k`` of clip ``i`` for
    ``(i, k)`` in clip-major order, so ``caption_clip_index()[j] == i``.
    """

    name: str
    split: str
    root: Optional[Path]
    items: List[ClipItem]
    skipped: List[str] = field(default_factory=list)  # messages for clips skipped on request

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> ClipItem:
        return self.items[i]

    def __iter__(self) -> Iterator[ClipItem]:
        return iter(self.items)

    @property
    def clip_ids(self) -> List[str]:
        return [it["clip_id"] for it in self.items]

    @property
    def audio_paths(self) -> List[str]:
        return [it["audio_path"] for it in self.items]

    def captions_flat(self) -> List[str]:
        return [c for it in self.items for c in it["captions"]]

    def caption_clip_index(self) -> List[int]:
        return [i for i, it in enumerate(self.items) for _ in it["captions"]]

    def caption_ids(self) -> List[str]:
        return [f"{it['clip_id']}#{k + 1}" for it in self.items for k in range(len(it["captions"]))]

    def subset(self, n: Optional[int]) -> "AudioCaptionDataset":
        """The first ``n`` clips (all when ``n`` is None or <= 0)."""
        if not n or n <= 0 or n >= len(self.items):
            return self
        return AudioCaptionDataset(self.name, self.split, self.root, self.items[:n], list(self.skipped))


def root_and_split(name: str, root, split: str, names: dict, needs: str, display: str = "",
                   note: str = "") -> Tuple[Path, str]:
    """The two checks a loader starts with: ``root=`` was given (else an error saying what the
    folder must hold: ``needs``), and ``split`` is one of the dataset's, by any alias (returned
    as the dataset's own name). ``display`` names the dataset in the split error; ``note`` is
    appended to it (e.g. " (MACS is one training set)")."""
    if root is None:
        raise DatasetError(f"{name} needs root=: {needs}")
    try:
        split = resolve_split(split, names, display or name)
    except ValueError as e:
        raise DatasetError(str(e) + note) from None
    return Path(root), split


class BadClips:
    """What a loader does with a bad clip (missing, unreadable, outside its folder, no caption).

    ``on_error="raise"`` stops at the first one: its :class:`DatasetError` names the file, the row
    and the fix. ``"skip"`` logs it, keeps going and keeps the message (``.skipped``, which the
    dataset carries), so nothing is dropped without a word.
    """

    def __init__(self, on_error: str):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
        self.on_error = on_error
        self.skipped: List[str] = []

    def check(self, fn: Callable[..., T], *args) -> Optional[T]:
        """``fn(*args)``; on a :class:`DatasetError` under ``"skip"``, None (logged and kept)."""
        try:
            return fn(*args)
        except DatasetError as e:
            if self.on_error == "raise":
                raise
            log.warning("skipping: %s", e)
            self.skipped.append(str(e))
            return None


def clip_audio_info(path, where: str, hint: str = "or load with on_error='skip'") -> Tuple[float, int]:
    """(duration s, sample rate) of a clip the loader lists, decoding it once (truncated or NaN
    files are found now, not mid-training); a :class:`DatasetError` names ``where`` and the fix."""
    try:
        return audio_info(path)
    except AudioError as e:
        raise DatasetError(f"{where}: {e}; {hint}") from None


DATASETS: Registry[Callable[..., AudioCaptionDataset]] = Registry("dataset", package="atrlib.data", entry_point="atrlib.datasets")


def load_dataset(name: str, root: Optional[str | Path] = None, split: Optional[str] = None, **kw) -> AudioCaptionDataset:
    """Build a dataset by registered name: ``load_dataset("clotho", root=..., split="evaluation")``.

    Registered: ``clotho`` (official layout), ``folder`` (audio files + a CSV), ``synth``
    (the embedded procedural dataset; generated on first use). Extra keywords go to the
    loader (``on_error="raise"|"skip"``, ``limit``, ...). Without ``split`` the loader's own
    default is used (clotho: evaluation, folder: all clips).
    """
    return DATASETS.get(name)(root=root, **({} if split is None else {"split": split}), **kw)
