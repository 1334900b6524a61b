"""The ensemble study of notebook 05, one call per step: collect the systems, fit every
weighting method on validation, score what was fitted on test, the ensemble-size curve,
the k-fold ensemble, and the verdict.

Every choice — the best single system, the ensemble weights, the best method, the size n —
is made on the validation split; the test split is only scored for what was chosen (and,
for context, for the rest). :func:`verdict` never looks at a test score to choose.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import re

import numpy as np
import pandas as pd

from atrlib.experiments.systems import find_systems, load_systems, score_retriever, train_variants
from atrlib.retrieval import ensemble as E
from atrlib.retrieval.metrics import per_query_metrics, scores_with_ci
from atrlib.retrieval.simfile import SimilarityMatrix, save_similarity
from atrlib.retrieval.summaries import clip_interval

SINGLE = "best single system"
KEY_METRICS = ["best_method", "best_method_val_mAP@10", "best_method_test_mAP@10", "best_method_p_value",
               "best_single", "best_single_test_mAP@10"]


def _map10(sm: SimilarityMatrix, sim: Optional[np.ndarray] = None) -> float:
    return float(per_query_metrics(sm.sim if sim is None else sim, sm.relevant)["AP@10"].mean())


def _ci(sm: SimilarityMatrix) -> Dict[str, float]:
    return clip_interval(scores_with_ci(sm.sim, sm.relevant)["mAP@10"])


def collect_systems(patterns: Sequence[str], run_dir, base, variants: List[dict], out_dir, include_tagbridge: bool,
                    dataset_kwargs: Optional[Mapping[str, Any]] = None, seeds: Sequence[int] = ()
                    ) -> Tuple[Dict[str, SimilarityMatrix], Dict[str, SimilarityMatrix], List[str]]:
    """Stored runs matching ``patterns`` under ``run_dir``, ``variants`` trained into
    ``out_dir/variants`` (once per seed of ``seeds``, named ``<name>-s<seed>``), and the
    tag-bridge retriever (skipped with a note when its weights are missing). Returns aligned
    (validation systems, test systems, notes)."""
    from atrlib.data import load_dataset

    out = Path(out_dir)
    folders = find_systems(patterns, base=run_dir, val_split=base.val_split, test_split=base.test_split)
    folders.update(train_variants(base, variants, out / "variants", seeds=seeds))
    notes = []
    if include_tagbridge:
        try:
            from atrlib.train.dev_run import eval_clips

            kw = dict(root=base.root or None, size=base.size, **(dataset_kwargs or {}))
            n = eval_clips(base.max_clips, base.fast_dev_run, base.fast_dev_batch)  # the clips the trained runs score
            splits = {s: load_dataset(base.dataset, split=s, **kw).subset(n) for s in (base.val_split, base.test_split)}
            folders["tagbridge"] = score_retriever("tagbridge", splits, out / "tagbridge")
        except Exception as e:  # no EfficientAT weights offline: say so and go on
            notes.append(f"tag-bridge skipped: {str(e).splitlines()[0]}")
    if not folders:
        raise FileNotFoundError(f"no system with sim_{base.val_split}.npz and sim_{base.test_split}.npz matches "
                                f"{list(patterns)} under {run_dir}")
    val = E.align(load_systems(folders, base.val_split))
    test = E.align(load_systems(folders, base.test_split))
    for sm in val.values():  # these matrices come from the validation split: fitting may use them
        sm.meta["role"] = "validation"
    return val, test, notes


def seed_groups(names: Sequence[str], seeds: Sequence[int]) -> Dict[Optional[int], List[str]]:
    """seed -> the systems of that seed: those named ``…-s<seed>`` (04's runs, variants trained
    per seed) plus every system without a seed in its name (the zero-shot tag-bridge, a user's
    folder), which belongs to every seed. ``{None: names}`` when no name carries one of
    ``seeds``."""
    tagged = {n: int(m.group(1)) for n in names if (m := _SEEDED.search(n))}
    groups = {int(s): [n for n in names if tagged.get(n, int(s)) == int(s)] for s in seeds}
    groups = {s: g for s, g in groups.items() if any(n in tagged for n in g)}
    return groups or {None: list(names)}


_SEEDED = re.compile(r"-s(\d+)$")


def subset(systems: Mapping[str, SimilarityMatrix], names: Sequence[str]) -> Dict[str, SimilarityMatrix]:
    return {n: systems[n] for n in names}


def candidate_matrix(method: str, fits: Mapping[str, E.EnsembleResult], test: Mapping[str, SimilarityMatrix]):
    """The test matrix of one row of :func:`results_table`: the best single system, a fitted
    method or RRF."""
    if method.startswith(SINGLE):
        return test[method.split(": ", 1)[1]]
    if method == "RRF":
        return E.apply({n: 1.0 for n in test}, test, norm="rrf", name="rrf")
    return E.apply(fits[method], test)


def seed_check(val: Mapping[str, SimilarityMatrix], test: Mapping[str, SimilarityMatrix],
               groups: Mapping[Optional[int], Sequence[str]], norm: str = "zscore", n: int = 10000) -> pd.DataFrame:
    """The whole study repeated on each seed's systems: the best single system and the
    candidate chosen on validation, both on test. One row per seed; ``attrs["check"]`` is
    :func:`atrlib.retrieval.summaries.seed_verdict` over the per-seed differences, with a paired
    bootstrap test on per-caption test AP@10 averaged over seeds."""
    from atrlib.retrieval.metrics import paired_test
    from atrlib.retrieval.summaries import seed_verdict

    rows, ap_chosen, ap_single = {}, [], []
    for seed, names in groups.items():
        v_s, t_s = subset(val, names), subset(test, names)
        single = systems_table(v_s, t_s)
        fits = fit_methods(v_s, norm=norm)
        res = results_table(fits, v_s, t_s, best_single=single.index[0])
        v = verdict(res)
        chosen = candidate_matrix(v["method"], fits, t_s)
        first = next(iter(t_s.values()))
        ap_chosen.append(per_query_metrics(chosen.sim, first.relevant)["AP@10"])
        ap_single.append(per_query_metrics(t_s[v["best_single"]].sim, first.relevant)["AP@10"])
        rows["all" if seed is None else int(seed)] = {
            "systems": len(names), "best single": v["best_single"], "its test mAP@10": float(ap_single[-1].mean()),
            "chosen": v["method"], "chosen test mAP@10": float(ap_chosen[-1].mean()),
            "difference": float(ap_chosen[-1].mean() - ap_single[-1].mean())}
    table = pd.DataFrame(rows).T
    table.index.name = "seed"
    a, b = np.mean(ap_chosen, axis=0), np.mean(ap_single, axis=0)
    p = None if np.allclose(a, b) else paired_test(a, b, method="bootstrap", n=n)["p_value"]
    table.attrs["check"] = seed_verdict(table["difference"].astype(float), p)
    return table


def systems_table(val: Mapping[str, SimilarityMatrix], test: Mapping[str, SimilarityMatrix]) -> pd.DataFrame:
    """One row per system, best validation mAP@10 first: ``val mAP@10, test mAP@10, low, high``
    (test with its jackknife 95 % CI, clipped to [0, 1])."""
    rows = {}
    for n in val:
        c = _ci(test[n])
        rows[n] = {"val mAP@10": _map10(val[n]), "test mAP@10": c["value"], "low": c["low"], "high": c["high"]}
    return pd.DataFrame(rows).T.sort_values("val mAP@10", ascending=False, kind="stable")


def fit_methods(val: Mapping[str, SimilarityMatrix], norm: str = "zscore", grid_max_systems: int = 6,
                top_k: int = 3, coordinate_max_systems: int = 20) -> Dict[str, E.EnsembleResult]:
    """Every weighting method fitted on the validation systems: grid search (when at most
    ``grid_max_systems``), coordinate ascent (when at most ``coordinate_max_systems``: its cost
    grows with the square of the count — about 6 min a round for 42 systems at Clotho-validation
    size on 2 cores), greedy (Caruana) selection, top-k."""
    fits = {}
    if len(val) <= grid_max_systems:
        fits["grid"] = E.grid_search(val, step=0.1, norm=norm)
    if len(val) <= coordinate_max_systems:
        fits["coordinate ascent"] = E.coordinate_ascent(val, step=0.1, norm=norm)
    fits["greedy"] = E.greedy_selection(val, n_iter=20, norm=norm)
    fits[f"top-{min(top_k, len(val))}"] = E.top_k_systems(val, k=min(top_k, len(val)), norm=norm)
    return fits


def weights_table(fits: Mapping[str, E.EnsembleResult], names: Sequence[str]) -> pd.DataFrame:
    """systems × methods: the fitted weights (each column sums to 1)."""
    return pd.DataFrame({m: r.weights for m, r in fits.items()}).reindex(list(names)).fillna(0.0)


def results_table(fits: Mapping[str, E.EnsembleResult], val: Mapping[str, SimilarityMatrix],
                  test: Mapping[str, SimilarityMatrix], best_single: str, out_dir=None) -> pd.DataFrame:
    """One row per candidate — the best single system (chosen on validation), each fitted
    method and reciprocal-rank fusion — in that order: ``val mAP@10`` (what the choice
    uses), ``test mAP@10, low, high`` and ``vs best single, p_value`` (paired bootstrap on
    per-query AP@10, test). Ensemble matrices are saved to ``out_dir`` when given."""
    rows: Dict[str, dict] = {}
    b = _ci(test[best_single])
    rows[f"{SINGLE}: {best_single}"] = {"val mAP@10": _map10(val[best_single]), "test mAP@10": b["value"],
                                         "low": b["low"], "high": b["high"], "vs best single": 0.0,
                                         "p_value": float("nan")}
    cands = {m: (E.apply(r, test), r.val_score) for m, r in fits.items()}
    names = list(test)
    rrf_val = E.apply({n: 1.0 for n in names}, val, norm="rrf", name="rrf")
    cands["RRF"] = (E.apply({n: 1.0 for n in names}, test, norm="rrf", name="rrf"), _map10(rrf_val))
    for m, (sm, val_score) in cands.items():
        c = E.compare_to_best(test, sm, best=best_single)
        e = clip_interval(c["ensemble"]["mAP@10"])
        rows[m] = {"val mAP@10": float(val_score), "test mAP@10": e["value"], "low": e["low"], "high": e["high"],
                   "vs best single": c["paired"]["diff"], "p_value": c["paired"]["p_value"]}
        if out_dir is not None:
            split = sm.meta.get("split") or "test"
            save_similarity(Path(out_dir) / f"ensemble_{m.replace(' ', '_')}_{split}.npz", sm)
    return pd.DataFrame(rows).T


def size_curve(val: Mapping[str, SimilarityMatrix], test: Mapping[str, SimilarityMatrix], order: Sequence[str],
               norm: str = "zscore") -> pd.DataFrame:
    """Equal-weight ensembles of the first n systems of ``order`` (best by validation first),
    n = 1 … all: columns ``n, val mAP@10, test mAP@10``; ``attrs["chosen_n"]`` is the n with
    the best *validation* score (ties: the smaller n)."""
    rows = []
    for k in range(1, len(order) + 1):
        w = {n: 1.0 for n in order[:k]}
        rows.append({"n": k, "val mAP@10": _map10(next(iter(val.values())), E.apply(w, val, norm=norm).sim),
                     "test mAP@10": _map10(next(iter(test.values())), E.apply(w, test, norm=norm).sim)})
    df = pd.DataFrame(rows)
    df.attrs["chosen_n"] = int(df.loc[df["val mAP@10"].idxmax(), "n"])
    return df


def kfold_ensemble(base, k: int, out_dir, norm: str = "zscore") -> Optional[Dict[str, Any]]:
    """Train ``k`` fold models (:func:`atrlib.experiments.kfold.kfold_train`) and compare their
    equal-weight ensemble with the fold whose *validation* score (on its own fold) is best.
    None when ``k`` is 0."""
    if not k:
        return None
    from atrlib.experiments.kfold import kfold_train
    from atrlib.files import read_json

    runs = kfold_train(base, k=k, out_dir=Path(out_dir))
    fold_test = E.align({r.name: load_systems({r.name: r}, base.test_split)[r.name] for r in runs})
    fold_val = {r.name: float(read_json(r / "metrics.json")["val"]["t2a"]["mAP@10"]) for r in runs}
    best_fold = E.choose_on_validation(fold_val)
    sm = E.apply({n: 1.0 for n in fold_test}, fold_test, norm=norm)
    c = E.compare_to_best(fold_test, sm, best=best_fold)
    return {"folds": len(runs), "ensemble_mAP@10": clip_interval(c["ensemble"]["mAP@10"]), "best_fold": best_fold,
            "best_fold_mAP@10": clip_interval(c["best"]["mAP@10"]), "p_value": c["paired"]["p_value"],
            "fold_val_mAP@10": fold_val}


def verdict(results: pd.DataFrame, curve: Optional[pd.DataFrame] = None,
            kfold: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The candidate chosen on validation (:func:`atrlib.retrieval.ensemble.choose_on_validation` over
    ``results``' rows in order, so the best single system wins ties) with its test numbers.
    ``test_best`` is only reported: the row with the best test score, for the text that
    says it was not chosen."""
    method = E.choose_on_validation({m: float(r["val mAP@10"]) for m, r in results.iterrows()})
    r = results.loc[method]
    single_label = next(m for m in results.index if m.startswith(SINGLE))
    p = None if pd.isna(r["p_value"]) else float(r["p_value"])
    out = {"method": method, "val_mAP@10": float(r["val mAP@10"]), "test_mAP@10": float(r["test mAP@10"]),
           "low": float(r["low"]), "high": float(r["high"]), "diff": float(r["vs best single"]), "p_value": p,
           "best_single": single_label.split(": ", 1)[1], "best_single_label": single_label,
           "test_best": str(results["test mAP@10"].astype(float).idxmax())}
    if curve is not None and len(curve):
        n = int(curve.attrs.get("chosen_n", curve.loc[curve["val mAP@10"].idxmax(), "n"]))
        out.update(size_k=n, size_test=float(curve.loc[curve["n"] == n, "test mAP@10"].iloc[0]))
    if kfold:
        out["kfold"] = dict(kfold)
    return out


