"""Retrieval metrics on similarity matrices: R@k, mAP@k, ranks, confidence intervals, paired tests.

Pure functions on a ``sim`` matrix (queries x items, higher = more similar) and ``relevant``
(``relevant[q]`` = the item indices relevant to query ``q``). Nothing here knows about models.

Definitions (the official DCASE 2023 Task 6b baseline, ``xmodal_retrieval.py``):

* items are ranked by descending score; rank 1 is the top item;
* ``R@k`` (``recall="fraction"``, the default) = (relevant items in the top k) / (all relevant
  items of the query) — with one relevant item, 1 when it is in the top k, else 0;
* ``R@k`` with ``recall="hit"`` = 1 when *any* relevant item is in the top k, else 0: the
  field's audio-to-text R@k (Mei et al.'s ``a2t``, WavCaps, CLAP: the share of clips with at
  least one of their captions in the top k). :func:`evaluate_both` scores a2t this way and
  reports the share of a clip's captions found as ``CR@k`` (caption recall);
* ``AP@k`` = (sum_j j / p_j) / (all relevant items of the query), where p_1 < p_2 < ... are
  the ranks of the relevant items that lie in the top k. With one relevant item this is
  ``1 / rank`` when ``rank <= k``, else 0;
* ``rank`` (per query) = the rank of the first relevant item; ``mean_rank``/``median_rank``
  summarise it over queries;
* every summary is the plain mean over queries.

**Ties** are broken stably by item index: among equal scores the item with the lower index
ranks first, i.e. rank(i) = 1 + #{j : s_j > s_i} + #{j < i : s_j == s_i}, the order of
``np.argsort(-s, kind="stable")``. NaN scores are refused.

**Multiple relevant items** (DCASE 2025 Task 6 style, several clips per caption) need no
special mode: list them all in ``relevant[q]`` and ask for ``map_at=16``. The official 2025
mAP@16 is this binary definition (crowd ratings thresholded to a set of relevant clips).

**Graded relevance** (optional, ``graded[q][j] > 0`` = weight of item ``relevant[q][j]``,
e.g. a crowd relevance rating): weighted recall and weighted AP. With w_(j) the weight of
the j-th best-ranked relevant item and W = the sum of the query's weights,
``R@k = (sum of the weights of relevant items in the top k) / W`` and
``AP@k = sum_{j: p_j <= k} w_(j) * (j / p_j) / W``: precision j / p_j stays binary (every
listed item counts as relevant in it) and the weight sets how much finding that item is
worth. All weights 1 gives back the binary definitions exactly; scaling one query's
weights changes nothing; both stay in [0, 1] and a perfect ranking scores 1.

Speed and memory: ranks come from comparing each row with its relevant items' scores
(O(items) per relevant item, no full sort), in chunks of queries, so any row-sliceable
``sim`` works (numpy, torch, ``np.memmap``, a lazy object with ``.shape`` and ``sim[a:b]``).
"""
from __future__ import annotations

from math import comb
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from scipy.stats import norm

Number = Union[int, float]
RECALLS = ("fraction", "hit")  # what R@k counts when a query has several relevant items
_CHUNK_BUDGET = 1 << 24  # comparisons (booleans) held at once per chunk: 16 MiB


# --------------------------------------------------------------------------------------
# relevance helpers
# --------------------------------------------------------------------------------------
def t2a_relevance(caption_clip_index: Sequence[int]) -> List[List[int]]:
    """Text-to-audio relevance: caption ``j`` is relevant to clip ``caption_clip_index[j]`` only."""
    return [[int(i)] for i in caption_clip_index]


def a2t_relevance(caption_clip_index: Sequence[int], n_clips: int) -> List[List[int]]:
    """Audio-to-text relevance: clip ``i`` -> every caption ``j`` with ``caption_clip_index[j] == i``.

    Parameters
    ----------
    caption_clip_index : the clip index of each caption (length = number of captions).
    n_clips : number of clips (rows of the audio-to-text matrix).

    Raises ``ValueError`` when an index is outside ``[0, n_clips)``.
    """
    rel: List[List[int]] = [[] for _ in range(n_clips)]
    for j, i in enumerate(caption_clip_index):
        i = int(i)
        if not 0 <= i < n_clips:
            raise ValueError(f"caption {j} points at clip {i}, outside [0, {n_clips})")
        rel[i].append(j)
    return rel


