"""One training objective from a spec string: ``"infonce+0.5*acml+mlml"`` -> the weighted sum
of registered losses and cross-modal terms (see :mod:`atrlib.losses.crossmodal` for the terms).

:func:`parse_spec` reads the string, :class:`Objective` keeps the standard loss signature for
:func:`atrlib.train.loop.fit` (``objective(audio_emb, text_emb, clip_ids, logit_scale,
batch=...)``) and builds each step's :class:`~atrlib.losses.crossmodal.CrossBatch`;
:func:`build_objective` returns a plain loss when the spec names one.
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from atrlib.losses import LOSSES, Terms, get_loss
from atrlib.losses.crossmodal import CrossBatch
from atrlib.losses.distributed import rank_offset, world_size

_TERM = re.compile(r"^\s*(?:(?P<w>[0-9.eE+-]+)\s*\*\s*)?(?P<name>[a-z_0-9+]+)\s*$")


def parse_spec(spec: str) -> List[Tuple[float, str]]:
    """``"infonce+0.5*acml+mlml"`` -> [(1.0, "infonce"), (0.5, "acml"), (1.0, "mlml")].
    A registered name containing '+' (``infonce+vicreg``) stays one term."""
    if spec.lower() in LOSSES:
        return [(1.0, spec.lower())]
    out, parts = [], spec.lower().split("+")
    i = 0
    while i < len(parts):
        # join registered names that contain '+' (e.g. "infonce+vicreg")
        if i + 1 < len(parts) and f"{parts[i]}+{parts[i + 1]}".strip() in LOSSES:
            parts[i + 1] = f"{parts[i]}+{parts[i + 1]}".strip()
            i += 1
            continue
        m = _TERM.match(parts[i])
        if not m:
            raise ValueError(f"cannot read loss term {parts[i]!r} in {spec!r}; write e.g. 'infonce+0.5*acml+mlml'")
        name = m["name"]
        LOSSES.get(name)  # KeyError listing the names
        out.append((float(m["w"]) if m["w"] else 1.0, name))
        i += 1
    return out


class CaptionPairSet(torch.utils.data.Dataset):
    """:class:`atrlib.models.inputs.PairSet` plus the caption index: (audio, text, clip, caption)."""

    def __init__(self, inputs):
        from atrlib.models.inputs import PairSet

        self.pairs = PairSet(inputs)

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, i):
        return (*self.pairs[i], i)


class Objective(nn.Module):
    """The weighted sum of contrastive losses and cross-modal terms (module docstring).

    ``objective(audio_emb, text_emb, clip_ids, logit_scale, batch=None)`` -> {term: weighted
    scalar}; cross-modal terms need ``batch`` (a :class:`CrossBatch`, made by :meth:`batch`).
    """

    def __init__(self, spec: str, model, inputs=None, weights: Optional[Dict[str, float]] = None,
                 frame_store=None, progress: bool = False, **kwargs):
        super().__init__()
        self.spec = spec
        parsed = parse_spec(spec)
        weights = {k.lower(): float(v) for k, v in (weights or {}).items()}
        names = [n for _, n in parsed]
        unknown = sorted(set(weights) - set(names))
        if unknown:
            raise ValueError(f"weights for terms not in {spec!r}: {unknown}")
        head_kw = {h: kwargs.pop(h) for h in ("crossattn", "qformer", "image") if h in kwargs}
        bad = sorted(set(kwargs) - set(names))
        if bad:
            raise ValueError(f"loss_kwargs {bad} name no term of {spec!r}; give each term's options under its name, "
                             f"e.g. {{'acml': {{...}}, 'crossattn': {{'num_layers': 2}}, 'weights': {{'acml': 0.5}}}}")
        self.weights = {n: w * weights.get(n, 1.0) for w, n in parsed}
        self.losses = nn.ModuleDict()
        for _, name in parsed:
            self.losses[name] = get_loss(name, **kwargs.get(name, {}))
        self.cross = [n for n in names if getattr(self.losses[n], "cross_modal", False)]
        self.needs = {need for n in self.cross for need in self.losses[n].needs}
        self.inputs = inputs
        device = next(model.parameters()).device
        for n in self.cross:  # the heads the terms train, added to the model (saved with it)
            term = self.losses[n]
            if term.head and term.head not in model.extra_heads:
                model.add_head(term.head, {**term.head_defaults, **head_kw.get(term.head, {})}).to(device)
            if hasattr(term, "bind"):  # terms that read the training split (teacher scores, caption relevance)
                term.bind(inputs)
            if hasattr(term, "prepare"):
                term.prepare(model)
        self.frames = frame_store
        if "frames" in self.needs and frame_store is None and model.config.audio.frozen and inputs is not None:
            from atrlib.audio.frames import tower_frame_cache  # memory-mapped: Clotho-size frames need not fit in RAM
            from atrlib.models.inputs import tower_id

            self.frames = tower_frame_cache(model.audio_tower, tower_id(model, "audio"), inputs.dataset,
                                            model.config.max_audio_seconds, progress=progress)
        if "wave" in self.needs and model.config.audio.frozen:
            raise ValueError(f"{spec!r} needs waveforms of a trainable audio tower; the model's audio tower is frozen")

    # -- what fit() calls -----------------------------------------------------------------
    def pair_set(self, inputs):
        return CaptionPairSet(inputs)

    def batch(self, model, audio: Tensor, clips: Tensor, caption_idx: Tensor, lengths: Optional[Tensor] = None
              ) -> Dict[str, Any]:
        """The local inputs of the cross-modal terms for one training batch."""
        if not self.cross:
            return {}
        out: Dict[str, Any] = {"captions": [self.inputs.captions[int(i)] for i in caption_idx], "caption_idx": caption_idx}
        if "frames" in self.needs:
            if self.frames is not None:
                fr, fm = self.frames.get(clips.cpu(), pad_to=self.frames.max_frames if world_size() > 1 else 0)
            else:  # trainable tower: frames of this batch's waveforms, with gradients
                fr, fm = model.audio_tower.forward_frames(audio, lengths)
            out["frames"], out["frame_mask"] = fr.to(audio.device), fm.to(audio.device)
        if "wave" in self.needs:
            out["wave"] = audio
        return out

    def forward(self, audio_emb: Tensor, text_emb: Tensor, clip_ids: Tensor, logit_scale, batch=None,
                model=None) -> Terms:
        terms: Terms = {}
        cb = None
        for name, loss in self.losses.items():
            if getattr(loss, "cross_modal", False):
                if batch is None or model is None:
                    raise ValueError(f"term {name!r} needs the batch's frames / captions and the model")
                if cb is None:
                    cb = CrossBatch(audio_emb, text_emb, clip_ids, logit_scale,
                                    offset=rank_offset(len(batch["captions"])), **batch)
                part = loss.term(cb, model)
            else:
                part = loss(audio_emb, text_emb, clip_ids, logit_scale)
            for k, v in part.items():
                terms[k] = self.weights[name] * v
        return terms


def build_objective(spec: str, model, inputs=None, **kwargs) -> nn.Module:
    """A plain registered loss when ``spec`` names one contrastive loss (``loss_kwargs`` go to it,
    as before), else an :class:`Objective` (adding the heads its terms need to ``model``)."""
    structured = any(k in ("weights", "crossattn", "qformer", "image") or k in LOSSES for k in kwargs)
    if spec.lower() in LOSSES and not getattr(LOSSES.get(spec.lower()), "cross_modal", False) and not structured:
        return get_loss(spec, **kwargs)
    return Objective(spec, model, inputs, **kwargs)