def headline(results: pd.DataFrame, v: Mapping[str, Any], check: Optional[Mapping[str, Any]],
             chance: Optional[float] = None) -> List[dict]:
    """05's key numbers for the run index: the candidate chosen on validation and the best single
    system on test (CI, chance), and their difference over seeds with its verdict."""
    from atrlib.runs.notebook import headline_item

    items = [headline_item("Chosen on validation", v["method"])]
    rows = [(f"Test mAP@10 of {v['method']}", v["method"])]
    if v["method"] != v["best_single_label"]:
        rows.append((f"Test mAP@10 of the best single system, {v['best_single']}", v["best_single_label"]))
    for label, row in rows:
        r = results.loc[row]
        items.append(headline_item(label, r["test mAP@10"], r["low"], r["high"], chance))
    if check:
        items.append(headline_item("Chosen ensemble − best single system, test mAP@10", check["mean"], sd=check["sd"],
                                   n_seeds=check["n"],
                                   note="distinguishable" if check["distinguishable"] else "not distinguishable"))
    return items


def ensemble_metrics(single: pd.DataFrame, results: pd.DataFrame, fits: Mapping[str, E.EnsembleResult],
                     curve: pd.DataFrame, v: Mapping[str, Any], notes: Sequence[str],
                     seeds: Optional[pd.DataFrame] = None, chance: Optional[float] = None) -> Dict[str, Any]:
    """05's ``metrics.json``: every number, chosen-on-validation keys first, and the index's
    headline."""
    def clean(x):
        return None if x is None or (isinstance(x, float) and np.isnan(x)) else float(x)

    return {
        "best_method": v["method"], "best_method_val_mAP@10": v["val_mAP@10"],
        "best_method_test_mAP@10": v["test_mAP@10"], "best_method_test_low": v["low"],
        "best_method_test_high": v["high"], "best_method_vs_single": v["diff"], "best_method_p_value": v["p_value"],
        "best_single": v["best_single"], "best_single_test_mAP@10": float(single.loc[v["best_single"], "test mAP@10"]),
        "chosen_on": "validation",
        "systems": {n: {"val_mAP@10": float(r["val mAP@10"]), "test_mAP@10": float(r["test mAP@10"])}
                    for n, r in single.iterrows()},
        "ensembles": {m: {k: clean(x) for k, x in r.items()} for m, r in results.iterrows()},
        "weights": {m: r.weights for m, r in fits.items()},
        "size_curve": {"n": [int(x) for x in curve["n"]], "val": [float(x) for x in curve["val mAP@10"]],
                       "test": [float(x) for x in curve["test mAP@10"]], "chosen_n": v.get("size_k")},
        "kfold": v.get("kfold"), "notes": list(notes),
        "seed_check": None if seeds is None else seeds.attrs.get("check"),
        "headline": headline(results, v, None if seeds is None else seeds.attrs.get("check"), chance),
        "per_seed": None if seeds is None else {str(k): {c: (x if isinstance(x, str) else float(x)) for c, x in r.items()}
                                                for k, r in seeds.iterrows()},
    }


