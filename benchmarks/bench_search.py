"""Search over a million unit vectors: exact torch matmul + top-k (the bare baseline), faiss
``IndexFlatIP``, atrlib's exact search, IVF, IVF-PQ fast-scan + re-rank and HNSW
(:mod:`atrlib.retrieval.index`); prints a table.

    PYTHONPATH=. python benchmarks/bench_search.py       # 1,000,000 x 512, random and clustered (make bench)
    PYTHONPATH=. python benchmarks/bench_search.py --n 100000 --data clustered   # a quick look (~1 min)
    PYTHONPATH=. python benchmarks/bench_search.py --data clustered --methods ivfpq --repeats 7

Data: ``random`` — i.i.d. Gaussian directions, queries drawn the same way (the hardest case
for any approximate index: in 512-d every point is almost equally far from a query, so a
query's neighbours lie in any IVF list); ``clustered`` — 20,000 centres with noise (cosine to
own centre ≈ 0.7), queries fresh draws of the same mixture, closer to how retrieval embeddings
sit. Recall@10 is against the torch baseline's top 10.

Timing: queries in batches of 100 (baseline, exact) or all 200 at once (indexes), the median
of ``--repeats`` passes; "one at a time" sends 20 queries singly (interactive search). The
speed-up of a chosen row is measured head to head: baseline and index passes alternate in this
process and the ratio of their medians is printed, so a change of machine load during the run
moves both. The load average is printed with the table (the machine this was written on is
shared). Memory is the growth of the process's resident set while building (the vectors
themselves, 2 GB at 1M x 512 float32, are held before and not counted).

For each approximate index the table shows the fastest setting reaching recall@10 >= 0.95 and
the most accurate setting still >= 5x faster than the baseline (ladders: ``nprobe`` for IVF,
``nprobe`` x re-ranked ``candidates`` for IVF-PQ, ``efSearch`` for HNSW), and for IVF-PQ the
setting :func:`atrlib.retrieval.index.tune_index` picks on held-out rows of the collection, as a store
build does.
"""
from __future__ import annotations

import argparse
import os
import time

import atrlib  # noqa: F401  (thread settings before torch)
import numpy as np
import torch

from atrlib.retrieval.index import IndexConfig, build_index, recall_at_k, tune_index


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


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


def timed(fn, repeat: int = 3):
    """(median seconds over ``repeat`` calls, the last result)."""
    times, out = [], None
    for _ in range(max(1, repeat)):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), out


def head_to_head(fn, baseline, repeat: int):
    """Medians (seconds) of ``fn`` and ``baseline`` timed alternately, ``repeat`` passes each."""
    a, b = [], []
    for _ in range(max(1, repeat)):
        for f, acc in ((baseline, b), (fn, a)):
            t = time.perf_counter()
            f()
            acc.append(time.perf_counter() - t)
    return float(np.median(a)), float(np.median(b))


def torch_baseline(q: np.ndarray, x: np.ndarray, k: int = 10, batch: int = 100):
    """The bare baseline: one matmul over all vectors + topk, 100 queries at a time."""
    xt, ids = torch.from_numpy(x), []
    for s in range(0, len(q), batch):
        scores = torch.from_numpy(q[s:s + batch]) @ xt.T                    # (batch, n)
        ids.append(torch.topk(scores, k, dim=1).indices.numpy())
    return np.concatenate(ids)


def single_ms(search, q, n: int = 20) -> float:
    """ms per query when queries come one at a time (interactive search), over ``n`` queries."""
    t = time.perf_counter()
    for i in range(min(n, len(q))):
        search(q[i:i + 1])
    return 1000 * (time.perf_counter() - t) / min(n, len(q))


