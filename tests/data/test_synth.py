"""Tests for atrlib.data.synth: layout, determinism, captions, audio content, atomic writes.

Audio checks measure the rendered samples with numpy (FFT peaks, RMS, envelopes) and
compare them with the metadata; the written wav files are checked to equal the rendering,
so the checks hold for what is on disk.
"""
import csv
import hashlib
import json
import os
import re
import subprocess
import sys
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import atrlib  # noqa: F401
from atrlib.data import load_dataset, synth
from atrlib.data.synth import generate_synth, load_synth, sample_clip_specs, synth_metadata
from atrlib.data.synth_audio import render_clip
from atrlib.data.synth_captions import describe_clip
from atrlib.data.synth_scenes import EVENT_ATTRS

SR = 16000


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    return generate_synth(tmp_path_factory.mktemp("synth") / "tiny", "tiny", seed=0)


@pytest.fixture(scope="module")
def rendered():
    """200 train specs (seed 1, 3 s clips) with their audio: enough of every kind."""
    specs = sample_clip_specs(200, seed=1, split="train", clip_seconds=3.0)
    return [(s, render_clip(s, SR)) for s in specs]


# ----------------------------------------------------------------------------- helpers
def _isolated(spec, i):
    r = spec["relations"]
    return (i == 0 or r[i - 1] == "then") and (i == len(r) or r[i] == "then")


def _window(x, e, pad=0.03):
    return x[int((e["onset"] + pad) * SR): int((e["offset"] - pad) * SR)]


def _peak_hz(w, fmin=70.0):
    m = np.abs(np.fft.rfft(w * np.hanning(len(w))))
    f = np.fft.rfftfreq(len(w), 1.0 / SR)
    m[f < fmin] = 0
    return f[np.argmax(m)]


def _median_hz(w):
    """The frequency below which half of the power lies (robust to a faint background)."""
    p = np.abs(np.fft.rfft(w)) ** 2
    f = np.fft.rfftfreq(len(w), 1.0 / SR)
    return float(f[np.searchsorted(np.cumsum(p), 0.5 * p.sum())])


def _rms(w):
    return float(np.sqrt(np.mean(np.asarray(w, dtype=np.float64) ** 2)))


def _envelope(x, hop_s=0.01):
    h = int(hop_s * SR)
    n = len(x) // h
    return np.sqrt(np.mean(x[: n * h].reshape(n, h).astype(np.float64) ** 2, axis=1))  # (frames,)


def _onset_times(w, refractory=0.05):
    env = _envelope(w)
    floor = np.percentile(env, 20)
    on = env > floor + 0.5 * (env.max() - floor)  # halfway between the floor and the peak
    idx = np.flatnonzero(on[1:] & ~on[:-1]) + 1
    if on[0]:
        idx = np.r_[0, idx]
    out = []
    for i in idx:
        if not out or (i - out[-1]) * 0.01 >= refractory:
            out.append(i)
    return np.array(out) * 0.01


def _words(text):
    return set(re.findall(r"[a-z][a-z\-]*", text.lower()))


