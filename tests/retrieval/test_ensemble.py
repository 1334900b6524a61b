"""atrlib.retrieval.ensemble on synthetic systems whose strengths are known by construction."""
import numpy as np
import pytest

import atrlib  # noqa: F401  (thread settings before torch)
from atrlib.retrieval.ensemble import (
    EnsembleResult,
    align,
    apply,
    compare_to_best,
    coordinate_ascent,
    greedy_selection,
    grid_search,
    normalize,
    reciprocal_rank_fusion,
    top_k_systems,
    weighted_sum,
)
from atrlib.retrieval.metrics import retrieval_scores
from atrlib.retrieval.simfile import SimilarityMatrix

N_Q, N_I = 200, 50


def make_systems(split: str, seed: int) -> dict:
    """"a" is sharp on the first half of the queries, "b" on the second, "r" is noise.

    Elsewhere a and b carry a weak signal, so each alone is mediocre and together strong.
    """
    rng = np.random.default_rng(seed)
    rel = [q % N_I for q in range(N_Q)]
    onehot = np.zeros((N_Q, N_I))
    onehot[np.arange(N_Q), rel] = 1.0
    first = (np.arange(N_Q) < N_Q // 2)[:, None]
    strength = {"a": np.where(first, 4.0, 0.5), "b": np.where(first, 0.5, 4.0), "r": 0.0}
    qids = [f"{split}_caption{q}" for q in range(N_Q)]
    iids = [f"clip{i}.wav" for i in range(N_I)]
    out = {}
    for name in ("a", "b", "r"):
        sim = rng.standard_normal((N_Q, N_I)) + strength[name] * onehot  # (Q, I)
        out[name] = SimilarityMatrix(sim.astype(np.float32), qids, iids, [[r] for r in rel],
                                     {"system": name, "split": split, "dataset": "synthetic"})
    return out


@pytest.fixture(scope="module")
def val():
    return make_systems("validation", seed=0)


@pytest.fixture(scope="module")
def evaluation():
    return make_systems("evaluation", seed=1)


def map10(sm) -> float:
    return retrieval_scores(sm.sim, sm.relevant)["mAP@10"]


# ------------------------------------------------------------------ normalisation, sums, RRF
def test_normalize_by_hand():
    row = np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]])
    z = normalize(row, "zscore")
    np.testing.assert_allclose(z[0], [-np.sqrt(1.5), 0.0, np.sqrt(1.5)])
    np.testing.assert_array_equal(z[1], [0.0, 0.0, 0.0])
    np.testing.assert_allclose(normalize(row, "minmax"), [[0, 0.5, 1], [0, 0, 0]])
    # rank: top item 1, last 0; ties broken by lower index first (as in the metrics)
    np.testing.assert_allclose(normalize(row, "rank"), [[0, 0.5, 1], [1, 0.5, 0]])
    np.testing.assert_allclose(normalize(row, "rrf", rrf_k=60)[0], [1 / 63, 1 / 62, 1 / 61])
    none = normalize(row, "none")
    np.testing.assert_array_equal(none, row)
    assert none is not row
    with pytest.raises(ValueError, match="unknown normalisation"):
        normalize(row, "softmax")


def test_weighted_sum_and_rrf_by_hand():
    s1 = np.array([[0.9, 0.5, 0.1]])  # ranks 1, 2, 3
    s2 = np.array([[0.2, 0.1, 0.8]])  # ranks 2, 3, 1
    np.testing.assert_allclose(weighted_sum([s1, s2], [0.25, 0.75]), 0.25 * s1 + 0.75 * s2)
    np.testing.assert_allclose(weighted_sum({"x": s1, "y": s2}, {"y": 2.0}), 2 * s2)  # x weighs 0
    with pytest.raises(KeyError, match="not given"):
        weighted_sum({"x": s1}, {"z": 1.0})
    np.testing.assert_allclose(reciprocal_rank_fusion([s1, s2], k=1),
                               [[1 / 2 + 1 / 3, 1 / 3 + 1 / 4, 1 / 4 + 1 / 2]])
    # ranks only: a monotone transform of a system changes nothing
    np.testing.assert_array_equal(reciprocal_rank_fusion([s1, s2]), reciprocal_rank_fusion([np.exp(5 * s1), s2]))


