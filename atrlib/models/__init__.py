"""Models: audio towers, text towers, heads, the dual encoder, and their registries.

Importing this package registers the built-in towers (each module registers itself).
"""
from atrlib.models.registry import AUDIO_TOWERS, TEXT_TOWERS

for _mod in ("small_cnn", "mel_stats", "cnn14", "resnet38", "wavegram", "aisfx_tower", "efficientat", "hf_audio",
             "beats", "passt", "text", "mpnet"):
    try:
        __import__(f"atrlib.models.{_mod}")
    except ModuleNotFoundError as _e:  # a tower module still being written must not break the others
        if _e.name != f"atrlib.models.{_mod}":
            raise

__all__ = ["AUDIO_TOWERS", "TEXT_TOWERS"]
