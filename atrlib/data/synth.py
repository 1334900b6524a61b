"""The embedded procedural dataset ``synth``: synthesised clips with grammar-made captions.

Nothing is downloaded or committed: :func:`generate_synth` builds the whole dataset from a
seed with numpy (deterministic: same parameters give byte-identical files) and
:func:`load_synth` (registered as ``"synth"``) reads it back as an
:class:`~atrlib.data.base.AudioCaptionDataset`. It is the default dataset of ``make demo``:
small enough to generate and train on a laptop CPU in minutes, structured enough that
retrieval is learnable but not trivial.

Attribute space
---------------
A clip (3-5 s, mono) holds 1-3 *events* over one *background*. Event kinds and the
attributes each one carries (every attribute is audible, and recorded in the metadata):

=========  ==========================================================  =====================
kind       sound                                                       attributes
=========  ==========================================================  =====================
tone       harmonic tone (partials 1..4, slight vibrato)               pitch, loudness, length
sweep      log chirp over a 2.5-4x frequency range                     direction (up/down), pitch, loudness, length
noise      noise burst: white high-passed ("hiss") / pink low-passed   color (white/pink), loudness, length
clicks     train of short resonant clicks                              tempo (slow 3-5/s, fast 11-16/s), loudness
hum        mains-like buzz, 50/60/100/120 Hz with harmonics            pitch (always low), loudness, length
beeps      rhythmic beeps of a pitched tone                            pitch, tempo (slow 2-3/s, fast 6-8/s), loudness
=========  ==========================================================  =====================

pitch: low (110-260 Hz), mid (350-750 Hz), high (1.2-2.6 kHz) fundamental (a sweep's
geometric centre); loudness: quiet (RMS 0.02-0.03, clicks peak 0.3-0.36) or loud (RMS
0.12-0.18, clicks peak 0.75-0.95); length: short (10-16 % of the clip) or long (28-38 %).
Consecutive events are related by ``then`` (the next starts after a gap, once every
earlier event has ended) or ``while`` (the next starts while the previous one still sounds). Backgrounds: ``silence`` (1-LSB
dither), ``noise`` (steady pink noise), ``rain`` (random drops over a hiss bed), ``hum``
(a faint 50/60 Hz buzz), all at RMS 0.004-0.009.

Distractors: clips come in *families*: a random base clip and 0-2 variants that change one
thing (swap the event order, change a pitch / loudness / tempo / direction / colour /
length / relation / background, or replace one event), each with fresh timings,
frequencies and noise, so the nearest wrong answers share most of their attributes.

Caption grammar
---------------
Five captions per clip. Each caption mentions every event (a noun from the kind's
synonyms, some of which imply an attribute: "whistle" = high tone, "beep" = short tone,
"hiss" = white noise, "whoosh" = pink noise, "rattle" = fast clicks) and a random subset of
its attributes as adjectives or phrases ("a shrill tone", "a deep hum", "rapid clicks", "beeps
at a slow pace"); every attribute of every event is forced into at least one caption, so
the five together describe the clip but each one leaves different things out. Events are
joined in time order by a connector for their relation (then: ", then", "followed by",
". After that,", "B after A", "B, preceded by A"; while: "while B joins in", "B over A",
"B as A continues", "at the same time", "meanwhile"), wrapped in a frame ("There is X",
"You can hear X", "X can be heard", ...) and, in some captions, a background phrase ("in the
rain", "over a background hum", "against a silent background"). The five captions of a
clip are distinct strings.

On-disk layout (Clotho-like), under ``root``
(default ``cache_dir()/"synth"/f"{size}-seed{seed}-sr{sample_rate}"``)::

    root/synth_audio_{split}/{clip_id}.wav     mono PCM_16 wav at sample_rate
    root/synth_captions_{split}.csv            file_name,caption_1,...,caption_5 (UTF-8)
    root/synth_metadata_{split}.json           {"split", "sample_rate", "clip_seconds",
                                               "generator_version", "clips": [spec, ...]}
    root/DONE                                  JSON: generator version, parameters, hash

for split in ``train``, ``validation``, ``test`` (clip ids ``train_0007``, ``val_0003``,
``test_0012``). A *spec* (one entry of ``clips``) holds the clip id, duration, family,
variant, background, events (attributes, onset/offset in seconds, levels, frequencies,
noise seeds), relations and captions; :func:`render_clip` turns a spec back into the
exact samples.
"""
from __future__ import annotations

