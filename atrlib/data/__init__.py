"""Datasets: the item type, the registry and the built-in loaders."""
from atrlib.data.base import DATASETS, AudioCaptionDataset, ClipItem, load_dataset

# Importing a loader module registers it.
for _mod in ("clotho", "folder", "synth", "audiocaps", "wavcaps", "macs", "fsd50k", "mixture", "resplit"):
    try:
        __import__(f"atrlib.data.{_mod}")
    except ModuleNotFoundError as _e:  # a loader still being written must not break the others
        if _e.name != f"atrlib.data.{_mod}":
            raise

__all__ = ["DATASETS", "AudioCaptionDataset", "ClipItem", "load_dataset"]
