"""atrlib.retrieval.metrics against hand-computed cases, a brute-force loop version and torchmetrics."""
import itertools

import numpy as np
import pytest

import atrlib  # noqa: F401  (thread settings before torch)
import torch
from scipy.stats import norm

from atrlib.retrieval.metrics import (
    a2t_relevance,
    bootstrap_ci,
    evaluate_both,
    jackknife_ci,
    paired_test,
    per_query_metrics,
    retrieval_scores,
    scores_with_ci,
    t2a_relevance,
)


# ------------------------------------------------------------------ independent reference
def brute_force(sim, relevant, ks=(1, 5, 10), map_at=10, graded=None):
    """Plain-python loops: sort each row by (-score, item index), then count."""
    out = {f"R@{k}": [] for k in ks}
    out[f"AP@{map_at}"] = []
    out["rank"] = []
    for q, row in enumerate(np.asarray(sim).tolist()):
        order = sorted(range(len(row)), key=lambda i: (-row[i], i))
        rel = list(relevant[q])
        weight = dict(zip(rel, graded[q] if graded is not None else [1.0] * len(rel)))
        total = sum(weight.values())
        for k in ks:
            out[f"R@{k}"].append(sum(weight[i] for i in order[:k] if i in weight) / total)
        hits, ap = 0, 0.0
        for pos, item in enumerate(order[:map_at], start=1):
            if item in weight:
                hits += 1
                ap += weight[item] * hits / pos
        out[f"AP@{map_at}"].append(ap / total)
        out["rank"].append(min(order.index(i) + 1 for i in rel))
    return {k: np.array(v) for k, v in out.items()}


def random_case(seed, n_queries=40, n_items=30, max_rel=1, ties=False, graded=False):
    rng = np.random.default_rng(seed)
    if ties:
        sim = rng.integers(0, 4, size=(n_queries, n_items)).astype(np.float32)  # many ties
    else:
        sim = rng.standard_normal((n_queries, n_items)).astype(np.float32)
    relevant = [
        sorted(rng.choice(n_items, size=rng.integers(1, max_rel + 1), replace=False).tolist())
        for _ in range(n_queries)
    ]
    weights = [rng.uniform(0.1, 3.0, size=len(r)).tolist() for r in relevant] if graded else None
    return sim, relevant, weights


# ------------------------------------------------------------------ hand-computed cases
def test_single_relevant_by_hand():
    sim = np.array([[0.9, 0.1, 0.5, 0.3]])  # order: items 0, 2, 3, 1
    out = retrieval_scores(sim, [[2]], ks=(1, 2, 5))
    assert out == {"R@1": 0.0, "R@2": 1.0, "R@5": 1.0, "mAP@10": 0.5,
                   "mean_rank": 2.0, "median_rank": 2.0, "n_queries": 1}
    # rank 4 > map_at=3 -> AP 0
    assert retrieval_scores(sim, [[1]], map_at=3)["mAP@3"] == 0.0


def test_multiple_relevant_by_hand():
    sim = np.linspace(1.0, 0.0, 12)[None, :]  # item i has rank i + 1
    # relevant at ranks 2, 4, 12: AP@10 = (1/2 + 2/4) / 3 = 1/3 (rank 12 is outside top 10)
    out = retrieval_scores(sim, [[1, 3, 11]])
    assert out["mAP@10"] == pytest.approx(1 / 3)
    assert (out["R@1"], out["R@5"], out["R@10"]) == (0.0, pytest.approx(2 / 3), pytest.approx(2 / 3))
    assert out["mean_rank"] == 2.0
    # ranks 1, 2, 3 of 3 relevant -> perfect
    assert retrieval_scores(sim, [[0, 1, 2]])["mAP@10"] == pytest.approx(1.0)
    # mAP@16 (DCASE 2025): ranks 2, 4, 12 -> (1/2 + 2/4 + 3/12) / 3
    assert retrieval_scores(sim, [[1, 3, 11]], map_at=16)["mAP@16"] == pytest.approx((0.5 + 0.5 + 0.25) / 3)


def test_ties_break_by_item_index():
    sim = np.array([[0.5, 0.5, 0.5, 0.5], [0.2, 0.7, 0.7, 0.1]])
    pq = per_query_metrics(sim, [[3], [2]])
    assert pq["rank"].tolist() == [4, 2]  # lower index first among equal scores
    pq = per_query_metrics(sim, [[0], [1]])
    assert pq["rank"].tolist() == [1, 1]
    assert pq["AP@10"].tolist() == [1.0, 1.0]
    # agrees with numpy's stable argsort of the negated scores
    for row in sim:
        order = np.argsort(-row, kind="stable")
        for item in range(4):
            rank = int(np.nonzero(order == item)[0][0]) + 1
            assert per_query_metrics(row[None], [[item]])["rank"][0] == rank


