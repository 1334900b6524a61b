"""Plots the notebooks show: each function draws on a matplotlib Axes and returns it.

Functions take plain arrays / dicts, never models, so any stage (or a user) can reuse them.
"""
from __future__ import annotations

from typing import List, Mapping, Optional, Sequence

import numpy as np


def _ax(ax=None, figsize=(6, 3.2)):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize, constrained_layout=True)
    return ax


def duration_hist(durations: Sequence[float], ax=None, bins: int = 30):
    ax = _ax(ax)
    ax.hist(np.asarray(durations), bins=bins, color="#4c72b0", edgecolor="white")
    ax.set(xlabel="duration (s)", ylabel="clips", title="Clip durations")
    return ax


def caption_length_hist(captions: Sequence[str], ax=None):
    ax = _ax(ax)
    lengths = [len(c.split()) for c in captions]
    ax.hist(lengths, bins=range(0, max(lengths, default=1) + 2), color="#55a868", edgecolor="white")
    ax.set(xlabel="words per caption", ylabel="captions", title="Caption lengths")
    return ax


def captions_per_clip_bar(counts: Sequence[int], ax=None):
    ax = _ax(ax)
    values, freq = np.unique(np.asarray(counts), return_counts=True)
    ax.bar(values, freq, color="#8172b2")
    ax.set(xlabel="captions per clip", ylabel="clips", title="Captions per clip", xticks=values)
    return ax


def word_bar(word_counts: Sequence[tuple], top: int = 25, ax=None):
    ax = _ax(ax, figsize=(6, 0.22 * top + 0.8))
    words, counts = zip(*word_counts[:top]) if word_counts else ((), ())
    ax.barh(list(words)[::-1], list(counts)[::-1], color="#c44e52")
    ax.set(xlabel="occurrences", title=f"Most frequent words (top {top}, stop words removed)")
    return ax


def spectrogram(mel: np.ndarray, sample_rate: int, hop_length: int, ax=None, title: str = ""):
    """A (n_mels, frames) log-mel as an image with seconds on the x axis."""
    ax = _ax(ax, figsize=(7, 2.4))
    seconds = mel.shape[1] * hop_length / sample_rate
    im = ax.imshow(mel, origin="lower", aspect="auto", extent=(0, seconds, 0, mel.shape[0]), cmap="magma")
    ax.set(xlabel="time (s)", ylabel="mel bin", title=title)
    ax.figure.colorbar(im, ax=ax, pad=0.01)
    return ax


def recall_curve(ranks: Mapping[str, np.ndarray] | np.ndarray, max_k: int = 50, ax=None):
    """R@k against k for one or several systems; ``ranks`` are 1-based ranks of the relevant item."""
    ax = _ax(ax)
    if not isinstance(ranks, Mapping):
        ranks = {"": ranks}
    ks = np.arange(1, max_k + 1)
    for name, r in ranks.items():
        r = np.asarray(r)
        ax.plot(ks, [(r <= k).mean() for k in ks], label=name or None)
    ax.set(xlabel="k", ylabel="R@k", ylim=(0, 1.02), title="Recall at k")
    ax.grid(alpha=0.3)
    if len(ranks) > 1 or "" not in ranks:
        ax.legend()
    return ax


def rank_hist(ranks: np.ndarray, n_items: int, ax=None):
    ax = _ax(ax)
    bins = np.unique(np.geomspace(1, max(n_items, 2), num=min(30, n_items) + 1).astype(int))
    ax.hist(np.asarray(ranks), bins=bins, color="#4c72b0", edgecolor="white")
    ax.set_xscale("log")
    ax.set(xlabel="rank of the true clip (log)", ylabel="queries", title="Where the true clip lands")
    return ax


def sim_heatmap(sim: np.ndarray, row_labels: Sequence[str] = (), col_labels: Sequence[str] = (), ax=None,
                title: str = "Similarity"):
    ax = _ax(ax, figsize=(7, 5))
    im = ax.imshow(sim, aspect="auto", cmap="viridis")
    if len(row_labels) and len(row_labels) <= 40:
        ax.set_yticks(range(len(row_labels)), [s[:40] for s in row_labels], fontsize=6)
    if len(col_labels) and len(col_labels) <= 40:
        ax.set_xticks(range(len(col_labels)), [s[:20] for s in col_labels], fontsize=6, rotation=90)
    ax.set(title=title, xlabel="clips", ylabel="captions")
    ax.figure.colorbar(im, ax=ax, pad=0.01)
    return ax


def metric_bars(table: Mapping[str, Mapping[str, float]], metric: str = "mAP@10", ax=None, chance: Optional[float] = None):
    """Bar per system with a 95 % CI error bar; ``table[name] = {"value", "low", "high"}``."""
    ax = _ax(ax, figsize=(max(4, 0.8 * len(table) + 2), 3.2))
    names = list(table)
    v = np.array([table[n]["value"] for n in names])
    lo = v - np.array([table[n].get("low", table[n]["value"]) for n in names])
    hi = np.array([table[n].get("high", table[n]["value"]) for n in names]) - v
    ax.bar(names, v, yerr=[lo, hi], capsize=4, color="#4c72b0")
    if chance is not None:
        ax.axhline(chance, ls="--", color="grey", label=f"chance {chance:.3f}")
        ax.legend()
    ax.set(ylabel=metric, title=f"{metric} with 95 % CI")
    ax.tick_params(axis="x", rotation=30)
    return ax


def training_curves(histories: Mapping[str, List[dict]], keys: Sequence[str] = ("train_loss", "val_mAP@10"), axes=None):
    """One panel per key, one line per run; histories are lists of per-epoch dicts."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.2), constrained_layout=True, squeeze=False)
        axes = axes[0]
    for ax, key in zip(axes, keys):
        for name, hist in histories.items():
            xs = [h["epoch"] for h in hist if key in h]
            ys = [h[key] for h in hist if key in h]
            ax.plot(xs, ys, marker="o", ms=3, label=name)
        ax.set(xlabel="epoch", title=key)
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=7)
    return axes


def correlation_matrix(corr: np.ndarray, names: Sequence[str], ax=None, title: str = "Correlation of per-query AP"):
    ax = _ax(ax, figsize=(1 + 0.7 * len(names), 0.8 + 0.6 * len(names)))
    im = ax.imshow(corr, vmin=-1, vmax=1, cmap="coolwarm")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{corr[i, j]:.2f}", ha="center", va="center", fontsize=6)
    ax.set_title(title)
    ax.figure.colorbar(im, ax=ax, pad=0.01)
    return ax
