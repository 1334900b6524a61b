"""Indexes for searching many unit vectors: exact, IVF, IVF-PQ and HNSW, tuned to a target recall.

**Index kinds** (inner product on unit vectors = cosine): ``exact`` (chunked torch matmul +
top-k: no index file), ``ivf`` (faiss ``IndexIVFFlat`` as the file format, ``nlist`` ≈ 4·√n
lists from spherical k-means on a sample; k-means, assignment, probing and the list scans
run in torch, the queries that probe a list scored against it in one matmul), ``ivfpq``
(faiss ``IndexIVFPQFastScan``: the same lists holding 4-bit product-quantizer codes, dim / 8
bytes per vector, scanned with SIMD look-up tables; each query's best ``candidates`` are
re-ranked exactly on the store's own vectors, so scores are exact), ``hnsw`` (faiss
``IndexHNSWFlat``). ``auto`` picks by size (:class:`IndexConfig`). faiss-cpu's own flat and
per-query IVF-Flat scans measured 10-15x slower than torch's batched matmul on this project's
2-core machine (``benchmarks/bench_search.py``), hence the split; its fast-scan PQ is the
fastest scan measured here (1M x 512 clustered: recall@10 0.957 at 1.0 ms per query, 15.9x
faster than exact torch search, head to head).
At build time a held-out sample of the collection (rows left out of IVF training; each
query's own row removed from both result lists) is searched exactly and approximately; the
search breadth (``nprobe`` / ``efSearch``; for ``ivfpq`` then the re-ranked candidates) is
raised until recall@10 against exact search reaches ``target_recall`` (:func:`tune_index`),
and that setting, the recall and the time per query are stored in the embedding store's
``store.json`` (:mod:`atrlib.retrieval.store`) and used by every later search. Held-out clips
stand in for text queries, which a build does not have; real caption queries may need a
larger breadth.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from atrlib.config import option

KINDS = ("auto", "exact", "ivf", "ivfpq", "hnsw")

__all__ = ["IndexConfig", "AnnIndex", "build_index", "tune_index", "spherical_kmeans", "exact_search", "recall_at_k",
           "rerank"]


@dataclass
class IndexConfig:
    kind: str = option("auto", "auto, exact, ivf, ivfpq or hnsw; auto: exact below exact_below clips, else hnsw "
                               "below hnsw_below, else ivfpq")
    exact_below: int = option(100_000, "auto: exact search for fewer clips (~1-2 ms per query over 100k x 512 here)")
    hnsw_below: int = option(0, "auto: HNSW below this many clips (0 = never). Off: on 2 cores, 200k x 512 clustered, "
                                "HNSW (M 32) took 232 s to build and 6.9 ms/query at recall@10 0.95, IVF-PQ 29 s and "
                                "0.9 ms; 1M with M 16 / efConstruction 40 took 767 s and reached only 0.70")
    nlist: int = option(0, "IVF lists; 0 = 4·sqrt(clips)")
    pq_m: int = option(0, "ivfpq: 4-bit PQ sub-quantizers per vector (code bytes = pq_m / 2); 0 = dim / 4")
    candidates: int = option(100, "ivfpq: candidates per query re-ranked exactly on the stored vectors (the tuner "
                                  "doubles it, up to max_candidates, when probing every list is not enough)")
    max_candidates: int = option(4096, "ivfpq: the tuner's largest candidate list")
    train_size: int = option(100_000, "IVF: vectors k-means is trained on (a random sample, held-out rows excluded)")
    hnsw_m: int = option(32, "HNSW: neighbours per node")
    ef_construction: int = option(64, "HNSW: breadth while building")
    target_recall: float = option(0.95, "raise nprobe / efSearch until recall@10 against exact search reaches this")
    sample: int = option(500, "held-out queries for measuring recall at build time")
    k: int = option(10, "recall@k is measured at this k")
    seed: int = option(0, "sampling of the held-out queries and of the IVF training vectors")

    def choose(self, n: int) -> str:
        if self.kind not in KINDS:
            raise ValueError(f"index kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.kind != "auto":
            return self.kind
        return "exact" if n < self.exact_below else "hnsw" if n < self.hnsw_below else "ivfpq"


def _faiss():
    try:
        import faiss
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("atrlib.retrieval.index needs faiss: pip install 'atrlib[faiss]' (or faiss-cpu)") from e
    return faiss


# --------------------------------------------------------------------------------------
# exact search and recall (plain numpy/torch: the reference the indexes are measured against)
# --------------------------------------------------------------------------------------
def exact_search(queries: np.ndarray, items: np.ndarray, k: int, chunk: int = 262_144) -> Tuple[np.ndarray, np.ndarray]:
    """Top-``k`` inner products of every query over ``items`` (float16 or float32, e.g. a
    memory-mapped store): (scores (m, k) float32, ids (m, k) int64), best first; equal scores are
    listed by lower id, except that a tie at the k-th place may keep either item."""
    import torch

    q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))            # (m, d)
    k = min(k, len(items))
    best_s = torch.full((len(q), 0), -math.inf)
    best_i = torch.zeros((len(q), 0), dtype=torch.long)
    for s in range(0, len(items), chunk):
        block = torch.from_numpy(np.ascontiguousarray(items[s:s + chunk], dtype=np.float32))  # (c, d)
        sc = q @ block.T                                                               # (m, c)
        top = torch.topk(sc, min(k, sc.shape[1]), dim=1)
        cand_s = torch.cat([best_s, top.values], 1)                                    # (m, <= 2k)
        cand_i = torch.cat([best_i, top.indices + s], 1)
        order = torch.argsort(cand_i, dim=1, stable=True)                              # by id, then
        cand_s, cand_i = cand_s.gather(1, order), cand_i.gather(1, order)
        order = torch.sort(cand_s, dim=1, descending=True, stable=True).indices[:, :k]  # by score: ties -> lower id
        best_s, best_i = cand_s.gather(1, order), cand_i.gather(1, order)
    return best_s.numpy(), best_i.numpy()


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray, k: int = 10) -> float:
    """Mean over queries of |approx top-k ∩ exact top-k| / k (ids < 0 are misses)."""
    hits = [len(set(a[:k][a[:k] >= 0].tolist()) & set(e[:k].tolist())) for a, e in zip(approx_ids, exact_ids)]
    return float(np.mean(hits) / k) if hits else float("nan")


def _drop_self(ids: np.ndarray, self_ids: np.ndarray, k: int) -> np.ndarray:
    """Remove each query's own row from its result list; keep the first ``k`` others."""
    out = np.full((len(ids), k), -1, dtype=np.int64)
    for r, (row, me) in enumerate(zip(ids, self_ids)):
        row = row[row != me][:k]
        out[r, :len(row)] = row
    return out


