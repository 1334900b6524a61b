"""From a name on the command line to something that captions clips.

A *system* is a folder: a trained captioner (``captioner.json`` + ``captioner.safetensors``),
a ``07_captioning`` stage folder (its ``captioner/``), or a retrieval run whose model carries a
Q-Former (captions from its ATG head). :func:`caption_source` builds the decoding source of
one system over a list of clips, or the ensemble of several (their log-probabilities averaged
at every step, :class:`~atrlib.captioning.decode.EnsembleSource`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence, Tuple


def find_system(system) -> Tuple[str, Path]:
    """(``"captioner"`` or ``"qformer"``, folder); anything else is a
    :class:`~atrlib.errors.RunError` naming the folder and what it lacks."""
    from atrlib.captioning.features import model_dir
    from atrlib.captioning.model import is_captioner
    from atrlib.errors import RunError

    p = Path(system)
    for cand in (p, p / "captioner"):
        if is_captioner(cand):
            return "captioner", cand
    d = model_dir(p)  # RunError when the folder holds no model (no audio tower)
    try:
        heads = json.loads((d / "config.json").read_text(encoding="utf-8")).get("heads") or {}
    except (OSError, ValueError):
        heads = {}
    if "qformer" in heads:
        return "qformer", p
    raise RunError(f"{p}: no captioner here (captioner.json, or captioner/ of a 07_captioning folder) and its model "
                   f"({d / 'config.json'}) has no Q-Former whose ATG head could caption; train a captioner on this "
                   "run with notebook 07 (system = this folder)")


def caption_source(systems: Sequence, clips, device: str = "cpu", progress: bool = False):
    """The decoding source of ``systems`` (one, or an ensemble of several) over ``clips`` (a
    dataset or :class:`~atrlib.captioning.features.ClipList`); E_A's outputs are cached."""
    from atrlib.captioning.decode import CaptionerSource, EnsembleSource, QFormerSource
    from atrlib.captioning.features import FeatureSet, encoder_features, load_encoder
    from atrlib.captioning.model import load_captioner
    from atrlib.errors import ConfigError

    if not systems:
        raise ConfigError("no captioning system given (--system FOLDER)")
    out = []
    for s in systems:
        kind, folder = find_system(s)
        if kind == "captioner":
            model = load_captioner(folder, device)
            run = model.source.get("run")
            if not run or not Path(run).exists():
                raise ConfigError(f"{folder}: the run whose audio tower this captioner reads ({run or 'not recorded'}) "
                                  "is not on this machine; copy it back to that path")
            enc = load_encoder(run, device)
            feats = encoder_features(enc, clips, model.source.get("features", model.cfg.features), progress, run=run)
            out.append(CaptionerSource(model, feats, name=str(folder)))
        else:
            from atrlib.audio.frames import tower_frames
            from atrlib.models.inputs import tower_id

            enc = load_encoder(folder, device)
            store = tower_frames(enc.audio_tower, tower_id(enc, "audio"), clips, enc.config.max_audio_seconds,
                                 progress=progress)
            out.append(QFormerSource(enc, FeatureSet(store.frames, "frames", {"run": str(folder)}),
                                     name=f"{folder}:atg"))
    return out[0] if len(out) == 1 else EnsembleSource(out, name=" + ".join(s.name for s in out))
