"""Top-K re-ranking: the pure function against a brute-force re-ordering, an oracle head, a
model's matching head on the embedded data, and ``--rerank K`` in ``search`` / ``evaluate``."""
import atrlib  # noqa: F401  (thread settings before torch)

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from atrlib.metrics import per_query_metrics, retrieval_scores
from atrlib.rerank import rerank, rerank_split


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
    assert "re-rank top 3" in capsys.readouterr().out

    ds = load_dataset("synth", split="test", size="tiny")
    folder = Path(ds.audio_paths[0]).parent
    assert main(["search", "--model", str(run), "--audio", str(folder), "--query", "a dog barks", "--top", "5",
                 "--rerank", "3", "--out", str(tmp_path / "r.csv")]) == 0
    rows = (tmp_path / "r.csv").read_text().splitlines()
    assert len(rows) == 1 + 5
    assert "matching-head evaluations" in capsys.readouterr().err
