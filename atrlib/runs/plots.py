"""Figures the reports show. Each function draws on a matplotlib Axes (or a grid of them)
and returns it; inputs are plain arrays, dicts and DataFrames, never models.

Every figure carries its context: axis labels with units, integer ticks where the axis
counts things, chance level on every metric plot, one curve per panel when the scales
differ, and the chosen value (epoch, n) marked. seaborn draws where it says the thing
better (faceted curves, annotated heatmaps, distributions); :func:`atrlib.runs.notebook.setup_plots`
sets one style for all reports.
"""
from __future__ import annotations

from typing import List, Mapping, Optional, Sequence

import numpy as np

COLOR = "#4c72b0"
CHOSEN = "#dd8452"  # the chosen bar, epoch, n: one colour in the plot and its legend
CHANCE_STYLE = dict(ls="--", color="#8c8c8c", lw=1.2)


def legend_outside(ax, **kw) -> None:
    """The legend to the right of the axes, never over the data."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=kw.pop("fontsize", 8), **kw)


def figure_legend(fig, axes) -> None:
    """One legend for a grid of panels, right of all of them (a legend beside each panel would
    cover the next one); each label once."""
    seen = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, h)
    if seen:
        fig.legend(list(seen.values()), list(seen), loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False,
                   fontsize=8)


def ellipsis(text: str, width: int) -> str:
    """``text`` cut at a word boundary to at most ``width`` characters, ending "…" when cut."""
    text = str(text)
    if len(text) <= width:
        return text
    cut = text[: width - 1].rsplit(" ", 1)[0] if " " in text[: width - 1] else text[: width - 1]
    return cut.rstrip(" ,;:") + "…"


def plain_log_ticks(axis, top: float) -> None:
    """Ticks 1, 2, 5, 10, 20, 50, … up to ``top`` written as plain numbers on a log axis."""
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    ticks = [m * 10 ** e for e in range(0, 7) for m in (1, 2, 5) if m * 10 ** e <= top]
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(ScalarFormatter())
    axis.set_minor_locator(NullLocator())


def _ax(ax=None, figsize=(6, 3.2)):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize, constrained_layout=True)
    return ax


def panels(n: int, figsize=(11, 3.4)) -> list:
    """``n`` axes side by side in one figure."""
    import matplotlib.pyplot as plt

    _, axes = plt.subplots(1, n, figsize=figsize, constrained_layout=True, squeeze=False)
    return list(axes[0])


def _int_ticks(axis) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


# ----------------------------------------------------------------------------- data
def duration_hist(durations: Sequence[float], ax=None, bins: int = 30):
    """Clip durations; a single line of text instead of a one-bar histogram when all clips
    are equally long."""
    d = np.asarray(durations, dtype=float)
    ax = _ax(ax, figsize=(6, 0.5) if np.ptp(d) < 1e-6 else (6, 3.2))
    if np.ptp(d) < 1e-6:
        ax.text(0.5, 0.5, f"all {len(d)} clips last {d[0]:.1f} s", ha="center", va="center", fontsize=12,
                transform=ax.transAxes)
        ax.set_axis_off()
        return ax
    import seaborn as sns

    sns.histplot(d, bins=bins, ax=ax, color=COLOR)
    ax.set(xlabel="duration (s)", ylabel="clips", title="Clip durations")
    _int_ticks(ax.yaxis)
    return ax


def caption_lengths(captions: Sequence[str], counts_per_clip: Sequence[int], axes=None):
    """Words per caption (a histogram) and, when clips differ in how many captions they
    have, captions per clip; returns the axes drawn (one or two)."""
    import matplotlib.pyplot as plt

    counts = np.asarray(counts_per_clip)
    two = len(np.unique(counts)) > 1
    if axes is None:
        _, axes = plt.subplots(1, 2 if two else 1, figsize=(10 if two else 6, 3.2), constrained_layout=True,
                               squeeze=False)
        axes = list(axes[0])
    lengths = [len(c.split()) for c in captions]
    ax = axes[0]
    ax.hist(lengths, bins=np.arange(0, max(lengths, default=1) + 2) - 0.5, color="#55a868", edgecolor="white")
    ax.axvline(np.mean(lengths), **CHANCE_STYLE, label=f"mean {np.mean(lengths):.1f} words")
    legend_outside(ax)
    ax.set(xlabel="words per caption", ylabel="captions", title="Caption lengths")
    _int_ticks(ax.xaxis)
    _int_ticks(ax.yaxis)
    if two:
        values, freq = np.unique(counts, return_counts=True)
        axes[1].bar(values, freq, color="#8172b2")
        axes[1].set(xlabel="captions per clip", ylabel="clips", title="Captions per clip", xticks=values)
        _int_ticks(axes[1].yaxis)
    return axes


def word_bar(word_counts: Sequence[tuple], top: int = 25, ax=None):
    ax = _ax(ax, figsize=(6, 0.22 * top + 0.8))
    words, counts = zip(*word_counts[:top]) if word_counts else ((), ())
    ax.barh(list(words)[::-1], list(counts)[::-1], color="#c44e52")
    ax.set(xlabel="occurrences in all captions", title=f"Most frequent words (top {top}, stop words removed)")
    _int_ticks(ax.xaxis)
    return ax


def spectrogram(mel: np.ndarray, sample_rate: int, hop_length: int, ax=None, title: str = "",
                mel_hz: Optional[Sequence[float]] = None, unit: str = "dB"):
    """A (n_mels, frames) log-mel as an image: seconds on the x axis and, given the centre
    frequency of each band (``mel_hz``), the frequency in Hz on the y axis; the colour bar in
    the front end's ``unit`` (dB for 10·log10 power)."""
    ax = _ax(ax, figsize=(7, 2.6))
    seconds = mel.shape[1] * hop_length / sample_rate
    im = ax.imshow(mel, origin="lower", aspect="auto", extent=(0, seconds, -0.5, mel.shape[0] - 0.5), cmap="magma")
    if mel_hz is not None:
        hz = np.asarray(mel_hz, dtype=float)
        marks = [f for f in (100, 500, 1000, 2000, 4000, 8000, 16000) if hz[0] <= f <= hz[-1]]
        ax.set_yticks(np.interp(marks, hz, np.arange(len(hz))),
                      [f"{f // 1000} k" if f >= 1000 else str(f) for f in marks])
        ax.set_ylabel("frequency (Hz)")
    else:
        ax.set_ylabel("mel band")
    ax.set(xlabel="time (s)", title=title)
    ax.grid(False)
    ax.figure.colorbar(im, ax=ax, pad=0.01, label=f"level ({unit})")
    return ax


