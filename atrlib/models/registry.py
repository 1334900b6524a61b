"""Registries of named audio towers, text towers and retrievers."""
from atrlib.registry import Registry

# name -> factory(pretrained=..., **kw) returning an nn.Module with attributes
#   sample_rate: int   (Hz the tower expects its waveform at)
#   embed_dim: int     (size of the pooled embedding)
# and forward(wave: (batch, samples) float32) -> (batch, embed_dim)
AUDIO_TOWERS = Registry("audio tower")

# name -> factory(**kw) returning an nn.Module with embed_dim and forward(list[str]) -> (batch, embed_dim)
TEXT_TOWERS = Registry("text tower")
