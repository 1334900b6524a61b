"""Ensembles of stored retrieval systems: pure functions on :class:`SimilarityMatrix` objects.

The workflow keeps the test split out of every fitting step::

    val = align({name: load_similarity(p) for name, p in val_paths.items()})
    test = align({name: load_similarity(p) for name, p in test_paths.items()})
    result = grid_search(val, step=0.1, metric="mAP@10", norm="zscore")  # val only
    ens = apply(result, test)                                            # test only
    report = compare_to_best(test, ens)

Fitting functions (:func:`grid_search`, :func:`coordinate_ascent`, :func:`greedy_selection`,
:func:`top_k_systems`) take the validation systems and nothing else, and return an
:class:`EnsembleResult` that remembers a fingerprint of the queries it was fitted on;
:func:`apply` refuses to produce a "test" ensemble on those same queries.

Scores are combined per query (row) after an optional normalisation (:func:`normalize`):
``none``, ``zscore``, ``minmax``, ``rank`` (1 - (rank-1)/(n_items-1)) or ``rrf``
(1 / (k + rank), reciprocal rank fusion). Ranks use the metric's rule: descending score,
ties broken by lower item index (see :mod:`atrlib.retrieval.metrics`). A weighted sum is invariant
to scaling all weights, so weights are reported normalised to sum to 1.
"""
from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from atrlib.retrieval.metrics import paired_test, per_query_metrics, scores_with_ci
from atrlib.retrieval.simfile import SimilarityMatrix

NORMS = ("none", "zscore", "minmax", "rank", "rrf")
Arrays = Union[Mapping[str, Union[np.ndarray, SimilarityMatrix]], Sequence[np.ndarray]]


def parse_metric(metric: str):
    """``"mAP@10"`` -> ("mAP", 10, "AP@10"), ``"R@5"`` -> ("R", 5, "R@5"): the metric an ensemble
    maximises (higher is better) and its per-query key in :func:`atrlib.retrieval.metrics.per_query_metrics`."""
    kind, _, k = str(metric).partition("@")
    if kind not in ("R", "mAP") or not k.isdigit():
        raise ValueError(f"metric must be 'R@k' or 'mAP@k' (higher is better), got {metric!r}")
    return kind, int(k), (f"R@{k}" if kind == "R" else f"AP@{k}")


# --------------------------------------------------------------------------------------
# alignment
# --------------------------------------------------------------------------------------
def _first_difference(a: Sequence[str], b: Sequence[str]) -> str:
    for x, y in zip(a, b):
        if x != y:
            return f"{x!r} vs {y!r}"
    return f"lengths {len(a)} vs {len(b)}"


def align(systems: Mapping[str, SimilarityMatrix]) -> Dict[str, SimilarityMatrix]:
    """Check that all systems score the same queries and items; return them in one order.

    The first system sets the order. A system with the same ids in another order is
    reordered (rows, columns and relevance). Raises ``ValueError`` naming the two systems
    and the first mismatching id when the id sets differ, when ids repeat, or when the
    relevance differs after reordering.
    """
    if not systems:
        raise ValueError("align needs at least one system")
    names = list(systems)
    ref_name, ref = names[0], systems[names[0]]
    for kind in ("query_ids", "item_ids"):
        for name in names:
            ids = getattr(systems[name], kind)
            if len(set(ids)) != len(ids):
                dup = next(x for x, c in _counts(ids).items() if c > 1)
                raise ValueError(f"system {name!r}: {kind} repeat an id ({dup!r}); cannot align")
    out = {ref_name: ref}
    for name in names[1:]:
        sm = systems[name]
        rows = _order(ref.query_ids, sm.query_ids, ref_name, name, "query")
        cols = _order(ref.item_ids, sm.item_ids, ref_name, name, "item")
        if rows is None and cols is None:
            moved = sm
        else:
            rows = np.arange(len(sm.query_ids)) if rows is None else rows
            cols = np.arange(len(sm.item_ids)) if cols is None else cols
            new_col = np.empty(len(cols), dtype=np.int64)
            new_col[cols] = np.arange(len(cols))  # old item index -> new index
            rel = [sorted(int(new_col[i]) for i in sm.relevant[r]) for r in rows]
            moved = SimilarityMatrix(np.asarray(sm.sim)[np.ix_(rows, cols)], list(ref.query_ids),
                                     list(ref.item_ids), rel, dict(sm.meta))
        for q, (a, b) in enumerate(zip(ref.relevant, moved.relevant)):
            if sorted(a) != sorted(b):
                raise ValueError(
                    f"systems {ref_name!r} and {name!r} disagree on the relevant items of query "
                    f"{ref.query_ids[q]!r}: {sorted(a)} vs {sorted(b)}"
                )
        out[name] = moved
    return out


