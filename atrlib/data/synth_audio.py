"""The embedded dataset's sound: render a realised clip spec into samples (numpy, deterministic)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from atrlib.data.synth_scenes import BACKGROUNDS, EVENT_KINDS, SAMPLE_RATE


# ----------------------------------------------------------------------------- audio
def _ramp(x: np.ndarray, sr: int, seconds: float) -> np.ndarray:
    n = min(int(seconds * sr), len(x) // 2)
    if n > 0:
        r = 0.5 - 0.5 * np.cos(np.pi * np.arange(n) / n)
        x[:n] *= r
        x[-n:] *= r[::-1]
    return x


def _harmonics(freq, n: int, sr: int, amps: Sequence[float]) -> np.ndarray:
    """Sum of partials k*freq (freq: Hz, scalar or per-sample), skipping those near Nyquist."""
    f = np.broadcast_to(np.asarray(freq, dtype=np.float64), (n,))
    phase = 2 * np.pi * np.cumsum(f) / sr  # (n,)
    out = np.zeros(n)
    for k, a in enumerate(amps, start=1):
        if k * f.max() < 0.45 * sr:
            out += a * np.sin(k * phase)
    return out


def _shaped_noise(n: int, sr: int, rng: np.random.Generator, shape: str) -> np.ndarray:
    """Gaussian noise with a spectral shape: ``hiss`` (high-passed white, 2nd order at
    1.5 kHz), ``pink`` (1/f, low-passed at 1.2 kHz), ``pinkfull`` (1/f) or ``hpbed``
    (high-passed at 2 kHz)."""
    X = np.fft.rfft(rng.standard_normal(n))  # (n//2+1,)
    f = np.maximum(np.fft.rfftfreq(n, 1.0 / sr), 1.0)
    if shape == "hiss":
        H = 1.0 / np.sqrt(1.0 + (1500.0 / f) ** 4)
    elif shape == "pink":
        H = 1.0 / np.sqrt(f) / np.sqrt(1.0 + (f / 1200.0) ** 4)
    elif shape == "pinkfull":
        H = 1.0 / np.sqrt(f)
    elif shape == "hpbed":
        H = 1.0 / np.sqrt(1.0 + (2000.0 / f) ** 4)
    else:
        raise ValueError(f"unknown noise shape {shape!r}")
    return np.fft.irfft(X * H, n)


def _render_event(e: dict, n: int, sr: int) -> np.ndarray:
    """The event's samples over its own span (n samples), before level scaling."""
    rng = np.random.default_rng(e["seed"])
    t = np.arange(n) / sr
    k = e["kind"]
    if k == "tone":
        f = e["f0"] * (1.0 + 0.003 * np.sin(2 * np.pi * 5.0 * t))
        return _ramp(_harmonics(f, n, sr, (1.0, 0.5, 0.3, 0.2)), sr, 0.015)
    if k == "sweep":
        f = e["f_start"] * (e["f_end"] / e["f_start"]) ** (t / max(t[-1], 1e-9))
        return _ramp(_harmonics(f, n, sr, (1.0, 0.3)), sr, 0.015)
    if k == "hum":
        amps = [(1.0 if j % 2 else 0.6) / j for j in range(1, 9)]  # odd partials stronger: buzzy
        x = _harmonics(e["f0"], n, sr, amps) * (1.0 + 0.1 * np.sin(2 * np.pi * 2.0 * t))
        return _ramp(x, sr, 0.03)
    if k == "noise":
        return _ramp(_shaped_noise(n, sr, rng, "hiss" if e["color"] == "white" else "pink"), sr, 0.02)
    if k == "beeps":
        carrier = _harmonics(e["f0"], n, sr, (1.0, 0.3))
        period = sr / e["rate"]
        blen = int(min(0.09, 0.45 / e["rate"]) * sr)
        gate = np.zeros(n)
        for start in np.arange(0.0, n - blen // 2, period).astype(int):
            seg = gate[start:start + blen]
            seg[:] = _ramp(np.ones(len(seg)), sr, 0.005)
        return carrier * gate
    if k == "clicks":
        klen = int(0.02 * sr)
        tk = np.arange(klen) / sr
        kernel = (np.sin(2 * np.pi * e["click_hz"] * tk) + 0.5 * rng.standard_normal(klen)) * np.exp(-tk / 0.004)
        x = np.zeros(n)
        period = sr / e["rate"]
        for start in np.arange(0.0, n - klen, period):
            j = int(start + rng.uniform(-0.03, 0.03) * period) if start > 0 else 0
            x[j:j + klen] += kernel[: n - j]
        return x
    raise ValueError(f"unknown event kind {k!r}; known: {', '.join(EVENT_KINDS)}")


def _render_background(bg: dict, n: int, sr: int) -> np.ndarray:
    rng = np.random.default_rng(bg["seed"])
    kind = bg["kind"]
    if kind == "silence":
        return 2e-5 * rng.standard_normal(n)  # about one PCM_16 step of dither
    if kind == "noise":
        x = _shaped_noise(n, sr, rng, "pinkfull")
    elif kind == "rain":
        drops = np.zeros(n)
        m = rng.poisson(rng.uniform(150.0, 300.0) * n / sr)
        np.add.at(drops, rng.integers(0, n, m), rng.lognormal(0.0, 0.4, m))
        klen = int(0.004 * sr)
        tk = np.arange(klen) / sr
        kernel = np.diff(rng.standard_normal(klen + 1)) * np.exp(-tk / 0.001)
        x = np.convolve(drops, kernel)[:n]  # (n,) pattering drops
        bed = _shaped_noise(n, sr, rng, "hpbed")  # (n,) a soft hiss under them
        x = x / max(np.sqrt(np.mean(x ** 2)), 1e-12) + 0.5 * bed / max(np.sqrt(np.mean(bed ** 2)), 1e-12)
    elif kind == "hum":
        x = _harmonics(bg["f0"], n, sr, [1.0 / j for j in range(1, 7)])
    else:
        raise ValueError(f"unknown background {kind!r}; known: {', '.join(BACKGROUNDS)}")
    return x * (bg["rms"] / max(np.sqrt(np.mean(x ** 2)), 1e-12))


def render_clip(spec: dict, sample_rate: int = SAMPLE_RATE, return_stems: bool = False):
    """The clip's samples (float32, mono, in [-1, 1]) from its spec, deterministically.

    Each event is rendered over ``[onset, offset)`` and scaled to its ``rms`` (or, for clicks,
    its ``peak``); the background is added; if the mix would exceed 0.95 in magnitude
    everything is scaled down together. With ``return_stems`` returns
    ``(mix, [event stems], background)`` on the same scale (mix == sum of stems + background).
    """
    sr = int(sample_rate)
    n = int(round(spec["duration"] * sr))
    stems = []
    for e in spec["events"]:
        a, b = int(round(e["onset"] * sr)), min(n, int(round(e["offset"] * sr)))
        x = _render_event(e, b - a, sr)  # (b - a,)
        if "peak" in e:
            x *= e["peak"] / max(np.abs(x).max(), 1e-12)
        else:
            x *= e["rms"] / max(np.sqrt(np.mean(x ** 2)), 1e-12)
        stem = np.zeros(n)
        stem[a:b] = x
        stems.append(stem)
    bg = _render_background(spec["background"], n, sr)  # (n,)
    mix = bg + (np.sum(stems, axis=0) if stems else 0.0)
    peak = np.abs(mix).max()
    if peak > 0.95:
        g = 0.95 / peak
        mix, bg, stems = mix * g, bg * g, [s * g for s in stems]
    if return_stems:
        return mix.astype(np.float32), [s.astype(np.float32) for s in stems], bg.astype(np.float32)
    return mix.astype(np.float32)


