"""What notebook 01 says about a dataset split, computed once: sizes, durations, captions,
vocabulary, repeated captions, the leakage audit across splits, and spectrograms as a given
model's audio tower hears them (its own front end, frequency in Hz)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from atrlib.data.base import AudioCaptionDataset


def describe(ds: AudioCaptionDataset) -> Dict[str, Any]:
    """The numbers 01 shows and records (one dict; ``metrics.json`` takes it as it is)."""
    from atrlib.data.text import STOPWORDS, word_counts

    durations = np.array([it["duration"] for it in ds], dtype=float)
    captions = ds.captions_flat()
    norm = [" ".join(c.lower().split()) for c in captions]
    owners: Dict[str, set] = {}
    for it in ds:
        for c in it["captions"]:
            owners.setdefault(" ".join(c.lower().split()), set()).add(it["clip_id"])
    wc = word_counts(captions, stopwords=STOPWORDS)
    return {
        "clips": len(ds), "captions": len(captions), "hours": float(durations.sum() / 3600),
        "duration_mean_s": float(durations.mean()), "duration_min_s": float(durations.min()),
        "duration_max_s": float(durations.max()), "captions_per_clip": float(len(captions) / max(1, len(ds))),
        "words_per_caption": float(np.mean([len(c.split()) for c in captions])) if captions else 0.0,
        "vocabulary": len(wc), "duplicate_captions": int(sum(1 for v in owners.values() if len(v) > 1)),
        "distinct_captions": len(set(norm)), "skipped_clips": len(ds.skipped),
        "sample_rates": sorted({int(it["sample_rate"]) for it in ds}),
    }


def overview_table(m: Dict[str, Any], dataset: str, split: str) -> pd.DataFrame:
    """:func:`describe`'s numbers as a short two-column table for a person."""
    rows = {
        "dataset / split": f"{dataset} / {split}",
        "clips": m["clips"], "captions": m["captions"],
        "audio": f"{m['hours'] * 60:.1f} min",
        "duration min / mean / max": f"{m['duration_min_s']:.1f} / {m['duration_mean_s']:.1f} / {m['duration_max_s']:.1f} s",
        "captions per clip": f"{m['captions_per_clip']:.1f}",
        "words per caption (mean)": f"{m['words_per_caption']:.1f}",
        "vocabulary (no stop words)": m["vocabulary"],
        "captions shared by several clips": m["duplicate_captions"],
        "sample rates on disk": ", ".join(f"{s} Hz" for s in m["sample_rates"]),
        "clips skipped as unreadable": m["skipped_clips"],
    }
    return pd.DataFrame({"value": [str(v) for v in rows.values()]}, index=list(rows))


def audit(dataset: str, splits: Sequence[str], **dataset_kwargs) -> Tuple[pd.DataFrame, List[str], List[str]]:
    """Leakage audit over the ``splits`` that exist: (leaked groups, audited splits,
    "split: reason" for each split that could not be loaded)."""
    from atrlib.data import load_dataset
    from atrlib.data.audit import leakage_audit

    sets, missing = {}, []
    for s in splits:
        try:
            sets[s] = load_dataset(dataset, split=s, **dataset_kwargs)
        except Exception as e:  # a split that is not there (e.g. clotho_mini has only evaluation)
            missing.append(f"{s}: {str(e).splitlines()[0][:160]}")
    leaks = leakage_audit(sets, progress=False) if len(sets) > 1 else pd.DataFrame()
    return leaks, list(sets), missing


@dataclass
class FrontEnd:
    """A model's audio front end: waveform -> log-mel, and what each axis means."""

    sample_rate: int
    hop_length: int
    mel_hz: np.ndarray                 # centre frequency of each mel band, Hz
    transform: Callable[[np.ndarray], np.ndarray]  # (samples,) -> (n_mels, frames)
    source: str                        # what the front end is, in words
    unit: str = "dB"                   # the level's unit: "dB" (10·log10 power), "ln power", "power"

    def __call__(self, path: str, max_seconds: float = 30.0) -> np.ndarray:
        from atrlib.audio.io import load_audio

        wave, _ = load_audio(path, sample_rate=self.sample_rate, duration=max_seconds)
        return self.transform(np.asarray(wave, dtype=np.float32))


def model_frontend(model: str) -> FrontEnd:
    """The log-mel front end of ``model``'s audio tower (built without weights): the first
    :class:`~atrlib.audio.features.LogMel` inside it. Towers with another front end fall back
    to the ``small`` (16 kHz) or ``panns`` (32 kHz) preset at the tower's sample rate."""
    import torch

    from atrlib.audio.features import LogMel, get_feature_config
    from atrlib.audio.mel import mel_to_hz, hz_to_mel
    from atrlib.models.dual import get_model_config
    from atrlib.models.towers import AUDIO_TOWERS

    cfg = get_model_config(model)
    found, source = None, ""
    try:
        tower = AUDIO_TOWERS.get(cfg.audio.name)(pretrained=None, **cfg.audio.kwargs)
        found = next((m for m in tower.modules() if isinstance(m, LogMel)), None)
        sr = int(getattr(tower, "sample_rate", 16000))
        source = f"{cfg.audio.name} tower of {model}"
    except Exception:  # a tower that needs weights to build: use the preset at its rate
        sr = 16000
    if found is None:
        found = LogMel(get_feature_config("small" if sr == 16000 else "panns"))
        source = f"{found.cfg.sample_rate // 1000} kHz log-mel preset (the {cfg.audio.name} tower has no LogMel module)"
    fc = found.cfg
    fmax = fc.fmax if fc.fmax is not None else fc.sample_rate / 2
    htk = fc.mel_scale != "slaney"
    edges = mel_to_hz(np.linspace(hz_to_mel(fc.fmin, htk=htk), hz_to_mel(fmax, htk=htk), fc.n_mels + 2), htk=htk)
    found.eval()

    def transform(wave: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return found(torch.from_numpy(wave)[None])[0].numpy()                   # (n_mels, frames)

    unit = {"db": "dB", "log": "ln power"}.get(str(fc.log).lower(), "power")
    return FrontEnd(fc.sample_rate, fc.hop_length, edges[1:-1], transform,
                    f"{source}: {fc.n_mels} mel bands {fc.fmin:.0f}–{fmax:.0f} Hz at {fc.sample_rate} Hz, level in {unit}",
                    unit)