import copy
import csv
import hashlib
import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from atrlib.data.base import DATASETS, AudioCaptionDataset, ClipItem
from atrlib.paths import cache_dir

GENERATOR_VERSION = "synth-1"
SPLITS = ("train", "validation", "test")
SPLIT_ALIASES = {"development": "train", "dev": "train", "val": "validation",
                 "evaluation": "test", "eval": "test"}
_ID_PREFIX = {"train": "train", "validation": "val", "test": "test"}
N_CAPTIONS = 5


@dataclass(frozen=True)
class SynthSize:
    """How many clips per split and how long each one is."""

    n_train: int
    n_validation: int
    n_test: int
    clip_seconds: float

    def count(self, split: str) -> int:
        return {"train": self.n_train, "validation": self.n_validation, "test": self.n_test}[split]


SIZES: Dict[str, SynthSize] = {
    "tiny": SynthSize(24, 8, 8, 3.0),     # tests
    "smoke": SynthSize(64, 24, 24, 4.0),  # notebook smoke runs
    "demo": SynthSize(320, 80, 80, 5.0),  # make demo
}

# ----------------------------------------------------------------------------- attributes
EVENT_KINDS = ("tone", "sweep", "noise", "clicks", "hum", "beeps")
EVENT_ATTRS: Dict[str, Tuple[str, ...]] = {
    "tone": ("pitch", "loudness", "length"),
    "sweep": ("direction", "pitch", "loudness", "length"),
    "noise": ("color", "loudness", "length"),
    "clicks": ("tempo", "loudness"),
    "hum": ("pitch", "loudness", "length"),
    "beeps": ("pitch", "tempo", "loudness"),
}
ATTR_VALUES: Dict[str, Tuple[str, ...]] = {
    "pitch": ("low", "mid", "high"),
    "loudness": ("quiet", "loud"),
    "length": ("short", "long"),
    "tempo": ("slow", "fast"),
    "direction": ("up", "down"),
    "color": ("white", "pink"),
}
BACKGROUNDS = ("silence", "noise", "rain", "hum")
RELATIONS = ("then", "while")

PITCH_HZ = {"low": (110.0, 260.0), "mid": (350.0, 750.0), "high": (1200.0, 2600.0)}
TEMPO_HZ = {"clicks": {"slow": (3.0, 5.0), "fast": (11.0, 16.0)},
            "beeps": {"slow": (2.0, 3.0), "fast": (6.0, 8.0)}}
LEVEL = {"quiet": (0.02, 0.03), "loud": (0.12, 0.18)}          # event RMS over its span
CLICK_PEAK = {"quiet": (0.3, 0.36), "loud": (0.75, 0.95)}       # clicks: peak amplitude
BACKGROUND_RMS = (0.004, 0.009)
LENGTH_FRAC = {"short": (0.10, 0.16), "long": (0.28, 0.38)}   # of the clip duration
RHYTHM_FRAC = (0.25, 0.38)                                     # clicks / beeps span


def _pick(rng: np.random.Generator, seq: Sequence):
    return seq[int(rng.integers(len(seq)))]


def _values(kind: str, attr: str) -> Tuple[str, ...]:
    return ("low",) if (kind, attr) == ("hum", "pitch") else ATTR_VALUES[attr]


def _sample_event(rng: np.random.Generator, exclude: Sequence[str] = ()) -> dict:
    kind = _pick(rng, [k for k in EVENT_KINDS if k not in exclude])
    return {"kind": kind, **{a: _pick(rng, _values(kind, a)) for a in EVENT_ATTRS[kind]}}


def _sample_attributes(rng: np.random.Generator) -> dict:
    """Discrete attributes of one clip: events (in time order), relations, background."""
    n = int(rng.choice([1, 2, 3], p=[0.3, 0.45, 0.25]))
    background = _pick(rng, BACKGROUNDS)
    events: List[dict] = []
    for _ in range(n):
        no_hum = background == "hum" or any(e["kind"] == "hum" for e in events)
        events.append(_sample_event(rng, exclude=("hum",) if no_hum else ()))
    relations = [("then" if rng.random() < 0.6 else "while") for _ in range(n - 1)]
    return {"events": events, "relations": relations, "background": background}


MUTATIONS = ("swap", "pitch", "loudness", "tempo", "direction", "color", "length",
             "relation", "background", "replace")


