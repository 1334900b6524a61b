"""Top-K re-ranking: the pure function against a brute-force re-ordering, an oracle head, a
model's matching head on the embedded data, and ``--rerank K`` in ``search`` / ``evaluate``."""
import atrlib  # noqa: F401  (thread settings before torch)

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from atrlib.retrieval.metrics import per_query_metrics, retrieval_scores
from atrlib.retrieval.rerank import WEIGHTS, choose_weight, fuse, parse_weight, rerank, rerank_split


def brute_rerank_order(sim_row, scores_row, k):
    """Reference: the top k items by similarity, ordered by the head's score, then the rest by similarity."""
    by_sim = sorted(range(len(sim_row)), key=lambda i: -sim_row[i])
    top = sorted(by_sim[:k], key=lambda i: -scores_row[i])
    return top + by_sim[k:]


def test_rerank_reorders_only_the_top_k():
    rng = np.random.default_rng(0)
    sim = rng.normal(size=(7, 12))
    head = rng.uniform(size=(7, 12))                                   # distinct scores: no ties
    scorer = lambda q, i: head[np.asarray(q), np.asarray(i)]           # noqa: E731
    for k in (1, 4, 12, 20):
        new, cost = rerank(sim, scorer, k, batch_size=5)
        kk = min(k, 12)
        assert cost["k"] == kk and cost["pairs"] == 7 * kk
        for q in range(7):
            assert list(np.argsort(-new[q], kind="stable")) == brute_rerank_order(sim[q], head[q], kk)
    same, cost = rerank(sim, scorer, 0)
    assert np.array_equal(same, sim) and cost["pairs"] == 0


def test_an_oracle_head_moves_every_hit_in_the_top_k_to_rank_one():
    rng = np.random.default_rng(1)
    n_q, n_i = 40, 25
    relevant = rng.integers(0, n_i, n_q)
    sim = rng.normal(size=(n_q, n_i)) + 1.5 * np.eye(n_i)[relevant]
    oracle = lambda q, i: (np.asarray(i) == relevant[np.asarray(q)]).astype(float)  # noqa: E731
    new, _ = rerank(sim, oracle, 5)
    before = per_query_metrics(sim, [[int(r)] for r in relevant], ks=(1, 5))
    after = per_query_metrics(new, [[int(r)] for r in relevant], ks=(1, 5))
    assert np.array_equal(after["R@1"], before["R@5"])                # hit in the top 5 -> rank 1
    assert np.array_equal(after["R@5"], before["R@5"])                # the top-5 set is unchanged


def test_fused_weight_orders_the_top_k_by_similarity_plus_weighted_score():
    rng = np.random.default_rng(2)
    sim = rng.normal(size=(9, 15))
    head = rng.uniform(size=(9, 15))
    scorer = lambda q, i: head[np.asarray(q), np.asarray(i)]           # noqa: E731
    for w in (0.0, 0.3, 4.0):
        new, _ = rerank(sim, scorer, 6, weight=w)
        for q in range(9):                                            # reference: a loop over the top 6
            by_sim = sorted(range(15), key=lambda i: -sim[q, i])
            top = sorted(by_sim[:6], key=lambda i: -(sim[q, i] + w * head[q, i]))
            assert list(np.argsort(-new[q], kind="stable")) == top + by_sim[6:]
    zero, _ = rerank(sim, scorer, 6, weight=0.0)                      # weight 0 = no change of order
    assert all(list(np.argsort(-zero[q], kind="stable")) == list(np.argsort(-sim[q], kind="stable")) for q in range(9))


def test_weight_chosen_on_validation_is_the_best_of_the_grid_and_zero_wins_ties():
    rng = np.random.default_rng(3)
    n_q, n_i = 60, 30
    relevant = rng.integers(0, n_i, n_q)
    rel = [[int(r)] for r in relevant]
    sim = rng.normal(size=(n_q, n_i)) + 1.0 * np.eye(n_i)[relevant]
    top = np.argsort(-sim, axis=1, kind="stable")[:, :8]
    oracle = (top == relevant[:, None]).astype(float)                  # a perfect head
    w, table = choose_weight(sim, top, oracle, rel)
    assert table == {name: pytest.approx(retrieval_scores(fuse(sim, top, oracle, parse_weight(name)), rel)["mAP@10"])
                     for name in table}
    assert table[w if w is None else f"{w:g}"] == max(table.values())
    assert table["head"] > table["0"]                                 # the oracle helps
    useless = np.full_like(oracle, 0.5)                                # a constant head changes nothing
    w, table = choose_weight(sim, top, useless, rel)
    assert w == 0.0 and len(set(round(v, 12) for v in table.values() if v is not None)) >= 1
    assert table["0"] == pytest.approx(retrieval_scores(sim, rel)["mAP@10"])
    assert WEIGHTS[0] == 0.0 and None in WEIGHTS