def _counts(ids):
    c: Dict[str, int] = {}
    for x in ids:
        c[x] = c.get(x, 0) + 1
    return c


def _order(ref_ids, ids, ref_name, name, kind) -> Optional[np.ndarray]:
    """None if ``ids == ref_ids``; else positions in ``ids`` of each ref id; raises if sets differ."""
    if list(ids) == list(ref_ids):
        return None
    pos = {x: i for i, x in enumerate(ids)}
    missing = next((x for x in ref_ids if x not in pos), None)
    if missing is None and len(ids) == len(ref_ids):
        return np.array([pos[x] for x in ref_ids], dtype=np.int64)
    ref_set = set(ref_ids)
    extra = next((x for x in ids if x not in ref_set), None)
    first = f"{missing!r} (in {ref_name!r}, not in {name!r})" if missing is not None else \
        f"{extra!r} (in {name!r}, not in {ref_name!r})"
    raise ValueError(
        f"systems {ref_name!r} and {name!r} score different {kind} sets "
        f"({len(ref_ids)} vs {len(ids)} {kind}s); first mismatching {kind} id: {first}; "
        f"first positional difference: {_first_difference(ref_ids, ids)}"
    )


def _fingerprint(sm: SimilarityMatrix) -> str:
    h = hashlib.sha1()
    for x in sm.query_ids:
        h.update(str(x).encode() + b"\0")
    return h.hexdigest()


# --------------------------------------------------------------------------------------
# normalisation and combination (arrays)
# --------------------------------------------------------------------------------------
def _ranks(sim: np.ndarray) -> np.ndarray:
    """1-based rank of every item in every row (descending score, ties by lower index)."""
    order = np.argsort(-sim, axis=1, kind="stable")  # (Q, I) items best first
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(1, sim.shape[1] + 1)[None, :], axis=1)
    return ranks


def normalize(sim, method: str = "none", rrf_k: float = 60.0) -> np.ndarray:
    """Per-query (row-wise) score normalisation; returns float64 (queries x items).

    * ``none``: the scores as they are;
    * ``zscore``: (s - row mean) / row std (a constant row becomes 0);
    * ``minmax``: (s - row min) / (row max - row min) (a constant row becomes 0);
    * ``rank``: 1 - (rank - 1) / (n_items - 1), i.e. 1 for the top item, 0 for the last;
    * ``rrf``: 1 / (rrf_k + rank) (default rrf_k = 60, Cormack et al. 2009).
    """
    if method not in NORMS:
        raise ValueError(f"unknown normalisation {method!r}; choose from {', '.join(NORMS)}")
    s = np.asarray(sim.sim if isinstance(sim, SimilarityMatrix) else sim, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"sim must be 2-D (queries x items), got shape {s.shape}")
    if method == "none":
        return s.copy()
    if method == "zscore":
        sd = s.std(axis=1, keepdims=True)
        return (s - s.mean(axis=1, keepdims=True)) / np.where(sd > 0, sd, 1.0)
    if method == "minmax":
        lo, hi = s.min(axis=1, keepdims=True), s.max(axis=1, keepdims=True)
        return (s - lo) / np.where(hi > lo, hi - lo, 1.0)
    ranks = _ranks(s).astype(np.float64)
    if method == "rank":
        return 1.0 - (ranks - 1.0) / max(1, s.shape[1] - 1)
    return 1.0 / (rrf_k + ranks)