def _mutate(attrs: dict, rng: np.random.Generator) -> Tuple[Optional[dict], str]:
    """A distractor: ``attrs`` with one thing changed, and the name of the change."""
    for _ in range(30):
        m = _pick(rng, MUTATIONS)
        new = copy.deepcopy(attrs)
        ev = new["events"]
        if m == "swap":
            new["events"], new["relations"] = ev[::-1], new["relations"][::-1]
        elif m == "relation":
            if not new["relations"]:
                continue
            i = int(rng.integers(len(new["relations"])))
            new["relations"][i] = "while" if new["relations"][i] == "then" else "then"
        elif m == "background":
            has_hum = any(e["kind"] == "hum" for e in ev)
            new["background"] = _pick(rng, [b for b in BACKGROUNDS
                                            if b != attrs["background"] and not (has_hum and b == "hum")])
        elif m == "replace":
            i = int(rng.integers(len(ev)))
            no_hum = new["background"] == "hum" or any(e["kind"] == "hum" for j, e in enumerate(ev) if j != i)
            ev[i] = _sample_event(rng, exclude=(ev[i]["kind"],) + (("hum",) if no_hum else ()))
        else:  # change one attribute of one event that has it (and has a choice)
            idx = [i for i, e in enumerate(ev) if len(_values(e["kind"], m)) > 1 and m in e]
            if not idx:
                continue
            e = ev[_pick(rng, idx)]
            e[m] = _pick(rng, [v for v in ATTR_VALUES[m] if v != e[m]])
        if new != attrs:
            return new, m
    return None, ""


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _realise(attrs: dict, clip_seconds: float, rng: np.random.Generator) -> dict:
    """Continuous parameters for ``attrs``: timings, levels, frequencies, noise seeds.

    May shorten a ``long`` event to ``short`` when the events cannot fit otherwise (the
    attribute is updated, so the spec stays true).
    """
    D = clip_seconds
    events = [dict(e) for e in attrs["events"]]
    relations = list(attrs["relations"])
    margin, avail = 0.04 * D, 0.92 * D

    def span_of(e: dict) -> float:
        if e["kind"] in ("clicks", "beeps"):
            return rng.uniform(*RHYTHM_FRAC) * D
        return rng.uniform(*LENGTH_FRAC[e["length"]]) * D

    while True:
        durs = [span_of(e) for e in events]
        starts = [0.0]
        for i, rel in enumerate(relations):
            if rel == "then":  # after everything so far has ended
                end = max(s + d for s, d in zip(starts, durs[: i + 1]))
                starts.append(end + rng.uniform(0.04, 0.08) * D)
            else:
                starts.append(starts[i] + rng.uniform(0.3, 0.55) * durs[i])
        span = max(s + d for s, d in zip(starts, durs))
        if span <= avail:
            break
        longs = [e for e in events if e.get("length") == "long"]
        if longs:
            _pick(rng, longs)["length"] = "short"
        else:  # only rhythmic events left to shrink: scale the layout
            durs = [d * avail / span for d in durs]
            starts = [s * avail / span for s in starts]
            span = avail
            break
    t0 = margin + rng.uniform(0.0, max(avail - span, 0.0))
    for e, s, d in zip(events, starts, durs):
        e["onset"], e["offset"] = round(t0 + s, 4), round(t0 + s + d, 4)
        k = e["kind"]
        if k == "clicks":
            e["peak"] = round(rng.uniform(*CLICK_PEAK[e["loudness"]]), 4)
        else:
            e["rms"] = round(rng.uniform(*LEVEL[e["loudness"]]), 4)
        if k in ("tone", "beeps"):
            e["f0"] = round(_loguniform(rng, *PITCH_HZ[e["pitch"]]), 2)
        if k == "sweep":
            c, r = _loguniform(rng, *PITCH_HZ[e["pitch"]]), rng.uniform(2.5, 4.0)
            lo, hi = c / np.sqrt(r), c * np.sqrt(r)
            e["f_start"], e["f_end"] = (round(lo, 2), round(hi, 2)) if e["direction"] == "up" else (round(hi, 2), round(lo, 2))
        if k == "hum":
            e["f0"] = float(_pick(rng, [50.0, 60.0, 100.0, 120.0]))
        if k in ("clicks", "beeps"):
            e["rate"] = round(rng.uniform(*TEMPO_HZ[k][e["tempo"]]), 3)
        if k == "clicks":
            e["click_hz"] = round(rng.uniform(1500.0, 4000.0), 1)
        e["seed"] = int(rng.integers(2**31 - 1))
    bg = {"kind": attrs["background"], "seed": int(rng.integers(2**31 - 1))}
    if bg["kind"] != "silence":
        bg["rms"] = round(rng.uniform(*BACKGROUND_RMS), 4)
    if bg["kind"] == "hum":
        bg["f0"] = float(_pick(rng, [50.0, 60.0]))
    return {"duration": float(D), "background": bg, "events": events, "relations": relations}


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


