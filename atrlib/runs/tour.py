"""The pieces of notebook 00 (a tour for newcomers): the task in one picture, a worked
R@k / AP@10 example computed by hand and by :mod:`atrlib.retrieval.metrics`, the embedded dataset's
design, and maps of the notebooks and of where to change things."""
from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np
import pandas as pd

from atrlib.runs.stages import STAGES


def dual_encoder_figure():
    """Boxes and arrows: clip -> audio tower -> head -> embedding; caption -> text tower ->
    head -> embedding; the embeddings meet in a similarity matrix that is ranked."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    fig, ax = plt.subplots(figsize=(10, 3.6), constrained_layout=True)
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 4)
    ax.set_axis_off()

    def box(x, y, text, color, w=1.7):
        ax.add_patch(FancyBboxPatch((x, y), w, 0.8, boxstyle="round,pad=0.05", fc=color, ec="#444", lw=1))
        ax.text(x + w / 2, y + 0.4, text, ha="center", va="center", fontsize=9)

    def arrow(x0, y0, x1, y1):
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops=dict(arrowstyle="->", lw=1.3, color="#444"))

    rows = [(2.8, "audio clip\n(waveform)", "audio tower\n(e.g. mel-stats, CNN14)", "#dbe9f6"),
            (0.4, "caption\n\"a high beep, then rain\"", "text tower\n(e.g. MiniLM)", "#e4f3e0")]
    for y, src, tower, color in rows:
        box(0.1, y, src, "#f4f4f4")
        box(2.3, y, tower, color)
        box(4.5, y, "head\n(small MLP, trained)", "#fde7d3", w=1.5)
        box(6.4, y, "embedding\n(256 numbers)", "#f4f4f4", w=1.4)
        for x0, x1 in ((1.8, 2.3), (4.0, 4.5), (6.0, 6.4)):
            arrow(x0, y + 0.4, x1, y + 0.4)
    box(8.3, 1.6, "cosine\nsimilarity\n-> ranking", "#efe3f6", w=1.5)
    arrow(7.8, 3.2, 8.6, 2.4)
    arrow(7.8, 0.8, 8.6, 1.6)
    ax.set_title("A dual encoder: both sides map into one space; retrieval ranks clips by similarity", fontsize=11)
    return fig


def worked_example() -> Tuple[pd.DataFrame, pd.DataFrame, Dict[str, float]]:
    """Three clips, three captions (one per clip), a similarity matrix, and the metrics by
    hand: returns (similarity table, per-caption table, {"R@1", "R@2", "mAP@10"}), the
    per-caption numbers checked against :func:`atrlib.retrieval.metrics.per_query_metrics`."""
    from atrlib.retrieval.metrics import per_query_metrics

    clips = ["beep.wav", "rain.wav", "hum.wav"]
    captions = ["a high beep repeats", "rain falls on a roof", "a low electrical hum"]
    sim = np.array([[0.81, 0.10, 0.35],      # the beep caption: its clip first
                    [0.30, 0.52, 0.61],      # the rain caption: hum scores higher -> rank 2
                    [0.40, 0.45, 0.20]]),    # the hum caption: its clip last -> rank 3
    sim = np.asarray(sim[0], dtype=np.float32)
    rel = [[0], [1], [2]]
    rows = []
    for q, cap in enumerate(captions):
        order = np.argsort(-sim[q], kind="stable")
        rank = int(np.where(order == q)[0][0]) + 1
        rows.append({"caption": cap, "correct clip": clips[q], "ranking": " > ".join(clips[i] for i in order),
                     "rank of correct clip": rank, "R@1": float(rank <= 1), "R@2": float(rank <= 2),
                     "AP@10 = 1/rank": 1.0 / rank if rank <= 10 else 0.0})
    per = pd.DataFrame(rows)
    pq = per_query_metrics(sim, rel, ks=(1, 2), map_at=10)
    assert np.allclose(pq["AP@10"], per["AP@10 = 1/rank"]) and np.allclose(pq["R@1"], per["R@1"])
    table = pd.DataFrame(sim, index=captions, columns=clips)
    return table, per, {"R@1": float(per["R@1"].mean()), "R@2": float(per["R@2"].mean()),
                        "mAP@10": float(per["AP@10 = 1/rank"].mean())}


def synth_design() -> pd.DataFrame:
    """The embedded dataset's attribute space: one row per event kind."""
    from atrlib.data.synth_scenes import ATTR_VALUES, EVENT_ATTRS

    return pd.DataFrame([{"event kind": k, "attributes (values)": "; ".join(f"{a}: {'/'.join(ATTR_VALUES[a])}" for a in attrs)}
                         for k, attrs in EVENT_ATTRS.items()]).set_index("event kind")


def base_and_variant(size: str = "demo", split: str = "train") -> List[dict]:
    """A family's base clip and its first variant (the same scene with one thing changed):
    ``[{"clip_id", "variant", "audio_path", "captions"}, ...]``."""
    from atrlib.data import load_dataset
    from atrlib.data.synth import synth_metadata

    specs = synth_metadata(split=split, size=size)
    ds = load_dataset("synth", split=split, size=size)
    paths = {it["clip_id"]: it["audio_path"] for it in ds}
    for i, s in enumerate(specs[:-1]):
        nxt = specs[i + 1]
        if s["variant"] == "base" and nxt["family"] == s["family"] and nxt["variant"] != "base":
            return [{"clip_id": x["clip_id"], "variant": x["variant"], "audio_path": paths[x["clip_id"]],
                     "captions": x["captions"]} for x in (s, nxt)]
    return []


WHERE_TO_CHANGE = [
    ("a setting of one run (epochs, lr, loss, …)", "the notebook's first code cell (parameters), or `-p name=value`"),
    ("what `make demo` runs", "`notebooks/params/demo.yaml` (only what differs from the notebooks)"),
    ("a model (towers, head, embedding size)", "`atrlib/model_configs/*.json`; a new tower: `atrlib/models/`"),
    ("a loss", "`atrlib/losses/` (register a new one; 04 loops over names)"),
    ("a dataset", "`atrlib/data/` (`folder` reads your own sounds + a captions CSV)"),
    ("a metric or a confidence interval", "`atrlib/retrieval/metrics.py`"),
    ("a figure or a sentence in a report", "`atrlib/runs/plots.py`, `atrlib/runs/report_text.py`, `atrlib/resources/glossary.md`"),
]


def notebooks_table() -> pd.DataFrame:
    """The stage notebooks (:data:`atrlib.runs.stages.STAGES`): what each does, what to try."""
    rows = [(s.name, "this page: " + s.title if s.name == "00_tour" else s.title, s.try_parameters) for s in STAGES]
    return pd.DataFrame(rows, columns=["notebook", "what it does", "parameters to try"]).set_index("notebook")


def where_to_change_table() -> pd.DataFrame:
    return pd.DataFrame(WHERE_TO_CHANGE, columns=["to change", "edit"]).set_index("to change")