def _as_list(sims: Arrays, weights) -> tuple:
    if isinstance(sims, Mapping):
        names = list(sims)
        arrays = [sims[n].sim if isinstance(sims[n], SimilarityMatrix) else sims[n] for n in names]
        if isinstance(weights, Mapping):
            unknown = [n for n in weights if n not in sims]
            if unknown:
                raise KeyError(f"weights name systems that are not given: {unknown}; given: {names}")
            weights = [float(weights.get(n, 0.0)) for n in names]
    else:
        arrays = list(sims)
        if isinstance(weights, Mapping):
            raise TypeError("weights given by name need sims given by name (a dict)")
    weights = [1.0] * len(arrays) if weights is None else [float(w) for w in weights]
    if len(weights) != len(arrays):
        raise ValueError(f"{len(weights)} weights for {len(arrays)} systems")
    shapes = {np.shape(a) for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"systems differ in shape: {sorted(shapes)}; align them first")
    return arrays, weights


def weighted_sum(sims: Arrays, weights=None, norm: str = "none", rrf_k: float = 60.0) -> np.ndarray:
    """sum_s weights[s] * normalize(sims[s], norm); float64 (queries x items).

    ``sims``: a dict name -> array/SimilarityMatrix (then ``weights`` may be a dict; missing
    names weigh 0) or a list of arrays (``weights`` a list). ``weights=None`` = all 1.
    """
    arrays, weights = _as_list(sims, weights)
    out = np.zeros(np.shape(arrays[0]), dtype=np.float64)
    for a, w in zip(arrays, weights):
        if w != 0.0:
            out += w * normalize(a, norm, rrf_k)
    return out


def reciprocal_rank_fusion(sims: Arrays, k: float = 60.0) -> np.ndarray:
    """RRF (Cormack et al. 2009): sum over systems of 1 / (k + rank); uses ranks only."""
    return weighted_sum(sims, None, norm="rrf", rrf_k=k)


# --------------------------------------------------------------------------------------
# weight fitting (validation systems only)
# --------------------------------------------------------------------------------------
@dataclass
class EnsembleResult:
    """Fitted ensemble weights and how they were found."""

    weights: Dict[str, float]  # name -> weight, summing to 1 (0 = unused)
    val_score: float           # the metric of the weighted sum on the validation systems
    metric: str                # e.g. "mAP@10"
    norm: str                  # the per-query normalisation the weights apply to
    method: str                # "grid_search", "coordinate_ascent", "greedy_selection", "top_k"
    fitted_on: str = ""        # fingerprint of the validation query ids (see apply)
    trace: List[dict] = field(default_factory=list)  # search history, method-specific

    def apply(self, test_systems: Mapping[str, SimilarityMatrix], **kw) -> SimilarityMatrix:
        return apply(self, test_systems, **kw)