class Bench:
    """One data set: the vectors, queries, ground truth, the baseline and the table rows."""

    def __init__(self, kind, x, q, repeats, table):
        self.kind, self.x, self.q, self.repeats, self.table = kind, x, q, repeats, table
        self.base = lambda: torch_baseline(q, x)
        t, self.truth = timed(self.base, repeats)
        self.exact_ms = 1000 * t / len(q)

    def row(self, *r):
        self.table.append((self.kind,) + r)
        print("  " + " | ".join(str(v) for v in r), flush=True)

    def ladder(self, search, settings):
        """(setting, ms/query, recall@10) per setting (median timing); a setting is passed to ``search``."""
        rows = []
        for s in settings:
            t, (_, ids) = timed(lambda: search(self.q, s), self.repeats)
            rows.append((s, 1000 * t / len(self.q), recall_at_k(ids, self.truth)))
        return rows

    def picks(self, name, rows, search, build, mem, fmt):
        """Table rows: the fastest setting with recall >= 0.95, the best recall >= 5x faster."""
        good = [r for r in rows if r[2] >= 0.95]
        fast = [r for r in rows if r[1] * 5 <= self.exact_ms]
        chosen = [("recall >= 0.95", min(good, key=lambda r: r[1]) if good else None),
                  (">= 5x faster", max(fast, key=lambda r: (r[2], -r[1])) if fast else None)]
        for label, r in chosen:
            if r is None:
                self.row(f"{name} ({label})", build, "—", "—", "—", mem, "not reached")
                continue
            a, b = head_to_head(lambda: search(self.q, r[0]), self.base, self.repeats)
            one = single_ms(lambda qq: search(qq, r[0]), self.q)
            self.row(f"{name}, {fmt(r[0])} ({label})", build, f"{1000 * a / len(self.q):.2f}", f"{one:.1f}",
                     f"{r[2]:.3f}", mem, f"{b / a:.1f}x faster than baseline head to head (baseline "
                                         f"{1000 * b / len(self.q):.2f} ms, load {load()})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="vectors in the collection")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3, help="timed passes per setting (the median is reported)")
    ap.add_argument("--data", nargs="+", default=["random", "clustered"], choices=["random", "clustered"])
    ap.add_argument("--hnsw-n", type=int, default=200_000, help="build HNSW on the first N vectors only (0: all); "
                                                               "its build is the slowest step")
    ap.add_argument("--methods", nargs="+", default=["flat", "exact", "bf16", "ivf", "ivfpq", "hnsw"],
                    choices=["flat", "exact", "bf16", "ivf", "ivfpq", "hnsw"],
                    help="what to measure besides the torch baseline")
    ap.add_argument("--nlist", type=int, default=0, help="IVF lists (0: the store's default)")
    ap.add_argument("--pq-m", type=int, nargs="+", default=[0, -2],
                    help="IVF-PQ sub-quantizers (4 bits each); 0: the store's default (dim/4), -2: dim/2")
    ap.add_argument("--faiss-flat-queries", type=int, default=20, help="queries for faiss IndexFlatIP (slow here)")
    args = ap.parse_args()
    import faiss

    print(f"load average {load()} on {os.cpu_count()} CPUs; threads: torch {torch.get_num_threads()}, faiss "
          f"{faiss.omp_get_max_threads()}; faiss {faiss.__version__}, torch {torch.__version__}")
    table = []
    for kind in args.data:
        t0 = time.perf_counter()
        x, q = make_data(kind, args.n, args.dim, args.queries)
        print(f"\n[{kind}] {args.n:,} x {args.dim} float32 ({x.nbytes / 2**30:.2f} GiB) made in "
              f"{time.perf_counter() - t0:.1f} s; load {load()}", flush=True)
        b = Bench(kind, x, q, args.repeats, table)
        one = single_ms(lambda qq: torch_baseline(qq, x), q)
        b.row("torch matmul + topk (baseline)", "—", f"{b.exact_ms:.2f}", f"{one:.1f}", "1.000",
              "0 (reads the stored vectors)", f"load {load()}")
        if "flat" in args.methods:
            flat_row(b, args)
        if "exact" in args.methods:  # what a store below the exact threshold uses
            ex = build_index(x, "exact", IndexConfig())
            a, base = head_to_head(lambda: ex.search(q, 10), b.base, args.repeats)
            _, ids = ex.search(q, 10)
            one = single_ms(lambda qq: ex.search(qq, 10), q)
            b.row("atrlib exact (torch, chunked)", "—", f"{1000 * a / len(q):.2f}", f"{one:.1f}",
                  f"{recall_at_k(ids, b.truth):.3f}", "0", f"{base / a:.2f}x the baseline's speed head to head")
        if "bf16" in args.methods:
            bf16_row(b)
        if "ivf" in args.methods:
            ivf_rows(b, args)
        if "ivfpq" in args.methods:
            for m in args.pq_m:
                ivfpq_rows(b, args, args.dim // 2 if m == -2 else m)
        if "hnsw" in args.methods:
            hnsw_rows(b, args)
        x = q = b = None  # free 2 GB before the next data set

    print(f"\nload average at the end: {load()} (1/5/15 min)")
    print("\n| data | method | build | ms/query (batch of 100–200) | ms/query (one at a time) | recall@10 | memory | "
          "note |\n|---|---|---|---|---|---|---|---|")
    for r in table:
        print("| " + " | ".join(str(v) for v in r) + " |")


def flat_row(b: Bench, args):
    import faiss

    m0 = rss_mb()
    tb, flat = timed(lambda: (lambda ix: (ix.add(b.x), ix)[1])(faiss.IndexFlatIP(b.x.shape[1])), repeat=1)
    mem = rss_mb() - m0
    nq = min(args.faiss_flat_queries, len(b.q))
    t, (_, ids) = timed(lambda: flat.search(b.q[:nq], 10), repeat=1)
    one = single_ms(lambda qq: flat.search(qq, 10), b.q, n=5)
    b.row("faiss IndexFlatIP", f"{tb:.1f} s", f"{1000 * t / nq:.2f}", f"{one:.1f}",
          f"{recall_at_k(ids, b.truth[:nq]):.3f}", f"{mem:,.0f} MB (a copy)", f"{nq} queries batched, 5 single")


def bf16_row(b: Bench, candidates: int = 100):
    """Every vector scored in bfloat16 (CPUs with AMX / AVX512-BF16 run it several times faster
    than float32), the best ``candidates`` re-ranked exactly: no index, no tuning."""
    from atrlib.retrieval.index import rerank

    m0 = rss_mb()
    xb = torch.from_numpy(b.x).bfloat16()                                           # (n, d)
    mem = f"{rss_mb() - m0:,.0f} MB (a bfloat16 copy)"

    def search(q, batch=100):
        ids = []
        for s in range(0, len(q), batch):
            sc = torch.from_numpy(q[s:s + batch]).bfloat16() @ xb.T                 # (batch, n)
            cand = torch.topk(sc, candidates, dim=1).indices.numpy()               # (batch, candidates)
            ids.append(rerank(q[s:s + batch], cand, b.x, 10)[1])
        return None, np.concatenate(ids)

    a, base = head_to_head(lambda: search(b.q), b.base, b.repeats)
    _, ids = search(b.q)
    b.row(f"torch bfloat16 scan + re-rank of {candidates}", "—", f"{1000 * a / len(b.q):.2f}",
          f"{single_ms(search, b.q):.1f}", f"{recall_at_k(ids, b.truth):.3f}", mem,
          f"{base / a:.1f}x faster than baseline head to head (load {load()})")


def ivf_rows(b: Bench, args):
    cfg = IndexConfig(kind="ivf", nlist=args.nlist)
    m0 = rss_mb()
    tb, ivf = timed(lambda: build_index(b.x, "ivf", cfg), repeat=1)
    ivf.search(b.q[:2], 10, 1)  # read the lists into torch once (part of loading a store)
    mem = f"{rss_mb() - m0:,.0f} MB"
    probes = [p for p in (16, 32, 64, 128, 192, 256, 384, 512, 1024, 2048) if p < ivf.nlist] + [ivf.nlist]
    rows = b.ladder(lambda q, p: ivf.search(q, 10, p), probes)
    print("  IVF curve (nprobe, ms, recall):", [(p, round(ms, 2), round(r, 3)) for p, ms, r in rows], flush=True)
    b.picks(f"IVF-Flat (torch scans) nlist {ivf.nlist}", rows, lambda q, p: ivf.search(q, 10, p), f"{tb:.1f} s", mem,
            lambda p: f"nprobe {p}")


def ivfpq_rows(b: Bench, args, pq_m: int):
    d = b.x.shape[1]
    m = pq_m or d // 4
    cfg = IndexConfig(kind="ivfpq", nlist=args.nlist, pq_m=m)
    sample = np.sort(np.random.default_rng(0).choice(len(b.x), min(cfg.sample, len(b.x) // 10), replace=False))
    m0 = rss_mb()
    tb, ix = timed(lambda: build_index(b.x, "ivfpq", cfg, exclude=sample), repeat=1)
    grew = rss_mb() - m0  # negative when memory an earlier index held is handed back meanwhile
    mem = (f"{grew:,.0f} MB, " if grew > 0 else "") + f"codes {len(b.x) * m // 2 / 2**20:,.0f} MB"
    name = f"IVF-PQ fast-scan nlist {ix.nlist}, PQ{m}x4 + re-rank"
    # 1. what a store build would choose: tuned on held-out rows of the collection
    t0 = time.perf_counter()
    rep = tune_index(ix, b.x, sample, cfg)
    tune_s = time.perf_counter() - t0
    setting = (rep["breadth"], rep["candidates"])
    search = lambda q, s: ix.search(q, 10, s[0], candidates=s[1])  # noqa: E731
    _, ids = search(b.q, setting)
    a, base = head_to_head(lambda: search(b.q, setting), b.base, b.repeats)
    b.row(f"{name}, tuned: nprobe {setting[0]}, {setting[1]} candidates", f"{tb:.1f} s + tuning {tune_s:.0f} s",
          f"{1000 * a / len(b.q):.2f}", f"{single_ms(lambda qq: search(qq, setting), b.q):.1f}",
          f"{recall_at_k(ids, b.truth):.3f}", mem,
          f"tuner: recall@10 {rep['recall@10']:.3f} on {rep['queries']} held-out rows; {base / a:.1f}x faster than "
          f"baseline head to head (load {load()})")
    # 2. the ladder
    probes = [p for p in (8, 16, 32, 64, 128, 256, 512, 1024) if p < ix.nlist] + [ix.nlist]
    settings = [(p, c) for p in probes for c in (50, 100, 200, 400)] + [(ix.nlist, c) for c in (800, 1600, 3200)]
    rows = b.ladder(search, settings)
    front = [r for r in rows if not any(o[1] < r[1] and o[2] >= r[2] for o in rows)]  # fastest for its recall
    print(f"  {name} frontier (nprobe, candidates, ms, recall):",
          [(s[0], s[1], round(ms, 2), round(r, 3)) for s, ms, r in sorted(front, key=lambda r: r[1])], flush=True)
    b.picks(name, rows, search, f"{tb:.1f} s", mem, lambda s: f"nprobe {s[0]}, {s[1]} candidates")


def hnsw_rows(b: Bench, args):
    nh = args.hnsw_n or len(b.x)
    sub_b = b if nh == len(b.x) else Bench(b.kind, b.x[:nh], b.q, b.repeats, b.table)
    cfg = IndexConfig(kind="hnsw")
    m0 = rss_mb()
    tb, hnsw = timed(lambda: build_index(sub_b.x, "hnsw", cfg), repeat=1)
    mem = f"{rss_mb() - m0:,.0f} MB"
    rows = sub_b.ladder(lambda q, ef: hnsw.search(q, 10, ef), [16, 32, 64, 128, 256, 512, 1024, 2048])
    print("  HNSW curve (efSearch, ms, recall):", [(e, round(ms, 2), round(r, 3)) for e, ms, r in rows], flush=True)
    sub = "" if nh == len(b.x) else f" on the first {nh:,}"
    sub_b.picks(f"HNSW M {cfg.hnsw_m}, efConstruction {cfg.ef_construction}{sub}", rows,
                lambda q, ef: hnsw.search(q, 10, ef), f"{tb:.1f} s", mem, lambda ef: f"efSearch {ef}")


if __name__ == "__main__":
    main()
