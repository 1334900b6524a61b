"""atrlib.retrieval.index and .store: faiss indexes measured against brute force, the incremental embedding store,
text search on it, and the ``index build`` / ``search --index`` commands with a tiny model."""
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

faiss = pytest.importorskip("faiss", reason="atrlib.retrieval.index needs the optional faiss-cpu package")

from atrlib.retrieval.index import IndexConfig, build_index, exact_search, recall_at_k, rerank, tune_index
from atrlib.retrieval.store import EmbeddingStore, build_store, model_identity, search_index


def unit(x):
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered(n, d=32, centers=50, noise=0.35, seed=0):
    """Unit vectors around random centres: retrieval embeddings are clustered like this."""
    rng = np.random.default_rng(seed)
    c = unit(rng.normal(size=(centers, d)))
    return unit(c[rng.integers(0, centers, n)] + noise * rng.normal(size=(n, d)) / np.sqrt(d))


def brute_topk(q, x, k):
    """Independent reference: full float64 scores, stable order (ties: lower id first)."""
    s = np.asarray(q, np.float64) @ np.asarray(x, np.float64).T
    return np.argsort(-s, axis=1, kind="stable")[:, :k]


# ---- search primitives ------------------------------------------------------------------
def test_exact_search_matches_brute_force_in_chunks():
    x = clustered(3000)
    q = clustered(40, seed=1)
    scores, ids = exact_search(q, x.astype(np.float16), k=10, chunk=700)  # several chunks, float16 input
    ref = brute_topk(q, x.astype(np.float16), 10)
    assert recall_at_k(ids, ref, 10) == 1.0
    np.testing.assert_allclose(scores, np.take_along_axis(q @ x.astype(np.float16).astype(np.float32).T, ids, 1),
                               rtol=1e-5, atol=1e-6)
    assert np.all(np.diff(scores, axis=1) <= 0)


def test_recall_at_k_counts_overlap():
    exact = np.array([[0, 1, 2, 3], [4, 5, 6, 7]])
    approx = np.array([[3, 2, 9, 8], [4, 5, 6, -1]])
    assert recall_at_k(approx, exact, 4) == pytest.approx((2 / 4 + 3 / 4) / 2)


def test_rerank_is_exact_among_the_candidates():
    x, q = clustered(2000), clustered(20, seed=2)
    rng = np.random.default_rng(0)
    cand = np.stack([rng.choice(len(x), 50, replace=False) for _ in q])
    cand[:, -5:] = -1  # padding (faiss's "no more results")
    scores, ids = rerank(q, cand, x.astype(np.float16), 10, chunk=7)
    x16 = x.astype(np.float16).astype(np.float64)
    for r in range(len(q)):
        pool = cand[r][cand[r] >= 0]
        ref = pool[np.argsort(-(x16[pool] @ q[r]), kind="stable")[:10]]
        assert set(ids[r]) == set(ref)
        np.testing.assert_allclose(scores[r], np.sort(x16[ref] @ q[r])[::-1], atol=1e-5)


@pytest.mark.parametrize("kind", ["exact", "ivf", "ivfpq", "hnsw"])
def test_index_kinds_reach_the_target_recall_measured_independently(kind):
    x = clustered(6000)
    cfg = IndexConfig(kind=kind, sample=200, target_recall=0.95, nlist=64, train_size=5000)
    sample = np.sort(np.random.default_rng(0).choice(len(x), 200, replace=False))
    index = build_index(x, kind, cfg, exclude=sample)
    assert index.ntotal == len(x)
    rep = tune_index(index, x, sample, cfg)
    assert rep["recall@10"] >= 0.95 and rep["curve"][-1]["breadth"] == rep["breadth"]
    # recompute the reported recall from scratch: brute force, own row removed
    _, ids = index.search(x[sample], 11, rep["breadth"])
    truth = brute_topk(x[sample], x, 11)
    approx = [[i for i in row if i != me][:10] for row, me in zip(ids, sample)]
    ref = [[i for i in row if i != me][:10] for row, me in zip(truth, sample)]
    mine = np.mean([len(set(a) & set(r)) / 10 for a, r in zip(approx, ref)])
    assert rep["recall@10"] == pytest.approx(mine, abs=1e-4)
    if kind == "exact":
        assert mine == 1.0
    if kind in ("ivf", "ivfpq"):  # the breadth is the smallest of the ladder that reaches the target
        assert all(c["recall@10"] < 0.95 for c in rep["curve"][:-1])


