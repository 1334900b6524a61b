"""Audio I/O: robust loading, mono mix-down, resampling, pad / crop / segment.

Every function names the file in its errors and says what to do, because a corrupt clip in
a dataset of thousands is the normal case, not the exception.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from atrlib.errors import AudioError


# Decoded lossy audio (mp3, ogg) and processed float files overshoot full scale a little
# (a real mp3 here peaks at 1.003); beyond 6 dB over full scale the file is not audio in
# [-1, 1] (a wrong scale, or garbage) and would silently dominate every feature.
MAX_ABS_SAMPLE = 2.0
# A clip shorter than this is zero-padded before it enters a tower without a ``min_samples``
# attribute: every tower's front end (STFT windows, pooling, per-segment statistics) is
# defined from there on, so a 1-sample or 50-ms clip gives a finite embedding, not NaN.
MIN_SECONDS = 0.5


def check_file(path: str | Path) -> Path:
    """``path`` must exist, be a regular file (not a folder, device or pipe: ``/dev/zero``
    would be read forever) and be non-empty; raises :class:`AudioError` naming it."""
    import stat

    path = Path(path)
    try:
        st = path.stat()  # follows symlinks: a link to /dev/zero is a device
    except FileNotFoundError:
        raise AudioError(f"{path}: file not found; check the dataset root or remove the row from the caption CSV") from None
    except OSError as e:
        raise AudioError(f"{path}: cannot be read ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "a device or pipe, not a file"
        raise AudioError(f"{path}: is {kind}; audio must be a regular file")
    if st.st_size == 0:
        raise AudioError(f"{path}: file is empty (0 bytes); re-download it or remove it from the dataset")
    return path


def check_samples(x: np.ndarray, path: str | Path) -> None:
    """NaN / infinite / out-of-range samples are an :class:`AudioError` naming the file."""
    finite = np.isfinite(x)
    if not finite.all():
        bad = int((~finite).sum())
        raise AudioError(f"{path}: contains {bad} NaN or infinite sample(s); the file is corrupt — re-export it")
    peak = float(np.abs(x).max()) if x.size else 0.0
    if peak > MAX_ABS_SAMPLE:
        raise AudioError(f"{path}: float samples reach {peak:.4g}, outside [-1, 1]; the file is mis-scaled — "
                         "normalise it (e.g. `sox in.wav -b 16 out.wav norm -1`)")


def load_audio(path: str | Path, sample_rate: Optional[int] = None, mono: bool = True,
               offset: float = 0.0, duration: Optional[float] = None) -> Tuple[np.ndarray, int]:
    """Read ``path`` as float32 in [-1, 1].

    Parameters
    ----------
    path: wav / flac / ogg / mp3 (soundfile; librosa's audioread fallback for others).
    sample_rate: resample to this rate (None keeps the file's rate).
    mono: average channels (returns shape (samples,)); else (channels, samples).
    offset, duration: seconds to skip / to read (None reads to the end).

    Raises :class:`AudioError` for a missing, empty, zero-length or undecodable file.
    """
    import soundfile as sf

    path = check_file(path)
    try:
        with sf.SoundFile(str(path)) as f:
            sr = f.samplerate
            start = int(round(offset * sr))
            if start:
                f.seek(start)
            frames = -1 if duration is None else int(round(duration * sr))
            x = f.read(frames=frames, dtype="float32", always_2d=True).T  # (channels, samples)
    except Exception as e:  # soundfile cannot decode it: try librosa/audioread
        try:
            import librosa

            x, sr = librosa.load(str(path), sr=None, mono=False, offset=offset, duration=duration)
            x = np.atleast_2d(x).astype(np.float32)  # (channels, samples)
        except Exception as e2:
            raise AudioError(
                f"{path}: cannot decode audio ({type(e).__name__}: {e}; fallback: {type(e2).__name__}: {e2}); "
                "the file is corrupt or in an unsupported format — re-download or convert it to wav"
            ) from e2
    if x.shape[-1] == 0:
        raise AudioError(f"{path}: decodes to zero samples; re-download it or remove it from the dataset")
    check_samples(x, path)
    if mono:
        x = x.mean(axis=0)  # (samples,)
    if sample_rate is not None and sample_rate != sr:
        x = resample(x, sr, sample_rate)
        sr = sample_rate
    return np.ascontiguousarray(x, dtype=np.float32), int(sr)


def audio_info(path: str | Path, block: int = 1 << 18) -> Tuple[float, int]:
    """(duration in seconds, sample rate), verified by decoding the whole file block by block.

    Headers are not trusted: a truncated mp3 or flac announces its original length. Every
    sample is decoded and checked (:func:`check_samples`: NaN, inf, out of range), so a bad
    file is reported when the dataset is loaded, with its CSV line, not mid-training.
    """
    import soundfile as sf

    path = check_file(path)
    try:
        frames = 0
        with sf.SoundFile(str(path)) as f:
            sr = int(f.samplerate)
            while True:
                x = f.read(frames=block, dtype="float32", always_2d=True)  # (frames, channels)
                if not len(x):
                    break
                check_samples(x, path)
                frames += len(x)
    except AudioError:
        raise
    except Exception:
        x, sr = load_audio(path)  # librosa's fallback decoders; raises AudioError
        frames = x.shape[-1]
    if frames <= 0:
        raise AudioError(f"{path}: decodes to zero samples; re-download it or remove it from the dataset")
    return frames / sr, int(sr)


def min_samples(tower, sample_rate: Optional[int] = None) -> int:
    """The shortest input ``tower`` is fed: its ``min_samples`` attribute when it has one,
    else :data:`MIN_SECONDS` at its sample rate."""
    n = getattr(tower, "min_samples", None)
    if n:
        return int(n)
    sr = sample_rate or getattr(tower, "sample_rate", None) or 16000
    return int(round(MIN_SECONDS * sr))


def pad_to_min(x, n: int):
    """Zero-pad the last axis of ``x`` (numpy array or torch tensor) to at least ``n`` samples."""
    short = n - x.shape[-1]
    if short <= 0:
        return x
    if isinstance(x, np.ndarray):
        return np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, short)])
    import torch.nn.functional as F

    return F.pad(x, (0, short))


def resample(x: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited resampling along the last axis (librosa / soxr high quality)."""
    import librosa

    return librosa.resample(x, orig_sr=orig_sr, target_sr=target_sr, res_type="soxr_hq").astype(np.float32)


def pad_or_crop(x: np.ndarray, length: int, mode: str = "start", rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """Force the last axis to ``length`` samples.

    Shorter clips are zero-padded at the end; longer ones cropped at the start
    (``mode="start"``), the centre (``"center"``) or a random offset (``"random"``, training).
    """
    n = x.shape[-1]
    if n == length:
        return x
    if n < length:
        pad = [(0, 0)] * (x.ndim - 1) + [(0, length - n)]
        return np.pad(x, pad)
    if mode == "start":
        s = 0
    elif mode == "center":
        s = (n - length) // 2
    elif mode == "random":
        s = int((rng or np.random.default_rng()).integers(0, n - length + 1))
    else:
        raise ValueError(f"unknown crop mode {mode!r}; use 'start', 'center' or 'random'")
    return x[..., s:s + length]


def segment_bounds(n: int, seg: int, max_len: Optional[int] = None, tail: str = "pad",
                   min_last: int = 0) -> List[Tuple[int, int]]:
    """[(start, stop)] sample ranges cutting a clip of ``n`` samples (first cut to ``max_len``)
    into segments of ``seg`` samples.

    ``tail="pad"``: segments at 0, seg, 2·seg, ...; the last one may be short (the caller pads
    it) and is dropped when shorter than ``min_last`` samples, unless it is the only one.
    ``tail="align"``: full segments only, no padding; a leftover of at least ``min_last``
    becomes one more segment aligned to the clip's end (overlapping); a clip no longer than one
    segment stays whole.
    """
    if max_len is not None:
        n = min(n, int(max_len))
    if seg <= 0:
        return [(0, n)]
    if tail == "pad":
        out = [(s, min(s + seg, n)) for s in range(0, max(n, 1), seg)]
        if len(out) > 1 and out[-1][1] - out[-1][0] < min_last:
            out.pop()
        return out
    if tail == "align":
        if n <= seg:
            return [(0, n)]
        out = [(s, s + seg) for s in range(0, n - seg + 1, seg)]
        if n - out[-1][1] >= max(min_last, 1):
            out.append((n - seg, n))
        return out
    raise ValueError(f"unknown tail {tail!r}; use 'pad' or 'align'")


def segment(x: np.ndarray, sample_rate: int, seconds: float = 10.0, max_seconds: Optional[float] = 30.0,
            min_last: float = 1.0, tail: str = "pad") -> List[np.ndarray]:
    """Cut a clip into ``seconds``-long segments by :func:`segment_bounds` (e.g. 10-s segments of
    up to 30 s, as the DCASE 2024 winning system did). ``tail="pad"``: the last segment is kept,
    zero-padded, if it has at least ``min_last`` seconds, and a clip shorter than one segment
    gives one padded segment; ``tail="align"``: no padding, a leftover of at least ``min_last``
    seconds becomes a segment aligned to the clip's end, a short clip stays whole."""
    seg = int(round(seconds * sample_rate))
    bounds = segment_bounds(x.shape[-1], seg, None if max_seconds is None else int(max_seconds * sample_rate),
                            tail, int(round(min_last * sample_rate)))
    pieces = [x[..., a:b] for a, b in bounds]
    return [pad_or_crop(p, seg) for p in pieces] if tail == "pad" else pieces