def test_graded_by_hand():
    sim = np.array([[0.9, 0.8, 0.7, 0.6]])
    # relevant: item 0 (rank 1, weight 2) and item 2 (rank 3, weight 1); W = 3
    out = retrieval_scores(sim, [[0, 2]], ks=(1, 3), graded=[[2.0, 1.0]])
    assert out["R@1"] == pytest.approx(2 / 3)
    assert out["R@3"] == pytest.approx(1.0)
    assert out["mAP@10"] == pytest.approx((2 * 1 / 1 + 1 * 2 / 3) / 3)
    # same without weights: (1 + 2/3) / 2
    assert retrieval_scores(sim, [[0, 2]])["mAP@10"] == pytest.approx((1 + 2 / 3) / 2)


def test_graded_ones_equal_binary_and_scale_free():
    sim, rel, w = random_case(3, max_rel=5, graded=True)
    binary = per_query_metrics(sim, rel)
    ones = per_query_metrics(sim, rel, graded=[[1.0] * len(r) for r in rel])
    scaled = per_query_metrics(sim, rel, graded=[[7.0 * x for x in ws] for ws in w])
    plain = per_query_metrics(sim, rel, graded=w)
    for k in binary:
        np.testing.assert_array_equal(binary[k], ones[k])
        np.testing.assert_allclose(plain[k], scaled[k], rtol=1e-12)
    assert not np.allclose(plain["AP@10"], binary["AP@10"])  # the weights do matter


# ------------------------------------------------------------------ brute force
@pytest.mark.parametrize("max_rel", [1, 5])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("graded", [False, True])
def test_agrees_with_brute_force(max_rel, ties, graded):
    for seed in range(3):
        sim, rel, w = random_case(seed, max_rel=max_rel, ties=ties, graded=graded)
        ours = per_query_metrics(sim, rel, ks=(1, 5, 10), map_at=10, graded=w)
        ref = brute_force(sim, rel, ks=(1, 5, 10), map_at=10, graded=w)
        for key in ref:
            np.testing.assert_allclose(ours[key], ref[key], rtol=1e-12, atol=1e-12, err_msg=key)
        means = retrieval_scores(sim, rel, graded=w)
        assert means["mAP@10"] == pytest.approx(ref["AP@10"].mean(), abs=1e-12)
        assert means["median_rank"] == float(np.median(ref["rank"]))


def test_chunked_equals_unchunked_and_input_types():
    sim, rel, _ = random_case(5, n_queries=53, n_items=41, max_rel=4, ties=True)
    whole = per_query_metrics(sim, rel)
    for chunk in (1, 7, 53, 1000):
        part = per_query_metrics(sim, rel, chunk_size=chunk)
        for k in whole:
            np.testing.assert_array_equal(part[k], whole[k])
    as_torch = per_query_metrics(torch.from_numpy(sim), rel, chunk_size=5)
    for k in whole:
        np.testing.assert_array_equal(as_torch[k], whole[k])

    class Lazy:  # anything with .shape and row slices works: the matrix is never whole
        shape = sim.shape

        def __getitem__(self, rows):
            return sim[rows]

    lazy = per_query_metrics(Lazy(), rel, chunk_size=10)
    np.testing.assert_array_equal(lazy["AP@10"], whole["AP@10"])