def render_clip(spec: dict, sample_rate: int = 16000, return_stems: bool = False):
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


# ----------------------------------------------------------------------------- captions
_ADJ = {
    "pitch": {"low": ["low-pitched", "low", "deep", "bass"],
              "mid": ["mid-pitched", "medium-pitched", "mid-range", "moderately pitched"],
              "high": ["high-pitched", "high", "shrill", "piercing"]},
    "loudness": {"quiet": ["quiet", "faint", "soft", "gentle"],
                 "loud": ["loud", "strong", "powerful", "intense"]},
    "length": {"short": ["short", "brief"], "long": ["long", "lengthy", "prolonged", "sustained"]},
    "tempo": {"slow": ["slow", "unhurried", "leisurely"], "fast": ["fast", "rapid", "quick"]},
    "direction": {"up": ["rising", "upward", "ascending"], "down": ["falling", "downward", "descending"]},
}
_TEMPO_POST = {"slow": ["at a slow tempo", "at a slow pace", "spaced far apart"],
               "fast": ["at a fast tempo", "at a rapid pace", "in quick succession"]}
_ADJ_ORDER = ("loudness", "length", "tempo", "direction", "pitch")
# (noun, number: sg | pl | mass, attributes the noun itself expresses)
_NOUNS: Dict[str, List[Tuple[str, str, dict]]] = {
    "tone": [("tone", "sg", {}), ("note", "sg", {}), ("steady tone", "sg", {}),
             ("whistle", "sg", {"pitch": "high"}), ("beep", "sg", {"length": "short"}),
             ("single beep", "sg", {"length": "short"})],
    "sweep": [("sweep", "sg", {}), ("chirp", "sg", {}), ("glide", "sg", {}), ("frequency sweep", "sg", {}),
              ("tone that rises", "sg", {"direction": "up"}), ("tone that falls", "sg", {"direction": "down"}),
              ("siren-like rise", "sg", {"direction": "up"})],
    "noise": [("burst of noise", "sg", {}), ("noise burst", "sg", {}), ("blast of noise", "sg", {}),
              ("hiss", "sg", {"color": "white"}), ("burst of white noise", "sg", {"color": "white"}),
              ("hissing noise", "mass", {"color": "white"}), ("burst of static", "sg", {"color": "white"}),
              ("whoosh", "sg", {"color": "pink"}), ("burst of pink noise", "sg", {"color": "pink"}),
              ("rushing noise", "mass", {"color": "pink"}), ("muffled rumble", "sg", {"color": "pink"})],
    "clicks": [("clicks", "pl", {}), ("clicking", "mass", {}), ("click train", "sg", {}),
               ("ticking", "mass", {}), ("series of clicks", "sg", {}),
               ("rattle", "sg", {"tempo": "fast"}), ("clock-like ticking", "mass", {"tempo": "slow"})],
    "hum": [("hum", "sg", {}), ("buzz", "sg", {}), ("electrical hum", "sg", {}), ("mains hum", "sg", {}),
            ("low hum", "sg", {"pitch": "low"}), ("deep buzz", "sg", {"pitch": "low"})],
    "beeps": [("beeps", "pl", {}), ("beeping", "mass", {}), ("series of beeps", "sg", {}), ("pips", "pl", {}),
              ("repeated beeps", "pl", {}), ("pulsing beeps", "pl", {}),
              ("alarm-like beeping", "mass", {"tempo": "fast"})],
}
# connectors in time order: L + link.format(R=...); {Rs} is the verb ending for R
_LINK = {"then": [", then {R}", " followed by {R}", ". After that, {R}", ", and after that {R}",
                  "; then {R}", ", and then {R}"],
         "while": [" while {R} join{Rs} in", " with {R} at the same time", ", and meanwhile {R}",
                   ", overlapped by {R}", " as {R} start{Rs}"]}