def test_parse_weight():
    assert parse_weight("head") is None and parse_weight(None) is None and parse_weight("0.5") == 0.5
    for bad in ("-1", "best", "nan"):
        with pytest.raises(ValueError, match="weight"):
            parse_weight(bad)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A model with an (untrained) cross-attention matching head, saved as a run."""
    from atrlib.models.dual import create_model, save_model

    torch.manual_seed(0)
    model = create_model("synth-stats-minilm")
    model.add_head("crossattn", {"text_model": "tiny", "frame_stride": 10})
    out = tmp_path_factory.mktemp("run")
    save_model(model.eval(), out / "best")
    return model, out


def test_rerank_split_with_a_matching_head(trained_run):
    from atrlib.data import load_dataset

    model, _ = trained_run
    ds = load_dataset("synth", split="test", size="tiny")
    res = rerank_split(model, ds, k=4)
    without, with_ = res["sim_without"].sim, res["sim_with"].sim
    for q in range(len(without)):                                     # same top-4 set, re-ordered
        assert set(np.argsort(-without[q])[:4]) == set(np.argsort(-with_[q])[:4])
        assert list(np.argsort(-without[q])[4:]) == list(np.argsort(-with_[q])[4:])
    m = res["metrics"]
    assert m["with"]["mAP@10"] == pytest.approx(retrieval_scores(with_, res["sim_with"].relevant)["mAP@10"])
    assert m["paired_test"]["diff"] == pytest.approx(m["with"]["mAP@10"] - m["without"]["mAP@10"], abs=1e-12)
    assert 0 < m["paired_test"]["p_value"] <= 1
    assert res["cost"]["pairs"] == 4 * len(without)


def test_rerank_needs_a_matching_head():
    from atrlib.data import load_dataset
    from atrlib.models.dual import create_model

    with pytest.raises(ValueError, match="no matching head"):
        rerank_split(create_model("synth-stats-minilm"), load_dataset("synth", split="test", size="tiny"), k=4)


def test_cli_evaluate_and_search_rerank(trained_run, tmp_path, capsys):
    from atrlib.__main__ import main
    from atrlib.data import load_dataset

    _, run = trained_run
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(run), "--dataset", "synth", "--size", "tiny", "--split", "test",
                 "--out", str(out), "--rerank", "3"]) == 0
    summary = json.loads((out / "rerank.json").read_text())
    assert summary["cost"]["k"] == 3 and {"without", "with", "paired_test"} <= set(summary)
    assert (out / "sim_test_rerank3.npz").exists()
    assert "re-rank top 3" in capsys.readouterr().out and summary["weight"] == "head"

    out = tmp_path / "eval-val"                                       # the weight chosen on validation
    assert main(["evaluate", "--model", str(run), "--dataset", "synth", "--size", "tiny", "--split", "test",
                 "--out", str(out), "--rerank", "3", "--rerank-weight", "val"]) == 0
    summary = json.loads((out / "rerank.json").read_text())
    choice = summary["weight_choice"]
    assert choice["split"] == load_dataset("synth", split="val", size="tiny").split != "test"
    assert summary["weight"] == choice["weight"]
    assert choice["val_mAP@10"][choice["weight"]] == max(choice["val_mAP@10"].values())
    assert "weight chosen on validation" in capsys.readouterr().out
    assert main(["evaluate", "--model", str(run), "--dataset", "synth", "--size", "tiny", "--split", "test",
                 "--out", str(tmp_path / "bad"), "--rerank", "3", "--rerank-weight", "best"]) == 2
    assert "'head' or a number" in capsys.readouterr().err

    ds = load_dataset("synth", split="test", size="tiny")
    folder = Path(ds.audio_paths[0]).parent
    assert main(["search", "--model", str(run), "--audio", str(folder), "--query", "a dog barks", "--top", "5",
                 "--rerank", "3", "--rerank-weight", "0.5", "--out", str(tmp_path / "r.csv")]) == 0
    rows = (tmp_path / "r.csv").read_text().splitlines()
    assert len(rows) == 1 + 5
    assert "matching-head evaluations" in capsys.readouterr().err
