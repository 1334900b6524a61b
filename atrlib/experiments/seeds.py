"""The same training with other seeds: how far a run's numbers move when only the seed changes.

Training trajectories move with the seed and with the CPU's floating-point kernels, so a
finding stated from one run may not survive another machine. Stage 02 trains its run with a
few more seeds (:func:`seed_runs`) and shows the spread (:func:`seed_table`); 04 and 05 state
their comparisons over seeds through :func:`atrlib.retrieval.summaries.seed_verdict`.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Dict, Mapping, Sequence

import numpy as np
import pandas as pd

from atrlib.experiments.systems import train_or_reuse
from atrlib.files import read_json
from atrlib.retrieval.metrics import jackknife_ci, per_query_metrics
from atrlib.retrieval.simfile import load_similarity, sim_path
from atrlib.retrieval.summaries import clip_interval


def seed_runs(cfg, seeds: Sequence[int], out_dir: str | Path, data=None) -> Dict[int, Path]:
    """``cfg`` trained once per seed into ``<out_dir>/s<seed>`` (finished runs of the same
    config are reused); seed -> run folder."""
    out = Path(out_dir)
    return {int(s): train_or_reuse(replace(cfg, seed=int(s), out_dir=str(out / f"s{s}"), progress=False), data=data)
            for s in seeds}


def seed_table(runs: Mapping[int, str | Path], split: str = "test") -> pd.DataFrame:
    """One row per seed: the epoch chosen on validation, validation mAP@10 at that epoch, and
    ``split``'s mAP@10 with its jackknife 95 % CI (over captions, clipped to [0, 1]) and R@1.
    ``attrs``: ``mean`` and ``sd`` (ddof 1) of the test mAP@10 over seeds, ``mean_ci`` (the
    jackknife 95 % CI of the seed-averaged per-caption AP@10, as 04 reports each loss), ``n_items``."""
    rows, aps = {}, []
    n_items = 0
    for seed, run in runs.items():
        run = Path(run)
        hist = read_json(run / "history.json")
        best = max(hist, key=lambda h: h["val_mAP@10"]) if hist else {"epoch": 0, "val_mAP@10": float("nan")}
        sm = load_similarity(sim_path(run, split))
        n_items = int(sm.sim.shape[1])
        q = per_query_metrics(sm.sim, sm.relevant, map_at=10)
        ci = clip_interval(jackknife_ci(q["AP@10"]))
        aps.append(q["AP@10"])
        rows[int(seed)] = {"chosen epoch": int(best["epoch"]), "val mAP@10": float(best["val_mAP@10"]),
                           "test mAP@10": ci["value"], "low": ci["low"], "high": ci["high"],
                           "R@1": float(np.mean(q["R@1"]))}
    table = pd.DataFrame(rows).T
    table["chosen epoch"] = table["chosen epoch"].astype(int)
    table.index.name = "seed"
    vals = table["test mAP@10"].astype(float)
    table.attrs.update(mean=float(vals.mean()), sd=float(vals.std(ddof=1)) if len(vals) > 1 else float("nan"),
                       n_items=n_items, mean_ci=clip_interval(jackknife_ci(np.mean(aps, axis=0))) if aps else None)
    return table
