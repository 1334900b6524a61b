"""What notebook 08 calls: generated splits, systems scored side by side, failures, a figure.

* :func:`generated_splits` — train / validation / test recordings generated from one clip
  collection's three splits (so no clip is shared between them), kept in the cache by their
  settings (``cache_dir()/moments/...``; a second run reads them back).
* :func:`results_table` — every system's five metrics (percent) with 95 % jackknife intervals
  (clipped to [0, 100]) and a paired bootstrap test of mAP against the *best baseline*, the
  chance baseline with the higher validation mAP (chosen on validation, like every choice);
  :func:`paired_table` — the same test for all five metrics.
* :func:`failure_cases` / :func:`failures_html` — the queries whose first answer misses most,
  with a player for the true window and one for the answer (the page's player encoder is passed
  in: ``encode(wave, sr) -> (bytes, mime)``).
* :func:`plot_recording` — one recording's waveform and log-mel spectrogram with the true
  windows and each system's first answers.
* :func:`learned_moments` — the page's "What we learned" sentences.
"""
from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import shutil
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from atrlib.moments.formats import MomentPrediction
from atrlib.moments.metrics import METRICS, MomentScores, compare, iou_cross, metrics_with_ci, moment_scores

SPLITS = ("train", "validation", "test")


def generated_splits(dataset: str = "synth", size: str = "demo", root: Optional[str] = None,
                     counts: Sequence[int] = (12, 6, 6), duration: float = 45.0, snr_db: float = 10.0, seed: int = 0,
                     max_events: int = 3, sample_rate: int = 16000, cache_root: Optional[Path] = None,
                     min_events: int = 1, dataset_kwargs: Optional[Mapping] = None):
    """split -> :class:`~atrlib.moments.datasets.MomentDataset` of recordings generated from the
    same split of ``dataset`` (``counts``: recordings per split; ``min_events``..``max_events``
    events each; ``dataset_kwargs``: more keywords for the clip loader, e.g. a folder's
    ``split_ratios``). Written once per settings into the cache (atomically: a folder is renamed
    into place when complete)."""
    from atrlib.data import load_dataset
    from atrlib.moments.datasets import load_generated
    from atrlib.moments.generate import ANNOTATIONS, generate_moments
    from atrlib.paths import cache_dir

    settings = {"dataset": dataset, "size": size, "root": str(root or ""), "counts": list(counts),
                "duration": duration, "snr_db": snr_db, "seed": seed, "max_events": max_events,
                "sample_rate": sample_rate, "version": 1}
    if min_events != 1 or dataset_kwargs:  # only then: earlier caches keep their keys
        settings.update(min_events=min_events, dataset_kwargs=dict(dataset_kwargs or {}))
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    base = Path(cache_root or cache_dir() / "moments") / f"{dataset}-{size}-{key}"
    out = {}
    for split, n in zip(SPLITS, counts):
        folder = base / split
        if not (folder / ANNOTATIONS).is_file():
            kw = {"size": size} if dataset == "synth" else {}
            kw.update(dataset_kwargs or {})
            clips = load_dataset(dataset, split=split, root=root or None, **kw)
            tmp = base / f".{split}.{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            generate_moments(clips, tmp, n=int(n), duration=duration, snr_db=snr_db, seed=seed + SPLITS.index(split),
                             sample_rate=sample_rate, min_events=min_events, max_events=max_events,
                             prefix=f"{split[:3]}")
            if not (folder / ANNOTATIONS).is_file():  # another process may have finished first
                shutil.rmtree(folder, ignore_errors=True)
                os.replace(tmp, folder)
            shutil.rmtree(tmp, ignore_errors=True)
        out[split] = load_generated(folder)
    return out


def scores_of(ds, preds: Sequence[MomentPrediction]) -> MomentScores:
    by = {p.qid: p.windows for p in preds}
    return moment_scores([q.windows for q in ds.queries], [by.get(q.qid, ()) for q in ds.queries])


def best_baseline(val_scores: Mapping[str, MomentScores]) -> str:
    """The baseline with the higher validation mAP (then R1@0.5; then the first listed)."""
    return max(val_scores, key=lambda n: (val_scores[n].summary()["mAP"], val_scores[n].summary()["R1@0.5"]))