def test_evaluate_both_directions():
    # 3 captions x 2 clips; captions 0, 1 -> clip 0, caption 2 -> clip 1
    sim = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.6]])
    cci = [0, 0, 1]
    assert t2a_relevance(cci) == [[0], [0], [1]]
    assert a2t_relevance(cci, 2) == [[0, 1], [2]]
    out = evaluate_both(sim, cci, ks=(1,))
    # t2a ranks 1, 2, 1
    assert out["t2a"]["R@1"] == pytest.approx(2 / 3)
    assert out["t2a"]["mAP@10"] == pytest.approx((1 + 0.5 + 1) / 3)
    # a2t: clip 0 ranks captions 0 (0.9), 2 (0.3), 1 (0.2): relevant at ranks 1, 3
    #      AP = (1/1 + 2/3) / 2, a hit at 1, half its captions at 1; clip 1 ranks 1 (0.8), 2 (0.6):
    #      caption 2 at rank 2, no hit at 1
    assert out["a2t"]["mAP@10"] == pytest.approx(((1 + 2 / 3) / 2 + 0.5) / 2)
    assert out["a2t"]["R@1"] == pytest.approx((1.0 + 0.0) / 2)        # the field's R@k: a hit rate
    assert out["a2t"]["CR@1"] == pytest.approx((0.5 + 0.0) / 2)       # caption recall: its own name
    assert out["a2t"]["n_queries"] == 2
    # random matrix: a2t equals brute force on the transpose
    rng = np.random.default_rng(0)
    cci = np.repeat(np.arange(20), 5)
    sim = rng.standard_normal((100, 20))
    out = evaluate_both(sim, cci)
    ref = brute_force(sim.T, a2t_relevance(cci, 20))
    assert out["a2t"]["mAP@10"] == pytest.approx(ref["AP@10"].mean(), abs=1e-12)
    assert out["a2t"]["CR@5"] == pytest.approx(ref["R@5"].mean(), abs=1e-12)


def mei_a2t(sim_t2a, caption_clip_index):
    """Mei et al.'s ``a2t`` ranking loop (audio-text_retrieval, tools/utils.py), re-typed for any
    number of captions per clip, with ties broken by caption index (the library's documented
    rule; their ``argsort(d)[::-1]`` leaves ties to the sort): per clip, the rank of its best
    caption decides R@k; AP@10 sums j / p over its captions in the top 10, divided by their count."""
    sim = np.asarray(sim_t2a, dtype=np.float64).T                  # (clips, captions)
    ranks, ap10 = np.zeros(len(sim)), np.zeros(len(sim))
    for index, d in enumerate(sim):
        inds = np.argsort(-d, kind="stable")
        mine = [j for j, c in enumerate(caption_clip_index) if c == index]
        rank, found = 1e20, []
        for i in mine:
            tmp = np.where(inds == i)[0][0]
            rank = min(rank, tmp)
            if tmp < 10:
                found.append(tmp + 1)
        found = np.sort(np.array(found))
        ap10[index] = np.sum(np.arange(1, len(found) + 1) / found) / len(mine) if len(found) else 0.0
        ranks[index] = rank
    return {f"R@{k}": len(np.where(ranks < k)[0]) / len(ranks) for k in (1, 5, 10)} | {"mAP@10": ap10.mean()}


@pytest.mark.parametrize("seed, ties", [(0, False), (1, True), (2, True), (3, False)])
def test_a2t_recall_is_the_fields_hit_rate(seed, ties):
    rng = np.random.default_rng(seed)
    n_clips, per_clip = 30, 5
    cci = np.repeat(np.arange(n_clips), per_clip)
    rng.shuffle(cci)
    sim = (rng.integers(0, 3, size=(len(cci), n_clips)).astype(np.float32) if ties   # many ties
           else rng.standard_normal((len(cci), n_clips)))
    out = evaluate_both(sim, cci)["a2t"]
    ref = mei_a2t(sim, cci)
    for k in ("R@1", "R@5", "R@10", "mAP@10"):
        assert out[k] == pytest.approx(ref[k], abs=1e-12), k
    assert out["R@1"] >= out["CR@1"] and out["R@10"] > out["CR@10"]  # a hit needs one caption, recall all five


def test_chance_is_exact():
    from math import comb

    from atrlib.retrieval.metrics import chance_scores, expected_recall_at

    n = 80
    one = chance_scores([[0]] * 7, n)                        # one relevant clip per caption (t2a)
    assert one["R@1"] == pytest.approx(1 / n) and one["R@10"] == pytest.approx(10 / n)
    assert one["mAP@10"] == pytest.approx(sum(1 / r for r in range(1, 11)) / n)   # the harmonic formula
    assert expected_recall_at(n, 5, 10, "hit") == pytest.approx(1 - comb(75, 10) / comb(80, 10))
    assert expected_recall_at(4, 5 - 1, 10, "hit") == 1.0 and expected_recall_at(8, 1, 10) == 1.0
    # against random rankings, drawn independently (a2t: five relevant captions of 400)
    rng = np.random.default_rng(0)
    n_caps, rel = 400, [list(range(5))]
    draws = np.array([(rng.permutation(n_caps)[:10] < 5).any() for _ in range(20000)])
    ch = chance_scores(rel, n_caps, recall="hit")
    assert abs(ch["R@10"] - draws.mean()) < 4 * np.sqrt(ch["R@10"] * (1 - ch["R@10"]) / len(draws))