# ------------------------------------------------------------------ alignment
def test_align_reorders_same_ids(val):
    a = val["a"]
    qperm, iperm = np.random.default_rng(0).permutation(N_Q), np.random.default_rng(1).permutation(N_I)
    inv = np.argsort(iperm)
    shuffled = SimilarityMatrix(a.sim[np.ix_(qperm, iperm)], [a.query_ids[i] for i in qperm],
                                [a.item_ids[i] for i in iperm], [[int(inv[a.relevant[q][0]])] for q in qperm],
                                dict(a.meta))
    out = align({"a": a, "a_shuffled": shuffled})
    np.testing.assert_array_equal(out["a_shuffled"].sim, a.sim)
    assert out["a_shuffled"].relevant == a.relevant
    assert out["a_shuffled"].item_ids == a.item_ids


def test_align_refuses_mismatch(val):
    a = val["a"]
    other = SimilarityMatrix(a.sim, a.query_ids, a.item_ids[:-1] + ["stranger.wav"], a.relevant, {})
    with pytest.raises(ValueError, match=r"'a' and 'b2'.*item.*'clip49.wav'"):
        align({"a": a, "b2": other})
    shorter = SimilarityMatrix(a.sim[:-1], a.query_ids[:-1], a.item_ids, a.relevant[:-1], {})
    with pytest.raises(ValueError, match=r"query.*'validation_caption199'"):
        align({"a": a, "short": shorter})
    wrong_rel = SimilarityMatrix(a.sim, a.query_ids, a.item_ids, [[0]] * N_Q, {})
    with pytest.raises(ValueError, match="disagree on the relevant items"):
        align({"a": a, "wrong": wrong_rel})
    dup = SimilarityMatrix(a.sim, a.query_ids, a.item_ids[:-1] + ["clip0.wav"], a.relevant, {})
    with pytest.raises(ValueError, match="repeat an id.*clip0.wav"):
        align({"a": a, "dup": dup})


# ------------------------------------------------------------------ weight fitting
def test_grid_search_matches_brute_force_and_ignores_noise(val):
    res = grid_search(val, step=0.1, norm="zscore")
    assert isinstance(res, EnsembleResult) and len(res.trace) == 66  # C(12, 2) points
    assert res.weights["r"] <= 0.1
    assert res.weights["a"] >= 0.3 and res.weights["b"] >= 0.3
    assert sum(res.weights.values()) == pytest.approx(1.0)
    # independent check: every grid point scored by hand with weighted_sum + retrieval_scores
    best = -1.0
    for i in range(11):
        for j in range(11 - i):
            w = {"a": i / 10, "b": j / 10, "r": (10 - i - j) / 10}
            best = max(best, retrieval_scores(weighted_sum(val, w, "zscore"), val["a"].relevant)["mAP@10"])
    assert res.val_score == pytest.approx(best, abs=1e-12)
    refit = apply(res, val, allow_fit_data=True)
    assert map10(refit) == pytest.approx(res.val_score, abs=1e-6)


def test_other_fitters_give_noise_near_zero_weight(val):
    ca = coordinate_ascent(val, step=0.1, norm="zscore")
    gr = greedy_selection(val, n_iter=10, norm="zscore")
    tk = top_k_systems(val, k=2, norm="zscore")
    for res in (ca, gr):
        assert res.weights["r"] <= 0.1, res
        assert res.weights["a"] >= 0.3 and res.weights["b"] >= 0.3, res
        assert res.val_score > max(map10(val["a"]), map10(val["b"])) + 0.1
    assert tk.weights == {"a": 0.5, "b": 0.5, "r": 0.0}
    assert gr.trace[0]["added"] in ("a", "b")