# two-event forms that reorder the words
_PAIR = {"then": ["First {A}, then {B}", "{B} after {A}", "{B}, preceded by {A}"],
         "while": ["{B} over {A}", "{B} as {A} continue{As}", "{A} and {B} at the same time"]}
_FRAMES = ["{X}", "{X}", "{X}", "There {is} {X}", "You can hear {X}", "We hear {X}",
           "A recording of {X}", "{X} can be heard"]
# background phrases: (suffix, prefix, sentence); none uses a pitch, loudness, tempo,
# direction or order word, and each names only its own background
_BG = {
    "silence": ([" in silence", " against a silent background", " with nothing in the background",
                 " in an otherwise silent recording"],
                ["In silence, ", "Against a silent background, "],
                ["The background is silent.", "Otherwise there is silence."]),
    "noise": ([" over steady background noise", " with a constant noise floor", " against background static",
               " with some background noise"],
              ["Over steady background noise, ", "With static in the background, "],
              ["Background noise runs throughout.", "There is a constant noise floor."]),
    "rain": ([" in the rain", " over pouring rain", " with rain pattering in the background",
              " against the sound of rain"],
             ["In the rain, ", "Over steady rain, ", "With rain pouring down, "],
             ["Rain patters in the background.", "It is raining throughout."]),
    "hum": ([" over a background hum", " with an electrical hum behind it", " against a steady mains hum"],
            ["Over a steady background hum, ", "With a mains hum behind it, "],
            ["A mains hum runs in the background.", "An electrical hum is present throughout."]),
}


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _event_phrase(e: dict, include: set, rng: np.random.Generator) -> Tuple[str, str]:
    """A noun phrase for event ``e`` mentioning (at least) the attributes in ``include``."""
    nouns = [nn for nn in _NOUNS[e["kind"]] if all(e.get(a) == v for a, v in nn[2].items())]
    if "color" in include:  # colour has no adjective: only a noun can say it
        nouns = [nn for nn in nouns if "color" in nn[2]]
    noun, number, fixed = _pick(rng, nouns)
    rest = [a for a in _ADJ_ORDER if a in include and a not in fixed]
    post = ""
    if "tempo" in rest and rng.random() < 0.4:
        rest.remove("tempo")
        posts = _TEMPO_POST[e["tempo"]] if number == "pl" else _TEMPO_POST[e["tempo"]][:2]  # "in quick
        post = " " + _pick(rng, posts)  # succession" / "spaced far apart" want a plural
    words = [_pick(rng, _ADJ[a][e[a]]) for a in rest]
    text = " ".join(words + [noun]) + post
    if number == "sg":
        text = _article(text)
    elif number == "pl" and rng.random() < 0.25:
        text = "some " + text
    return text, number


def _tidy(text: str) -> str:
    parts = [p.strip() for p in text.split(". ")]
    text = ". ".join(p[:1].upper() + p[1:] for p in parts if p)
    return text if text.endswith(".") else text + "."


def _one_caption(spec: dict, include: List[set], background: bool, rng: np.random.Generator) -> str:
    phrases = [_event_phrase(e, inc, rng) for e, inc in zip(spec["events"], include)]
    rels = spec["relations"]
    verb = {"pl": ""}
    if len(phrases) == 2 and rng.random() < 0.35:
        (a, na), (b, nb) = phrases
        body = _pick(rng, _PAIR[rels[0]]).format(A=a, B=b, As=verb.get(na, "s"))
    else:
        body, used = phrases[0][0], set()
        for rel, (r, nr) in zip(rels, phrases[1:]):
            link = _pick(rng, [x for x in _LINK[rel] if x not in used])
            used.add(link)
            body += link.format(R=r, Rs=verb.get(nr, "s"))
    if not body.startswith("First"):
        has_verb = ". " in body or any(w in body for w in (" join", " start", " continue"))
        frames = [f for f in _FRAMES if not (has_verb and f.endswith("heard")) and not (background and f.startswith("A rec"))]
        frame = _pick(rng, frames)
        if frame[0] != "{":
            body = body[0].lower() + body[1:]
        body = frame.format(X=body, **{"is": "are" if phrases[0][1] == "pl" else "is"})
    if background:
        suffixes, prefixes, sentences = _BG[spec["background"]["kind"]]
        where = rng.random()
        if where < 0.5:
            body = body.rstrip(".") + _pick(rng, suffixes)
        elif where < 0.75:
            body = _pick(rng, prefixes) + body[0].lower() + body[1:]
        else:
            body = _tidy(body) + " " + _pick(rng, sentences)
    return _tidy(body)