class _Scorer:
    """Scores weight vectors on the (pre-normalised) validation systems."""

    def __init__(self, systems: Mapping[str, SimilarityMatrix], metric: str, norm: str, rrf_k: float):
        if not systems:
            raise ValueError("no validation systems given")
        systems = align(systems)
        first = next(iter(systems.values()))
        for sm in systems.values():
            split = str(sm.meta.get("split", "")).lower()
            if split in ("test", "eval", "evaluation") and sm.meta.get("role") != "validation":
                raise ValueError(
                    f"system {sm.meta.get('system', '?')!r} is from split {split!r}: ensemble weights "
                    "are fitted on the validation split only (set meta['role'] = 'validation' if "
                    "this split really is your validation data)"
                )
        self.names = list(systems)
        self.relevant = first.relevant
        self.fingerprint = _fingerprint(first)
        self.metric, self.norm = metric, norm
        kind, k, self.key = parse_metric(metric)
        self.kw = {"ks": (k,), "map_at": 10} if kind == "R" else {"ks": (1,), "map_at": k}
        self.arrays = [normalize(systems[n].sim, norm, rrf_k) for n in self.names]  # (Q, I) each
        self.calls = 0

    def per_query(self, sim: np.ndarray) -> np.ndarray:
        self.calls += 1
        return per_query_metrics(sim, self.relevant, **self.kw)[self.key]

    def combine(self, w: Sequence[float]) -> np.ndarray:
        out = np.zeros_like(self.arrays[0])
        for a, x in zip(self.arrays, w):
            if x != 0.0:
                out += x * a
        return out

    def score(self, w: Sequence[float]) -> float:
        if not np.any(np.asarray(w) > 0):
            return -np.inf
        return float(self.per_query(self.combine(w)).mean())

    def result(self, w, score, method, trace) -> EnsembleResult:
        w = np.asarray(w, dtype=np.float64)
        w = w / w.sum()
        return EnsembleResult({n: float(x) for n, x in zip(self.names, w)}, float(score), self.metric,
                              self.norm, method, self.fingerprint, trace)


def _simplex(n_systems: int, n_steps: int):
    """All vectors of n_systems non-negative integers summing to n_steps (stars and bars)."""
    for bars in itertools.combinations(range(n_steps + n_systems - 1), n_systems - 1):
        prev, counts = -1, []
        for b in bars + (n_steps + n_systems - 1,):
            counts.append(b - prev - 1)
            prev = b
        yield counts


def grid_search(val_systems: Mapping[str, SimilarityMatrix], step: float = 0.1, metric: str = "mAP@10",
                norm: str = "none", rrf_k: float = 60.0, max_points: int = 20000) -> EnsembleResult:
    """Exhaustive search over weights on the simplex (multiples of ``step`` summing to 1).

    Meant for a few systems: C(1/step + m - 1, m - 1) points for m systems (66 for 3 systems
    at step 0.1). Refuses more than ``max_points``. Ties keep the first point found (the
    enumeration starts with all weight on the last system). ``trace``: every point's score.
    """
    n_steps = int(round(1.0 / step))
    if n_steps < 1 or abs(n_steps * step - 1.0) > 1e-9:
        raise ValueError(f"step must divide 1 (e.g. 0.1, 0.05, 0.25), got {step}")
    sc = _Scorer(val_systems, metric, norm, rrf_k)
    m = len(sc.names)
    from math import comb

    n_points = comb(n_steps + m - 1, m - 1)
    if n_points > max_points:
        raise ValueError(f"grid_search would score {n_points} weight vectors for {m} systems at step {step}; "
                         "use a coarser step or coordinate_ascent / greedy_selection")
    best_w, best, trace = None, -np.inf, []
    for counts in _simplex(m, n_steps):
        w = [c / n_steps for c in counts]
        s = sc.score(w)
        trace.append({"weights": w, "score": s})
        if s > best:
            best_w, best = w, s
    return sc.result(best_w, best, "grid_search", trace)


def coordinate_ascent(val_systems: Mapping[str, SimilarityMatrix], step: float = 0.1, metric: str = "mAP@10",
                      norm: str = "none", rrf_k: float = 60.0, n_rounds: int = 10) -> EnsembleResult:
    """Coordinate ascent on weights in [0, 1]^m for many systems.

    Starts from equal weights; each round tries every value 0, step, ..., 1 for one weight
    at a time (the others fixed) and keeps the best; stops after a round with no strict
    improvement or after ``n_rounds``. Cost per round: m * (1/step + 1) metric evaluations.
    """
    sc = _Scorer(val_systems, metric, norm, rrf_k)
    m = len(sc.names)
    grid = np.round(np.arange(0.0, 1.0 + step / 2, step), 10)
    w = np.full(m, 1.0)
    best = sc.score(w)
    trace = [{"round": 0, "weights": w.tolist(), "score": best}]
    for r in range(1, n_rounds + 1):
        improved = False
        for i in range(m):
            for v in grid:
                if v == w[i]:
                    continue
                cand = w.copy()
                cand[i] = v
                s = sc.score(cand)
                if s > best + 1e-12:
                    w, best, improved = cand, s, True
        trace.append({"round": r, "weights": w.tolist(), "score": best})
        if not improved:
            break
    return sc.result(w, best, "coordinate_ascent", trace)