def test_ensemble_beats_both_on_test(val, evaluation):
    res = grid_search(val, step=0.1, norm="zscore")
    ens = apply(res, evaluation, name="grid")
    singles = {n: map10(sm) for n, sm in evaluation.items()}
    assert singles["r"] < 0.15 and 0.4 < singles["a"] < 0.8 and 0.4 < singles["b"] < 0.8
    assert map10(ens) > max(singles.values()) + 0.2
    assert ens.meta["ensemble"]["norm"] == "zscore" and ens.query_ids == evaluation["a"].query_ids
    report = compare_to_best(evaluation, ens)
    assert report["best_system"] == max(singles, key=singles.get)
    assert report["ensemble"]["mAP@10"]["value"] == pytest.approx(map10(ens))
    assert report["ensemble"]["mAP@10"]["low"] > report["best"]["mAP@10"]["high"]
    assert report["paired"]["diff"] == pytest.approx(map10(ens) - max(singles.values()))
    assert report["paired"]["p_value"] < 0.001
    # rank-only fusion throws away how sure each system is: here the weak system's ranks
    # drag the sharp one down, so RRF loses to the score-based ensemble
    rrf = apply({"a": 1.0, "b": 1.0}, evaluation, norm="rrf")
    assert map10(rrf) < map10(ens) - 0.2


def test_rrf_fuses_independent_systems():
    """Three equally good systems with independent errors: fusing their ranks helps a lot."""
    rng = np.random.default_rng(2)
    rel = [[q % N_I] for q in range(N_Q)]
    onehot = np.zeros((N_Q, N_I))
    onehot[np.arange(N_Q), [r[0] for r in rel]] = 1.0
    sims = [rng.standard_normal((N_Q, N_I)) + 2.0 * onehot for _ in range(3)]  # (Q, I) each
    singles = [retrieval_scores(s, rel)["mAP@10"] for s in sims]
    fused = retrieval_scores(reciprocal_rank_fusion(sims, k=60), rel)["mAP@10"]
    assert max(singles) < 0.65 and fused > max(singles) + 0.2


def test_fitting_never_sees_test(val, evaluation):
    def pipeline(val_systems, test_systems):
        res = grid_search(val_systems, step=0.1, norm="zscore")
        return res, apply(res, test_systems)

    res_clean, ens_clean = pipeline(val, evaluation)
    rng = np.random.default_rng(9)
    corrupted = {n: SimilarityMatrix(rng.standard_normal((N_Q, N_I)).astype(np.float32), sm.query_ids,
                                     sm.item_ids, sm.relevant, sm.meta) for n, sm in evaluation.items()}
    res_bad, ens_bad = pipeline(val, corrupted)
    assert res_bad.weights == res_clean.weights and res_bad.val_score == res_clean.val_score
    assert map10(ens_bad) < 0.2 < map10(ens_clean)  # the test data did change
    # guards: applying fitted weights to the fit queries, or fitting on a test split, is refused
    with pytest.raises(ValueError, match="fitted on"):
        apply(res_clean, val)
    with pytest.raises(ValueError, match="validation split only"):
        grid_search(evaluation, step=0.5)


def test_clear_errors(val):
    with pytest.raises(ValueError, match="step must divide 1"):
        grid_search(val, step=0.3)
    with pytest.raises(ValueError, match="metric must be"):
        grid_search(val, metric="mean_rank")
    with pytest.raises(ValueError, match="would score"):
        grid_search(val, step=0.01, max_points=100)
    with pytest.raises(KeyError, match="missing from test_systems"):
        apply({"a": 0.5, "zz": 0.5}, val)
    with pytest.raises(ValueError, match="k must be"):
        top_k_systems(val, k=4)