# ----------------------------------------------------------------------------- one system
def recall_curve(ranks: Mapping[str, np.ndarray] | np.ndarray, n_items: int, max_k: int = 50, ax=None):
    """R@k against k (1-based ranks of the relevant item), with the chance line k / n_items."""
    ax = _ax(ax)
    if not isinstance(ranks, Mapping):
        ranks = {"system": ranks}
    ks = np.arange(1, min(max_k, n_items) + 1)
    for name, r in ranks.items():
        r = np.asarray(r)
        ax.plot(ks, [(r <= k).mean() for k in ks], label=name, marker="o" if len(ks) <= 12 else None, ms=3)
    ax.plot(ks, ks / n_items, **CHANCE_STYLE, label="chance (random ranking)")
    ax.set(xlabel="k (clips looked at)", ylabel="R@k (share of captions)", ylim=(0, 1.02), title="Recall at k")
    _int_ticks(ax.xaxis)
    legend_outside(ax)
    return ax


def rank_hist(ranks: np.ndarray, n_items: int, ax=None):
    """Where the true clip lands, with the flat distribution a random ranking would give."""
    ax = _ax(ax)
    r = np.asarray(ranks)
    if n_items <= 30:
        bins = np.arange(1, n_items + 2) - 0.5
        ax.hist(r, bins=bins, color=COLOR, edgecolor="white")
        ax.axhline(len(r) / n_items, **CHANCE_STYLE, label="chance (random ranking)")
        _int_ticks(ax.xaxis)
        ax.set_xlabel("rank of the true clip")
    else:
        bins = np.unique(np.geomspace(1, n_items + 1, num=25).astype(int))
        counts, edges, _ = ax.hist(r, bins=bins, color=COLOR, edgecolor="white")
        ax.stairs(len(r) * np.diff(edges) / n_items, edges, **CHANCE_STYLE, label="chance (random ranking)")
        ax.set_xscale("log")
        plain_log_ticks(ax.xaxis, n_items)
        ax.set_xlabel("rank of the true clip (log scale)")
    ax.set(ylabel="captions", title="Where the true clip lands")
    _int_ticks(ax.yaxis)
    legend_outside(ax)
    return ax