def greedy_selection(val_systems: Mapping[str, SimilarityMatrix], n_iter: int = 20, metric: str = "mAP@10",
                     norm: str = "none", rrf_k: float = 60.0) -> EnsembleResult:
    """Forward selection with replacement (Caruana et al. 2004).

    Starts empty; each iteration adds (again, if it is already in) the system whose addition
    gives the best validation metric of the average; ties go to the earlier system. The
    weights are the selection counts at the best iteration, normalised.
    """
    if n_iter < 1:
        raise ValueError(f"n_iter must be >= 1, got {n_iter}")
    sc = _Scorer(val_systems, metric, norm, rrf_k)
    m = len(sc.names)
    counts = np.zeros(m)
    best_counts, best, trace = None, -np.inf, []
    for it in range(1, n_iter + 1):
        scores = []
        for i in range(m):
            cand = counts.copy()
            cand[i] += 1
            scores.append(sc.score(cand))
        pick = int(np.argmax(scores))
        counts[pick] += 1
        trace.append({"iter": it, "added": sc.names[pick], "score": scores[pick]})
        if scores[pick] > best:
            best, best_counts = scores[pick], counts.copy()
    return sc.result(best_counts, best, "greedy_selection", trace)


def top_k_systems(val_systems: Mapping[str, SimilarityMatrix], k: int = 3, metric: str = "mAP@10",
                  norm: str = "none", rrf_k: float = 60.0) -> EnsembleResult:
    """Equal weights on the ``k`` best single systems by the validation metric."""
    sc = _Scorer(val_systems, metric, norm, rrf_k)
    m = len(sc.names)
    if not 1 <= k <= m:
        raise ValueError(f"k must be in [1, {m}] for {m} systems, got {k}")
    singles = [sc.score(np.eye(m)[i]) for i in range(m)]
    chosen = np.argsort(-np.asarray(singles), kind="stable")[:k]
    w = np.zeros(m)
    w[chosen] = 1.0
    trace = [{"system": n, "score": s} for n, s in zip(sc.names, singles)]
    return sc.result(w, sc.score(w), "top_k", trace)


# --------------------------------------------------------------------------------------
# applying and reporting (test systems)
# --------------------------------------------------------------------------------------
def apply(weights: Union[EnsembleResult, Mapping[str, float]], test_systems: Mapping[str, SimilarityMatrix],
          norm: Optional[str] = None, rrf_k: float = 60.0, name: str = "ensemble",
          allow_fit_data: bool = False) -> SimilarityMatrix:
    """The ensemble's :class:`SimilarityMatrix` on ``test_systems``.

    ``weights``: an :class:`EnsembleResult` (its ``norm`` is used unless ``norm`` is given)
    or a dict name -> weight (``norm`` default ``"none"``). Systems not named weigh 0.
    Refuses (``ValueError``) when the test queries are the ones the result was fitted on,
    unless ``allow_fit_data=True`` (e.g. to look at the validation ensemble on purpose).
    """
    test = align(test_systems)
    first = next(iter(test.values()))
    if isinstance(weights, EnsembleResult):
        if weights.fitted_on and weights.fitted_on == _fingerprint(first) and not allow_fit_data:
            raise ValueError("these test systems have the same queries the weights were fitted on; "
                             "pass the test split (or allow_fit_data=True to score the fit data on purpose)")
        norm = weights.norm if norm is None else norm
        w = weights.weights
    else:
        w = dict(weights)
    norm = "none" if norm is None else norm
    if not any(x > 0 for x in w.values()):
        raise ValueError(f"no system has a positive weight: {w}")
    missing = [n for n, x in w.items() if x != 0 and n not in test]
    if missing:
        raise KeyError(f"weighted systems missing from test_systems: {missing}; given: {list(test)}")
    sim = weighted_sum({n: test[n] for n in test}, {n: x for n, x in w.items() if n in test}, norm, rrf_k)
    meta = {"system": name, "split": first.meta.get("split", ""), "dataset": first.meta.get("dataset", ""),
            "ensemble": {"weights": {n: float(x) for n, x in w.items()}, "norm": norm}}
    return SimilarityMatrix(sim.astype(np.float32), list(first.query_ids), list(first.item_ids),
                            [list(r) for r in first.relevant], meta)


