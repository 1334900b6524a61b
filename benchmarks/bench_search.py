"""Search over a million unit vectors: exact torch matmul + top-k (the bare baseline), faiss
``IndexFlatIP``, atrlib's exact search, IVF and HNSW (:mod:`atrlib.index`); prints a table.

    PYTHONPATH=. python benchmarks/bench_search.py     # 1,000,000 x 512, random and clustered: ~25 min on 2 cores
    PYTHONPATH=. python benchmarks/bench_search.py --data clustered --methods exact ivf   # ~5 min
    PYTHONPATH=. python benchmarks/bench_search.py --hnsw-n 0    # HNSW over all 1M (not run here: 200k took 330-400 s)

Data: ``random`` — i.i.d. Gaussian directions, queries drawn the same way (the hardest case
for any approximate index: in 512-d every point is almost equally far from a query);
``clustered`` — 20,000 centres with noise (cosine to own centre ≈ 0.7), queries fresh draws of
the same mixture, closer to how retrieval embeddings sit. Recall@10 is against the torch
baseline's top 10. Query times are per query, with queries in batches of 100 (exact) or all
200 at once (indexes), best of two passes, and with 20 queries sent one at a time
(interactive search). Memory is the growth of the process's resident set while
building (the vectors themselves, 2 GB at 1M x 512 float32, are held before and not counted).
For each approximate index the table shows the smallest breadth (nprobe / efSearch) reaching
recall@10 >= 0.95, and the widest breadth still >= 5x faster than exact.
"""
from __future__ import annotations

import argparse
import os
import time

import atrlib  # noqa: F401  (thread settings before torch)
import numpy as np
import torch

