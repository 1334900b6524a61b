"""What training eats: the splits named by a config, and each split's model inputs.

:class:`SplitInputs` holds, per split, frozen-tower features (run once, cached on disk by
:mod:`atrlib.audio.embeddings`), or waveforms (preloaded or read per batch), and the captions;
:func:`epoch_order` gives each epoch's pair order from a generator seeded with (seed, epoch),
so a resumed epoch replays exactly; :func:`random_crops` cuts training windows.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import torch

from atrlib.audio.embeddings import audio_tower_embeddings, load_wave, load_waves, text_tower_embeddings, weights_hash
from atrlib.audio.io import min_samples
from atrlib.models.clip_frontend import random_window
from atrlib.models.dual import DualEncoder


def tower_id(model: DualEncoder, part: str) -> dict:
    """What identifies a tower's outputs: registry name, kwargs, weights source and hash."""
    tc = getattr(model.config, part)
    tower = getattr(model, f"{part}_tower")
    return {"name": tc.name, "kwargs": tc.kwargs, "pretrained": str(tc.pretrained), "weights": weights_hash(tower)}


class SplitInputs:
    """What the model eats for one split.

    ``audio``: frozen-tower features (clips, audio_dim), padded waveforms (clips, samples),
    or None when waveforms are read from disk per batch; ``lengths`` (clips,): samples of
    real audio per clip (waveform inputs only);
    ``text``: frozen-tower features (captions, text_dim) or the caption strings;
    ``caption_clip``: (captions,) clip index of each caption.
    """

    def __init__(self, model: DualEncoder, dataset, batch_size: int = 32, progress: bool = True,
                 preload_audio: bool = True):
        c = model.config
        self.dataset = dataset
        self.audio_frozen, self.text_frozen = c.audio.frozen, c.text.frozen
        self.sample_rate, self.seconds = model.sample_rate, c.max_audio_seconds
        self.caption_clip = torch.tensor(dataset.caption_clip_index(), dtype=torch.long)
        self.captions = dataset.captions_flat()
        self.lengths: Optional[torch.Tensor] = None
        self.augment = None  # caption index -> text input with paraphrases mixed in (atrlib.train.augment)
        self.min_len = min_samples(model.audio_tower, self.sample_rate)  # very short clips are zero-padded to this
        self.audio: Optional[torch.Tensor] = None
        if c.audio.frozen:
            self.audio = torch.from_numpy(audio_tower_embeddings(
                model.audio_tower, tower_id(model, "audio"), dataset, c.max_audio_seconds, batch_size,
                progress=progress))                                                 # (clips, audio_dim)
        elif preload_audio:
            self.audio, self.lengths = load_waves(dataset, self.sample_rate, self.seconds, progress=progress,
                                                  return_lengths=True)              # (clips, samples), (clips,)
        else:  # read per batch; lengths from the items' durations
            n = int(round(self.seconds * self.sample_rate))
            seconds = [float(it.get("duration") or self.seconds) for it in dataset.items]
            self.lengths = torch.tensor([max(1, min(n, int(d * self.sample_rate))) for d in seconds])  # (clips,)
        if c.text.frozen:
            self.text = torch.from_numpy(text_tower_embeddings(
                model.text_tower, tower_id(model, "text"), self.captions, progress=progress))  # (captions, text_dim)
        else:
            self.text = self.captions

    def clip_audio(self, i: int, pad: bool = True) -> torch.Tensor:
        """Model input of clip ``i``: features, or its waveform (padded, or real length)."""
        if self.audio is None:
            return load_wave(self.dataset[i]["audio_path"], self.sample_rate, self.seconds, pad=pad, min_len=self.min_len)
        if self.audio_frozen or pad:
            return self.audio[i]
        return self.audio[i, :max(int(self.lengths[i]), self.min_len)]

    def text_batch(self, idx: Sequence[int]):
        return self.text[list(idx)] if isinstance(self.text, torch.Tensor) else [self.text[i] for i in idx]


class PairSet(torch.utils.data.Dataset):
    """Index i -> (audio input of caption i's clip, text input of caption i, clip index)."""

    def __init__(self, inputs: SplitInputs):
        self.x = inputs

    def __len__(self):
        return len(self.x.caption_clip)

    def __getitem__(self, i):
        c = int(self.x.caption_clip[i])
        text = self.x.augment(i) if self.x.augment is not None else self.x.text_batch([i])[0]
        return self.x.clip_audio(c), text, c


def epoch_order(inputs: SplitInputs, mode: str, seed: int, epoch: int) -> List[int]:
    """Pair indices of one epoch, from a generator seeded by (seed, epoch): a resumed epoch
    replays exactly. ``"clips"`` keeps one random caption per clip."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    n = len(inputs.caption_clip)
    if mode == "captions":
        return torch.randperm(n, generator=g).tolist()
    if mode == "clips":
        by_clip: Dict[int, List[int]] = {}
        for i, c in enumerate(inputs.caption_clip.tolist()):
            by_clip.setdefault(c, []).append(i)
        picks = [caps[int(torch.randint(len(caps), (1,), generator=g))] for caps in by_clip.values()]
        return [picks[j] for j in torch.randperm(len(picks), generator=g).tolist()]
    raise ValueError(f"pairs must be 'captions' or 'clips', not {mode!r}")


def random_crops(wave: torch.Tensor, lengths: torch.Tensor, n: int) -> torch.Tensor:
    """(batch, samples) -> (batch, n): a window of ``n`` samples at a uniform offset inside
    each clip's real audio (``lengths``); offsets come from torch's RNG (reproducible)."""
    return random_window(wave, lengths.to(wave.device), n)[0]                    # (batch, n)
