"""Datasets: the item type, the registry and the built-in loaders.

The registry (:data:`DATASETS`) fills itself on first use by importing every module of this
package (each loader registers itself) and the ``atrlib.datasets`` entry points.
"""
from atrlib.data.base import DATASETS, AudioCaptionDataset, ClipItem, load_dataset

__all__ = ["DATASETS", "AudioCaptionDataset", "ClipItem", "load_dataset"]