def make_captions(spec: dict, rng: np.random.Generator, n: int = N_CAPTIONS) -> List[str]:
    """``n`` distinct captions for a realised clip spec (see the module docstring)."""
    events = spec["events"]
    # every attribute of every event, and the background, is forced into some caption
    forced = {(i, a): int(rng.integers(n)) for i, e in enumerate(events) for a in EVENT_ATTRS[e["kind"]]}
    bg_kind = spec["background"]["kind"]
    bg_forced = set(rng.choice(n, size=1 if bg_kind == "silence" else 2, replace=False).tolist())
    p_bg = 0.1 if bg_kind == "silence" else 0.3
    captions: List[str] = []
    for c in range(n):
        include = [{a for a in EVENT_ATTRS[e["kind"]]
                    if forced[(i, a)] == c or rng.random() < (0.5 if a in ("direction", "color") else 0.35)}
                   for i, e in enumerate(events)]
        with_bg = c in bg_forced or rng.random() < p_bg
        for attempt in range(40):
            cap = _one_caption(spec, include, with_bg, rng)
            if cap not in captions:
                break
            i = int(rng.integers(len(events)))  # a repeat: say one more thing and retry
            include[i].add(_pick(rng, EVENT_ATTRS[events[i]["kind"]]))
        captions.append(cap)
    return captions


def describe_clip(spec: dict) -> str:
    """A compact canonical description, e.g. ``tone(high,loud,long) then beeps(low,fast,quiet) | rain``."""
    parts = []
    for i, e in enumerate(spec["events"]):
        attrs = ",".join(str(e[a]) for a in EVENT_ATTRS[e["kind"]])
        parts.append((f" {spec['relations'][i - 1]} " if i else "") + f"{e['kind']}({attrs})")
    return "".join(parts) + f" | {spec['background']['kind']}"


def sample_clip_specs(n: int, seed: int = 0, split: str = "train", clip_seconds: float = 5.0) -> List[dict]:
    """The realised specs (with captions) of the first ``n`` clips of ``split`` for ``seed``.

    Pure and cheap (no audio). Clips come in families (a base and 0-2 one-change variants,
    adjacent in the list); each split draws from its own random stream, so splits share no
    clip. ``generate_synth`` writes exactly these specs.
    """
    split = canonical_split(split)
    rng = np.random.default_rng([int(seed), SPLITS.index(split), 0x5EED])
    specs: List[dict] = []
    family = 0
    while len(specs) < n:
        base = _sample_attributes(rng)
        group = [(base, "base")]
        for _ in range(int(rng.choice([0, 1, 2], p=[0.2, 0.45, 0.35]))):
            new, how = _mutate(base, rng)
            if new is not None and all(new != g for g, _ in group):
                group.append((new, how))
        seen = set()
        for attrs, how in group:
            if len(specs) >= n:
                break
            clip_id = f"{_ID_PREFIX[split]}_{len(specs):04d}"
            spec = {"clip_id": clip_id, "file_name": f"{clip_id}.wav", "family": family, "variant": how,
                    **_realise(attrs, clip_seconds, rng)}
            if describe_clip(spec) in seen:  # fitting the layout undid the change (long -> short)
                continue
            seen.add(describe_clip(spec))
            spec["captions"] = make_captions(spec, rng)
            specs.append(spec)
        family += 1
    return specs


# ----------------------------------------------------------------------------- on disk
def canonical_split(split: str) -> str:
    """``train``/``validation``/``test``; accepts ``development``, ``evaluation``, ``val``, ..."""
    s = SPLIT_ALIASES.get(str(split).lower(), str(split).lower())
    if s not in SPLITS:
        raise ValueError(f"unknown synth split {split!r}; use one of {', '.join(SPLITS)} "
                         f"(aliases: {', '.join(f'{k}->{v}' for k, v in SPLIT_ALIASES.items())})")
    return s


