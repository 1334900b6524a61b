"""Every choice is made on the validation split: systems whose validation and test orderings
disagree, and the chosen loss / method / single system / ensemble size / k-fold reference
must follow validation in the tables, the metrics keys and the sentences of the reports."""
import numpy as np
import pandas as pd
import pytest

from atrlib.experiments import ensembles as X
from atrlib.experiments.loss_ablation import ablation_metrics, chosen_loss, summarise
from atrlib.files import write_json
from atrlib.retrieval import ensemble as E
from atrlib.retrieval.metrics import per_query_metrics
from atrlib.retrieval.simfile import SimilarityMatrix, save_similarity
from atrlib.runs import report_text as T

N = 30  # clips; one caption per clip


def _sm(strength: float, seed: int, split: str) -> SimilarityMatrix:
    """Captions × clips scores: the diagonal (true pairs) raised by ``strength`` over noise."""
    rng = np.random.default_rng(seed)
    sim = rng.normal(size=(N, N)) + strength * np.eye(N)
    ids = [f"{split}-c{i}" for i in range(N)]
    return SimilarityMatrix(sim.astype(np.float32), [f"{split}-q{i}" for i in range(N)], ids, [[i] for i in range(N)],
                            {"split": split})


def _map(sm) -> float:
    return float(per_query_metrics(sm.sim, sm.relevant)["AP@10"].mean())


@pytest.fixture(scope="module")
def systems():
    """A: best on validation, near chance on test. B: the reverse. C: in between on both."""
    strengths = {"A": (4.0, 0.0), "B": (0.0, 4.0), "C": (1.5, 1.5)}
    val = {n: _sm(v, seed=i, split="validation") for i, (n, (v, _)) in enumerate(strengths.items())}
    test = {n: _sm(t, seed=10 + i, split="test") for i, (n, (_, t)) in enumerate(strengths.items())}
    for sm in val.values():
        sm.meta["role"] = "validation"
    val_order = sorted(val, key=lambda n: -_map(val[n]))
    test_order = sorted(test, key=lambda n: -_map(test[n]))
    assert val_order[0] == "A" and test_order[0] == "B"  # the orderings really disagree
    return val, test


def test_choose_on_validation_takes_the_first_best_and_skips_nan():
    assert E.choose_on_validation({"x": 0.2, "y": 0.5, "z": 0.5}) == "y"
    assert E.choose_on_validation({"x": float("nan"), "y": 0.1}) == "y"
    with pytest.raises(ValueError):
        E.choose_on_validation({})


def test_ensemble_study_follows_validation(systems, tmp_path):
    val, test = systems
    single = X.systems_table(val, test)
    assert list(single.index)[0] == "A"                         # best single system: by validation
    assert single["test mAP@10"].idxmax() == "B"               # ... not the test winner
    fits = X.fit_methods(val, norm="zscore")
    results = X.results_table(fits, val, test, best_single="A")
    curve = X.size_curve(val, test, list(single.index), norm="zscore")
    v = X.verdict(results, curve)

    expected = results.index[int(np.argmax(results["val mAP@10"].to_numpy()))]  # first max of the val column
    assert v["method"] == expected
    assert v["test_mAP@10"] == pytest.approx(results.loc[expected, "test mAP@10"])
    assert v["test_best"] != v["method"]                        # the test ordering disagrees and is not used
    # the size n peaks on validation at 1 (A alone); adding B helps only on test
    assert curve.attrs["chosen_n"] == int(curve.loc[curve["val mAP@10"].idxmax(), "n"]) == 1
    assert curve["test mAP@10"].idxmax() != curve["val mAP@10"].idxmax()

    m = X.ensemble_metrics(single, results, fits, curve, v, notes=[])
    assert m["best_method"] == expected and m["best_single"] == "A" and m["chosen_on"] == "validation"
    assert m["size_curve"]["chosen_n"] == 1
    for key, value in m.items():  # no "best" key names a test-ordering winner
        if key.startswith("best") and isinstance(value, str):
            assert value in (expected, "A"), (key, value)
    text = "\n".join(T.learned_ensemble(v))
    assert f"**{expected}**" in text and "happens to score highest" in text
    assert f"**{v['test_best']}**" not in text


def _fake_run(folder, val_sm, test_sm):
    folder.mkdir(parents=True)
    save_similarity(folder / "sim_validation.npz", val_sm)
    save_similarity(folder / "sim_test.npz", test_sm)
    t = {"mAP@10": _map(test_sm), "R@1": 0.0, "R@10": 0.0}
    write_json(folder / "metrics.json", {"test": {"t2a": t}, "val": {"t2a": {"mAP@10": _map(val_sm)}}})
    write_json(folder / "history.json", [{"epoch": 1, "train_loss": 1.0, "val_mAP@10": _map(val_sm)}])


def test_ablation_chooses_the_loss_on_validation(systems, tmp_path):
    val, test = systems
    runs = {}
    for loss, sys_ in (("infonce", "B"), ("triplet_sum", "A"), ("pair_loss", "C")):
        _fake_run(tmp_path / f"{loss}-s0", val[sys_], test[sys_])
        runs[loss] = [tmp_path / f"{loss}-s0"]
    table = summarise(runs, baseline="infonce", n=500)
    assert chosen_loss(table) == "triplet_sum" == table.index[0]     # best on validation
    assert table["mAP@10"].idxmax() == "infonce"                      # best on test: reported only
    m = ablation_metrics(table, "infonce", runs)
    assert m["best_loss"] == "triplet_sum" and m["chosen_on"] == "validation"
    assert m["best_loss_test_mAP@10"] == pytest.approx(_map(test["A"]))
    assert m["best_loss_p_value"] == pytest.approx(table.loc["triplet_sum", "p_value"])
    assert 0 <= m["best_loss_p_value"] <= 1
    text = "\n".join(T.learned_ablation(table, "infonce", chosen_loss(table)))
    assert "**triplet_sum**" in text and "infonce happens to score highest" in text


def test_intervals_in_the_tables_stay_in_range(systems):
    val, test = systems
    single = X.systems_table(val, test)
    assert (single["low"] >= 0).all() and (single["high"] <= 1).all()
    assert (single["low"] <= single["test mAP@10"]).all() and (single["test mAP@10"] <= single["high"]).all()


def test_coordinate_ascent_is_left_out_for_many_systems():
    """Greedy and top-k scale to a 42-model ensemble; coordinate ascent only up to the cap."""
    rng = np.random.default_rng(0)
    n_q = 30
    rel = [[i] for i in range(n_q)]
    val = {f"s{i}": SimilarityMatrix(rng.normal(size=(n_q, n_q)).astype(np.float32), [f"q{j}" for j in range(n_q)],
                                     [f"c{j}" for j in range(n_q)], rel, {"split": "validation"}) for i in range(4)}
    few = X.fit_methods(val, coordinate_max_systems=4)
    many = X.fit_methods(val, coordinate_max_systems=3)
    assert "coordinate ascent" in few and "coordinate ascent" not in many
    assert {"greedy", "top-3"} <= set(many) and "grid" in many