def compare_to_best(test_systems: Mapping[str, SimilarityMatrix], ensemble_sim, relevant=None,
                    metric: str = "mAP@10", best: Optional[str] = None, ci: str = "jackknife",
                    test: str = "bootstrap", n: int = 10000, seed: int = 0) -> dict:
    """The ensemble against the best single system on the same (test) queries.

    ``ensemble_sim``: SimilarityMatrix or array aligned with the test systems; ``relevant``
    defaults to the test systems' relevance. ``best``: a system name (e.g. chosen on
    validation); None picks the best single system *on test* by ``metric``, the strongest
    (most conservative) baseline. Returns ``{"ensemble": scores_with_ci, "best_system":
    name, "best": scores_with_ci, "paired": paired_test(ensemble, best on per-query metric)}``.
    """
    test_systems = align(test_systems)
    first = next(iter(test_systems.values()))
    relevant = first.relevant if relevant is None else relevant
    if isinstance(ensemble_sim, SimilarityMatrix):
        for kind in ("query_ids", "item_ids"):
            if list(getattr(ensemble_sim, kind)) != list(getattr(first, kind)):
                raise ValueError(f"ensemble {kind} differ from the test systems': first difference "
                                 f"{_first_difference(getattr(first, kind), getattr(ensemble_sim, kind))}")
    ens = ensemble_sim.sim if isinstance(ensemble_sim, SimilarityMatrix) else np.asarray(ensemble_sim)
    if ens.shape != first.sim.shape:
        raise ValueError(f"ensemble shape {ens.shape} differs from the test systems' {first.sim.shape}")
    kind, k, key = parse_metric(metric)
    kw = {"ks": (1, 5, 10) if kind == "mAP" else tuple(sorted({1, 5, 10, k})),
          "map_at": k if kind == "mAP" else 10}
    per = {n: per_query_metrics(sm.sim, relevant, **kw)[key] for n, sm in test_systems.items()}
    if best is None:
        best = max(per, key=lambda n: per[n].mean())
    elif best not in per:
        raise KeyError(f"best={best!r} is not among the test systems {list(per)}")
    ens_values = per_query_metrics(ens, relevant, **kw)[key]
    return {
        "ensemble": scores_with_ci(ens, relevant, method=ci, seed=seed, **kw),
        "best_system": best,
        "best": scores_with_ci(test_systems[best].sim, relevant, method=ci, seed=seed, **kw),
        "paired": paired_test(ens_values, per[best], method=test, n=n, seed=seed),
    }


# --------------------------------------------------------------------------------------
# choosing (validation scores only)
# --------------------------------------------------------------------------------------
def choose_on_validation(val_scores: Mapping[str, float]) -> str:
    """The name with the highest validation score; ties go to the earlier name (list the
    simpler candidates first, e.g. the best single system before the ensembles).

    Takes validation scores only, by design: a choice made on test scores would make the
    reported test score of the chosen candidate optimistic.
    """
    if not val_scores:
        raise ValueError("nothing to choose from")
    best_name, best = None, -np.inf
    for name, s in val_scores.items():
        if s is None or not np.isfinite(s):
            continue
        if s > best:
            best_name, best = name, s
    if best_name is None:
        raise ValueError(f"no finite validation score among {list(val_scores)}")
    return best_name
