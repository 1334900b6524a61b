"""Time atrlib.retrieval.metrics on Clotho-sized and large similarity matrices; prints a table.

    PYTHONPATH=. python benchmarks/bench_metrics.py   # (or after pip install -e .) ~6 s on 2 cores

Rows:
* Clotho evaluation size: 5,225 captions x 1,045 clips, t2a (1 relevant) and a2t (5 relevant),
  and both through ``evaluate_both``; a full ``argsort`` ranking of the same matrix for scale;
* DCASE 2025 style: mAP@16 with 1-4 relevant clips per caption;
* 50,000 x 10,000 in query chunks, scored from a lazy low-rank matrix (rows computed on
  demand from 64-d embeddings), so the 2 GB float32 matrix never exists. Peak memory is
  what ``tracemalloc`` saw (numpy reports its buffers to it) during the call.
"""
from __future__ import annotations

import time
import tracemalloc

import atrlib  # noqa: F401  (thread settings before torch)
import numpy as np

from atrlib.retrieval.metrics import a2t_relevance, evaluate_both, retrieval_scores, t2a_relevance


class LowRankSim:
    """``text @ audio.T`` computed one row block at a time: ``.shape`` and ``sim[a:b]``."""

    def __init__(self, text: np.ndarray, audio: np.ndarray):
        self.text, self.audio = text, audio  # (Q, d), (I, d)
        self.shape = (len(text), len(audio))

    def __getitem__(self, rows: slice) -> np.ndarray:
        return self.text[rows] @ self.audio.T  # (rows, I)


def timed(fn, repeat: int = 3):
    """Best wall time of ``repeat`` untraced calls (0: time the traced call), the result,
    and the tracemalloc peak (MiB) of one traced call."""
    tracemalloc.start()
    t = time.perf_counter()
    out = fn()
    best = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    if repeat:
        best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out, peak


def main() -> None:
    rng = np.random.default_rng(0)
    n_clips, per_clip, dim = 1045, 5, 64
    audio = rng.standard_normal((n_clips, dim)).astype(np.float32)
    cci = np.repeat(np.arange(n_clips), per_clip)  # caption -> clip
    text = audio[cci] + 3.0 * rng.standard_normal((len(cci), dim)).astype(np.float32)
    sim = text @ audio.T  # (5225, 1045)
    t2a, a2t = t2a_relevance(cci), a2t_relevance(cci, n_clips)
    multi = [sorted({int(c)} | set(rng.choice(n_clips, rng.integers(0, 4), replace=False).tolist())) for c in cci]

    rows = []
    t, out, peak = timed(lambda: retrieval_scores(sim, t2a))
    rows.append(("t2a 5,225 x 1,045", t, peak, f"mAP@10 {out['mAP@10']:.3f}"))
    t, out, peak = timed(lambda: retrieval_scores(sim.T, a2t))
    rows.append(("a2t 1,045 x 5,225 (5 rel.)", t, peak, f"mAP@10 {out['mAP@10']:.3f}"))
    t, out, peak = timed(lambda: evaluate_both(sim, cci))
    rows.append(("evaluate_both (t2a + a2t)", t, peak, f"R@1 {out['t2a']['R@1']:.3f} / {out['a2t']['R@1']:.3f}"))
    t, _, peak = timed(lambda: np.argsort(-sim, axis=1, kind="stable"), repeat=1)
    rows.append(("  reference: full argsort t2a", t, peak, "ranking only"))
    t, out, peak = timed(lambda: retrieval_scores(sim, multi, map_at=16))
    rows.append(("mAP@16, 1-4 relevant/caption", t, peak, f"mAP@16 {out['mAP@16']:.3f}"))

    n_q, n_i = 50_000, 10_000
    big_audio = rng.standard_normal((n_i, dim)).astype(np.float32)
    big_rel = rng.integers(0, n_i, n_q)
    big_text = big_audio[big_rel] + 3.0 * rng.standard_normal((n_q, dim)).astype(np.float32)
    lazy = LowRankSim(big_text, big_audio)
    t, out, peak = timed(lambda: retrieval_scores(lazy, [[int(i)] for i in big_rel]), repeat=0)
    rows.append(("50,000 x 10,000 chunked, lazy", t, peak, f"mAP@10 {out['mAP@10']:.3f} (dense f32: 1907 MiB)"))

    def rows_only():  # the same row blocks retrieval_scores asks for, thrown away
        for a in range(0, n_q, 1677):
            lazy[a:a + 1677]

    t, _, peak = timed(rows_only, repeat=0)
    rows.append(("  of which: computing the rows", t, peak, "the lazy matmuls alone"))

    print(f"{'case':34s} {'seconds':>8s} {'peak MiB':>9s}  result")
    print("-" * 80)
    for name, secs, mib, note in rows:
        print(f"{name:34s} {secs:8.3f} {mib:9.1f}  {note}")


if __name__ == "__main__":
    main()
