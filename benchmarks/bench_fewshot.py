"""Few-shot adaptation vs zero-shot on the shared real collections, pooled and split by clip.

    .venv/bin/python benchmarks/bench_fewshot.py [--seeds 5]

The 85 clips of animals + clotho_mini + gcompris_sounds are pooled and split by clip (seeded
permutation: 50 % train, 20 % validation, 30 % test). The adapter (atrlib.retrieval.fewshot) trains on
train and picks its blend with zero-shot on validation (``--select val``), or picks the blend by
4-fold cross-validation over train + validation and then trains on both (``--select cv``,
default); it is scored on the test clips only
(test captions against test clips; every test clip with the exact caption is relevant).
p = paired bootstrap (10,000 resamples) of adapted - zero-shot on per-query AP@10.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

import atrlib  # noqa: E402,F401
from atrlib.experiments.zeroshot import paired_test, shared_real_sets
from atrlib.paths import shared_dir  # noqa: E402
from atrlib.retrieval.fewshot import FewShotAdapter, split_by_clip, subset  # noqa: E402
from atrlib.retrieval.metrics import label_queries, per_query  # noqa: E402
from atrlib.retrieval.metrics import jackknife_ci  # noqa: E402
from atrlib.retrieval.retrievers import get_retriever  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=5, help="number of seeded splits")
    p.add_argument("--select", choices=("cv", "val"), default="cv", help="how the blend with zero-shot is chosen")
    args = p.parse_args(argv)
    if shared_dir() is None:
        print("needs ../shared (or $ATRLIB_SHARED)", file=sys.stderr)
        return 2
    warnings.filterwarnings("ignore")
    sets = shared_real_sets(shared_dir())
    caps, paths, idx, off = [], [], [], 0
    for d in sets.values():
        caps += d.captions_flat()
        idx += [off + i for i in d.caption_clip_index()]
        paths += d.audio_paths
        off += len(d)
    base = get_retriever("tagbridge")
    print(f"blend chosen by: {args.select}\n")
    print("| split seed | train / val / test clips | test queries | beta | zero-shot mAP@10 | adapted mAP@10 | diff | p | fit s |")
    print("|---|---|---|---|---|---|---|---|---|")
    all0, all1 = [], []
    for seed in range(args.seeds):
        tr, va, te = split_by_clip(len(paths), seed=seed)
        t0 = time.perf_counter()
        if args.select == "val":
            ad = FewShotAdapter(base, seed=seed).fit(subset(caps, paths, idx, tr), subset(caps, paths, idx, va))
        else:
            ad = FewShotAdapter(base, seed=seed).fit_cv(subset(caps, paths, idx, np.concatenate([tr, va])))
        fit_s = time.perf_counter() - t0
        tcaps, tpaths, tidx = subset(caps, paths, idx, te)
        queries, rel = label_queries(tcaps, tidx)
        ap0 = per_query(base.similarity(queries, tpaths, progress=False), rel)["AP@10"]
        ap1 = per_query(ad.similarity(queries, tpaths, progress=False), rel)["AP@10"]
        t = paired_test(ap1, ap0, seed=seed) if np.any(ap1 != ap0) else {"diff": 0.0, "p_value": 1.0}
        all0.append(ap0)
        all1.append(ap1)
        print(f"| {seed} | {len(tr)} / {len(va)} / {len(te)} | {len(queries)} | {ad.beta:.2f} | {ap0.mean():.3f} | "
              f"{ap1.mean():.3f} | {t['diff']:+.3f} | {t['p_value']:.3f} | {fit_s:.1f} |")
    a0, a1 = np.concatenate(all0), np.concatenate(all1)
    t = paired_test(a1, a0, seed=0) if np.any(a1 != a0) else {"diff": 0.0, "p_value": 1.0}
    c0, c1 = jackknife_ci(a0), jackknife_ci(a1)
    print(f"\nall {args.seeds} test sets together ({len(a0)} queries): zero-shot mAP@10 {c0['value']:.3f} "
          f"({c0['low']:.3f}–{c0['high']:.3f}), adapted {c1['value']:.3f} ({c1['low']:.3f}–{c1['high']:.3f}), "
          f"diff {t['diff']:+.3f}, paired bootstrap p {t['p_value']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
