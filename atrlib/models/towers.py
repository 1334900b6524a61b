"""The registries of named audio towers and text towers, filled by discovery.

The first look-up imports every module of :mod:`atrlib.models` (each tower module registers its
full-size and ``-tiny`` variants) and loads the ``atrlib.towers`` entry points, so a user's own
package adds a tower without editing atrlib; a module that fails to import is an error naming it.
(Retrievers have their registry in :mod:`atrlib.retrieval.retrievers`, losses in
:mod:`atrlib.losses`, datasets in :mod:`atrlib.data.base`.)"""
import functools
from typing import Callable, Mapping

from atrlib.registry import Registry

# name -> factory(pretrained=..., weights=..., **kw) returning an nn.Module with attributes
#   sample_rate: int   (Hz the tower expects its waveform at)
#   embed_dim: int     (size of the pooled embedding)
#   frame_dim: int     (size of one frame of the frame sequence)
# forward(wave: (batch, samples) float32) -> (batch, embed_dim), and
# forward_frames(wave) -> (frames (batch, T, frame_dim), mask (batch, T) bool, True = real audio)
AUDIO_TOWERS = Registry("audio tower", package="atrlib.models", entry_point="atrlib.towers")

# name -> factory(**kw) returning an nn.Module with embed_dim and forward(list[str]) -> (batch, embed_dim)
TEXT_TOWERS = Registry("text tower", package="atrlib.models", entry_point="atrlib.towers")


def register_variants(build: Callable, docs: Mapping[str, str], registry: Registry = AUDIO_TOWERS) -> None:
    """Register every variant of one tower family from one table: ``docs`` maps each variant
    name (the keys of the family's ``*_CONFIGS``, e.g. ``"cnn14"`` and ``"cnn14-tiny"``) to its
    one-line description; the factory is ``build(name, pretrained=None, weights=None, **overrides)``."""
    for name, doc in docs.items():
        factory = functools.partial(build, name)
        factory.__doc__ = doc
        registry.register(name, factory)
