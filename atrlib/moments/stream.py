"""Long recordings read in windows, with bounded memory: never the whole file at once.

A two-hour recording at 32 kHz is 230 million samples (920 MB as float32); moment retrieval
only ever needs one analysis window of it at a time. :class:`AudioStream` decodes a file block
by block (soundfile), mixes it to mono and resamples it on the fly (``soxr``'s streaming
resampler, the same high-quality filter :func:`atrlib.audio.io.resample` uses on whole clips),
handing out exactly the samples asked for. :func:`iter_windows` slides a window over any such
reader::

    window = 2 s, hop = 1 s:   [0, 2) [1, 3) [2, 4) ... and one last window aligned to the end
                               when the grid does not reach it, so every sample is covered

holding one window of samples and asking the reader for at most one window (the first
request) and then one hop at a time: peak memory is ``window + hop`` samples, whatever the
recording's length. :func:`window_batches` groups windows for a tower call (``batch`` windows
at a time). A recording shorter than one window is an :class:`~atrlib.errors.AudioError`
naming it (:data:`TooShortError`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, List, Optional, Protocol, Tuple, Union

import numpy as np

from atrlib.errors import AudioError

PathLike = Union[str, Path]
BLOCK = 1 << 16  # native samples decoded per soundfile read, at most


class TooShortError(AudioError):
    """A recording shorter than one analysis window."""


class SampleReader(Protocol):
    """Anything :func:`iter_windows` can read from: ``read(n)`` returns up to ``n`` mono
    float32 samples (fewer only at the end, then an empty array)."""

    sample_rate: int

    def read(self, n: int) -> np.ndarray: ...


class AudioStream:
    """Mono float32 samples of ``path`` at ``sample_rate`` (None: the file's rate), decoded on
    demand: ``read(n)`` decodes only what it needs (at most :data:`BLOCK` native samples per
    soundfile call). Use as a context manager, or call :meth:`close`.

    ``duration`` is the header's length in seconds (exact for wav / flac; ogg and mp3 headers
    are usually right); ``samples_read`` counts what was handed out, the true length once the
    stream is exhausted. Undecodable data, NaN or out-of-range samples are an
    :class:`~atrlib.errors.AudioError` naming the file.
    """

    def __init__(self, path: PathLike, sample_rate: Optional[int] = None, block: int = BLOCK):
        import soundfile as sf

        from atrlib.audio.io import check_file

        self.path = check_file(path)
        try:
            self._file = sf.SoundFile(str(self.path))
        except Exception as e:  # soundfile's LibsndfileError, RuntimeError, ...
            raise AudioError(f"{self.path}: cannot decode audio ({type(e).__name__}: {e}); convert it to wav "
                             "(moment retrieval streams long files with soundfile: wav, flac, ogg, mp3)") from None
        self.native_rate = int(self._file.samplerate)
        self.sample_rate = int(sample_rate or self.native_rate)
        self.duration = self._file.frames / self.native_rate if self._file.frames > 0 else 0.0
        self.block = int(block)
        self._resampler = None
        if self.sample_rate != self.native_rate:
            import soxr

            self._resampler = soxr.ResampleStream(self.native_rate, self.sample_rate, 1, dtype="float32",
                                                  quality="HQ")
        self._pending = np.zeros(0, np.float32)  # resampled samples not handed out yet
        self._eof = False
        self.samples_read = 0

    def __enter__(self) -> "AudioStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def _decode(self, native: int) -> None:
        """Decode up to ``native`` samples (mono, resampled) onto the pending queue."""
        from atrlib.audio.io import check_samples

        try:
            x = self._file.read(frames=max(1, min(native, self.block)), dtype="float32", always_2d=True)  # (n, ch)
        except Exception as e:
            raise AudioError(f"{self.path}: cannot decode audio after {self.samples_read / self.sample_rate:.1f} s "
                             f"({type(e).__name__}: {e}); the file is truncated or corrupt — re-export it") from None
        last = len(x) == 0
        mono = x.mean(axis=1) if len(x) else np.zeros(0, np.float32)  # (n,)
        check_samples(mono, self.path)
        if self._resampler is not None:
            mono = self._resampler.resample_chunk(mono, last=last)  # (about n x rate ratio,)
        self._pending = np.concatenate([self._pending, mono.astype(np.float32, copy=False)])
        self._eof = last

    def read(self, n: int) -> np.ndarray:
        """The next ``n`` samples (fewer at the end of the file; empty after it)."""
        n = int(n)
        while len(self._pending) < n and not self._eof:
            need = n - len(self._pending)
            self._decode(int(np.ceil(need * self.native_rate / self.sample_rate)) + 16)
        out, self._pending = self._pending[:n], self._pending[n:]
        self.samples_read += len(out)
        return out


def recording_seconds(path: PathLike) -> float:
    """The recording's length in seconds from its header (cheap: nothing is decoded); an
    :class:`~atrlib.errors.AudioError` naming the file when it cannot be opened."""
    import soundfile as sf

    from atrlib.audio.io import check_file

    path = check_file(path)
    try:
        info = sf.info(str(path))
    except Exception as e:
        raise AudioError(f"{path}: cannot decode audio ({type(e).__name__}: {e}); convert it to wav") from None
    return info.frames / info.samplerate if info.frames > 0 else 0.0


def window_grid(n_samples: int, window: int, hop: int) -> List[int]:
    """Start samples of the windows :func:`iter_windows` yields for ``n_samples``: every ``hop``
    while a whole window fits, plus one window aligned to the end when the grid stops short."""
    if n_samples < window:
        return []
    starts = list(range(0, n_samples - window + 1, hop))
    if starts[-1] + window < n_samples:
        starts.append(n_samples - window)
    return starts


def iter_windows(reader: SampleReader, window: int, hop: int, name: str = "recording"
                 ) -> Iterator[Tuple[int, np.ndarray]]:
    """``(start sample, samples (window,))`` for each window of the stream (see the module text).

    Reads ``window`` samples first, then ``hop`` at a time, and keeps one window: the memory
    is bounded by ``window + hop`` samples. A stream shorter than one window raises
    :class:`TooShortError` naming ``name``.
    """
    if not (0 < hop <= window):
        raise ValueError(f"need 0 < hop <= window, got hop {hop} and window {window} samples")
    buf = reader.read(window)  # (<= window,)
    if len(buf) < window:
        raise TooShortError(f"{name}: lasts {len(buf) / reader.sample_rate:.2f} s, shorter than one analysis window "
                            f"({window / reader.sample_rate:g} s); use a shorter window or a longer recording")
    start = 0
    yield start, buf
    while True:
        new = reader.read(hop)  # (<= hop,)
        if len(new) == 0:
            return
        buf = np.concatenate([buf[len(new):], new])  # (window,): the last `window` samples read
        if len(new) < hop:  # the end: one last window aligned to it
            yield start + len(new), buf
            return
        start += hop
        yield start, buf


def window_batches(reader: SampleReader, window: int, hop: int, batch: int = 16, name: str = "recording"
                   ) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """``(starts (b,), waves (b, window))`` with ``b <= batch``: :func:`iter_windows` grouped
    for one tower call (memory: ``batch`` windows)."""
    starts: List[int] = []
    waves: List[np.ndarray] = []
    for s, w in iter_windows(reader, window, hop, name):
        starts.append(s)
        waves.append(w)
        if len(waves) == batch:
            yield np.asarray(starts), np.stack(waves)
            starts, waves = [], []
    if waves:
        yield np.asarray(starts), np.stack(waves)