def test_ivf_single_and_batched_queries_agree():
    """IVF scores a few queries by gathering their lists, many by batching queries per list."""
    x, q = clustered(5000), clustered(30, seed=3)
    ix = build_index(x, "ivf", IndexConfig(kind="ivf", nlist=50, train_size=5000))
    for nprobe in (1, 7, 50):
        s_many, i_many = ix.search(q, 10, nprobe)
        one = [ix.search(q[i:i + 1], 10, nprobe) for i in range(len(q))]
        np.testing.assert_array_equal(i_many, np.concatenate([o[1] for o in one]))
        np.testing.assert_allclose(s_many, np.concatenate([o[0] for o in one]), atol=1e-5)
    assert recall_at_k(i_many, brute_topk(q, x, 10)) == 1.0  # all lists probed: exact


def test_auto_kind_by_size():
    cfg = IndexConfig(exact_below=1000, hnsw_below=5000)
    assert [cfg.choose(n) for n in (999, 1000, 4999, 5000)] == ["exact", "hnsw", "hnsw", "ivfpq"]
    assert [IndexConfig().choose(n) for n in (99_999, 100_000, 10**6)] == ["exact", "ivfpq", "ivfpq"]  # HNSW only asked for
    with pytest.raises(ValueError, match="index kind"):
        IndexConfig(kind="lsh").choose(10)


def test_ivfpq_tuner_adds_candidates_when_every_list_is_probed():
    """Random directions defeat the lists (the true neighbours lie in any list) and 4-bit codes
    rank coarsely: with every list probed the tuner doubles the re-ranked candidates."""
    rng = np.random.default_rng(0)
    x = unit(rng.normal(size=(4000, 32)))
    sample = np.sort(rng.choice(len(x), 100, replace=False))
    cfg = IndexConfig(kind="ivfpq", nlist=16, sample=100, candidates=10, max_candidates=4000, train_size=4000)
    index = build_index(x, "ivfpq", cfg, exclude=sample)
    rep = tune_index(index, x, sample, cfg)
    assert rep["recall@10"] >= 0.95 and rep["breadth"] == 16 and rep["candidates"] > 10
    assert index.candidates == rep["candidates"] == rep["curve"][-1]["candidates"]
    assert all(c["recall@10"] < 0.95 for c in rep["curve"][:-1])
    # recomputed independently at the chosen setting
    _, ids = index.search(x[sample], 11, rep["breadth"])
    truth = brute_topk(x[sample], x.astype(np.float32), 11)
    mine = np.mean([len(set([i for i in a if i != me][:10]) & set([i for i in t if i != me][:10])) / 10
                    for a, t, me in zip(ids, truth, sample)])
    assert rep["recall@10"] == pytest.approx(mine, abs=1e-4)


# ---- the store ---------------------------------------------------------------------------
class FakeModel:
    """Embeds a file from its bytes (so equal content gives equal vectors) and counts calls."""

    name = "fake"
    dim = 16

    def __init__(self):
        self.embedded = []

    def vector(self, data: bytes) -> np.ndarray:
        seed = int(hashlib.sha256(data).hexdigest()[:8], 16)
        return np.random.default_rng(seed).normal(size=self.dim).astype(np.float32) * 3.0

    def embed_audio(self, paths, progress=False):
        self.embedded += [str(p) for p in paths]
        return np.stack([self.vector(Path(p).read_bytes()) for p in paths])

    def embed_text(self, texts):  # a "caption" is the content of the file it describes
        return np.stack([self.vector(t.encode()) for t in texts])

    def audio_settings(self):
        return {"fake": 1}