def resolve_size(size: Union[str, int]) -> SynthSize:
    """A named size (``tiny``, ``smoke``, ``demo``) or an int: that many train clips of 5 s and
    25 % as many (at least 1) for validation and test."""
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        if size < 1:
            raise ValueError(f"synth size must be >= 1 train clips, got {size}")
        k = max(1, int(round(size / 4)))
        return SynthSize(int(size), k, k, 5.0)
    if isinstance(size, str) and size.lower() in SIZES:
        return SIZES[size.lower()]
    if isinstance(size, str) and size.isdigit():
        return resolve_size(int(size))
    raise ValueError(f"unknown synth size {size!r}; use one of {', '.join(SIZES)} or a number of train clips")


def default_root(size: Union[str, int] = "demo", seed: int = 0, sample_rate: int = 16000) -> Path:
    """``cache_dir()/"synth"/f"{size}-seed{seed}-sr{sample_rate}"``."""
    return cache_dir() / "synth" / f"{str(size).lower()}-seed{int(seed)}-sr{int(sample_rate)}"


def _marker(size: SynthSize, seed: int, sample_rate: int) -> dict:
    params = {"size": asdict(size), "seed": int(seed), "sample_rate": int(sample_rate)}
    blob = json.dumps({"version": GENERATOR_VERSION, "params": params}, sort_keys=True)
    return {"generator": "atrlib.data.synth", "version": GENERATOR_VERSION, "params": params,
            "hash": hashlib.sha256(blob.encode()).hexdigest()}


def _marker_matches(root: Path, marker: dict) -> bool:
    try:
        return json.loads((root / "DONE").read_text(encoding="utf-8")).get("hash") == marker["hash"]
    except (OSError, ValueError, AttributeError):
        return False


def _is_ours(name: str) -> bool:
    return name == "DONE" or any(
        name == f"synth_audio_{s}" or name == f"synth_captions_{s}.csv" or name == f"synth_metadata_{s}.json"
        for s in SPLITS)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # ours, from an earlier failed call in this process (generation is synchronous)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _clean_leftovers(root: Path) -> List[Path]:
    """Remove ``.{name}.tmp-PID-*`` / ``.{name}.old-PID-*`` siblings left by dead processes."""
    removed = []
    for p in root.parent.glob(f".{root.name}.*-*-*"):
        tag, _, rest = p.name[len(root.name) + 2:].partition("-")
        pid = rest.split("-", 1)[0]
        if tag in ("tmp", "old") and pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def _write_split(folder: Path, split: str, size: SynthSize, seed: int, sample_rate: int, bar) -> None:
    import soundfile as sf

    specs = sample_clip_specs(size.count(split), seed, split, size.clip_seconds)
    audio_dir = folder / f"synth_audio_{split}"
    audio_dir.mkdir()
    for spec in specs:
        sf.write(str(audio_dir / spec["file_name"]), render_clip(spec, sample_rate), sample_rate, subtype="PCM_16")
        bar.update(1)
    with open(folder / f"synth_captions_{split}.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file_name"] + [f"caption_{k + 1}" for k in range(N_CAPTIONS)])
        for spec in specs:
            w.writerow([spec["file_name"]] + spec["captions"])
    meta = {"split": split, "sample_rate": int(sample_rate), "clip_seconds": size.clip_seconds,
            "generator_version": GENERATOR_VERSION, "clips": specs}
    (folder / f"synth_metadata_{split}.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")


