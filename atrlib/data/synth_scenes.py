"""The embedded dataset's scenes: what a synth clip holds, sampled from a seed.

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
"""
from __future__ import annotations

import copy
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

SAMPLE_RATE = 16000  # Hz of the generated clips (audio.features "small" states it too; a test holds them equal)

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


