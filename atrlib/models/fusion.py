"""Extra heads of a dual encoder for cross-modal objectives, built by name from its config.

``ModelConfig.heads`` maps a head name to its keyword arguments; :class:`DualEncoder` builds
them into ``model.extra_heads`` (saved and loaded with the model, trained with the heads'
learning rate). The objectives (:mod:`atrlib.losses.crossmodal`) add the heads they need:

- ``"crossattn"``: :class:`~atrlib.models.crossattn.CrossAttnTextEncoder` — matching (A-CML)
  and audio-conditioned MLM (MLML); gets ``frame_dim`` from the audio tower.
- ``"qformer"``: :class:`~atrlib.models.qformer.AudioQFormer` — ATC / ATM / ATG.
- ``"image"``: a linear map of precomputed image embeddings (``image_dim``) into the shared
  space (CLA-IP).

A head with a ``match_scores(captions, frames, frame_mask)`` method can re-rank
(:mod:`atrlib.retrieval.rerank`).
"""
from __future__ import annotations

from typing import Any, Dict

from torch import nn

MATCHING_HEADS = ("crossattn", "qformer")


def build_extra_head(name: str, kwargs: Dict[str, Any], model) -> nn.Module:
    """The head ``name`` for ``model`` (a DualEncoder) with ``kwargs``."""
    kw = dict(kwargs)
    if not getattr(model.config, "pretrained", True):  # a random-weights model: its heads too, offline
        kw["pretrained"] = False
    if name == "crossattn":
        from atrlib.models.crossattn import CrossAttnTextEncoder

        return CrossAttnTextEncoder(frame_dim=int(model.audio_tower.frame_dim), **kw)
    if name == "qformer":
        from atrlib.models.qformer import AudioQFormer

        kw.setdefault("embed_dim", model.config.embed_dim)
        return AudioQFormer(frame_dim=int(model.audio_tower.frame_dim), **kw)
    if name == "image":
        return nn.Linear(int(kw["image_dim"]), model.config.embed_dim)
    raise KeyError(f"unknown extra head {name!r}; known: crossattn, qformer, image")


def matching_head(model) -> nn.Module:
    """The model's matching head (``crossattn`` first, then ``qformer``); a clear error without one."""
    heads = getattr(model, "extra_heads", {})
    for name in MATCHING_HEADS:
        if name in heads:
            return heads[name]
    raise ValueError(f"model {getattr(model.config, 'name', '?')!r} has no matching head (train it with an objective "
                     "that has one, e.g. loss='infonce+acml' or 'infonce+atm'), so it cannot re-rank")