def generate_synth(root: Optional[Union[str, Path]] = None, size: Union[str, int] = "demo", seed: int = 0,
                   sample_rate: int = 16000) -> Path:
    """Generate the dataset into ``root`` (default :func:`default_root`) unless it is there.

    Parameters: ``size`` (``tiny`` 24/8/8 clips of 3 s, ``smoke`` 64/24/24 of 4 s, ``demo``
    320/80/80 of 5 s, or an int number of train clips), ``seed`` (int; the same parameters
    always give byte-identical files), ``sample_rate`` (Hz, >= 8000). Returns ``root``.

    Atomic: everything is written into a temporary sibling ``.{name}.tmp-PID-XXXX`` and
    renamed into place, with a ``DONE`` marker (generator version + parameter hash) written
    last. A ``root`` whose marker matches is reused untouched; one with a missing or
    different marker that holds only synth files is regenerated and swapped in; one that
    holds anything else raises ``FileExistsError``. Temporary folders left by killed runs
    (their process is gone) are removed.
    """
    cfg = resolve_size(size)
    if isinstance(sample_rate, bool) or int(sample_rate) != sample_rate or sample_rate < 8000:
        raise ValueError(f"sample_rate must be an int >= 8000 Hz, got {sample_rate!r}")
    sample_rate, seed = int(sample_rate), int(seed)
    root = Path(root).expanduser().absolute() if root is not None else default_root(size, seed, sample_rate)
    marker = _marker(cfg, seed, sample_rate)
    if root.is_dir() and _marker_matches(root, marker):
        return root
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"synth root {root} exists and is not a folder; pass another root")
    if root.is_dir():
        foreign = sorted(p.name for p in root.iterdir() if not _is_ours(p.name))
        if foreign:
            raise FileExistsError(
                f"synth root {root} holds files that are not a synth dataset ({', '.join(foreign[:5])}"
                f"{', ...' if len(foreign) > 5 else ''}); pass another root, or empty the folder to let "
                f"generate_synth overwrite it")
    root.parent.mkdir(parents=True, exist_ok=True)
    _clean_leftovers(root)

    from tqdm.auto import tqdm

    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        total = cfg.n_train + cfg.n_validation + cfg.n_test
        with tqdm(total=total, desc=f"synth {size} seed {seed}", unit="clip", disable=total < 200) as bar:
            for split in SPLITS:
                _write_split(tmp, split, cfg, seed, sample_rate, bar)
        (tmp / "DONE").write_text(json.dumps(marker, indent=1), encoding="utf-8")
        if root.is_dir():  # stale or empty: move it aside, swap ours in, then delete it
            old = root.parent / f".{root.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            os.rename(root, old)
            os.rename(tmp, root)
            shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                os.rename(tmp, root)
            except OSError:
                if root.is_dir() and _marker_matches(root, marker):  # another process won the race
                    return root
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def synth_metadata(root: Optional[Union[str, Path]] = None, split: str = "train", size: Union[str, int] = "demo",
                   seed: int = 0, sample_rate: int = 16000) -> List[dict]:
    """The specs (attributes, events, timings, captions) of every clip of ``split``, in
    dataset order; generates the dataset first if needed."""
    split = canonical_split(split)
    root = generate_synth(root, size, seed, sample_rate)
    return json.loads((root / f"synth_metadata_{split}.json").read_text(encoding="utf-8"))["clips"]


@DATASETS.register("synth")
def load_synth(root: Optional[Union[str, Path]] = None, split: str = "train", size: Union[str, int] = "demo",
               seed: int = 0, sample_rate: int = 16000, limit: Optional[int] = None, on_error: str = "raise",
               **kw) -> AudioCaptionDataset:
    """Load (generating on first use) one split of the synth dataset.

    Parameters: ``root`` (dataset folder; default :func:`default_root`), ``split``
    (``train``/``validation``/``test``, or ``development``/``evaluation``), ``size``
    (``tiny``/``smoke``/``demo`` or an int), ``seed``, ``sample_rate`` (Hz), ``limit``
    (first n clips; None = all). ``on_error`` is accepted for symmetry with the other
    loaders (generated files are never bad). Items carry the canonical split name.
    """
    if kw:
        raise TypeError(f"load_synth got unexpected arguments {sorted(kw)}; it takes root, split, size, "
                        f"seed, sample_rate, limit, on_error")
    split = canonical_split(split)
    root = generate_synth(root, size, seed, sample_rate)
    specs = {s["file_name"]: s for s in synth_metadata(root, split, size, seed, sample_rate)}
    audio_dir = (root / f"synth_audio_{split}").resolve()
    items: List[ClipItem] = []
    with open(root / f"synth_captions_{split}.csv", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            spec = specs[row["file_name"]]
            items.append(ClipItem(clip_id=spec["clip_id"], audio_path=str(audio_dir / row["file_name"]),
                                  captions=[row[f"caption_{k + 1}"] for k in range(N_CAPTIONS)],
                                  duration=float(spec["duration"]), sample_rate=int(sample_rate), split=split))
    return AudioCaptionDataset("synth", split, root, items).subset(limit)


__all__ = ["SIZES", "SPLITS", "EVENT_KINDS", "EVENT_ATTRS", "ATTR_VALUES", "BACKGROUNDS", "RELATIONS",
           "GENERATOR_VERSION", "SynthSize", "resolve_size", "canonical_split", "default_root",
           "sample_clip_specs", "make_captions", "render_clip", "describe_clip", "generate_synth",
           "synth_metadata", "load_synth"]