def test_clear_errors():
    sim = np.zeros((2, 3))
    with pytest.raises(ValueError, match="query 1 has no relevant"):
        retrieval_scores(sim, [[0], []])
    with pytest.raises(ValueError, match="outside"):
        retrieval_scores(sim, [[0], [3]])
    with pytest.raises(ValueError, match="twice"):
        retrieval_scores(sim, [[0], [1, 1]])
    with pytest.raises(ValueError, match="3 rows but sim has 2"):
        retrieval_scores(sim, [[0], [1], [2]])
    bad = sim.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN.*row 1"):
        retrieval_scores(bad, [[0], [1]])
    with pytest.raises(ValueError, match="graded"):
        retrieval_scores(sim, [[0], [1]], graded=[[1.0], [0.0]])
    with pytest.raises(ValueError, match="outside"):
        a2t_relevance([0, 2], 2)


# ------------------------------------------------------------------ torchmetrics
def _torchmetrics(sim, rel, k, metric):
    from torchmetrics.retrieval import RetrievalMAP, RetrievalRecall

    m = RetrievalMAP(top_k=k) if metric == "map" else RetrievalRecall(top_k=k)
    target = np.zeros(sim.shape, dtype=bool)
    for q, r in enumerate(rel):
        target[q, r] = True
    indexes = torch.arange(sim.shape[0])[:, None].expand(sim.shape)
    return float(m(torch.from_numpy(sim).flatten(), torch.from_numpy(target).flatten(), indexes=indexes.flatten()))


def test_agrees_with_torchmetrics_single_relevant():
    # torchmetrics needs positive, tie-free scores (it treats scores <= 0 as irrelevant)
    rng = np.random.default_rng(1)
    sim = rng.uniform(0.01, 1.0, size=(60, 50)).astype(np.float64)
    rel = [[int(i)] for i in rng.integers(0, 50, size=60)]
    sim[np.arange(60), [r[0] for r in rel]] += 0.3  # make it a half-decent system
    ours = retrieval_scores(sim, rel)
    assert 0.1 < ours["mAP@10"] < 0.9
    assert ours["mAP@10"] == pytest.approx(_torchmetrics(sim, rel, 10, "map"), abs=1e-6)
    for k in (1, 5, 10):
        assert ours[f"R@{k}"] == pytest.approx(_torchmetrics(sim, rel, k, "recall"), abs=1e-6)


def test_torchmetrics_map_divides_by_hits_in_top_k():
    """Documented difference: with several relevant items torchmetrics' AP@k divides by the
    relevant items *found in the top k*; DCASE divides by *all* relevant items. Recall agrees."""
    from torchmetrics.functional.retrieval import retrieval_average_precision

    sim, rel, _ = random_case(7, n_queries=30, n_items=40, max_rel=6)
    sim = sim - sim.min() + 0.01
    pq = per_query_metrics(sim, rel)
    differ = 0
    for q in range(30):
        target = torch.zeros(40, dtype=torch.bool)
        target[rel[q]] = True
        tm = float(retrieval_average_precision(torch.from_numpy(sim[q]), target, top_k=10))
        hits = pq["R@10"][q] * len(rel[q])
        expected = pq["AP@10"][q] * len(rel[q]) / hits if hits > 0 else 0.0
        assert tm == pytest.approx(expected, abs=1e-6)
        differ += abs(tm - pq["AP@10"][q]) > 1e-6
    assert differ > 5
    for k in (1, 5, 10):
        assert retrieval_scores(sim, rel)[f"R@{k}"] == pytest.approx(_torchmetrics(sim, rel, k, "recall"), abs=1e-6)
    # and scores <= 0 make torchmetrics call a hit irrelevant; ranks do not care about the sign
    neg = np.array([[-0.1, -0.5, -0.9]])
    assert retrieval_scores(neg, [[0]])["mAP@10"] == 1.0
    assert _torchmetrics(neg, [[0]], 10, "map") == 0.0


# ------------------------------------------------------------------ intervals and tests
def test_jackknife_equals_normal_interval_and_loop():
    v = np.random.default_rng(0).random(200)
    ci = jackknife_ci(v)
    half = norm.ppf(0.975) * v.std(ddof=1) / np.sqrt(len(v))
    assert norm.ppf(0.975) == pytest.approx(1.96, abs=1e-4)
    assert ci["value"] == pytest.approx(v.mean())
    assert ci["low"] == pytest.approx(v.mean() - half, rel=1e-12)
    assert ci["high"] == pytest.approx(v.mean() + half, rel=1e-12)
    # the delete-one definition, with a loop
    n = len(v)
    theta = np.array([np.delete(v, i).mean() for i in range(n)])
    se = np.sqrt((n - 1) / n * ((theta - theta.mean()) ** 2).sum())
    assert ci["high"] - ci["value"] == pytest.approx(1.959963984540054 * se, rel=1e-10)


