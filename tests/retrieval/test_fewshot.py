"""Few-shot adaptation starts at zero-shot, learns on its training pairs, picks its blend on validation."""
import numpy as np
import pytest

import atrlib  # noqa: F401

from atrlib.audio.cache import FeatureCache
from atrlib.experiments.zeroshot import chance_scores, expected_ap_at
from atrlib.retrieval.fewshot import FewShotAdapter, split_by_clip, subset
from atrlib.retrieval.metrics import label_queries, per_query
from atrlib.retrieval.tagbridge import TagBridgeRetriever


def _base(tmp_path):
    """4 labels; captions use words the label embeddings do not know ('woof' -> dog)."""
    r = TagBridgeRetriever(labels=("dog", "rain", "bell", "car"), cache=FeatureCache(tmp_path), description_weight=0.0)
    r._label_emb = np.eye(4, dtype=np.float32)
    rng = np.random.default_rng(0)
    vocab = {w: v / np.linalg.norm(v) for w, v in
             {"woof": np.array([0.2, 0.5, 0.5, 0.6]), "drip": np.array([0.5, 0.2, 0.6, 0.5]),
              "ding": np.array([0.6, 0.5, 0.2, 0.5]), "vroom": np.array([0.5, 0.6, 0.5, 0.2])}.items()}
    r.sentence_embeddings = lambda texts: np.array([vocab[t] for t in texts], dtype=np.float32)
    logits = {}
    for k in range(40):                                             # clip k shows class k % 4 clearly
        lg = rng.normal(-3.0, 0.3, size=(1, 4))
        lg[0, k % 4] = 2.0
        logits[f"clip{k}"] = lg.astype(np.float32)
    r._audio_arrays = lambda paths, progress=True: [logits[p] for p in paths]
    words = ["woof", "drip", "ding", "vroom"]
    return r, [words[k % 4] for k in range(40)], [f"clip{k}" for k in range(40)], list(range(40))


def test_adapter_starts_at_zero_shot_and_learns(tmp_path):
    base, caps, paths, idx = _base(tmp_path)
    tr, va, te = split_by_clip(40, seed=0)
    ad = FewShotAdapter(base, steps=0)
    ad.beta = 1.0                                                   # the untrained adapted score alone
    np.testing.assert_allclose(ad.similarity(caps[:4], paths, progress=False),
                               base.similarity(caps[:4], paths, progress=False), rtol=1e-5, atol=1e-7)
    tq, tp, ti = subset(caps, paths, idx, te)
    q, rel = label_queries(tq, ti)
    zs = per_query(base.similarity(q, tp, progress=False), rel)["AP@10"].mean()
    ad = FewShotAdapter(base, steps=200).fit(subset(caps, paths, idx, tr), subset(caps, paths, idx, va))
    fs = per_query(ad.similarity(q, tp, progress=False), rel)["AP@10"].mean()
    assert ad.beta > 0 and ad.val_scores[ad.beta] > ad.val_scores[0.0]
    assert fs > zs + 0.2, (zs, fs)                                  # the words are learned


def test_blend_zero_is_zero_shot(tmp_path):
    base, caps, paths, idx = _base(tmp_path)
    tr, va, _ = split_by_clip(40, seed=1)
    ad = FewShotAdapter(base, steps=20, blends=(0.0,)).fit(subset(caps, paths, idx, tr), subset(caps, paths, idx, va))
    assert ad.beta == 0.0
    np.testing.assert_array_equal(ad.similarity(caps, paths, progress=False), base.similarity(caps, paths, progress=False))


def test_split_by_clip_partitions():
    parts = split_by_clip(85, seed=3)
    assert [len(p) for p in parts] == [42, 17, 26]                  # cuts at round(42.5) = 42 and round(0.7 * 85 = 59.4999...) = 59
    assert sorted(np.concatenate(parts)) == list(range(85))
    with pytest.raises(ValueError):
        split_by_clip(10, fractions=(0.5, 0.2))


def test_chance_matches_brute_force():
    """E[AP@10] and E[R@k] against every permutation of 6 items with 2 relevant."""
    from itertools import permutations

    n, rel = 6, [[1, 4]]
    aps, r1 = [], []
    for perm in permutations(range(n)):
        s = np.empty(n)
        s[list(perm)] = -np.arange(n)                               # item perm[0] ranks first
        m = per_query(s[None], rel)
        aps.append(m["AP@10"][0])
        r1.append(m["R@1"][0])
    assert expected_ap_at(n, 2, 10) == pytest.approx(np.mean(aps), rel=1e-12)
    ch = chance_scores(rel, n)
    assert ch["R@1"] == pytest.approx(np.mean(r1)) and ch["R@10"] == 1.0
    assert chance_scores([[0]], 10)["mAP@10"] == pytest.approx(np.mean(1 / np.arange(1, 11)))  # 0.293


def test_label_queries_group_identical_captions():
    q, rel = label_queries(["bark", "weird", "bark", "cat"], [0, 1, 2, 3])
    assert q == ["bark", "weird", "cat"] and rel == [[0, 2], [1], [3]]