def write_clips(folder: Path, names, tag=""):
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / f"{n}.wav").write_bytes(f"clip {n}{tag}".encode())


def test_store_is_incremental_and_content_addressed(tmp_path):
    audio, store = tmp_path / "audio", tmp_path / "store"
    write_clips(audio, ["a", "b", "c", "d", "e"])
    model = FakeModel()
    ident = model_identity(model)
    paths = lambda: sorted(audio.glob("*.wav"))  # noqa: E731

    r1 = build_store(store, paths(), model.embed_audio, ident, batch_size=2, progress=False)
    assert (r1.clips, r1.embedded, r1.reused, r1.removed, r1.hashed) == (5, 5, 0, 0, 5)
    s = EmbeddingStore(store)
    assert s.embeddings.dtype == np.float16 and isinstance(s.embeddings, np.memmap)
    assert s.hashes == [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in s.clips]
    ref = unit([model.vector(Path(p).read_bytes()) for p in s.clips])
    np.testing.assert_allclose(s.embeddings.astype(np.float32), ref, atol=2e-3)

    # unchanged: nothing embedded, nothing re-read
    model.embedded.clear()
    r2 = build_store(store, paths(), model.embed_audio, ident, progress=False)
    assert (r2.embedded, r2.reused, r2.hashed) == (0, 5, 0) and model.embedded == []

    # change b, remove c, rename d -> d2, add f and g (g a copy of a): only b and f are embedded
    (audio / "b.wav").write_bytes(b"clip b, edited")
    (audio / "c.wav").unlink()
    (audio / "d.wav").rename(audio / "d2.wav")
    write_clips(audio, ["f"])
    (audio / "g.wav").write_bytes((audio / "a.wav").read_bytes())
    r3 = build_store(store, paths(), model.embed_audio, ident, progress=False)
    assert sorted(Path(p).name for p in model.embedded) == ["b.wav", "f.wav"]
    assert (r3.clips, r3.embedded, r3.removed) == (6, 2, 2)  # c and d gone (d's vector lives on in d2)
    s = EmbeddingStore(store)
    assert sorted(Path(p).name for p in s.clips) == ["a.wav", "b.wav", "d2.wav", "e.wav", "f.wav", "g.wav"]
    ref = unit([model.vector(Path(p).read_bytes()) for p in s.clips])
    np.testing.assert_allclose(s.embeddings.astype(np.float32), ref, atol=2e-3)
    assert sorted(f.name.split("-")[0] for f in store.iterdir()) == ["build.json", "clips", "embeddings", "store.json"]

    # text search: the caption "clip f" is f's content, so f comes first with cosine ~1
    table = search_index(store, ["clip f", "clip e"], top=3, retriever=model)
    assert table.groupby("query", sort=False)["file"].first().tolist() == ["f.wav", "e.wav"]
    assert table["score"].iloc[0] == pytest.approx(1.0, abs=2e-3)
    qe = unit(model.embed_text(["clip e"]))
    full = (qe @ s.embeddings.astype(np.float32).T)[0]  # brute force; a and g tie (same content)
    got = table[table["query"] == "clip e"]
    np.testing.assert_allclose(got["score"], np.sort(full)[::-1][:3], atol=1e-5)
    np.testing.assert_allclose([full[s.clips.index(p)] for p in got["path"]], got["score"], atol=1e-5)

    # another model's store is refused
    with pytest.raises(ValueError, match="another model"):
        build_store(store, paths(), model.embed_audio, dict(ident, name="other"), progress=False)