def sim_heatmap(sim: np.ndarray, row_labels: Sequence[str] = (), col_labels: Sequence[str] = (), ax=None,
                title: str = "Similarity (captions × clips)"):
    """Scores of a few captions against a few clips; the boxed cells are each caption's own clip
    when ``row_clip`` is known (pass rows grouped by clip and matching ``col_labels``)."""
    n_r, n_c = sim.shape
    ax = _ax(ax, figsize=(min(5.5 + 0.6 * n_c, 15), min(1.4 + 0.3 * n_r, 14)))
    import seaborn as sns

    sns.heatmap(sim, ax=ax, cmap="viridis", cbar_kws={"label": "cosine similarity"},
                yticklabels=[ellipsis(s, 60) for s in row_labels] if len(row_labels) else False,
                xticklabels=list(col_labels) if len(col_labels) else False)
    ax.tick_params(axis="y", labelsize=9)
    ax.tick_params(axis="x", labelsize=9, rotation=60)
    ax.set(title=title, xlabel="clip", ylabel="caption")
    return ax


# ----------------------------------------------------------------------------- several systems
def metric_bars(table: Mapping[str, Mapping[str, float]], metric: str = "mAP@10", ax=None,
                chance: Optional[float] = None, chosen: Optional[str] = None, title: str = ""):
    """One horizontal bar per system with its 95 % CI; ``table[name] = {"value", "low",
    "high"}``; a chance line; the ``chosen`` system's bar highlighted."""
    names = list(table)
    ax = _ax(ax, figsize=(7, 0.45 * len(names) + 1.3))
    v = np.array([table[n]["value"] for n in names])
    lo = v - np.array([table[n].get("low", table[n]["value"]) for n in names])
    hi = np.array([table[n].get("high", table[n]["value"]) for n in names]) - v
    from matplotlib.patches import Patch

    colors = [CHOSEN if n == chosen else COLOR for n in names]
    y = np.arange(len(names))[::-1]
    ax.barh(y, v, xerr=[lo, hi], capsize=3, color=colors)
    ax.set_yticks(y, [ellipsis(n, 40) for n in names])
    handles = []
    if chance is not None:
        handles.append(ax.axvline(chance, **CHANCE_STYLE, label=f"chance {chance:.3f}"))
    if chosen is not None:
        handles.append(Patch(facecolor=CHOSEN, label="chosen on validation"))
        if any(n != chosen for n in names):
            handles.append(Patch(facecolor=COLOR, label="the others"))
    if handles:
        legend_outside(ax, handles=handles)
    ax.set(xlabel=f"test {metric} (bars: 95 % CI)", xlim=(0, min(1.0, max(0.05, float((v + hi).max()) * 1.1))),
           title=title or f"test {metric}")
    return ax


def training_curves(histories: Mapping[str, List[dict]], keys: Sequence[str] = ("train_loss", "val_mAP@10"),
                    chosen_epoch: Optional[Mapping[str, int]] = None, chance: Optional[float] = None):
    """Faceted curves: one panel per (run, key) when runs differ in scale (loss values of
    different losses), else one panel per key. ``chosen_epoch[run]`` is marked with a
    dotted line; ``chance`` (of the validation metric) with a dashed one. Returns the grid."""
    import pandas as pd
    import seaborn as sns

    rows = [{"run": name, "epoch": h["epoch"], "metric": k, "value": h[k]}
            for name, hist in histories.items() for h in hist for k in keys if k in h]
    df = pd.DataFrame(rows)
    one = len(histories) == 1
    g = sns.relplot(data=df, x="epoch", y="value", row=None if one else "metric",
                    col="metric" if one else "run", col_wrap=2 if one and len(keys) > 1 else None, kind="line",
                    marker="o", facet_kws={"sharey": False, "sharex": True}, height=2.8, aspect=1.7)
    for (r, c), ax in np.ndenumerate(np.atleast_2d(g.axes)):
        title = ax.get_title()
        run = next((n for n in histories if f"run = {n}" in title), next(iter(histories)))
        metric = next((k for k in keys if f"metric = {k}" in title), keys[min(r, len(keys) - 1)])
        ax.set_title(f"{run}: {metric}" if len(histories) > 1 else metric, fontsize=9)
        ax.set_ylabel(metric.replace("_", " "))
        if chosen_epoch and run in chosen_epoch:
            ax.axvline(chosen_epoch[run], ls=":", color=CHOSEN, lw=1.5, label=f"chosen epoch {chosen_epoch[run]}")
        if chance is not None and metric.startswith("val_") and "mAP" in metric:
            ax.axhline(chance, **CHANCE_STYLE, label="chance")
        _int_ticks(ax.xaxis)
    figure_legend(g.figure, list(np.ravel(g.axes)))
    return g


