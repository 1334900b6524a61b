"""Models: audio towers, text towers, heads, cross-attention, the Q-Former, the dual encoder.

The tower registries (:mod:`atrlib.models.towers`) fill themselves on first use by importing
every module of this package and the ``atrlib.towers`` entry points.
"""
from atrlib.models.towers import AUDIO_TOWERS, TEXT_TOWERS

__all__ = ["AUDIO_TOWERS", "TEXT_TOWERS"]