def test_intervals_contain_mean_and_shrink_with_n():
    rng = np.random.default_rng(1)
    small, large = rng.random(100), rng.random(10000)
    for fn in (jackknife_ci, bootstrap_ci):
        a, b = fn(small), fn(large)
        for ci in (a, b):
            assert ci["low"] < ci["value"] < ci["high"]
        ratio = (a["high"] - a["low"]) / (b["high"] - b["low"])
        assert 8 < ratio < 12.5  # width ~ 1/sqrt(n): sqrt(100) = 10
    j, bt = jackknife_ci(large), bootstrap_ci(large, n_boot=2000)
    assert (bt["high"] - bt["low"]) == pytest.approx(j["high"] - j["low"], rel=0.1)
    assert bootstrap_ci(small, seed=3) == bootstrap_ci(small, seed=3)
    with pytest.raises(ValueError, match="at least 2"):
        jackknife_ci([0.5])


def test_scores_with_ci():
    sim, rel, _ = random_case(2, n_queries=80, n_items=20, max_rel=2)
    plain = retrieval_scores(sim, rel)
    for method in ("jackknife", "bootstrap"):
        out = scores_with_ci(sim, rel, method=method, n_boot=300)
        assert set(out) == {"R@1", "R@5", "R@10", "mAP@10", "mean_rank"}
        for name, ci in out.items():
            assert ci["value"] == pytest.approx(plain[name])
            assert ci["low"] < ci["value"] < ci["high"]
    with pytest.raises(ValueError, match="method"):
        scores_with_ci(sim, rel, method="wald")


@pytest.mark.parametrize("method", ["bootstrap", "permutation"])
def test_paired_test(method):
    rng = np.random.default_rng(0)
    b = rng.random(300)
    better = np.clip(b + 0.1 + 0.05 * rng.standard_normal(300), 0, 1)
    out = paired_test(better, b, method=method, n=2000)
    assert out["diff"] == pytest.approx((better - b).mean())
    assert out["p_value"] < 0.01
    assert 0 < out["low"] < out["diff"] < out["high"]
    same = paired_test(b, b, method=method, n=2000)
    assert same["diff"] == 0.0 and same["p_value"] == 1.0
    noise = paired_test(rng.random(300), rng.random(300), method=method, n=2000)
    assert noise["p_value"] > 0.05 and noise["low"] < 0 < noise["high"]


def test_permutation_p_matches_exact_enumeration():
    d = np.array([0.3, -0.1, 0.25, 0.05, 0.2, -0.05, 0.15, 0.1, -0.2, 0.3])
    obs = abs(d.mean())
    signs = np.array(list(itertools.product([-1, 1], repeat=len(d))))
    exact = np.mean(np.abs(signs @ d / len(d)) >= obs - 1e-12)
    out = paired_test(d, np.zeros_like(d), method="permutation", n=20000)
    assert out["p_value"] == pytest.approx(exact, abs=0.01)
    assert 0.01 < exact < 0.2  # a case where the answer is neither 0 nor 1


def test_intervals_are_clipped_to_the_metric_range():
    """Nearly every query first-ranked: the jackknife interval of R@1 would pass 1.0 unclipped."""
    rng = np.random.default_rng(0)
    n = 40
    sim = rng.normal(size=(n, n))
    sim[np.arange(n), np.arange(n)] = 10.0                       # every caption's clip first ...
    sim[0, 0] = -10.0                                            # ... but one
    ci = scores_with_ci(sim, [[i] for i in range(n)])
    assert ci["R@1"]["value"] == pytest.approx(39 / 40)
    assert ci["R@1"]["high"] == 1.0 and 0.9 < ci["R@1"]["low"] < ci["R@1"]["value"]
    sd = np.std(np.r_[np.ones(39), 0.0], ddof=1) / np.sqrt(n)
    assert ci["R@1"]["value"] + 1.96 * sd > 1.0                  # the unclipped bound really spills over
    assert 1.0 <= ci["mean_rank"]["low"] <= ci["mean_rank"]["high"] <= n
