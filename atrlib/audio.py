"""Audio I/O: robust loading, mono mix-down, resampling, pad / crop / segment.

Every function names the file in its errors and says what to do, because a corrupt clip in
a dataset of thousands is the normal case, not the exception.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np


class AudioError(RuntimeError):
    """An audio file that cannot be used; the message names the file and the fix."""


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

    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: file not found; check the dataset root or remove the row from the caption CSV")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: file is empty (0 bytes); re-download it or remove it from the dataset")
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
    if not np.isfinite(x).all():
        raise AudioError(f"{path}: contains NaN or infinite samples; the file is corrupt")
    if mono:
        x = x.mean(axis=0)  # (samples,)
    if sample_rate is not None and sample_rate != sr:
        x = resample(x, sr, sample_rate)
        sr = sample_rate
    return np.ascontiguousarray(x, dtype=np.float32), int(sr)


def audio_info(path: str | Path) -> Tuple[float, int]:
    """(duration in seconds, sample rate) from the header, without decoding all of it."""
    import soundfile as sf

    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: file is empty (0 bytes); re-download it or remove it from the dataset")
    try:
        info = sf.info(str(path))
        if info.frames <= 0:
            raise AudioError(f"{path}: has zero frames; re-download it or remove it from the dataset")
        return info.frames / info.samplerate, int(info.samplerate)
    except AudioError:
        raise
    except Exception:
        x, sr = load_audio(path)
        return len(x) / sr, sr


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


def segment(x: np.ndarray, sample_rate: int, seconds: float = 10.0, max_seconds: Optional[float] = 30.0,
            min_last: float = 1.0) -> List[np.ndarray]:
    """Split a clip into fixed-length segments (e.g. 10-s segments of up to 30 s, as the
    DCASE 2024 winning system did). The last segment is kept (zero-padded) if it has at
    least ``min_last`` seconds; a clip shorter than one segment gives one padded segment."""
    if max_seconds is not None:
        x = x[..., : int(max_seconds * sample_rate)]
    seg = int(seconds * sample_rate)
    out = []
    for s in range(0, max(x.shape[-1], 1), seg):
        piece = x[..., s:s + seg]
        if out and piece.shape[-1] < min_last * sample_rate:
            break
        out.append(pad_or_crop(piece, seg))
    return out