def join_study(val: Mapping[str, SimilarityMatrix], test: Mapping[str, SimilarityMatrix], newcomer: str,
               norm: str = "zscore", n: int = 10000) -> pd.DataFrame:
    """Does one more system (notebook 07's caption bridge) help 05's ensembles? 05's choice made
    twice on validation — over the systems without ``newcomer`` and over all of them (the best
    single system, each fitted method, RRF; :func:`verdict`) — both chosen candidates scored on
    test, with a paired bootstrap test on per-caption test AP@10 of "with" against "without".
    Rows ``without <newcomer>``, ``with <newcomer>``, ``<newcomer> alone``; columns ``chosen``,
    ``val mAP@10``, ``test mAP@10``, ``low``, ``high``, ``vs without``, ``p_value``; the weight
    the chosen "with" candidate gives the newcomer is ``attrs["newcomer_weight"]``."""
    from atrlib.retrieval.metrics import paired_test

    if newcomer not in val or len(val) < 2:
        raise ValueError(f"join_study needs {newcomer!r} and at least one other system; got {list(val)}")
    picks = {}
    for label, names in ((f"without {newcomer}", [k for k in val if k != newcomer]), (f"with {newcomer}", list(val))):
        v_s, t_s = subset(val, names), subset(test, names)
        single = systems_table(v_s, t_s)
        fits = fit_methods(v_s, norm=norm) if len(names) > 1 else {}
        v = verdict(results_table(fits, v_s, t_s, best_single=single.index[0]))
        picks[label] = (v, candidate_matrix(v["method"], fits, t_s), fits)
    first = next(iter(test.values()))
    ap = {k: per_query_metrics(sm.sim, first.relevant)["AP@10"] for k, (_, sm, _) in picks.items()}
    ap[f"{newcomer} alone"] = per_query_metrics(test[newcomer].sim, first.relevant)["AP@10"]
    base = ap[f"without {newcomer}"]
    rows = {}
    for label in ap:
        chosen = picks[label][0]["method"] if label in picks else newcomer
        val_score = picks[label][0]["val_mAP@10"] if label in picks else _map10(val[newcomer])
        sm = picks[label][1] if label in picks else test[newcomer]
        c = _ci(sm)
        same = label == f"without {newcomer}" or np.allclose(ap[label], base)
        p = None if same else paired_test(ap[label], base, method="bootstrap", n=n)["p_value"]
        rows[label] = {"chosen": chosen, "val mAP@10": val_score, "test mAP@10": c["value"], "low": c["low"],
                       "high": c["high"], "vs without": float(ap[label].mean() - base.mean()),
                       "p_value": float("nan") if p is None else p}
    table = pd.DataFrame(rows).T
    v_with, _, fits_with = picks[f"with {newcomer}"]
    method = v_with["method"]
    weight = (1.0 if method.endswith(f": {newcomer}") else 0.0) if method.startswith(SINGLE) else \
        (1.0 / len(val) if method == "RRF" else float(fits_with[method].weights.get(newcomer, 0.0)))
    table.attrs["newcomer_weight"] = weight
    return table