from atrlib.index import IndexConfig, build_index, recall_at_k


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def unit_rows(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def make_data(kind: str, n: int, d: int, n_queries: int, seed: int = 0):
    """(n, d) and (n_queries, d) float32 unit rows, generated in chunks."""
    rng = np.random.default_rng(seed)
    x = np.empty((n + n_queries, d), dtype=np.float32)
    centres = unit_rows(rng.standard_normal((20_000, d), dtype=np.float32)) if kind == "clustered" else None
    for s in range(0, len(x), 100_000):
        m = min(100_000, len(x) - s)
        block = rng.standard_normal((m, d), dtype=np.float32)
        if centres is not None:  # centre + noise of norm ~1: cosine to own centre ~0.7
            block = centres[rng.integers(0, len(centres), m)] + block / np.sqrt(d)
        x[s:s + m] = unit_rows(block)
    return x[:n], np.ascontiguousarray(x[n:])


def timed(fn, repeat: int = 2):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def torch_baseline(q: np.ndarray, x: np.ndarray, k: int = 10, batch: int = 100):
    """The bare baseline: one matmul over all vectors + topk, 100 queries at a time."""
    xt, ids = torch.from_numpy(x), []
    for s in range(0, len(q), batch):
        scores = torch.from_numpy(q[s:s + batch]) @ xt.T                    # (batch, n)
        ids.append(torch.topk(scores, k, dim=1).indices.numpy())
    return np.concatenate(ids)


def ladder(index, q, truth, breadths, k=10):
    """(breadth, ms/query, recall@10) along the breadths, stopping once recall >= 0.99."""
    rows = []
    for b in breadths:
        t, (_, ids) = timed(lambda: index.search(q, k, b))
        rows.append((b, 1000 * t / len(q), recall_at_k(ids, truth, k)))
        if rows[-1][2] >= 0.99:
            break
    return rows


def single_ms(search, q, n: int = 20) -> float:
    """ms per query when queries come one at a time (interactive search), over ``n`` queries."""
    t = time.perf_counter()
    for i in range(min(n, len(q))):
        search(q[i:i + 1])
    return 1000 * (time.perf_counter() - t) / min(n, len(q))


def pick(rows, exact_ms):
    """The first row reaching 0.95 recall, and the widest row still >= 5x faster than exact."""
    good = next((r for r in rows if r[2] >= 0.95), None)
    fast = [r for r in rows if r[1] * 5 <= exact_ms]
    return good, (fast[-1] if fast else None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="vectors in the collection")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--data", nargs="+", default=["random", "clustered"], choices=["random", "clustered"])
    ap.add_argument("--hnsw-n", type=int, default=200_000, help="build HNSW on the first N vectors only (0: all); "
                                                               "its build is the slowest step (200k: ~6 min on 2 cores)")
    ap.add_argument("--methods", nargs="+", default=["flat", "exact", "ivf", "hnsw"], choices=["flat", "exact", "ivf", "hnsw"],
                    help="what to measure besides the torch baseline")
    ap.add_argument("--nlist", type=int, default=0, help="IVF lists (0: the store's default)")
    ap.add_argument("--faiss-flat-queries", type=int, default=20, help="queries for faiss IndexFlatIP (slow here)")
    args = ap.parse_args()
    import faiss

    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; threads: torch {torch.get_num_threads()}, faiss {faiss.omp_get_max_threads()}; "
          f"faiss {faiss.__version__}, torch {torch.__version__}")
    table = []
    for kind in args.data:
        t0 = time.perf_counter()
        x, q = make_data(kind, args.n, args.dim, args.queries)
        print(f"\n[{kind}] {args.n:,} x {args.dim} float32 ({x.nbytes / 2**30:.2f} GiB) made in "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
        row = lambda *r: table.append((kind,) + r) or print("  " + " | ".join(str(v) for v in r), flush=True)  # noqa: E731

        # 1. the bare baseline, and ground truth
        t, truth = timed(lambda: torch_baseline(q, x))
        exact_ms = 1000 * t / len(q)
        one = single_ms(lambda qq: torch_baseline(qq, x), q)
        row("torch matmul + topk (baseline)", "—", f"{exact_ms:.2f}", f"{one:.1f}", "1.000", "0 (reads the stored vectors)", "—")

        if "flat" in args.methods:  # 2. faiss exact
            flat_row(x, q, truth, args, row)
        if "exact" in args.methods:  # 3. atrlib exact (what a store below the exact threshold uses)
            ex = build_index(x, "exact", IndexConfig())
            t, (_, ids) = timed(lambda: ex.search(q, 10))
            one = single_ms(lambda qq: ex.search(qq, 10), q)
            row("atrlib exact (torch, chunked)", "—", f"{1000 * t / len(q):.2f}", f"{one:.1f}", f"{recall_at_k(ids, truth):.3f}",
                "0", "—")
        if "ivf" in args.methods:
            ivf_rows(x, q, truth, exact_ms, row, args.nlist)
        if "hnsw" in args.methods:
            hnsw_rows(x, q, truth, exact_ms, args, row)
        x = q = None  # free 2 GB before the next data set

    print("\n| data | method | build | ms/query (batch of 100–200) | ms/query (one at a time) | recall@10 | memory | note |\n|---|---|---|---|---|---|---|---|")
    for r in table:
        print("| " + " | ".join(str(v) for v in r) + " |")


def flat_row(x, q, truth, args, row):
    import faiss

    m0 = rss_mb()
    tb, flat = timed(lambda: (lambda ix: (ix.add(x), ix)[1])(faiss.IndexFlatIP(x.shape[1])), repeat=1)
    mem = rss_mb() - m0
    nq = min(args.faiss_flat_queries, len(q))
    t, (_, ids) = timed(lambda: flat.search(q[:nq], 10), repeat=1)
    one = single_ms(lambda qq: flat.search(qq, 10), q, n=5)
    row("faiss IndexFlatIP", f"{tb:.1f} s", f"{1000 * t / nq:.2f}", f"{one:.1f}", f"{recall_at_k(ids, truth[:nq]):.3f}",
        f"{mem:,.0f} MB (a copy)", f"{nq} queries batched, 5 single")


def ivf_rows(x, q, truth, exact_ms, row, nlist=0):
    cfg = IndexConfig(kind="ivf", nlist=nlist)
    m0 = rss_mb()
    tb, ivf = timed(lambda: build_index(x, "ivf", cfg), repeat=1)
    ivf.search(q[:2], 10, 1)  # read the lists into torch once (part of loading a store)
    mem = rss_mb() - m0
    rows = ladder(ivf, q, truth, [1, 2, 4, 8, 16, 32, 64, 96, 128, 192, 256, 384, 512, 1024, 2048, ivf.nlist])
    print("  IVF curve (nprobe, ms, recall):", [(b, round(ms, 2), round(r, 3)) for b, ms, r in rows], flush=True)
    for label, r in zip(("recall >= 0.95", ">= 5x faster"), pick(rows, exact_ms)):
        if r:
            one = single_ms(lambda qq: ivf.search(qq, 10, r[0]), q)
            row(f"IVF-Flat nlist {ivf.nlist}, nprobe {r[0]} ({label})", f"{tb:.1f} s", f"{r[1]:.2f}", f"{one:.1f}",
                f"{r[2]:.3f}", f"{mem:,.0f} MB", f"{exact_ms / r[1]:.1f}x faster than baseline batched")
        else:
            row(f"IVF-Flat nlist {ivf.nlist} ({label})", f"{tb:.1f} s", "—", "—", "—", f"{mem:,.0f} MB", "not reached")


def hnsw_rows(x, q, truth, exact_ms, args, row):
    nh = args.hnsw_n or len(x)
    xs = x[:nh]
    truth_h = truth if nh == len(x) else torch_baseline(q, xs)
    exact_h = exact_ms if nh == len(x) else 1000 * timed(lambda: torch_baseline(q, xs))[0] / len(q)
    cfg = IndexConfig(kind="hnsw")
    m0 = rss_mb()
    tb, hnsw = timed(lambda: build_index(xs, "hnsw", cfg), repeat=1)
    mem = rss_mb() - m0
    rows = ladder(hnsw, q, truth_h, [16, 32, 64, 128, 256, 512, 1024, 2048, 4096])
    print("  HNSW curve (efSearch, ms, recall):", [(b, round(ms, 2), round(r, 3)) for b, ms, r in rows], flush=True)
    sub = "" if nh == len(x) else f" on the first {nh:,}"
    for label, r in zip(("recall >= 0.95", ">= 5x faster"), pick(rows, exact_h)):
        if r:
            one = single_ms(lambda qq: hnsw.search(qq, 10, r[0]), q)
            row(f"HNSW M {cfg.hnsw_m}, efSearch {r[0]} ({label}){sub}", f"{tb:.1f} s", f"{r[1]:.2f}", f"{one:.1f}",
                f"{r[2]:.3f}", f"{mem:,.0f} MB", f"{exact_h / r[1]:.1f}x faster than exact batched{sub}")
        else:
            row(f"HNSW M {cfg.hnsw_m} ({label}){sub}", f"{tb:.1f} s", "—", "—", "—", f"{mem:,.0f} MB", "not reached")


if __name__ == "__main__":
    main()