def results_table(test_scores: Mapping[str, MomentScores], baseline: str, alpha: float = 0.05) -> pd.DataFrame:
    """One row per system (baselines included): the five metrics in percent, the jackknife
    intervals of R1@0.5 and mAP as text, and ``p_vs_<baseline>``: a paired bootstrap test of
    mAP against ``baseline`` (— for the baseline itself)."""
    rows = []
    ref = test_scores[baseline]
    for name, s in test_scores.items():
        ci = metrics_with_ci(s, alpha) if len(s) > 1 else None
        summary = s.summary()
        row = {"system": name, **{k: summary[k] for k in METRICS}}
        for k in ("R1@0.5", "mAP"):
            lo, hi = (np.clip([ci[k]["low"], ci[k]["high"]], 0, 100) if ci else (np.nan, np.nan))
            row[f"{k} 95 % CI"] = f"{lo:.1f}–{hi:.1f}" if ci else "—"
        row[f"p_vs_{baseline}"] = None if name == baseline else compare(s, ref)["mAP"]["p_value"]
        rows.append(row)
    return pd.DataFrame(rows).set_index("system")


def metrics_record(scores: Mapping[str, MomentScores]) -> Dict[str, Dict[str, float]]:
    """system -> the five metrics (percent) with ``<metric>_low`` / ``_high``: 95 % jackknife
    intervals clipped to [0, 100] (metrics.json)."""
    out = {}
    for name, s in scores.items():
        row = dict(s.summary())
        if len(s) > 1:
            for k, v in metrics_with_ci(s).items():
                row[f"{k}_low"], row[f"{k}_high"] = float(max(v["low"], 0.0)), float(min(v["high"], 100.0))
        out[name] = row
    return out


def paired_table(test_scores: Mapping[str, MomentScores], baseline: str) -> pd.DataFrame:
    """Every system against ``baseline`` on each metric: difference (percent points), its 95 %
    bootstrap interval and the two-sided p-value (paired bootstrap over queries)."""
    rows = []
    for name, s in test_scores.items():
        if name == baseline:
            continue
        for metric, t in compare(s, test_scores[baseline]).items():
            rows.append({"system": name, "metric": metric, "difference": t["diff"], "low": t["low"], "high": t["high"],
                         "p_value": t["p_value"]})
    return pd.DataFrame(rows).set_index(["system", "metric"])


def failure_cases(ds, preds: Sequence[MomentPrediction], n: int = 3) -> List[dict]:
    """The ``n`` queries whose first answer has the lowest IoU with the truth (ties: file order):
    query, vid, truth, answer, IoU."""
    by = {p.qid: p.windows for p in preds}
    rows = []
    for q in ds.queries:
        w = by.get(q.qid, ())
        iou = float(iou_cross([w[0][:2]], q.windows).max()) if w else 0.0
        rows.append({"qid": q.qid, "query": q.query, "vid": q.vid, "truth": q.windows[0],
                     "answer": tuple(w[0]) if w else None, "IoU": iou})
    return sorted(rows, key=lambda r: r["IoU"])[:n]


def _player(path, start: float, end: float, encode: Callable, sr: int = 16000, max_seconds: float = 12.0) -> str:
    from atrlib.audio.io import load_audio

    wave, sr = load_audio(path, sample_rate=sr, offset=start, duration=min(end - start, max_seconds))
    data, mime = encode(wave, sr)
    return (f'<audio controls preload="none" style="height:2rem" '
            f'src="data:{mime};base64,{base64.b64encode(data).decode("ascii")}"></audio>')


def failures_html(ds, cases: Sequence[dict], encode: Callable, system: str) -> str:
    """An HTML block per failure: the query, the true window and the answer, each with a player
    cut to it (at most 12 s)."""
    parts = []
    for c in cases:
        path = ds.audio[c["vid"]]
        ts, te = c["truth"]
        head = f"<h4 style='margin:.8em 0 .2em'>“{html.escape(c['query'])}” <small>({html.escape(c['vid'])})</small></h4>"
        truth = f"<div>true window {ts:.1f}–{te:.1f} s {_player(path, ts, te, encode)}</div>"
        if c["answer"] is None:
            answer = f"<div>{html.escape(system)} answered nothing</div>"
        else:
            s, e, score = c["answer"]
            answer = (f"<div>{html.escape(system)}'s first answer {s:.1f}–{e:.1f} s (score {score:.3f}, IoU "
                      f"{c['IoU']:.2f}) {_player(path, s, e, encode)}</div>")
        parts.append(head + truth + answer)
    return "\n".join(parts)


