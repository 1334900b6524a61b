"""Objectives ablation: contrastive loss × auxiliary cross-modal terms × top-K re-ranking,
with confidence intervals and paired tests — one call for the ablation notebook::

    from atrlib.experiments.objective_ablation import objectives_ablation
    table = objectives_ablation(base_cfg, contrastive=["infonce", "ntxent"], auxiliary=["", "acml+mlml"],
                                rerank_k=[0, 16], seeds=[0, 1], out_dir="reports/x/objectives")

Every (contrastive, auxiliary, seed) is trained by :func:`atrlib.experiments.loss_ablation.run_grid`
(loss = ``contrastive + "+" + auxiliary``; head settings and weights in ``base.loss_kwargs``,
e.g. ``{"crossattn": {"num_layers": 2, "frame_stride": 10}}``; finished runs are reused), then
each run with a matching head is re-ranked on the test split for every K > 0, two ways: by the
head alone (``rerank K head``, Lingban's) and by similarity + w x match probability with w
chosen on the validation split (``rerank K tuned``, BLIP's score; :mod:`atrlib.retrieval.rerank`).
``staged=True`` trains the contrastive run first and starts the runs with auxiliary terms from
it. The head's scores of each split are cached in the run. Per-query AP@10 is averaged over seeds; each row has its test mAP@10 with a jackknife 95 % CI, R@1 / R@10, the
validation mAP@10 of the same setting (re-ranked too), a paired permutation test against the
baseline (first contrastive loss, no auxiliary term, no re-ranking) and against the same run
without re-ranking, and the re-ranking cost (seconds per query).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from atrlib.files import read_json, write_json
from atrlib.retrieval.metrics import jackknife_ci, paired_test, per_query_metrics
from atrlib.retrieval.simfile import load_similarity, save_similarity


def _head_scores(run: Path, split_key: str, k: int, data, progress: bool) -> Dict[str, object]:
    """The matching head's scores of the top ``k`` of every caption of one split of ``run``
    (cached in the run: ``rerank<K>_<split>.npz`` + ``.json`` cost), with the similarity they
    re-rank: ``{"sim", "top", "scores", "cost"}``."""
    from atrlib.models.dual import load_model
    from atrlib.retrieval.rerank import rerank_split

    ds = data[split_key]
    sm = load_similarity(run / f"sim_{ds.split}.npz")
    path, cost_path = run / f"rerank{k}_{ds.split}.npz", run / f"rerank{k}_{ds.split}.json"
    if not path.exists() or not cost_path.exists():
        res = rerank_split(load_model(run / "best"), ds, k, sim_without=sm, progress=progress)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, top=res["top"], scores=res["scores"])
        tmp.replace(path)
        write_json(cost_path, res["cost"])
    z = np.load(path)
    return {"sim": sm, "top": z["top"], "scores": z["scores"], "cost": read_json(cost_path)}


def _reranked(run: Path, k: int, how: str, data, progress: bool) -> Dict[str, Dict[str, object]]:
    """Per-query metrics of ``run`` on the test and validation splits after re-ranking the top
    ``k``: ``how`` = "head" (the head alone) or "val" (similarity + w x probability, w chosen on
    the validation split, :func:`atrlib.retrieval.rerank.choose_weight`)."""
    from atrlib.retrieval.rerank import choose_weight, fuse, weight_name

    parts = {key: _head_scores(run, key, k, data, progress) for key in ("val", "test")}
    weight = None
    if how == "val":
        v = parts["val"]
        weight, _ = choose_weight(v["sim"].sim, v["top"], v["scores"], v["sim"].relevant)
    out = {}
    for key, p in parts.items():
        new = fuse(p["sim"].sim, p["top"], p["scores"], weight)
        out[key] = {"R": per_query_metrics(new, p["sim"].relevant), "cost": p["cost"], "weight": weight_name(weight)}
    return out


def objectives_ablation(base, contrastive: Sequence[str] = ("infonce",), auxiliary: Sequence[str] = ("", "acml+mlml"),
                        rerank_k: Sequence[int] = (0, 16), seeds: Sequence[int] = (0,), out_dir: str | Path = "objectives",
                        n: int = 10000, progress: bool = True, staged: bool = False,
                        aux_overrides: Optional[Dict[str, object]] = None) -> pd.DataFrame:
    """Train and score the grid (module docstring); returns one row per (loss, K, weight),
    indexed by ``system`` = ``"<loss> | rerank K <how>"`` (how: ``head`` = the matching head
    alone orders the top K; ``tuned`` = similarity + w x match probability with w chosen on
    validation), and writes ``objectives.csv`` into ``out_dir``. ``staged``: runs with
    auxiliary terms start from the weights of the same contrastive loss's run without them
    (same seed) — contrastive first, then the cross-modal terms (their hard negatives come
    from a trained similarity from the first step)."""
    from atrlib.experiments.loss_ablation import run_grid
    from atrlib.models.fusion import MATCHING_HEADS
    from atrlib.data.splits import load_splits

    losses = [c + (f"+{a}" if a else "") for c in contrastive for a in auxiliary]
    aux = dict(aux_overrides or {})
    if staged:
        runs = run_grid(base, list(contrastive), seeds, out_dir, progress=progress)
        order = list(losses)
        for c in contrastive:
            for a in [a for a in auxiliary if a]:
                for seed, first in zip(seeds, runs[c]):
                    r = run_grid(replace(base, init_from=str(Path(first) / "best"), **aux), [f"{c}+{a}"], [seed],
                                 Path(out_dir) / "staged", progress=progress)
                    runs.setdefault(f"{c}+{a}", []).extend(r[f"{c}+{a}"])
            if any(auxiliary) and not aux.get("train_only"):
                # the control: the contrastive loss alone, continued for the same stage-2 steps
                for seed, first in zip(seeds, runs[c]):
                    r = run_grid(replace(base, init_from=str(Path(first) / "best"), **aux), [c], [seed],
                                 Path(out_dir) / "staged", progress=progress)
                    runs.setdefault(f"{c} continued", []).extend(r[c])
                order.insert(order.index(c) + 1 if c in order else 0, f"{c} continued")
        runs = {loss: runs[loss] for loss in order}
    else:
        runs = run_grid(base, [l for l in losses if l in contrastive], seeds, out_dir, progress=progress)
        extra = [l for l in losses if l not in contrastive]
        if extra:
            runs.update(run_grid(replace(base, **aux), extra, seeds, out_dir, progress=progress))
    data = load_splits(replace(base, test_split=base.test_split or "test"))
    per: Dict[str, Dict[str, object]] = {}
    for loss, rs in runs.items():
        has_head = any(h in read_json(Path(rs[0]) / "best" / "config.json").get("heads", {}) for h in MATCHING_HEADS)
        for k in rerank_k:
            if k and not has_head:
                continue
            for how in (("head", "val") if k else ("",)):
                row = {"loss": loss, "rerank_k": int(k), "rerank_weight": ""}
                parts = [_reranked(Path(r), int(k), how, data, progress) for r in rs] if k else []
                for key in ("test", "val"):
                    if k:
                        ap = np.mean([p[key]["R"]["AP@10"] for p in parts], axis=0)
                        r1 = np.mean([p[key]["R"]["R@1"].mean() for p in parts])
                        r10 = np.mean([p[key]["R"]["R@10"].mean() for p in parts])
                        if key == "test":
                            row["seconds_per_query"] = float(np.mean([p[key]["cost"]["seconds_per_query"] for p in parts]))
                            row["rerank_weight"] = ",".join(sorted({p[key]["weight"] for p in parts}))
                    else:
                        pq = [per_query_metrics(s.sim, s.relevant) for s in
                              (load_similarity(Path(r) / f"sim_{data[key].split}.npz") for r in rs)]
                        ap = np.mean([q["AP@10"] for q in pq], axis=0)
                        r1, r10 = np.mean([q["R@1"].mean() for q in pq]), np.mean([q["R@10"].mean() for q in pq])
                    row[f"{key}_ap"], row[f"{key}_R@1"], row[f"{key}_R@10"] = ap, float(r1), float(r10)
                label = {"": "", "head": " head", "val": " tuned"}[how]
                per[f"{loss} | rerank {k}{label}"] = row
    base_name = f"{losses[0]} | rerank 0"
    if f"{contrastive[0]} continued" in runs:  # staged: the fair baseline has had the same steps
        base_name = f"{contrastive[0]} continued | rerank 0"
    rows = []
    for name, row in per.items():
        ci = jackknife_ci(row["test_ap"])
        out = {"system": name, "loss": row["loss"], "rerank_k": row["rerank_k"], "rerank_weight": row["rerank_weight"],
               "val_mAP@10": float(np.mean(row["val_ap"])), "mAP@10": ci["value"], "low": ci["low"],
               "high": ci["high"], "R@1": row["test_R@1"], "R@10": row["test_R@10"],
               "seconds_per_query": row.get("seconds_per_query", 0.0), "seeds": len(seeds)}
        if name != base_name and base_name in per:
            t = paired_test(row["test_ap"], per[base_name]["test_ap"], method="permutation", n=n)
            out.update(diff_vs_baseline=t["diff"], p_vs_baseline=t["p_value"])
        plain = f"{row['loss']} | rerank 0"
        if row["rerank_k"] and plain in per:
            t = paired_test(row["test_ap"], per[plain]["test_ap"], method="permutation", n=n)
            out.update(diff_vs_no_rerank=t["diff"], p_vs_no_rerank=t["p_value"],
                       diff_low=t["low"], diff_high=t["high"])
        rows.append(out)
    table = pd.DataFrame(rows).set_index("system")
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    table.to_csv(Path(out_dir) / "objectives.csv")
    return table