def rerank(queries: np.ndarray, cand: np.ndarray, x: np.ndarray, k: int, chunk: int = 4) -> Tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` among each query's candidate rows ``cand`` (m, K) of ``x`` (ids < 0:
    none), scored on ``x``'s own values (e.g. the store's float16 vectors, as exact search
    does): (scores (m, k), ids (m, k)), best first. A few queries at a time, so the gathered
    rows stay in cache (measured fastest here: 4 queries x 800 candidates ~1.2-1.8 ms/query
    over a 1M x 512 float16 array, bound by random memory reads)."""
    import torch

    q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))              # (m, d)
    m, kk = cand.shape
    k = min(k, kk)
    out_s, out_i = np.full((m, k), -np.inf, np.float32), np.full((m, k), -1, np.int64)
    for s in range(0, m, chunk):
        c = np.asarray(cand[s:s + chunk])                                               # (c, K)
        ok = c >= 0
        v = torch.from_numpy(np.asarray(x[np.where(ok, c, 0).reshape(-1)])).float()      # (c·K, d)
        sc = torch.bmm(v.reshape(len(c), kk, -1), q[s:s + len(c), :, None])[:, :, 0]     # (c, K)
        sc[torch.from_numpy(~ok)] = -math.inf
        top = torch.topk(sc, k, dim=1)                                                  # (c, k)
        out_s[s:s + len(c)] = top.values.numpy()
        out_i[s:s + len(c)] = np.where(np.isfinite(out_s[s:s + len(c)]), np.take_along_axis(c, top.indices.numpy(), 1), -1)
    return out_s, out_i


# --------------------------------------------------------------------------------------
# indexes: torch does the matrix products (IVF lists included), faiss stores IVF lists and walks HNSW graphs
# --------------------------------------------------------------------------------------
def _assign(x: np.ndarray, centroids, chunk: int = 65_536) -> np.ndarray:
    """Nearest centroid (by inner product) of every row of ``x``: (n,) int64."""
    import torch

    out = np.empty(len(x), dtype=np.int64)
    for s in range(0, len(x), chunk):
        block = torch.from_numpy(np.ascontiguousarray(x[s:s + chunk], dtype=np.float32))  # (c, d)
        out[s:s + len(block)] = (block @ centroids.T).argmax(1).numpy()                  # (c, nlist) -> (c,)
    return out


def spherical_kmeans(x: np.ndarray, k: int, n_iter: int = 10, seed: int = 0):
    """``k`` unit centroids (k, d) torch float32 by Lloyd iterations on the cosine (an empty
    cluster is re-seeded with a random row)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))                      # (m, d)
    c = xt[torch.randperm(len(xt), generator=g)[:k]].clone()                               # (k, d)
    for _ in range(n_iter):
        a = torch.from_numpy(_assign(x, c))                                                # (m,)
        sums = torch.zeros_like(c).index_add_(0, a, xt)                                    # (k, d)
        counts = torch.bincount(a, minlength=k)
        empty = counts == 0
        if empty.any():
            sums[empty] = xt[torch.randint(len(xt), (int(empty.sum()),), generator=g)]
        c = sums / sums.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return c


class AnnIndex:
    """One interface over the kinds: ``search(queries, k, breadth) -> (scores, ids)``.

    ``exact``: chunked torch matmul + top-k over a float32 copy (faiss-cpu's ``IndexFlatIP``
    measured 10-20x slower than torch's BLAS on this project's machine). ``ivf``: faiss
    ``IndexIVFFlat`` (the on-disk format) whose k-means, assignment, probing and list scans
    run in torch, queries batched per list; breadth = ``nprobe``. ``ivfpq``: faiss
    ``IndexIVFPQFastScan`` (4-bit PQ codes scanned with SIMD look-up tables) gives
    ``candidates`` per query, re-ranked exactly on the stored vectors (``dense``, e.g. the
    store's float16 memmap); breadth = ``nprobe``. ``hnsw``: faiss ``IndexHNSWFlat``; breadth =
    ``efSearch``.
    """

    def __init__(self, kind: str, faiss_index=None, dense: Optional[np.ndarray] = None, centroids=None,
                 candidates: int = 100):
        self.kind, self.faiss_index, self.dense, self.centroids = kind, faiss_index, dense, centroids
        self.candidates = candidates  # ivfpq: re-ranked per query (tune_index may raise it)
        self._lists = None  # ivf: (vectors in list order, their ids, list offsets), read from faiss once

    def _ivf_lists(self):
        """The IVF lists as torch arrays: vectors (n, d) grouped by list, ids (n,), offsets (nlist + 1,)."""
        if self._lists is None:
            import torch

            faiss, inv, d = _faiss(), self.faiss_index.invlists, self.faiss_index.d
            sizes = np.array([inv.list_size(i) for i in range(self.nlist)], dtype=np.int64)
            offsets = np.concatenate([[0], np.cumsum(sizes)])
            vecs = np.empty((offsets[-1], d), dtype=np.float32)                              # (n, d)
            ids = np.empty(offsets[-1], dtype=np.int64)
            for i in np.flatnonzero(sizes):
                n = int(sizes[i])
                vecs[offsets[i]:offsets[i + 1]] = np.frombuffer(
                    faiss.rev_swig_ptr(inv.get_codes(int(i)), n * inv.code_size), dtype=np.float32).reshape(n, d)
                ids[offsets[i]:offsets[i + 1]] = faiss.rev_swig_ptr(inv.get_ids(int(i)), n)
            self._lists = (torch.from_numpy(vecs), torch.from_numpy(ids), offsets)
        return self._lists

    def _ivf_search(self, q: np.ndarray, k: int, nprobe: int) -> Tuple[np.ndarray, np.ndarray]:
        """Batched list scan: the queries probing a list are scored against it in one matmul
        (faiss-cpu's per-query list scan measured ~10x slower here)."""
        import torch

        vecs, ids, offsets = self._ivf_lists()
        qt = torch.from_numpy(q)                                                          # (m, d)
        probe = torch.topk(qt @ self.centroids.T, nprobe, dim=1).indices                  # (m, nprobe)
        m = len(q)
        if m <= 8:  # few queries: gather each query's probed lists and score them in one matmul
            off = torch.from_numpy(offsets)
            out_s, out_i = np.full((m, k), -np.inf, np.float32), np.full((m, k), -1, np.int64)
            for r in range(m):
                starts, lens = off[probe[r]], off[probe[r] + 1] - off[probe[r]]           # (nprobe,) each
                rows = torch.repeat_interleave(starts - torch.cumsum(lens, 0) + lens, lens) + torch.arange(int(lens.sum()))
                top = torch.topk(vecs.index_select(0, rows) @ qt[r], min(k, len(rows)))   # (candidates,) -> (<= k,)
                out_s[r, :len(top.values)], out_i[r, :len(top.values)] = top.values.numpy(), ids[rows[top.indices]].numpy()
            return out_s, out_i
        flat = probe.reshape(-1)                                                          # (m·nprobe,) list of each pair
        order = torch.argsort(flat, stable=True)
        lists, counts = torch.unique_consecutive(flat[order], return_counts=True)
        qidx = (order // nprobe).tolist()
        parts_q, parts_s, parts_i = [], [], []
        start = 0
        for lst, c in zip(lists.tolist(), counts.tolist()):
            a, b = int(offsets[lst]), int(offsets[lst + 1])
            if a < b:
                qi = qidx[start:start + c]
                top = torch.topk(qt[qi] @ vecs[a:b].T, min(k, b - a), dim=1)                # (c, list size) -> (c, <= k)
                parts_q.append(torch.tensor(qi).repeat_interleave(top.values.shape[1]))
                parts_s.append(top.values.reshape(-1))
                parts_i.append((top.indices + a).reshape(-1))
            start += c
        rows = torch.cat(parts_q)                                                         # (pairs·k,) query of each candidate
        cand = torch.cat(parts_s)
        pos = torch.cat(parts_i)                                                          # position in list order
        # every query's candidates side by side: sort by query, then place them in columns
        o = torch.argsort(rows, stable=True)
        rows, cand, pos = rows[o], cand[o], pos[o]
        per_q = torch.bincount(rows, minlength=m)
        col = torch.arange(len(rows)) - torch.repeat_interleave(torch.cumsum(per_q, 0) - per_q, per_q)
        cand_s = torch.full((m, max(int(per_q.max()), k)), -math.inf)                     # (m, candidates)
        cand_i = torch.full(cand_s.shape, -1, dtype=torch.long)
        cand_s[rows, col] = cand
        cand_i[rows, col] = ids[pos]
        best = torch.topk(cand_s, min(k, cand_s.shape[1]), dim=1)                         # (m, k)
        out_i = cand_i.gather(1, best.indices)
        return best.values.numpy(), out_i.numpy()

    @property
    def ntotal(self) -> int:
        return len(self.dense) if self.kind == "exact" else int(self.faiss_index.ntotal)

    @property
    def nlist(self) -> int:
        return int(self.faiss_index.nlist) if self.kind in ("ivf", "ivfpq") else 0

    def search(self, queries: np.ndarray, k: int, breadth: int = 0,
               candidates: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)                 # (m, d)
        if self.kind == "exact":
            return exact_search(q, self.dense, k)
        faiss = _faiss()
        if self.kind == "hnsw":
            return self.faiss_index.search(q, k, params=faiss.SearchParametersHNSW(efSearch=int(max(breadth, k))))
        nprobe = int(min(max(breadth, 1), self.nlist))
        if self.kind == "ivfpq":
            kk = int(min(max(k, candidates or self.candidates), self.ntotal))
            _, cand = self.faiss_index.search(q, kk, params=faiss.SearchParametersIVF(nprobe=nprobe))  # (m, kk)
            return rerank(q, cand, self.dense, k)
        return self._ivf_search(q, k, nprobe)

    def save(self, path: Path) -> None:
        _faiss().write_index(self.faiss_index, str(path))

    @classmethod
    def load(cls, kind: str, path: Optional[Path], x: np.ndarray) -> "AnnIndex":
        if kind == "exact":
            return cls("exact", dense=np.ascontiguousarray(x, dtype=np.float32))
        from atrlib.errors import StoreError

        if kind not in KINDS or kind == "auto":
            raise StoreError(f"{path}: unknown index kind {kind!r} in store.json; rebuild the store")
        faiss = _faiss()
        try:  # IVF lists are read into torch on first search: map the file instead of loading it twice
            index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP if kind == "ivf" else 0)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise StoreError(f"{path}: cannot be read as a faiss index ({first[:200]}); the file is corrupt or "
                             "truncated — rebuild the store with `python -m atrlib index build`") from None
        if int(index.ntotal) != len(x) or int(index.d) != x.shape[1]:
            raise StoreError(f"{path}: the index holds {index.ntotal} vectors of dimension {index.d}, the store "
                             f"{len(x)} of dimension {x.shape[1]}; the files are from different builds — rebuild it")
        if kind == "ivfpq":  # codes in memory (dim / 8 bytes per vector); re-ranked on the memmap
            return cls("ivfpq", index, dense=x)
        if kind == "ivf":
            import torch

            centroids = torch.from_numpy(index.quantizer.reconstruct_n(0, index.nlist))
            return cls("ivf", index, centroids=centroids)
        return cls(kind, index)


def build_index(x: np.ndarray, kind: str, cfg: IndexConfig, exclude: Sequence[int] = ()) -> AnnIndex:
    """An :class:`AnnIndex` of ``kind`` over ``x`` (n, d) unit rows (float16 or float32, e.g. a
    memmap); ``exclude``: rows kept out of IVF training (the held-out queries)."""
    n, d = x.shape
    if kind == "exact":
        return AnnIndex("exact", dense=np.ascontiguousarray(x, dtype=np.float32))
    faiss = _faiss()
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = cfg.ef_construction
        for s in range(0, n, 65_536):
            index.add(np.ascontiguousarray(x[s:s + 65_536], dtype=np.float32))
        return AnnIndex("hnsw", index)
    if kind not in ("ivf", "ivfpq"):
        raise ValueError(f"unknown index kind {kind!r}; one of exact, ivf, ivfpq, hnsw")
    nlist = cfg.nlist or max(1, int(round(4 * math.sqrt(n))))
    nlist = min(nlist, max(1, n // 39))  # at least 39 training vectors per list (faiss's rule of thumb)
    pool = np.setdiff1d(np.arange(n), np.asarray(exclude, dtype=np.int64))
    rng = np.random.default_rng(cfg.seed + 1)
    train = np.sort(rng.choice(pool, size=min(len(pool), max(cfg.train_size, 39 * nlist)), replace=False))
    centroids = spherical_kmeans(np.asarray(x[train], dtype=np.float32), nlist, seed=cfg.seed)  # (nlist, d)
    quantizer = faiss.IndexFlatIP(d)
    quantizer.add(centroids.numpy())
    if kind == "ivfpq":
        m = cfg.pq_m or d // 4
        if d % m:
            raise ValueError(f"pq_m={m} must divide the dimension {d}")
        index = faiss.IndexIVFPQFastScan(quantizer, d, nlist, m, 4, faiss.METRIC_INNER_PRODUCT)
        index.train(np.asarray(x[train[:65_536]], dtype=np.float32))  # the PQ only: the quantizer holds its lists
        for s in range(0, n, 65_536):
            index.add_with_ids(np.ascontiguousarray(x[s:s + 65_536], dtype=np.float32),
                               np.arange(s, min(n, s + 65_536), dtype=np.int64))
        out = AnnIndex("ivfpq", index, dense=x, candidates=cfg.candidates)
        out.quantizer = quantizer  # keep the SWIG object alive as long as the index
        return out
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.is_trained = True
    for s in range(0, n, 65_536):
        block = np.ascontiguousarray(x[s:s + 65_536], dtype=np.float32)                    # (c, d)
        assign = _assign(block, centroids)
        ids = np.arange(s, s + len(block), dtype=np.int64)
        index.add_core(len(block), faiss.swig_ptr(block), faiss.swig_ptr(ids), faiss.swig_ptr(assign))
    index.ntotal = n
    out = AnnIndex("ivf", index, centroids=centroids)
    out.quantizer = quantizer  # keep the SWIG object alive as long as the index
    return out


def _breadths(index: AnnIndex) -> List[int]:
    if index.kind in ("ivf", "ivfpq"):
        nl = index.nlist
        return sorted({min(nl, b) for b in (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512,
                                            768, 1024, 1536, 2048, 4096)} | {nl})
    if index.kind == "hnsw":
        return [16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 2048]
    return [0]


def tune_index(index: AnnIndex, x: np.ndarray, sample_ids: np.ndarray, cfg: IndexConfig) -> dict:
    """Raise the search breadth until recall@k on the held-out sample reaches the target.

    Ground truth: :func:`exact_search` of the sample rows over ``x``; each query's own row is
    removed from both lists. Returns ``{"kind", "breadth", "recall@k", "ms_per_query",
    "exact_ms_per_query", "queries", "curve": [...]}``.
    """
    k = cfg.k
    q = np.ascontiguousarray(x[sample_ids], dtype=np.float32)                    # (s, d)
    t0 = time.perf_counter()
    _, ex = exact_search(q, x, k + 1)
    exact_ms = (time.perf_counter() - t0) * 1000 / max(1, len(q))
    truth = _drop_self(ex, sample_ids, k)
    curve = []
    steps = [(b, index.candidates) for b in _breadths(index)]
    if index.kind == "ivfpq":  # every list probed and still short: re-rank more candidates
        c = index.candidates
        while c < cfg.max_candidates:
            c = min(2 * c, cfg.max_candidates)
            steps.append((steps[-1][0], c))
    for b, c in steps:
        t0 = time.perf_counter()
        _, ids = index.search(q, k + 1, b, candidates=c)
        ms = (time.perf_counter() - t0) * 1000 / max(1, len(q))
        rec = recall_at_k(_drop_self(ids, sample_ids, k), truth, k)
        curve.append({"breadth": b, f"recall@{k}": round(rec, 4), "ms_per_query": round(ms, 4)})
        if index.kind == "ivfpq":
            curve[-1]["candidates"] = c
        if rec >= cfg.target_recall:
            break
    best = curve[-1]
    out = {"kind": index.kind, "breadth": best["breadth"], f"recall@{k}": best[f"recall@{k}"],
           "ms_per_query": best["ms_per_query"], "exact_ms_per_query": round(exact_ms, 4),
           "queries": int(len(q)), "target_recall": cfg.target_recall, "curve": curve}
    if index.kind == "ivfpq":
        out["candidates"] = index.candidates = best["candidates"]
    return out