def _prepare_relevance(relevant, n_queries: int, n_items: int, graded=None):
    """Pad ``relevant`` (and ``graded``) into arrays (Q, M): item index, mask, weight."""
    if len(relevant) != n_queries:
        raise ValueError(f"relevant has {len(relevant)} rows but sim has {n_queries} queries")
    if graded is not None and len(graded) != n_queries:
        raise ValueError(f"graded has {len(graded)} rows but sim has {n_queries} queries")
    rows = [[int(r)] if np.ndim(r) == 0 else [int(x) for x in r] for r in relevant]
    width = max((len(r) for r in rows), default=1)
    idx = np.zeros((n_queries, width), dtype=np.int64)
    mask = np.zeros((n_queries, width), dtype=bool)
    weight = np.zeros((n_queries, width), dtype=np.float64)
    for q, r in enumerate(rows):
        if not r:
            raise ValueError(f"query {q} has no relevant item; every query needs at least one")
        if len(set(r)) != len(r):
            raise ValueError(f"query {q} lists a relevant item twice: {r}")
        if min(r) < 0 or max(r) >= n_items:
            raise ValueError(f"query {q}: relevant item outside [0, {n_items}): {r}")
        idx[q, : len(r)] = r
        mask[q, : len(r)] = True
        if graded is None:
            weight[q, : len(r)] = 1.0
        else:
            w = np.asarray(graded[q], dtype=np.float64).reshape(-1)
            if len(w) != len(r):
                raise ValueError(f"query {q}: {len(w)} graded weights for {len(r)} relevant items")
            if not (np.all(np.isfinite(w)) and np.all(w > 0)):
                raise ValueError(f"query {q}: graded weights must be finite and > 0, got {w.tolist()}")
            weight[q, : len(r)] = w
    return idx, mask, weight


def _rows(sim, a: int, b: int) -> np.ndarray:
    """Rows ``a:b`` of ``sim`` as a C-contiguous float numpy array (torch/memmap/lazy welcome)."""
    block = sim[a:b]
    if hasattr(block, "detach") and hasattr(block, "cpu"):  # a torch tensor
        block = block.detach()
        if not block.is_floating_point() or block.element_size() < 4:
            block = block.float()
        block = block.cpu().numpy()
    block = np.ascontiguousarray(block)
    if block.dtype.kind not in "fiu":
        raise TypeError(f"sim must hold numbers, got dtype {block.dtype}")
    if block.dtype.kind == "f" and block.dtype.itemsize < 4:
        block = block.astype(np.float32)
    if block.dtype.kind == "f" and np.isnan(block).any():
        q = a + int(np.nonzero(np.isnan(block).any(axis=1))[0][0])
        raise ValueError(f"sim has NaN scores (first in query row {q}); ranks would be undefined")
    return block


