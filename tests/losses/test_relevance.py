"""Soft relevance from caption similarity and the listwise loss: the estimate against a
brute-force computation, the loss against a per-row reference, error analysis, and training."""
import math

import numpy as np
import pytest
import torch

from atrlib.losses.crossmodal import CrossBatch
from atrlib.losses.relevance import (Listwise, caption_clip_similarity, graded_relevance, logistic, soft_relevance,
                              wrong_but_relevant)
from atrlib.retrieval.simfile import SimilarityMatrix


def test_logistic_is_the_formula():
    for s, k, m in [(0.3, 10.0, 0.5), (0.9, 20.0, 0.7), (0.7, 3.0, 0.7)]:
        assert logistic(s, k, m) == pytest.approx(1 / (1 + math.exp(-k * (s - m))))
    assert logistic(0.7, 20, 0.7) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="slope"):
        logistic(0.5, 0.0)


@pytest.mark.parametrize("reduce", ["mean", "max"])
def test_caption_clip_similarity_equals_loops(reduce):
    rng = np.random.default_rng(0)
    q = rng.normal(size=(7, 5))
    k = rng.normal(size=(9, 5))
    cc = [0, 0, 1, 2, 2, 2, 3, 1, 0]
    got = caption_clip_similarity(q, k, cc, 4, reduce)
    for a in range(7):
        for c in range(4):
            vals = [float(q[a] @ k[j]) for j in range(9) if cc[j] == c]
            assert got[a, c] == pytest.approx(np.mean(vals) if reduce == "mean" else max(vals))
    with pytest.raises(ValueError, match="no caption"):
        caption_clip_similarity(q, k, cc, 5, "mean")


def test_soft_relevance_on_synth_equals_its_definition():
    from atrlib.data import load_dataset
    from atrlib.losses.relevance import sentence_embeddings

    ds = load_dataset("synth", split="validation", size="tiny")
    rel = soft_relevance(ds, slope=15.0, midpoint=0.65)
    caps, cc = ds.captions_flat(), ds.caption_clip_index()
    assert rel.shape == (len(caps), len(ds)) and rel.dtype == np.float32
    e = sentence_embeddings(caps)
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    for q in (0, 7, len(caps) - 1):
        for c in range(len(ds)):
            if c == cc[q]:
                assert rel[q, c] == 1.0  # the clip the caption was written for
                continue
            s = np.mean([float(e[q] @ e[j]) for j in range(len(caps)) if cc[j] == c])
            assert rel[q, c] == pytest.approx(1 / (1 + math.exp(-15.0 * (s - 0.65))), abs=1e-5)
    assert 0.0 < rel.min() and rel.max() <= 1.0
    relevant, graded = graded_relevance(rel, threshold=0.5)
    assert all(cc[q] in r for q, r in enumerate(relevant))
    assert all(w >= 0.5 for g in graded for w in g)


def _reference_listnet(t, a, rel, scale, symmetric=True):
    """ListNet per row with plain Python loops: sum_k -p_k log softmax(scale * t_j . a_k)."""
    def rows(s, r):
        out = []
        for j in range(len(s)):
            p = r[j] / r[j].sum()
            z = s[j] - s[j].max()
            logq = z - np.log(np.exp(z).sum())
            out.append(-(p * logq).sum())
        return float(np.mean(out))

    s = scale * t @ a.T
    return 0.5 * (rows(s, rel) + rows(s.T, rel.T)) if symmetric else rows(s, rel)


def test_listwise_equals_listnet_reference():
    g = torch.Generator().manual_seed(0)
    n_caps, n_clips, b = 12, 6, 5
    rel = torch.rand(n_caps, n_clips, generator=g) * 0.5
    term = Listwise()
    term.rel = rel
    a = torch.nn.functional.normalize(torch.randn(b, 8, generator=g), dim=-1)
    t = torch.nn.functional.normalize(torch.randn(b, 8, generator=g), dim=-1)
    clips = torch.tensor([0, 3, 3, 5, 1])
    caps = torch.tensor([2, 7, 8, 11, 0])
    scale = torch.tensor(10.0)
    cb = CrossBatch(a, t, clips, scale, captions=["x"] * b, caption_idx=caps)
    block = rel[caps][:, clips].numpy().astype(np.float64)
    got = float(term.term(cb, None)["listwise"])
    assert got == pytest.approx(_reference_listnet(t.numpy(), a.numpy(), block, 10.0), rel=1e-5)
    term.symmetric = False
    assert float(term.term(cb, None)["listwise"]) == pytest.approx(
        _reference_listnet(t.numpy(), a.numpy(), block, 10.0, symmetric=False), rel=1e-5)
    # softmax targets: rows sum to 1 and put more mass on more relevant clips
    term.target_temperature = 0.1
    p = term.targets(torch.tensor([[1.0, 0.2, 0.0]]))
    assert float(p.sum()) == pytest.approx(1.0) and p[0, 0] > p[0, 1] > p[0, 2]


def test_listwise_needs_caption_indices():
    term = Listwise()
    cb = CrossBatch(torch.eye(2), torch.eye(2), torch.tensor([0, 1]), torch.tensor(1.0), captions=["a", "b"])
    with pytest.raises(ValueError, match="caption indices"):
        term.term(cb, None)
    with pytest.raises(ValueError, match="reduce"):
        Listwise(reduce="median")


def test_wrong_but_relevant_reads_the_ranking():
    class DS:
        clip_ids = ["c0", "c1", "c2"]
        items = [{"captions": ["zero"]}, {"captions": ["one"]}, {"captions": ["two"]}]

        def captions_flat(self):
            return ["q0", "q1", "q2"]

    sim = np.array([[0.1, 0.9, 0.5],    # q0: own clip 0 ranked 3rd, above it c1 then c2
                    [0.2, 0.8, 0.1],    # q1: correct
                    [0.7, 0.0, 0.6]], dtype=np.float32)  # q2: own clip 2 ranked 2nd
    sm = SimilarityMatrix(sim, ["q0", "q1", "q2"], DS.clip_ids, [[0], [1], [2]])
    rel = np.array([[1.0, 0.8, 0.1], [0.0, 1.0, 0.0], [0.3, 0.0, 1.0]], dtype=np.float32)
    df = wrong_but_relevant(sm, DS(), rel, n_queries=2)
    assert df[["query", "wrong_rank", "clip"]].values.tolist() == [["q0", 1, "c1"], ["q0", 2, "c2"], ["q2", 1, "c0"]]
    assert df["relevance"].tolist() == pytest.approx([0.8, 0.1, 0.3])
    assert df.attrs["n_wrong_top1"] == 2 and df.attrs["mean_relevance_of_wrong_top1"] == pytest.approx(0.55)


def test_listwise_trains_beside_infonce(tmp_path):
    """'infonce+listwise' through fit(): both terms logged, a finite loss, metrics written."""
    from atrlib.train.config import TrainConfig
    from atrlib.train.loop import run_training

    cfg = TrainConfig(size="tiny", epochs=2, batch_size=16, loss="infonce+listwise", progress=False,
                      out_dir=str(tmp_path / "run"))
    res = run_training(cfg)
    h = res["history"][-1]
    assert np.isfinite(h["train_listwise"]) and np.isfinite(h["train_infonce"])
    assert h["train_loss"] == pytest.approx(h["train_listwise"] + h["train_infonce"], rel=1e-6)
    assert 0 <= res["metrics"]["test"]["t2a"]["mAP@10"] <= 1
