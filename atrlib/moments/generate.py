"""Clotho-Moment-style long recordings from any clip collection: a bed, a few events, their windows.

Clotho-Moment (Munakata et al., ICASSP 2025) overlays Clotho clips on long background
recordings and keeps where each clip went as the moment its caption describes. This generator
does the same with any :class:`~atrlib.data.base.AudioCaptionDataset` (``synth``, a ``folder``
of your own sounds, Clotho, ...):

* a **bed** of ``duration`` seconds at ``bed_db`` dBFS RMS: quiet white noise (clipped at +-4
  sigma), or a chosen ``background`` file, looped from a random offset and scaled to that level;
* 1-3 (``min_events``..``max_events``) **events**: distinct clips of the collection (silent
  clips are passed over), each cut to at most ``max_event_seconds`` and to ``duration / events``
  so that they always fit, placed at random **non-overlapping** positions (every arrangement of
  the gaps equally likely), each scaled so that its RMS is ``snr_db`` dB above the bed's RMS
  (both RMS over the whole event clip and the whole bed);
* one **query** per event: one of the clip's captions (drawn at random), its window
  ``[start, end]`` in seconds, ``qid = "{vid}_{k}"`` in time order.

When the loudest event plus the bed's peak would clip, the whole recording is scaled down by one
factor (the SNR stays). Output, in ``out_dir``::

    {vid}.wav            mono PCM_16 at sample_rate, vid = "{prefix}{index:05d}"
    annotations.jsonl    the ground-truth format (formats.py), plus "source" (clip id) and "snr_db"

Deterministic: recording ``r`` draws its events from ``numpy.random.default_rng([seed, r, 1])``
and its noise chunk ``c`` (65,536 samples) from ``default_rng([seed, r, c, 2])`` (distinct seed
lists: numpy treats a list with trailing zeros as the list without them), so the same arguments
give byte-identical files, whatever ``block_seconds``.
Memory is bounded: events are held (at most ``max_events x max_event_seconds``), the bed and
the mix are made and written one ``block_seconds`` block at a time (soundfile), each file
atomically (renamed into place when complete); ``annotations.jsonl`` is written last.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from atrlib.audio.io import load_audio
from atrlib.data.base import AudioCaptionDataset
from atrlib.errors import ConfigError, DatasetError
from atrlib.files import atomic_path
from atrlib.moments.formats import MomentQuery, write_ground_truth

ANNOTATIONS = "annotations.jsonl"
NOISE_CLIP = 4.0  # the noise bed is clipped at +-4 sigma: a known peak (RMS changes by 0.003 dB)
NOISE_CHUNK = 1 << 16  # the noise bed is drawn in chunks of this many samples, each from its own seed
PEAK = 0.99       # the mix is scaled down when it would reach beyond this


def _check(n: int, duration: float, snr_db: float, sample_rate: int, min_events: int, max_events: int,
           max_event_seconds: float, block_seconds: float, bed_db: float) -> None:
    problems = []
    if isinstance(n, bool) or int(n) != n or n < 1:
        problems.append(f"n (recordings) must be an int >= 1, got {n!r}")
    if not (isinstance(duration, (int, float)) and math.isfinite(duration) and duration > 0):
        problems.append(f"duration must be > 0 s, got {duration!r}")
    for name, v in (("snr_db", snr_db), ("bed_db", bed_db)):
        if not (isinstance(v, (int, float)) and math.isfinite(v)):
            problems.append(f"{name} must be a finite number of dB, got {v!r}")
    if isinstance(sample_rate, bool) or int(sample_rate) != sample_rate or sample_rate < 8000:
        problems.append(f"sample_rate must be an int >= 8000 Hz, got {sample_rate!r}")
    if not (1 <= min_events <= max_events):
        problems.append(f"need 1 <= min_events <= max_events, got {min_events} and {max_events}")
    if not (max_event_seconds > 0 and block_seconds > 0):
        problems.append("max_event_seconds and block_seconds must be > 0")
    if problems:
        raise ConfigError("; ".join(problems))


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def _pick_events(clips: AudioCaptionDataset, k: int, rng: np.random.Generator, sample_rate: int,
                 max_samples: int) -> List[Tuple[dict, np.ndarray, str]]:
    """``k`` distinct non-silent clips in a random order: (item, samples, caption)."""
    picked = []
    for i in rng.permutation(len(clips)):
        item = clips[int(i)]
        x, _ = load_audio(item["audio_path"], sample_rate, duration=max_samples / sample_rate)  # (samples,)
        x = x[:max_samples]
        if _rms(x) == 0.0 or not item["captions"]:
            continue  # a silent clip cannot be an event; a clip without caption cannot be a query
        caption = item["captions"][int(rng.integers(len(item["captions"])))]
        picked.append((item, x, caption))
        if len(picked) == k:
            return picked
    raise DatasetError(f"{clips.name}/{clips.split}: only {len(picked)} clip(s) with sound and a caption, "
                       f"{k} needed for one recording; use a larger collection or lower max_events")


def _place(lengths: Sequence[int], total: int, rng: np.random.Generator) -> List[int]:
    """Start samples of events of ``lengths`` laid in this order in ``total`` samples, not
    overlapping: the free samples are cut at ``len(lengths)`` uniform points (sorted)."""
    free = total - int(sum(lengths))
    cuts = np.sort(rng.integers(0, free + 1, size=len(lengths)))  # (k,)
    starts, used = [], 0
    for cut, n in zip(cuts, lengths):
        starts.append(int(cut) + used)
        used += n
    return starts


def _bed_block(r: int, a: int, z: int, seed: int, sigma: float, background: Optional[np.ndarray],
               offset: int) -> np.ndarray:
    """Samples ``a:z`` of recording ``r``'s bed -> (z - a,) float64; the same whatever the block size
    (noise chunk ``c`` always comes from ``default_rng([seed, r, c, 2])``)."""
    if background is None:
        parts = []
        for c in range(a // NOISE_CHUNK, (z - 1) // NOISE_CHUNK + 1):
            chunk = np.random.default_rng([seed, r, c, 2]).standard_normal(NOISE_CHUNK)  # (NOISE_CHUNK,)
            c0 = c * NOISE_CHUNK  # the chunk's first sample in the recording
            parts.append(chunk[max(a - c0, 0):z - c0])
        return sigma * np.clip(np.concatenate(parts), -NOISE_CLIP, NOISE_CLIP)  # (z - a,)
    idx = (np.arange(a, z) + offset) % len(background)  # (z - a,) looped
    return background[idx].astype(np.float64)


def generate_moments(clips: AudioCaptionDataset, out_dir: Union[str, Path], n: int = 10, duration: float = 60.0,
                     snr_db: float = 10.0, seed: int = 0, sample_rate: int = 32000, min_events: int = 1,
                     max_events: int = 3, bed_db: float = -35.0, background: Optional[Union[str, Path]] = None,
                     max_event_seconds: float = 20.0, block_seconds: float = 10.0,
                     prefix: str = "rec") -> List[MomentQuery]:
    """Write ``n`` recordings of ``duration`` s made from ``clips`` into ``out_dir``, with
    ``annotations.jsonl``; returns the queries written (see the module text for every step).

    Parameters: ``snr_db`` (event RMS over bed RMS), ``bed_db`` (bed RMS, dBFS), ``background``
    (an audio file for the bed; None: white noise), ``sample_rate`` (Hz of the output; clips
    are resampled), ``min_events``/``max_events`` (per recording), ``max_event_seconds`` (longer
    clips are cut), ``block_seconds`` (write block), ``seed``, ``prefix`` (of the vids).
    An ``out_dir`` that already holds ``annotations.jsonl`` is refused (``FileExistsError``).
    """
    import soundfile as sf

    _check(n, duration, snr_db, sample_rate, min_events, max_events, max_event_seconds, block_seconds, bed_db)
    if not len(clips):
        raise DatasetError(f"{clips.name}/{clips.split}: no clips to make recordings from")
    out_dir = Path(out_dir)
    if (out_dir / ANNOTATIONS).exists():
        raise FileExistsError(f"{out_dir} already holds generated recordings ({ANNOTATIONS}); choose another "
                              "folder or move that one aside")
    total = int(round(duration * sample_rate))  # samples per recording
    block = max(1, int(round(block_seconds * sample_rate)))
    bed_rms = 10.0 ** (bed_db / 20.0)
    bg = None
    if background is not None:  # one recording's worth at most: looped beyond that
        bg, _ = load_audio(background, sample_rate, duration=duration)  # (samples,)
        if _rms(bg) == 0.0:
            raise DatasetError(f"{background}: the background file is silent; choose one with sound")
        bg = (bg * (bed_rms / _rms(bg))).astype(np.float32)
    bed_peak = NOISE_CLIP * bed_rms if bg is None else float(np.abs(bg).max())

    queries: List[MomentQuery] = []
    for r in range(int(n)):
        rng = np.random.default_rng([seed, r, 1])
        k = int(rng.integers(min_events, max_events + 1))
        cap = min(int(max_event_seconds * sample_rate), total // k)
        events = _pick_events(clips, k, rng, sample_rate, cap)
        starts = _place([len(x) for _, x, _ in events], total, rng)
        offset = int(rng.integers(len(bg))) if bg is not None else 0
        gains = [bed_rms * 10.0 ** (snr_db / 20.0) / _rms(x) for _, x, _ in events]
        loudest = max(g * float(np.abs(x).max()) for g, (_, x, _) in zip(gains, events))
        scale = min(1.0, PEAK / (bed_peak + loudest))  # one factor for the whole mix: the SNR stays
        vid = f"{prefix}{r:05d}"
        with atomic_path(out_dir / f"{vid}.wav", suffix=".wav") as tmp:
            with sf.SoundFile(str(tmp), "w", samplerate=int(sample_rate), channels=1, subtype="PCM_16",
                              format="WAV") as f:
                for a in range(0, total, block):
                    z = min(a + block, total)
                    mix = _bed_block(r, a, z, seed, bed_rms, bg, offset)  # (z - a,)
                    for s, g, (_, x, _) in zip(starts, gains, events):
                        lo, hi = max(a, s), min(z, s + len(x))
                        if lo < hi:
                            mix[lo - a:hi - a] += g * x[lo - s:hi - s]
                    f.write((scale * mix).astype(np.float32))
        order = sorted(range(k), key=lambda i: starts[i])
        for q, i in enumerate(order, 1):
            item, x, caption = events[i]
            window = (starts[i] / sample_rate, (starts[i] + len(x)) / sample_rate)
            queries.append(MomentQuery(f"{vid}_{q}", caption, vid, total / sample_rate, (window,),
                                       extra={"source": item["clip_id"], "snr_db": float(snr_db)}))
    write_ground_truth(out_dir / ANNOTATIONS, queries)
    return queries