# ----------------------------------------------------------------------------- layout / loader
def test_layout_counts_and_items(tiny_root):
    names = sorted(p.name for p in tiny_root.iterdir())
    assert names == ["DONE"] + sorted(
        [f"synth_audio_{s}" for s in synth.SPLITS] + [f"synth_captions_{s}.csv" for s in synth.SPLITS]
        + [f"synth_metadata_{s}.json" for s in synth.SPLITS])
    for split, n, prefix in [("train", 24, "train_"), ("validation", 8, "val_"), ("test", 8, "test_")]:
        ds = load_synth(tiny_root, split=split, size="tiny")
        assert len(ds) == n and ds.split == split and ds.name == "synth"
        assert len(list((tiny_root / f"synth_audio_{split}").glob("*.wav"))) == n
        for it in ds:
            assert it["clip_id"].startswith(prefix) and it["split"] == split
            assert os.path.isabs(it["audio_path"]) and Path(it["audio_path"]).is_file()
            assert len(it["captions"]) == 5 and it["sample_rate"] == SR and it["duration"] == 3.0
            info = sf.info(it["audio_path"])
            assert (info.samplerate, info.channels, info.frames, info.subtype) == (SR, 1, 3 * SR, "PCM_16")
    with open(tiny_root / "synth_captions_train.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["file_name", "caption_1", "caption_2", "caption_3", "caption_4", "caption_5"]
    assert rows[1][0] == "train_0000.wav" and len(rows) == 25
    meta = json.loads((tiny_root / "synth_metadata_test.json").read_text(encoding="utf-8"))
    assert meta["split"] == "test" and meta["sample_rate"] == SR and len(meta["clips"]) == 8


def test_aliases_limit_registry_and_errors(tiny_root):
    train = load_synth(tiny_root, split="train", size="tiny")
    assert load_synth(tiny_root, split="development", size="tiny").clip_ids == train.clip_ids
    assert load_synth(tiny_root, split="evaluation", size="tiny").clip_ids == \
        load_synth(tiny_root, split="test", size="tiny").clip_ids
    assert load_synth(tiny_root, split="train", size="tiny", limit=5).clip_ids == train.clip_ids[:5]
    via = load_dataset("synth", root=tiny_root, split="validation", size="tiny")
    assert via.clip_ids == [f"val_{i:04d}" for i in range(8)]
    assert [s["clip_id"] for s in synth_metadata(tiny_root, "train", "tiny")] == train.clip_ids
    with pytest.raises(ValueError, match="split"):
        load_synth(tiny_root, split="holdout", size="tiny")
    with pytest.raises(TypeError, match="audio_dir"):
        load_synth(tiny_root, split="train", size="tiny", audio_dir="x")
    with pytest.raises(ValueError, match="size"):
        synth.resolve_size("huge")
    assert synth.resolve_size(40) == synth.SynthSize(40, 10, 10, 5.0)
    assert synth.SIZES["demo"].count("train") == 320


def test_default_root_in_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("ATRLIB_CACHE", str(tmp_path))
    ds = load_synth(split="test", size="tiny", seed=3)
    assert ds.root == tmp_path / "synth" / "tiny-seed3-sr16000"
    assert (ds.root / "DONE").is_file() and len(ds) == 8


def test_ids_unique_and_no_audio_shared_across_splits(tiny_root):
    ids, digests = [], []
    for split in synth.SPLITS:
        for it in load_synth(tiny_root, split=split, size="tiny"):
            ids.append(it["clip_id"])
            digests.append(hashlib.sha256(sf.read(it["audio_path"], dtype="int16")[0].tobytes()).hexdigest())
    assert len(set(ids)) == len(ids) == 40
    assert len(set(digests)) == 40  # no clip's audio appears twice, within or across splits


def test_files_equal_the_rendered_specs(tiny_root):
    for split in ("train", "test"):
        for spec in synth_metadata(tiny_root, split, "tiny")[:6]:
            audio, sr = sf.read(tiny_root / f"synth_audio_{split}" / spec["file_name"], dtype="float32")
            ref = render_clip(spec, SR)
            assert sr == SR and audio.shape == ref.shape
            assert np.abs(audio - ref).max() <= 1.0 / 32768 + 1e-6  # PCM_16 rounding only
            assert _rms(audio) > 0.005


# ----------------------------------------------------------------------------- determinism
def _file_bytes(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_different_seed_different(tiny_root, tmp_path):
    again = _file_bytes(generate_synth(tmp_path / "a", "tiny", seed=0))
    first = _file_bytes(tiny_root)
    assert again.keys() == first.keys() and len(first) == 40 + 7
    assert all(again[k] == first[k] for k in first)
    other = _file_bytes(generate_synth(tmp_path / "b", "tiny", seed=1))
    assert other.keys() == first.keys()
    wavs = [k for k in first if k.endswith(".wav")]
    assert all(other[k] != first[k] for k in wavs)
    assert other["synth_captions_train.csv"] != first["synth_captions_train.csv"]
    assert json.loads(other["DONE"])["hash"] != json.loads(first["DONE"])["hash"]


def test_sample_rate_parameter(tmp_path):
    root = generate_synth(tmp_path / "sr8k", "tiny", seed=0, sample_rate=8000)
    it = load_synth(root, split="validation", size="tiny", sample_rate=8000)[0]
    info = sf.info(it["audio_path"])
    assert info.samplerate == 8000 and info.frames == 3 * 8000 and it["sample_rate"] == 8000
    with pytest.raises(ValueError, match="sample_rate"):
        generate_synth(tmp_path / "bad", "tiny", sample_rate=4000)


# ----------------------------------------------------------------------------- captions
KIND_WORDS = {"tone": {"tone", "note", "whistle", "beep"}, "sweep": {"sweep", "chirp", "glide", "tone", "rise"},
              "noise": {"noise", "hiss", "static", "whoosh", "rumble"},
              "clicks": {"clicks", "clicking", "click", "ticking", "rattle"}, "hum": {"hum", "buzz"},
              "beeps": {"beeps", "beeping", "pips"}}
VALUE_WORDS = {
    ("pitch", "high"): {"high-pitched", "high", "shrill", "piercing", "whistle"},
    ("pitch", "mid"): {"mid-pitched", "medium-pitched", "mid-range", "moderately"},
    ("pitch", "low"): {"low-pitched", "low", "deep", "bass"},
    ("loudness", "loud"): {"loud", "strong", "powerful", "intense"},
    ("loudness", "quiet"): {"quiet", "faint", "soft", "gentle"},
    ("tempo", "fast"): {"fast", "rapid", "quick", "rattle", "alarm-like"},
    ("tempo", "slow"): {"slow", "unhurried", "leisurely", "apart", "clock-like"},
    ("direction", "up"): {"rising", "upward", "ascending", "rises", "rise"},
    ("direction", "down"): {"falling", "downward", "descending", "falls"},
    ("color", "white"): {"hiss", "white", "hissing", "static"},
    ("color", "pink"): {"whoosh", "pink", "rushing", "rumble"},
    ("length", "short"): {"short", "brief", "beep"},
    ("length", "long"): {"long", "lengthy", "prolonged", "sustained"},
}
BG_PHRASES = {"silence": ("silen", "nothing in the background"), "rain": ("rain",),
              "noise": ("background noise", "noise floor", "background static", "static in the background"),
              "hum": ("background hum", "behind it", "steady mains hum", "mains hum runs", "electrical hum is present")}
SEQ_WORDS = ("then", "followed", "after", "preceded")
OVERLAP_WORDS = ("while", "meanwhile", "same time", "overlapped", " over ", " as ")


def _all_specs(tiny_root, rendered):
    return [s for s, _ in rendered] + [s for sp in synth.SPLITS for s in synth_metadata(tiny_root, sp, "tiny")]


def test_five_distinct_captions_naming_every_event(tiny_root, rendered):
    for spec in _all_specs(tiny_root, rendered):
        caps = spec["captions"]
        assert len(caps) == 5 and len(set(caps)) == 5, caps
        for c in caps:
            assert c.endswith(".") and c[0].isupper() and spec["clip_id"] not in c
            for e in spec["events"]:
                assert _words(c) & KIND_WORDS[e["kind"]], (c, e["kind"])


def test_captions_cover_the_metadata_and_never_contradict_it(tiny_root, rendered):
    for spec in _all_specs(tiny_root, rendered):
        text = " ".join(spec["captions"])
        words = _words(text)
        present = {(a, e[a]) for e in spec["events"] for a in EVENT_ATTRS[e["kind"]]}
        for attr, value in present:  # every attribute of every event is said somewhere
            assert words & VALUE_WORDS[(attr, value)], (attr, value, spec["captions"])
        # pitch, loudness, direction words only appear when some event has that value
        for (attr, value), vocab in VALUE_WORDS.items():
            if attr in ("pitch", "loudness", "direction") and (attr, value) not in present:
                hits = words & vocab - {"whistle"}
                assert not hits, (attr, value, hits, spec["captions"])
        bg = spec["background"]["kind"]
        for kind, phrases in BG_PHRASES.items():  # the background is said, and no other one
            said = any(re.search(r"\b" + p, text.lower()) for p in phrases)  # "rain", not "train"
            assert said == (kind == bg), (kind, spec["captions"])


def test_relation_words_match_the_event_order(tiny_root, rendered):
    n_then = n_while = 0
    for spec in _all_specs(tiny_root, rendered):
        for c in spec["captions"]:
            low = f" {c.lower()} "
            seq = any(w in low for w in SEQ_WORDS)
            if len(spec["events"]) == 1:
                assert not seq and "while" not in low and "same time" not in low, c
            elif len(spec["events"]) == 2:
                if spec["relations"] == ["then"]:
                    assert seq, c
                    n_then += 1
                else:
                    assert not seq and any(w in low for w in OVERLAP_WORDS), c
                    n_while += 1
    assert n_then > 50 and n_while > 50


def test_captions_vary_in_wording_and_in_what_they_mention(tiny_root, rendered):
    specs = _all_specs(tiny_root, rendered)
    for spec in specs:
        mention_sets = {frozenset(k for k, v in VALUE_WORDS.items() if _words(c) & v) for c in spec["captions"]}
        assert len(mention_sets) >= 2, spec["captions"]
        jacc = [len(_words(a) & _words(b)) / len(_words(a) | _words(b)) for a, b in combinations(spec["captions"], 2)]
        assert np.mean(jacc) < 0.8
    # no fixed string per clip: a caption is rarely repeated verbatim by another clip
    caps = [c for s, _ in rendered for c in s["captions"]]
    assert len(set(caps)) / len(caps) > 0.97


# ----------------------------------------------------------------------------- audio content
def test_pitch_bands_audible(rendered):
    peaks = {"low": [], "mid": [], "high": []}
    for spec, x in rendered:
        for i, e in enumerate(spec["events"]):
            if e["kind"] in ("tone", "beeps") and _isolated(spec, i):
                peaks[e["pitch"]].append(_peak_hz(_window(x, e)))
    assert all(len(v) >= 10 for v in peaks.values()), {k: len(v) for k, v in peaks.items()}
    assert max(peaks["low"]) < 300 < min(peaks["mid"]) and max(peaks["mid"]) < 1000 < min(peaks["high"])


def test_sweep_direction(rendered):
    n = 0
    for spec, x in rendered:
        for i, e in enumerate(spec["events"]):
            if e["kind"] == "sweep" and _isolated(spec, i):
                w = _window(x, e)
                third = len(w) // 3
                ratio = _peak_hz(w[-third:]) / _peak_hz(w[:third])
                assert (ratio > 1.4) if e["direction"] == "up" else (ratio < 0.7), (e, ratio)
                n += 1
    assert n >= 20


def test_loud_events_are_louder_than_quiet_ones(rendered):
    level = {}
    for spec, x in rendered:
        for i, e in enumerate(spec["events"]):
            if _isolated(spec, i):
                w = _window(x, e)
                if e["kind"] == "clicks":  # impulses: loudness is the typical click peak (RMS goes with the rate)
                    hop = int(SR / e["rate"])
                    v = float(np.median([np.abs(w[j:j + hop]).max() for j in range(0, len(w) - hop + 1, hop)]))
                else:
                    v = _rms(w)
                level.setdefault(e["kind"], {}).setdefault(e["loudness"], []).append(v)
    assert set(level) == set(synth.EVENT_KINDS)
    for kind, d in level.items():
        assert min(d["loud"]) > 2 * max(d["quiet"]), (kind, min(d["loud"]), max(d["quiet"]))  # >= 6 dB


def test_tempo_matches_metadata(rendered):
    rates = {}
    for spec, x in rendered:
        for i, e in enumerate(spec["events"]):
            if e["kind"] in ("clicks", "beeps") and _isolated(spec, i):
                t = _onset_times(x[int(e["onset"] * SR): int(e["offset"] * SR)])
                assert len(t) >= 2
                measured = (len(t) - 1) / (t[-1] - t[0])
                assert abs(measured / e["rate"] - 1) < 0.25, (e, measured)
                rates.setdefault((e["kind"], e["tempo"]), []).append(measured)
    for kind in ("clicks", "beeps"):
        assert min(rates[(kind, "fast")]) > 1.5 * max(rates[(kind, "slow")])


def test_noise_colour(rendered):
    med = {"white": [], "pink": []}
    for spec, x in rendered:
        for i, e in enumerate(spec["events"]):
            if e["kind"] == "noise" and _isolated(spec, i):
                med[e["color"]].append(_median_hz(_window(x, e)))
    assert len(med["white"]) >= 5 and len(med["pink"]) >= 5
    assert min(med["white"]) > 2000 > 600 > max(med["pink"]), (min(med["white"]), max(med["pink"]))


def test_backgrounds(rendered):
    seen = {}
    for spec, x in rendered:
        first = min(e["onset"] for e in spec["events"])
        last = max(e["offset"] for e in spec["events"])
        seg = max([x[: int((first - 0.01) * SR)], x[int((last + 0.01) * SR):]], key=len)
        if len(seg) < 0.15 * SR:
            continue
        bg = spec["background"]
        r = _rms(seg)
        kurt = float(np.mean((seg - seg.mean()) ** 4) / np.var(seg) ** 2)
        seen.setdefault(bg["kind"], []).append(r)
        if bg["kind"] == "silence":
            assert r < 1e-4
        else:
            assert 0.002 < r < 0.015 and abs(r / bg["rms"] - 1) < 0.35, (bg, r)
        if bg["kind"] == "rain":
            assert kurt > 5  # drops: impulsive
        if bg["kind"] == "noise":
            assert kurt < 4  # steady Gaussian noise
        if bg["kind"] == "hum":
            assert abs(_peak_hz(seg, fmin=20) - bg["f0"]) < 3 and bg["f0"] in (50.0, 60.0)
    assert all(len(seen.get(k, [])) >= 5 for k in synth.BACKGROUNDS), {k: len(v) for k, v in seen.items()}


def test_events_stand_out_where_the_metadata_puts_them(rendered):
    n = 0
    for spec, x in rendered:
        env = _envelope(x)  # (frames,) 10 ms RMS
        t = (np.arange(len(env)) + 0.5) * 0.01
        iv = [(e["onset"], e["offset"]) for e in spec["events"]]
        silent = ~np.any([(t >= a - 0.02) & (t <= b + 0.02) for a, b in iv], axis=0)
        if silent.sum() < 10:
            continue
        floor = np.percentile(env[silent], 95)
        for i, (a, b) in enumerate(iv):
            own = (t >= a + 0.01) & (t <= b - 0.01)
            for j, (c, d) in enumerate(iv):
                if j != i:
                    own &= ~((t >= c - 0.02) & (t <= d + 0.02))
            e = spec["events"][i]
            if own.sum() * 0.01 < (1.5 / e["rate"] if "rate" in e else 0.03):
                continue
            assert env[own].max() > 1.5 * floor, (spec["clip_id"], e)
            n += 1
    assert n > 150


def _tone(pitch, f0, onset, offset):
    return {"kind": "tone", "pitch": pitch, "loudness": "loud", "length": "long", "onset": onset,
            "offset": offset, "rms": 0.15, "f0": f0, "seed": 1}


def test_a_then_b_puts_a_early_and_b_late():
    bg = {"kind": "noise", "seed": 5, "rms": 0.01}
    high_low = {"duration": 3.0, "background": bg, "relations": ["then"],
                "events": [_tone("high", 2000.0, 0.2, 1.3), _tone("low", 150.0, 1.6, 2.8)]}
    low_high = dict(high_low, events=[_tone("low", 150.0, 0.2, 1.3), _tone("high", 2000.0, 1.6, 2.8)])
    for spec, (early, late) in [(high_low, (2000, 150)), (low_high, (150, 2000))]:
        x = render_clip(spec, SR)
        first, second = x[: int(1.45 * SR)], x[int(1.45 * SR):]
        assert abs(_peak_hz(first) - early) < 5 and abs(_peak_hz(second) - late) < 5
        # and the early tone's own frequency is absent later (and vice versa)
        band = lambda w, f: _rms(np.fft.irfft(np.fft.rfft(w) * (np.abs(np.fft.rfftfreq(len(w), 1 / SR) - f) < 20), len(w)))
        assert band(first, early) > 20 * band(second, early)
        assert band(second, late) > 20 * band(first, late)
    assert describe_clip(high_low) == "tone(high,loud,long) then tone(low,loud,long) | noise"


# ----------------------------------------------------------------------------- distractors
def test_distractors_share_attributes(tiny_root, rendered):
    train = synth_metadata(tiny_root, "train", "tiny")
    kinds = [{e["kind"] for e in s["events"]} for s in train]
    sharing = sum(any(k & kinds[j] for j in range(len(kinds)) if j != i) for i, k in enumerate(kinds))
    assert sharing / len(kinds) >= 0.8
    specs = [s for s, _ in rendered]
    base = {s["family"]: s for s in specs if s["variant"] == "base"}
    variants = [s for s in specs if s["variant"] != "base"]
    assert len(variants) > 60 and len(base) < 150
    strip = lambda e: {a: e[a] for a in ("kind",) + EVENT_ATTRS[e["kind"]] if a != "length"}
    checked = set()
    for v in variants:
        b = base[v["family"]]
        assert describe_clip(v) != describe_clip(b)
        m = v["variant"]
        if m == "swap":
            assert [strip(e) for e in v["events"]] == [strip(e) for e in b["events"][::-1]]
        elif m in ("pitch", "loudness", "tempo", "direction", "color"):
            assert [e["kind"] for e in v["events"]] == [e["kind"] for e in b["events"]]
            diffs = [(x, y) for x, y in zip(b["events"], v["events"]) if strip(x) != strip(y)]
            assert len(diffs) == 1 and diffs[0][0][m] != diffs[0][1][m]
            assert v["background"]["kind"] == b["background"]["kind"]
        elif m == "background":
            assert [strip(e) for e in v["events"]] == [strip(e) for e in b["events"]]
            assert v["background"]["kind"] != b["background"]["kind"]
        checked.add(m)
    assert {"swap", "pitch", "background", "loudness"} <= checked


# ----------------------------------------------------------------------------- atomic writes
def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_second_call_reuses_without_regenerating(tmp_path, monkeypatch):
    root = generate_synth(tmp_path / "r", "tiny", seed=0)
    stamps = {p: p.stat().st_mtime_ns for p in [root / "DONE", root / "synth_audio_train" / "train_0000.wav"]}

    def boom(*a, **k):
        raise AssertionError("regenerated")

    monkeypatch.setattr(synth, "_write_split", boom)
    assert generate_synth(root, "tiny", seed=0) == root
    assert len(load_synth(root, split="train", size="tiny")) == 24
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_interrupted_run_leaves_nothing_and_leftovers_are_cleaned(tmp_path, monkeypatch):
    root = tmp_path / "r"
    real = synth._write_split

    def dies_on_validation(folder, split, *a):
        if split == "validation":
            raise KeyboardInterrupt
        return real(folder, split, *a)

    monkeypatch.setattr(synth, "_write_split", dies_on_validation)
    with pytest.raises(KeyboardInterrupt):
        generate_synth(root, "tiny", seed=0)
    assert not root.exists() and list(tmp_path.iterdir()) == []
    monkeypatch.setattr(synth, "_write_split", real)

    # what a killed process leaves behind (its pid is gone), and one a live process is using
    dead = tmp_path / f".r.tmp-{_dead_pid()}-deadbeef"
    (dead / "synth_audio_train").mkdir(parents=True)
    (dead / "synth_audio_train" / "train_0000.wav").write_bytes(b"half")
    old = tmp_path / f".r.old-{_dead_pid()}-cafe0000"
    old.mkdir()
    live = tmp_path / f".r.tmp-{os.getppid()}-11112222"
    live.mkdir()
    generate_synth(root, "tiny", seed=0)
    assert not dead.exists() and not old.exists() and live.exists()
    assert len(load_synth(root, split="test", size="tiny")) == 8


def test_stale_marker_regenerates_and_foreign_files_raise(tmp_path):
    root = generate_synth(tmp_path / "r", "tiny", seed=0)
    (root / "DONE").write_text('{"hash": "old"}', encoding="utf-8")
    (root / "synth_audio_train" / "train_0000.wav").write_bytes(b"junk")
    generate_synth(root, "tiny", seed=0)
    assert json.loads((root / "DONE").read_text())["hash"] == synth._marker(synth.SIZES["tiny"], 0, SR)["hash"]
    assert sf.info(str(root / "synth_audio_train" / "train_0000.wav")).frames == 3 * SR
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]  # the stale copy is gone

    # other parameters into the same root: regenerated for them
    generate_synth(root, "tiny", seed=2)
    assert synth_metadata(root, "train", "tiny", seed=2) == sample_clip_specs(24, 2, "train", 3.0)

    empty = tmp_path / "empty"
    empty.mkdir()
    assert len(load_synth(empty, split="validation", size="tiny")) == 8

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="notes.txt"):
        generate_synth(foreign, "tiny")
    assert (foreign / "notes.txt").read_text() == "keep me" and len(list(foreign.iterdir())) == 1