def plot_recording(ds, vid: str, answers: Mapping[str, Mapping[str, Sequence]], top: int = 1, ax=None):
    """Waveform over log-mel spectrogram of recording ``vid``, its true windows (green bands) and,
    per system, the first ``top`` answer(s) to each of its queries (one row of bars per system)."""
    import matplotlib.pyplot as plt

    from atrlib.audio.features import LogMel, get_feature_config
    from atrlib.audio.io import load_audio

    import torch

    cfg = get_feature_config("small")
    wave, sr = load_audio(ds.audio[vid], sample_rate=cfg.sample_rate)
    mel = LogMel(cfg)(torch.from_numpy(wave)[None])[0].numpy()  # (mels, frames)
    qs = [q for q in ds.queries if q.vid == vid]
    seconds = len(wave) / sr
    fig, axes = plt.subplots(3, 1, figsize=(11, 5.2), sharex=True, gridspec_kw={"height_ratios": [1, 2, 1.2]})
    t = np.arange(len(wave)) / sr
    step = max(1, len(wave) // 20000)
    axes[0].plot(t[::step], wave[::step], lw=0.4, color="0.3")
    axes[0].set(ylabel="amplitude", title=f"{vid}: true windows (green) and the first answers")
    axes[1].imshow(mel, origin="lower", aspect="auto", extent=(0, seconds, 0, mel.shape[0]), cmap="magma")
    axes[1].set(ylabel="mel band")
    axes[1].grid(False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for q_i, q in enumerate(qs):
        for s, e in q.windows:
            for a in axes[:2]:
                a.axvspan(s, e, color="tab:green", alpha=0.18)
            axes[0].text(s + 0.2, axes[0].get_ylim()[1] * 0.95, f"q{q_i + 1}", ha="left", va="top", fontsize=8)
    names = list(answers)
    step = 0.7 / max(len(qs), 1)  # each query its own lane inside a system's row
    for row, name in enumerate(names):
        for q_i, q in enumerate(qs):
            y = row + (q_i - (len(qs) - 1) / 2) * step
            for s, e, _ in list(answers[name].get(q.qid, ()))[:top]:
                axes[2].plot([s, e], [y, y], lw=5, solid_capstyle="butt", color=colors[q_i % len(colors)])
                axes[2].text(e + 0.2, y, f"q{q_i + 1}", va="center", fontsize=7)
    axes[2].set_yticks(range(len(names)), names)
    axes[2].set_ylim(-0.6, len(names) - 0.4)
    axes[2].set(xlabel="time (s)", xlim=(0, seconds))
    for q in qs:
        for s, e in q.windows:
            axes[2].axvspan(s, e, color="tab:green", alpha=0.18)
    fig.tight_layout()
    return fig


def zero_shot(window: Optional[float] = None):
    """(the tag-bridge curve retriever, "") or (None, why it is skipped) when its weights are absent."""
    from atrlib.errors import WeightsNotFoundError
    from atrlib.moments.retrieve import curve_retriever

    try:
        return curve_retriever("tagbridge", window=window), ""
    except WeightsNotFoundError as e:
        return None, f"the zero-shot tag-bridge: its EfficientAT weights are not on this machine ({str(e).splitlines()[0]})"


def learned_moments(table: pd.DataFrame, baseline: str, p_text: Callable[[Optional[float]], str], n_queries: int,
                    head: str = "", head_epoch: int = 0, skipped: Sequence[str] = ()) -> List[str]:
    """"What we learned": each system's test R1@0.5 and mAP with their intervals against the best
    baseline (chosen on validation) and the paired test; what chance gives; what was skipped."""
    p_col = f"p_vs_{baseline}"
    ref = table.loc[baseline]
    lines = []
    for s in table.index:
        if s == baseline or s in ("random windows", "whole recording"):
            continue
        r = table.loc[s]
        lines.append(f"{s}: test R1@0.5 {r['R1@0.5']:.1f} % (95 % CI {r['R1@0.5 95 % CI']}) and mAP {r['mAP']:.1f} % "
                     f"(CI {r['mAP 95 % CI']}), against mAP {ref['mAP']:.1f} % for {baseline}: {p_text(r[p_col])}.")
    lines.append(f"Knowing only the duration gives little: {baseline}, the better baseline on validation, reaches "
                 f"R1@0.5 {ref['R1@0.5']:.1f} % and mAP {ref['mAP']:.1f} % on test; the events are short, so the whole "
                 "recording rarely overlaps one by half.")
    if head:
        lines.append(f"The {head}'s epoch ({head_epoch}) was chosen on the validation recordings only; with "
                     f"{n_queries} test queries the intervals are wide, and a difference inside them is not a finding.")
    lines += [f"Skipped: {s}." for s in skipped]
    return lines