def ablation_curves(df, chance: Optional[float] = None, chosen: Optional[str] = None):
    """Two figures from :func:`atrlib.experiments.loss_ablation.curves`: the training loss of each
    loss in its own panel (their scales differ; seeds as lines), and validation mAP@10 of all
    losses in one panel (one scale; mean over seeds, chance dashed, the chosen loss thick).
    Returns (grid, axes)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    g = sns.relplot(data=df, x="epoch", y="train_loss", col="loss", hue="seed", kind="line", col_wrap=4,
                    height=2.1, aspect=1.25, facet_kws={"sharey": False}, legend=df["seed"].nunique() > 1)
    g.set_titles("{col_name}")
    g.set_axis_labels("epoch", "training loss")
    for ax in g.axes.flat:
        _int_ticks(ax.xaxis)
    g.figure.suptitle("Training loss per loss function (each on its own scale)", y=1.02)
    _, ax = plt.subplots(figsize=(7, 3.4), constrained_layout=True)
    mean = df.groupby(["loss", "epoch"], sort=False)["val_mAP@10"].mean().reset_index()
    for loss, d in mean.groupby("loss", sort=False):
        ax.plot(d["epoch"], d["val_mAP@10"], lw=2.6 if loss == chosen else 1.2,
                label=f"{loss} (chosen)" if loss == chosen else loss)
    if chance is not None:
        ax.axhline(chance, **CHANCE_STYLE, label="chance")
    ax.set(xlabel="epoch", ylabel="validation mAP@10", title="Validation mAP@10 (mean over seeds)")
    _int_ticks(ax.xaxis)
    legend_outside(ax, fontsize=7)
    return g, ax


def correlation_matrix(corr: np.ndarray, names: Sequence[str], ax=None, title: str = "Correlation of per-query AP@10"):
    import seaborn as sns

    n = len(names)
    ax = _ax(ax, figsize=(2.5 + 0.75 * n, 1.5 + 0.6 * n))
    sns.heatmap(corr, vmin=-1, vmax=1, cmap="coolwarm", annot=True, fmt=".2f", annot_kws={"fontsize": 8},
                xticklabels=names, yticklabels=names, ax=ax, cbar_kws={"label": "Pearson r"}, square=True)
    ax.tick_params(axis="x", rotation=45, labelsize=8)
    ax.tick_params(axis="y", rotation=0, labelsize=8)
    ax.set_title(title)
    return ax


def weights_heatmap(weights, ax=None, title: str = "Ensemble weights fitted on validation"):
    """systems × methods weight table (a DataFrame) as an annotated heatmap; 0 = unused."""
    import seaborn as sns

    ax = _ax(ax, figsize=(2.5 + 1.1 * weights.shape[1], 1.2 + 0.45 * weights.shape[0]))
    sns.heatmap(weights, annot=True, fmt=".2f", cmap="Blues", vmin=0, vmax=1, ax=ax, annot_kws={"fontsize": 8},
                cbar_kws={"label": "weight"})
    ax.tick_params(axis="x", rotation=0, labelsize=8)
    ax.tick_params(axis="y", rotation=0, labelsize=8)
    ax.set(title=title, xlabel="method", ylabel="system")
    return ax


def size_curve(curve, ax=None, chance: Optional[float] = None):
    """Equal-weight ensemble of the n best systems (by validation): validation and test
    mAP@10 against n, the n chosen on validation marked."""
    ax = _ax(ax)
    ax.plot(curve["n"], curve["val mAP@10"], marker="o", label="validation (chooses n)")
    ax.plot(curve["n"], curve["test mAP@10"], marker="s", label="test (reported)")
    n = curve.attrs.get("chosen_n")
    if n:
        ax.axvline(n, ls=":", color=CHOSEN, lw=1.5, label=f"chosen n = {n}")
    if chance is not None:
        ax.axhline(chance, **CHANCE_STYLE, label="chance")
    ax.set(xlabel="systems in the ensemble (best by validation first)", ylabel="mAP@10", title="Ensemble size")
    _int_ticks(ax.xaxis)
    legend_outside(ax)
    return ax