def test_store_builds_an_ann_index_and_reports_recall(tmp_path):
    """Above the exact threshold the store tunes an approximate index on held-out rows."""
    vecs = clustered(4000, d=16)
    paths = [tmp_path / f"{i}.bin" for i in range(len(vecs))]
    for i, p in enumerate(paths):
        p.write_bytes(str(i).encode())
    lookup = {str(p.resolve()): v for p, v in zip(paths, vecs)}
    cfg = IndexConfig(exact_below=1000, hnsw_below=5000, sample=200, nlist=32, train_size=4000)
    rep = build_store(tmp_path / "store", paths, lambda ps: np.stack([lookup[p] for p in ps]), {"name": "vec"}, cfg,
                      batch_size=1000, progress=False)
    assert rep.index["kind"] == "hnsw" and rep.index["recall@10"] >= 0.95 and rep.index["queries"] == 200
    s = EmbeddingStore(tmp_path / "store")
    assert json.loads((tmp_path / "store" / "store.json").read_text())["index"]["breadth"] == rep.index["breadth"]
    _, ids = s.search(vecs[:50], k=10)
    assert recall_at_k(ids, brute_topk(vecs[:50], s.embeddings.astype(np.float32), 10)) >= 0.95
    # above hnsw_below: IVF with 4-bit PQ codes, re-ranked on the store's vectors after a reload
    cfg = IndexConfig(exact_below=1000, hnsw_below=2000, sample=200, nlist=32, train_size=4000, candidates=20)
    rep = build_store(tmp_path / "store", paths, lambda ps: np.stack([lookup[p] for p in ps]), {"name": "vec"}, cfg,
                      batch_size=1000, progress=False)
    assert rep.index["kind"] == "ivfpq" and rep.index["recall@10"] >= 0.95 and rep.embedded == 0
    s = EmbeddingStore(tmp_path / "store")
    assert s.index.candidates == rep.index["candidates"] and s.index.dense is s.embeddings
    scores, ids = s.search(vecs[:50], k=10)
    assert recall_at_k(ids, brute_topk(vecs[:50], s.embeddings.astype(np.float32), 10)) >= 0.95
    np.testing.assert_allclose(scores, np.take_along_axis(vecs[:50] @ s.embeddings.astype(np.float32).T, ids, 1),
                               atol=1e-5)  # re-ranked scores are exact


# ---- the commands, with a tiny trained model ---------------------------------------------
def test_index_build_and_search_commands_agree_with_exact_search(tmp_path, capsys):
    """``index build`` + ``search --index`` rank like ``search --audio`` (exact, float32)."""
    sf = pytest.importorskip("soundfile")
    import pandas as pd

    from atrlib.__main__ import main as cli
    from atrlib.models.dual import create_model, save_model

    save_model(create_model("synth-tiny"), tmp_path / "run")
    audio = tmp_path / "audio"
    audio.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        t = np.arange(16000) / 16000
        sf.write(audio / f"c{i}.wav", (0.3 * np.sin(2 * np.pi * 220 * (i + 1) * t) + 0.05 * rng.normal(size=t.size))
                 .astype(np.float32), 16000)
    store = tmp_path / "store"
    q = ["a high beep", "low rumble"]
    assert cli(["index", "build", "--model", str(tmp_path / "run"), "--audio", str(audio), "--index", str(store)]) == 0
    assert "6 clips: 6 embedded, 0 reused" in capsys.readouterr().out
    assert cli(["search", "--index", str(store), "--query", q[0], "--query", q[1], "--top", "6",
                "--out", str(tmp_path / "ix.csv")]) == 0
    assert cli(["search", "--model", str(tmp_path / "run"), "--audio", str(audio), "--query", q[0], "--query", q[1],
                "--top", "6", "--out", str(tmp_path / "ex.csv")]) == 0
    ix, ex = pd.read_csv(tmp_path / "ix.csv"), pd.read_csv(tmp_path / "ex.csv")
    np.testing.assert_allclose(ix["score"], ex["score"], atol=3e-3)  # float16 store vs float32
    for query in q:  # the store's order is the exact order, up to swaps of scores within float16 error
        exact = ex[ex["query"] == query].set_index("file")["score"]
        in_store_order = exact[ix[ix["query"] == query]["file"]].to_numpy()
        assert sorted(ix[ix["query"] == query]["file"]) == sorted(exact.index)
        assert np.all(np.diff(in_store_order) <= 6e-3)
    # a second build embeds nothing
    assert cli(["index", "build", "--model", str(tmp_path / "run"), "--audio", str(audio), "--index", str(store)]) == 0
    assert "6 clips: 0 embedded, 6 reused" in capsys.readouterr().out
