"""Zero-shot tag-bridge retriever on the shared real collections: before / after table, ablation,
query by example, search time. Needs ../shared (or $ATRLIB_SHARED).

    .venv/bin/python benchmarks/bench_zeroshot.py            # MiniLM rows (+ mpnet rows when installed)
    .venv/bin/python benchmarks/bench_zeroshot.py --markdown # the README table as markdown

Queries are the distinct captions of each collection; every clip with that exact caption is
relevant (atrlib.retrieval.metrics.label_queries). CIs: delete-one jackknife 95 %; the
p value is a paired bootstrap test (10,000 resamples) of after - before on per-query AP@10.
Settings were chosen on gcompris_sounds (label temperature, description weight) or by
reasoning (all others); animals and clotho_mini only confirm.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


import atrlib  # noqa: E402,F401
from atrlib.experiments.zeroshot import (chance_scores, compare, dataset_queries, fmt_ci, score_table_row,  # noqa: E402
                                         shared_real_sets)
from atrlib.paths import shared_dir  # noqa: E402
from atrlib.retrieval.tagbridge import TagBridgeConfig, TagBridgeRetriever, tagbridge_v1_config  # noqa: E402


def systems(with_mpnet: bool):
    out = [
        ("before: v1 (names, bridge)", tagbridge_v1_config()),
        ("v1 + label-space scoring", tagbridge_v1_config(scoring="labels")),
        ("v1 + label-space + synonyms", tagbridge_v1_config(scoring="labels", label_text="synonyms")),
        ("after: default (+ ontology descriptions)", TagBridgeConfig()),
        ("default, bridge scoring", TagBridgeConfig(scoring="bridge")),
    ]
    if with_mpnet:
        out += [("v1 with mpnet text tower", tagbridge_v1_config(text_tower="mpnet")),
                ("after, mpnet text tower", TagBridgeConfig(text_tower="mpnet"))]
    return out


def mpnet_available() -> bool:
    try:
        from atrlib.models.mpnet import find_parts, mpnet_path

        return bool(os.environ.get("ATRLIB_MPNET")) or bool(find_parts()) or mpnet_path().is_dir()
    except (FileNotFoundError, ImportError):
        return False


def share_towers(r: TagBridgeRetriever, pool: dict) -> TagBridgeRetriever:
    key = r.cfg.text_tower
    if "tagger" in pool:
        r._tagger = pool["tagger"]
    if key in pool:
        r._text = pool[key]
    pool.setdefault("tagger", r.tagger)
    pool.setdefault(key, r.text_tower)
    return r


def query_by_example(r: TagBridgeRetriever, sets) -> dict:
    """gcompris farm animals as examples, ranking the 10 animal recordings (and back):
    the same species is the relevant clip."""
    g, a = sets["gcompris_sounds"], sets["animals"]
    species = {"cat": "cat", "cow": "cow", "dog": "dog", "duck": "duck", "horse": "horse", "owl": "owl", "pig": "pig",
               "sheep": "sheep", "chickens": "rooster"}
    g_idx = {c: i for i, c in enumerate(g.captions_flat()) if c in species}
    a_names = [p.rsplit("/", 1)[-1].split(".")[0] for p in a.audio_paths]
    ex = [g.audio_paths[g_idx[c]] for c in species]
    rel = [[a_names.index(species[c])] for c in species]
    fwd = r.audio_similarity(ex, a.audio_paths, progress=False)                 # (9, 10)
    back = r.audio_similarity(a.audio_paths, ex, progress=False)                # (10, 9)
    rel_back = [[list(species.values()).index(n)] if n in species.values() else [] for n in a_names]
    keep = [i for i, rr in enumerate(rel_back) if rr]
    return {"gcompris -> animals": (fwd, rel), "animals -> gcompris": (back[keep], [rel_back[i] for i in keep])}


def timing(sets, pool) -> dict:
    """Cold tagging time per clip (no cache) and per-query search time over a warm collection."""
    import tempfile

    from atrlib.audio.cache import FeatureCache

    r = share_towers(TagBridgeRetriever(TagBridgeConfig(), cache=FeatureCache(tempfile.mkdtemp(), namespace="t")), pool)
    r.label_embeddings()
    paths = [p for d in sets.values() for p in d.audio_paths]
    t0 = time.perf_counter()
    r.embed_audio(paths, progress=False)
    per_clip = (time.perf_counter() - t0) / len(paths)
    queries = [q for d in sets.values() for q in dataset_queries(d)[0]]
    r.similarity(queries[:2], paths, progress=False)                            # warm
    t0 = time.perf_counter()
    r.similarity(queries, paths, progress=False)
    per_query = (time.perf_counter() - t0) / len(queries)
    from atrlib.audio.io import audio_info

    seconds = sum(audio_info(p)[0] for p in paths)
    return {"clips": len(paths), "audio_s": seconds, "per_clip_s": per_clip, "queries": len(queries),
            "per_query_s": per_query}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--markdown", action="store_true", help="print the before/after table as markdown")
    p.add_argument("--no-mpnet", action="store_true", help="skip the mpnet rows even when installed")
    p.add_argument("--no-timing", action="store_true")
    args = p.parse_args(argv)
    shared = shared_dir()
    if shared is None:
        print("needs ../shared (or $ATRLIB_SHARED): the real collections are not here", file=sys.stderr)
        return 2
    warnings.filterwarnings("ignore")
    sets = shared_real_sets(shared)
    pooled_paths = [p for d in sets.values() for p in d.audio_paths]
    pooled_caps, pooled_idx, off = [], [], 0
    for d in sets.values():
        pooled_caps += d.captions_flat()
        pooled_idx += [off + i for i in d.caption_clip_index()]
        off += len(d)
    from atrlib.retrieval.metrics import label_queries

    evals = {name: (dataset_queries(d), d.audio_paths) for name, d in sets.items()}
    evals["all three pooled"] = (label_queries(pooled_caps, pooled_idx), pooled_paths)

    pool: dict = {}
    sims = {}
    for sname, cfg in systems(with_mpnet=not args.no_mpnet and mpnet_available()):
        r = share_towers(TagBridgeRetriever(cfg), pool)
        sims[sname] = {e: r.similarity(q[0], paths, progress=False) for e, (q, paths) in evals.items()}
    before, after = "before: v1 (names, bridge)", "after: default (+ ontology descriptions)"

    print("\n## Text-to-audio, before / after (jackknife 95 % CI; p = paired bootstrap on AP@10)\n")
    print("| data | clips | queries | system | R@1 | R@10 | mAP@10 | chance R@1 / R@10 / mAP@10 | p (after vs before) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for e, ((queries, rel), paths) in evals.items():
        ch = chance_scores(rel, len(paths))
        for sname in (before, after):
            row = score_table_row(sims[sname][e], rel)
            pv = f"{compare(sims[after][e], sims[before][e], rel)['p_value']:.3f}" if sname == after else ""
            print(f"| {e} | {len(paths)} | {len(queries)} | {sname.split(':')[0]} | {fmt_ci(row['R@1'])} | "
                  f"{fmt_ci(row['R@10'])} | {fmt_ci(row['mAP@10'])} | {ch['R@1']:.3f} / {ch['R@10']:.3f} / "
                  f"{ch['mAP@10']:.3f} | {pv} |")

    print("\n## Ablation: mAP@10 per collection (diff vs before, paired bootstrap p)\n")
    names = list(evals)
    print("| system | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for sname in sims:
        cells = []
        for e in names:
            (queries, rel), _ = evals[e]
            v = score_table_row(sims[sname][e], rel)["mAP@10"]["value"]
            t = compare(sims[sname][e], sims[before][e], rel)
            cells.append(f"{v:.3f}" + ("" if sname == before else f" ({t['diff']:+.3f}, p {t['p_value']:.2f})"))
        print(f"| {sname} | " + " | ".join(cells) + " |")

    print("\n## Query by example (cosine of tag vectors; same species relevant)\n")
    print("| direction | queries × clips | R@1 | mAP@10 | chance mAP@10 |")
    print("|---|---|---|---|---|")
    r = share_towers(TagBridgeRetriever(TagBridgeConfig()), pool)   # tag vectors: the same for every scoring
    for direction, (sim, rel) in query_by_example(r, sets).items():
        row = score_table_row(sim, rel)
        print(f"| {direction} | {sim.shape[0]} × {sim.shape[1]} | {fmt_ci(row['R@1'])} | "
              f"{fmt_ci(row['mAP@10'])} | {chance_scores(rel, sim.shape[1])['mAP@10']:.3f} |")

    if not args.no_timing:
        t = timing(sets, pool)
        print(f"\n## Search time on this CPU ({os.cpu_count()} cores)\n")
        print(f"- tagging (cold, no cache): {t['per_clip_s'] * 1000:.0f} ms per clip "
              f"({t['clips']} clips, {t['audio_s']:.0f} s of audio, {t['per_clip_s'] * t['clips'] / t['audio_s'] * 1000:.0f} ms per audio second)")
        print(f"- search with clips cached: {t['per_query_s'] * 1000:.1f} ms per query "
              f"({t['queries']} queries against {t['clips']} clips, text embedding included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
