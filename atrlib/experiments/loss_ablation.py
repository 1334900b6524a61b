"""Loss ablations: train one model per (loss, seed), choose the best loss on the validation
split, and report every loss on the test split with confidence intervals and paired
significance tests against a baseline loss.

Per-query AP@10 is averaged over seeds before the statistics, so the CI and the paired test
are over test queries (the unit the DCASE metrics average over), not over seeds. The table
is ordered by validation mAP@10: its first row is the loss chosen (:func:`chosen_loss`).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from atrlib.data.splits import load_splits
from atrlib.experiments.systems import train_or_reuse
from atrlib.files import read_json
from atrlib.retrieval.ensemble import choose_on_validation
from atrlib.retrieval.metrics import jackknife_ci, paired_test, per_query_metrics
from atrlib.retrieval.simfile import load_similarity, sim_path
from atrlib.retrieval.summaries import clip_interval, seed_verdict
from atrlib.train.config import TrainConfig


def run_grid(base: TrainConfig, losses: Sequence[str], seeds: Sequence[int], out_dir: str | Path,
             progress: bool = True) -> Dict[str, List[Path]]:
    """Train every (loss, seed) into ``<out_dir>/<loss>-s<seed>``; returns loss -> run folders.

    A run folder that already holds ``metrics.json`` from the same config is reused, so an
    interrupted ablation picks up where it stopped.
    """
    from tqdm.auto import tqdm

    out = Path(out_dir)
    data = load_splits(base)
    runs: Dict[str, List[Path]] = {}
    grid = [(l, s) for l in losses for s in seeds]
    for loss, seed in tqdm(grid, desc="ablation runs", disable=not progress):
        cfg = replace(base, loss=loss, seed=seed, out_dir=str(out / f"{loss}-s{seed}"), progress=False)
        runs.setdefault(loss, []).append(train_or_reuse(cfg, data=data))
    return runs


def _as_json(cfg: TrainConfig) -> dict:
    import json

    return json.loads(json.dumps(cfg.to_dict(), default=str))


def per_query_ap(run: str | Path, split: str = "test", k: int = 10) -> np.ndarray:
    sm = load_similarity(sim_path(run, split))  # split names flow from the dataset (Clotho: "evaluation")
    return per_query_metrics(sm.sim, sm.relevant, map_at=k)[f"AP@{k}"]


def summarise(runs: Dict[str, List[Path]], baseline: str = "infonce", split: str = "test",
              val_split: str = "validation", n: int = 10000, seed: int = 0) -> pd.DataFrame:
    """One row per loss, best *validation* mAP@10 first: ``val_mAP@10`` (mean over seeds;
    what the choice uses), test ``mAP@10`` (mean over seeds per query) with its jackknife
    95 % CI clipped to [0, 1], the spread over seeds, R@1/R@10, and a paired permutation
    test of per-query test AP against ``baseline``."""
    ap = {loss: np.mean([per_query_ap(r, split) for r in rs], axis=0) for loss, rs in runs.items()}
    rows = []
    for loss, rs in runs.items():
        ci = clip_interval(jackknife_ci(ap[loss]))
        per_seed = [read_json(Path(r) / "metrics.json")[_key(split)]["t2a"] for r in rs]
        val = float(np.mean([per_query_ap(r, val_split).mean() for r in rs]))
        row = {"loss": loss, "val_mAP@10": val, "mAP@10": ci["value"], "low": ci["low"], "high": ci["high"],
               "seed_sd": float(np.std([m["mAP@10"] for m in per_seed], ddof=1)) if len(rs) > 1 else float("nan"),
               "R@1": float(np.mean([m["R@1"] for m in per_seed])), "R@10": float(np.mean([m["R@10"] for m in per_seed])),
               "seeds": len(rs)}
        if baseline in ap and loss != baseline:
            t = paired_test(ap[loss], ap[baseline], method="permutation", n=n, seed=seed)
            row.update(diff_vs_baseline=t["diff"], p_value=t["p_value"])
        rows.append(row)
    table = pd.DataFrame(rows).set_index("loss").sort_values("val_mAP@10", ascending=False, kind="stable")
    first = next(iter(runs.values()))[0]
    table.attrs["n_items"] = int(load_similarity(sim_path(first, split)).sim.shape[1])
    return table


def seed_differences(runs: Dict[str, List[Path]], a: str, b: str, split: str = "test") -> List[float]:
    """Test mAP@10 of loss ``a`` minus that of loss ``b``, one difference per seed the two
    share (runs ``<loss>-s<seed>``), in seed order."""
    def by_seed(rs):
        return {Path(r).name.rsplit("-s", 1)[-1]: r for r in rs}

    ra, rb = by_seed(runs[a]), by_seed(runs[b])
    return [float(per_query_ap(ra[s], split).mean() - per_query_ap(rb[s], split).mean()) for s in ra if s in rb]


def seed_check(table: pd.DataFrame, runs: Dict[str, List[Path]], baseline: str, split: str = "test") -> Optional[dict]:
    """Does the chosen loss's difference from ``baseline`` survive the seed?
    (:func:`atrlib.retrieval.summaries.seed_verdict` over the per-seed test differences, with
    the seed-averaged permutation test's p-value.) None when the baseline was chosen or absent."""
    best = chosen_loss(table)
    if best == baseline or baseline not in runs:
        return None
    p = table.loc[best].get("p_value", float("nan"))
    return seed_verdict(seed_differences(runs, best, baseline, split), None if pd.isna(p) else float(p))


def chosen_loss(table: pd.DataFrame) -> str:
    """The loss with the best validation mAP@10 (ties: the earlier row of the grid)."""
    return choose_on_validation(table["val_mAP@10"].to_dict())


def headline(table: pd.DataFrame, baseline: str, check: Optional[dict], chance: Optional[float] = None) -> List[dict]:
    """04's key numbers for the run index (:func:`atrlib.runs.notebook.headline_item`): the loss
    chosen on validation, its test mAP@10 and the baseline's (CI, chance, seed spread), and the
    difference over seeds with its verdict."""
    from atrlib.runs.notebook import headline_item

    best = chosen_loss(table)
    rows = [baseline] if baseline in table.index and baseline != best else []
    items = [headline_item("Loss chosen on validation", best)]
    for name, what in [(best, ""), *((b, "the baseline ") for b in rows)]:
        r = table.loc[name]
        items.append(headline_item(f"Test mAP@10 of {what}{name}", r["mAP@10"], r["low"], r["high"], chance,
                                   sd=r["seed_sd"], n_seeds=r["seeds"]))
    if check:
        items.append(headline_item(f"{best} − {baseline}, test mAP@10", check["mean"], sd=check["sd"], n_seeds=check["n"],
                                   note="distinguishable" if check["distinguishable"] else "not distinguishable"))
    return items


def ablation_metrics(table: pd.DataFrame, baseline: str, runs: Dict[str, List[Path]],
                     chance: Optional[float] = None) -> dict:
    """04's ``metrics.json``: the loss chosen on validation with its test score and p-value
    against ``baseline``, the same comparison over seeds, the index's headline, then every
    loss's row."""
    best = chosen_loss(table)
    r = table.loc[best]
    check = seed_check(table, runs, baseline)

    def clean(v):
        return None if pd.isna(v) else float(v)

    return {"best_loss": best, "chosen_on": "validation", "best_loss_val_mAP@10": float(r["val_mAP@10"]),
            "best_loss_test_mAP@10": float(r["mAP@10"]), "best_loss_test_low": float(r["low"]),
            "best_loss_test_high": float(r["high"]),
            "best_loss_p_value": clean(r.get("p_value", float("nan"))) if best != baseline else None,
            "baseline": baseline,
            "baseline_test_mAP@10": float(table.loc[baseline, "mAP@10"]) if baseline in table.index else None,
            "losses": {k: {c: clean(v) for c, v in row.items()} for k, row in table.iterrows()},
            "best_loss_seed_check": check, "headline": headline(table, baseline, check, chance),
            "runs": {k: [Path(p).name for p in v] for k, v in runs.items()}}


KEY_METRICS = ["best_loss", "best_loss_val_mAP@10", "best_loss_test_mAP@10", "best_loss_p_value", "baseline_test_mAP@10"]


def _key(split: str) -> str:
    return "test" if split not in ("validation", "val") else "val"


def histories(runs: Dict[str, List[Path]]) -> Dict[str, List[dict]]:
    """loss-seed -> history, for overlaying training curves."""
    return {Path(r).name: read_json(Path(r) / "history.json") for rs in runs.values() for r in rs}


def curves(runs: Dict[str, List[Path]]) -> pd.DataFrame:
    """Long table of every run's history: ``loss, seed, epoch, train_loss, val_mAP@10``."""
    rows = []
    for loss, rs in runs.items():
        for r in rs:
            seed = Path(r).name.rsplit("-s", 1)[-1]
            for h in read_json(Path(r) / "history.json"):
                rows.append({"loss": loss, "seed": seed, "epoch": h["epoch"], "train_loss": h["train_loss"],
                             "val_mAP@10": h["val_mAP@10"]})
    return pd.DataFrame(rows)
