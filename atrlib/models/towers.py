"""The registries of named audio towers and text towers, filled by discovery.

The first look-up imports every module of :mod:`atrlib.models` (each tower module registers its
full-size and ``-tiny`` variants) and loads the ``atrlib.towers`` entry points, so a user's own
package adds a tower without editing atrlib; a module that fails to import is an error naming it.
(Retrievers have their registry in :mod:`atrlib.retrieval.retrievers`, losses in
:mod:`atrlib.losses`, datasets in :mod:`atrlib.data.base`.)"""
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
        registry.register(name, _variant_factory(build, name, doc))


def _variant_factory(build: Callable, name: str, doc: str) -> Callable:
    def factory(pretrained=None, weights=None, **overrides):
        try:
            return build(name, pretrained, weights, **overrides)
        except RuntimeError as e:  # load_state_dict(strict=True): another model's or another size's weights
            if "state_dict" not in str(e):
                raise
            from atrlib.errors import WeightsFileError

            detail = next((ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()), str(e).splitlines()[0])
            raise WeightsFileError(
                f"{weights or pretrained}: these weights do not fit the {name} tower ({detail[:300]}). Give the "
                f"checkpoint of {name} itself (another tower's, or another size's, cannot load), or leave weights "
                f"empty to use the tower's published weights.") from e

    factory.__doc__, factory.__module__ = doc, build.__module__  # the tower's module, as a decorated def had
    factory.__name__ = factory.__qualname__ = name.replace("-", "_")
    return factory