def _relevant_ranks(s: np.ndarray, idx: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """1-based ranks (c, M) of items ``idx`` in rows ``s`` (c, I); padding gets I + 1."""
    n_items = s.shape[1]
    rs = np.take_along_axis(s, idx, axis=1)  # (c, M) score of each relevant item
    higher = np.empty(idx.shape, dtype=np.int64)
    equal = np.empty(idx.shape, dtype=np.int64)
    for m in range(idx.shape[1]):  # 2-D comparisons: ~2x faster than one (c, M, I) broadcast
        higher[:, m] = np.count_nonzero(s > rs[:, m:m + 1], axis=1)
        equal[:, m] = np.count_nonzero(s == rs[:, m:m + 1], axis=1)  # counts itself
    ranks = higher + 1
    tied_rows = np.nonzero((mask & (equal > 1)).any(axis=1))[0]
    if len(tied_rows):  # stable tie-break: equal scores at lower item indices rank first
        st, rt, it = s[tied_rows], rs[tied_rows], idx[tied_rows]
        before = np.arange(n_items)[None, None, :] < it[:, :, None]  # (t, M, I)
        ranks[tied_rows] += np.count_nonzero((st[:, None, :] == rt[:, :, None]) & before, axis=-1)
    ranks[~mask] = n_items + 1
    return ranks


def _as_tuple(x) -> Tuple[int, ...]:
    t = (x,) if np.ndim(x) == 0 else tuple(x)
    for k in t:
        if int(k) != k or k < 1:
            raise ValueError(f"cut-offs must be positive integers, got {x!r}")
    return tuple(int(k) for k in t)


# --------------------------------------------------------------------------------------
# per-query values and their means
# --------------------------------------------------------------------------------------
def per_query_metrics(
    sim,
    relevant: Sequence,
    ks: Sequence[int] = (1, 5, 10),
    map_at: Union[int, Sequence[int]] = 10,
    graded: Optional[Sequence[Sequence[float]]] = None,
    chunk_size: Optional[int] = None,
    recall: str = "fraction",
) -> Dict[str, np.ndarray]:
    """Per-query retrieval values.

    Parameters
    ----------
    sim : (n_queries, n_items) scores, higher = more relevant. numpy, torch or anything with
        ``.shape`` and row slicing ``sim[a:b]``.
    relevant : ``relevant[q]`` = item indices relevant to query ``q`` (>= 1 each; a bare int
        is read as one item).
    ks : recall cut-offs, default ``(1, 5, 10)``.
    map_at : AP cut-off (or several), default 10.
    graded : optional positive weights parallel to ``relevant`` (see the module docstring).
    chunk_size : queries per chunk; default None picks it so one chunk compares at most
        2**24 scores (a few tens of MiB whatever the matrix size).
    recall : ``"fraction"`` (share of the relevant items in the top k, weighted when graded)
        or ``"hit"`` (1 when any relevant item is in the top k; weights play no part).

    Returns
    -------
    dict with ``"R@k"`` (float64, one per k), ``"AP@k"`` (float64, one per map_at) and
    ``"rank"`` (int64, 1-based rank of the first relevant item), each of shape (n_queries,).
    """
    if recall not in RECALLS:
        raise ValueError(f"recall must be one of {RECALLS}, not {recall!r}")
    n_queries, n_items = (int(d) for d in sim.shape)
    ks, maps = _as_tuple(ks), _as_tuple(map_at)
    idx, mask, weight = _prepare_relevance(relevant, n_queries, n_items, graded)
    width = idx.shape[1]
    if chunk_size is None:
        chunk_size = max(1, _CHUNK_BUDGET // max(1, width * n_items))
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    chunk_size = int(chunk_size)

    out = {f"R@{k}": np.zeros(n_queries) for k in ks}
    out.update({f"AP@{k}": np.zeros(n_queries) for k in maps})
    out["rank"] = np.zeros(n_queries, dtype=np.int64)
    for a in range(0, n_queries, chunk_size):
        b = min(a + chunk_size, n_queries)
        ranks = _relevant_ranks(_rows(sim, a, b), idx[a:b], mask[a:b])  # (c, M)
        w = weight[a:b]  # (c, M), 0 on padding
        total = w.sum(axis=1)  # (c,)
        order = np.argsort(ranks, axis=1, kind="stable")
        r_sorted = np.take_along_axis(ranks, order, axis=1).astype(np.float64)  # p_1 < p_2 < ...
        w_sorted = np.take_along_axis(w, order, axis=1)
        precision = np.arange(1, idx.shape[1] + 1)[None, :] / r_sorted  # j / p_j (padding last)
        for k in ks:
            if recall == "hit":
                out[f"R@{k}"][a:b] = ranks.min(axis=1) <= k
            else:
                out[f"R@{k}"][a:b] = (w * (ranks <= k)).sum(axis=1) / total
        for k in maps:
            out[f"AP@{k}"][a:b] = (w_sorted * precision * (r_sorted <= k)).sum(axis=1) / total
        out["rank"][a:b] = ranks.min(axis=1)
    return out


def retrieval_scores(
    sim,
    relevant: Sequence,
    ks: Sequence[int] = (1, 5, 10),
    map_at: Union[int, Sequence[int]] = 10,
    graded: Optional[Sequence[Sequence[float]]] = None,
    chunk_size: Optional[int] = None,
    recall: str = "fraction",
) -> Dict[str, Number]:
    """Mean retrieval metrics over queries (parameters as :func:`per_query_metrics`).

    Returns ``{"R@1", "R@5", "R@10", "mAP@10", "mean_rank", "median_rank", "n_queries"}``
    (key names follow ``ks`` and ``map_at``); values are plain Python numbers in [0, 1]
    for R and mAP (not percentages).
    """
    pq = per_query_metrics(sim, relevant, ks, map_at, graded, chunk_size, recall)
    out: Dict[str, Number] = {f"R@{k}": float(pq[f"R@{k}"].mean()) for k in _as_tuple(ks)}
    out.update({f"mAP@{k}": float(pq[f"AP@{k}"].mean()) for k in _as_tuple(map_at)})
    out["mean_rank"] = float(pq["rank"].mean())
    out["median_rank"] = float(np.median(pq["rank"]))
    out["n_queries"] = int(len(pq["rank"]))
    return out


def evaluate_both(sim_t2a, caption_clip_index: Sequence[int], **kw) -> Dict[str, Dict[str, Number]]:
    """Text-to-audio and audio-to-text scores from one (captions x clips) matrix.

    ``caption_clip_index[j]`` is the clip of caption ``j``; audio-to-text uses the transpose
    with every caption of a clip relevant. a2t ``R@k`` is the field's hit rate (the share of
    clips with at least one of their captions in the top k; Mei et al.'s ``a2t``) and
    ``CR@k`` the caption recall (the share of a clip's captions in its top k). ``kw`` goes to
    :func:`retrieval_scores`. Returns ``{"t2a": {...}, "a2t": {...}}``.
    """
    n_captions, n_clips = (int(d) for d in sim_t2a.shape)
    if len(caption_clip_index) != n_captions:
        raise ValueError(f"{len(caption_clip_index)} caption clip indices for {n_captions} caption rows")
    kw.pop("recall", None)
    a2t_rel = a2t_relevance(caption_clip_index, n_clips)
    a2t = retrieval_scores(sim_t2a.T, a2t_rel, recall="hit", **kw)
    fraction = retrieval_scores(sim_t2a.T, a2t_rel, recall="fraction", **kw)
    a2t.update({f"C{k}": v for k, v in fraction.items() if k.startswith("R@")})
    return {"t2a": retrieval_scores(sim_t2a, t2a_relevance(caption_clip_index), **kw), "a2t": a2t}


# --------------------------------------------------------------------------------------
# chance: the expected metrics of a random ranking, exactly
# --------------------------------------------------------------------------------------
def expected_ap_at(n_items: int, n_relevant: int, k: int) -> float:
    """E[AP@k] of a uniformly random ranking of ``n_items`` with ``n_relevant`` relevant ones.

    AP@k = (1/r) sum over relevant items at rank p <= k of (j / p), j = their rank among the
    relevant. P(rank p relevant and j-1 relevant before it) = (r/n) C(r-1, j-1) C(n-r, p-j) / C(n-1, p-1).
    With one relevant item this is the harmonic formula (1/n)(1 + 1/2 + ... + 1/min(k, n)).
    """
    n, r = int(n_items), int(n_relevant)
    total = 0.0
    for p in range(1, min(k, n) + 1):
        for j in range(max(1, r - (n - p)), min(r, p) + 1):
            prob = (r / n) * comb(r - 1, j - 1) * comb(n - r, p - j) / comb(n - 1, p - 1)
            total += prob * j / p
    return total / r


def expected_recall_at(n_items: int, n_relevant: int, k: int, recall: str = "fraction") -> float:
    """E[R@k] of a random ranking: ``min(k, n) / n`` for the fraction of relevant items found,
    ``1 - C(n - r, k) / C(n, k)`` for a hit (any of the ``r`` relevant items in the top k)."""
    n, r, k = int(n_items), int(n_relevant), min(int(k), int(n_items))
    if recall == "hit":
        return 1.0 - comb(n - r, k) / comb(n, k)
    if recall == "fraction":
        return k / n
    raise ValueError(f"recall must be one of {RECALLS}, not {recall!r}")


def chance_scores(relevant: Sequence, n_items: int, ks: Sequence[int] = (1, 5, 10),
                  map_at: Union[int, Sequence[int]] = 10, recall: str = "fraction") -> Dict[str, float]:
    """The exact expected ``R@k`` and ``mAP@k`` of a uniformly random ranking, averaged over
    the queries (``relevant`` as :func:`per_query_metrics`; only the number of relevant items
    of each query matters)."""
    counts = [1 if np.ndim(r) == 0 else len(r) for r in relevant]
    out = {f"R@{k}": float(np.mean([expected_recall_at(n_items, c, k, recall) for c in counts])) for k in _as_tuple(ks)}
    out.update({f"mAP@{k}": float(np.mean([expected_ap_at(n_items, c, k) for c in counts])) for k in _as_tuple(map_at)})
    return out


# --------------------------------------------------------------------------------------
# confidence intervals and paired tests
# --------------------------------------------------------------------------------------
def _values(values) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if len(v) < 2:
        raise ValueError(f"need at least 2 per-query values for an interval, got {len(v)}")
    if not np.all(np.isfinite(v)):
        raise ValueError("per-query values must be finite")
    return v


def jackknife_ci(values, alpha: float = 0.05) -> Dict[str, float]:
    """Delete-one jackknife interval of the mean (as the DCASE 2022 Task 6b evaluation did).

    theta_i = mean without value i; se^2 = (n-1)/n * sum_i (theta_i - mean(theta))^2;
    interval = mean +- z * se with z = Phi^-1(1 - alpha/2) (1.95996 for 95 %). For a mean
    this equals mean +- z * sd / sqrt(n) with the n-1 denominator in sd.
    Returns ``{"value", "low", "high"}``.
    """
    v = _values(values)
    n = len(v)
    theta = (v.sum() - v) / (n - 1)  # (n,) leave-one-out means
    se = np.sqrt((n - 1) / n * np.sum((theta - theta.mean()) ** 2))
    z = norm.ppf(1 - alpha / 2)
    m = float(v.mean())
    return {"value": m, "low": float(m - z * se), "high": float(m + z * se)}


def _boot_means(d: np.ndarray, n_boot: int, rng: np.random.Generator, block: int = 256) -> np.ndarray:
    """Means of ``n_boot`` resamples (with replacement) of ``d``, drawn in blocks."""
    n = len(d)
    out = np.empty(n_boot)
    for a in range(0, n_boot, block):
        b = min(a + block, n_boot)
        out[a:b] = d[rng.integers(0, n, size=(b - a, n))].mean(axis=1)
    return out


def bootstrap_ci(values, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> Dict[str, float]:
    """Percentile bootstrap interval of the mean: resample queries with replacement
    ``n_boot`` times (numpy ``default_rng(seed)``), take the alpha/2 and 1-alpha/2 quantiles.
    Returns ``{"value", "low", "high"}``.
    """
    v = _values(values)
    means = _boot_means(v, int(n_boot), np.random.default_rng(seed))
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return {"value": float(v.mean()), "low": float(low), "high": float(high)}


def scores_with_ci(
    sim,
    relevant: Sequence,
    method: str = "jackknife",
    ks: Sequence[int] = (1, 5, 10),
    map_at: Union[int, Sequence[int]] = 10,
    graded=None,
    chunk_size: Optional[int] = None,
    alpha: float = 0.05,
    n_boot: int = 1000,
    seed: int = 0,
    recall: str = "fraction",
) -> Dict[str, Dict[str, float]]:
    """``{"R@1": {"value", "low", "high"}, ..., "mAP@10": {...}, "mean_rank": {...}}``.

    ``method`` = ``"jackknife"`` (:func:`jackknife_ci`) or ``"bootstrap"``
    (:func:`bootstrap_ci` with ``n_boot`` and ``seed``); other parameters as
    :func:`per_query_metrics`. Intervals are clipped to each metric's range (R@k and mAP@k in
    [0, 1], the mean rank in [1, items]): a normal-approximation interval can spill past them.
    """
    if method not in ("jackknife", "bootstrap"):
        raise ValueError(f"method must be 'jackknife' or 'bootstrap', got {method!r}")
    pq = per_query_metrics(sim, relevant, ks, map_at, graded, chunk_size, recall)
    series = {f"R@{k}": pq[f"R@{k}"] for k in _as_tuple(ks)}
    series.update({f"mAP@{k}": pq[f"AP@{k}"] for k in _as_tuple(map_at)})
    series["mean_rank"] = pq["rank"]
    if method == "jackknife":
        out = {name: jackknife_ci(v, alpha) for name, v in series.items()}
    else:
        out = {name: bootstrap_ci(v, n_boot, seed, alpha) for name, v in series.items()}
    n_items = np.asarray(sim).shape[1]
    for name, ci in out.items():
        lo, hi = (1.0, float(n_items)) if name == "mean_rank" else (0.0, 1.0)
        ci["low"], ci["high"] = min(max(ci["low"], lo), hi), min(max(ci["high"], lo), hi)
    return out


def paired_test(
    values_a,
    values_b,
    method: str = "bootstrap",
    n: int = 10000,
    seed: int = 0,
    alpha: float = 0.05,
) -> Dict[str, float]:
    """Two-sided paired test of mean(a) - mean(b) over the same queries.

    ``values_a[q]`` and ``values_b[q]`` are per-query values (e.g. AP@10) of two systems.

    * ``"bootstrap"``: resample queries ``n`` times; p = share of resampled mean
      differences at least as far from the observed one as the observed one is from 0
      (the bootstrap distribution shifted to the null), ``(1 + count) / (1 + n)``.
    * ``"permutation"``: paired randomisation (sign-flip) test: flip the sign of each
      query's difference at random ``n`` times; p = ``(1 + #{|mean| >= |observed|}) / (1 + n)``.

    ``low``/``high`` are the percentile bootstrap interval of the difference in both cases
    (``n`` resamples). Returns ``{"diff", "p_value", "low", "high"}``.
    """
    if method not in ("bootstrap", "permutation"):
        raise ValueError(f"method must be 'bootstrap' or 'permutation', got {method!r}")
    a, b = _values(values_a), _values(values_b)
    if a.shape != b.shape:
        raise ValueError(f"paired values differ in length: {len(a)} vs {len(b)} queries")
    d = a - b  # (n_queries,)
    diff = float(d.mean())
    tol = 1e-12 * max(1.0, float(np.abs(d).max()))  # float noise in means of equal sums
    rng = np.random.default_rng(seed)
    boot = _boot_means(d, int(n), rng)
    low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    if method == "bootstrap":
        extreme = np.count_nonzero(np.abs(boot - diff) >= abs(diff) - tol)
    else:
        extreme = 0
        for s in range(0, int(n), 256):
            signs = rng.integers(0, 2, size=(min(256, int(n) - s), len(d))) * 2.0 - 1.0  # (block, Q)
            extreme += np.count_nonzero(np.abs(signs @ d / len(d)) >= abs(diff) - tol)
    return {"diff": diff, "p_value": float((1 + extreme) / (1 + int(n))), "low": float(low), "high": float(high)}


def label_queries(captions: Sequence[str], caption_clip_index: Sequence[int]) -> Tuple[List[str], List[List[int]]]:
    """Distinct captions (first-seen order) and, for each, every clip that carries it exactly."""
    by_text: Dict[str, set] = {}
    for text, clip in zip(captions, caption_clip_index):
        by_text.setdefault(text, set()).add(int(clip))
    return list(by_text), [sorted(v) for v in by_text.values()]


def per_query(sim: np.ndarray, relevant: Sequence[Sequence[int]]) -> Dict[str, np.ndarray]:
    """Per-query R@1, R@10 and AP@10 (the zero-shot tables' metrics)."""
    return per_query_metrics(sim, relevant, ks=(1, 10), map_at=10)
