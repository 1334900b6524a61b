"""Text towers: MiniLM offline, agreement with sentence-transformers, pooling, truncation, errors."""
import numpy as np
import pytest

import atrlib  # noqa: F401  (thread settings before torch)
import torch

from atrlib.models.text_towers import TextTower, embed_texts, minilm_path
from atrlib.models.towers import TEXT_TOWERS

LONG_A = "a dog barks " * 5 + "while the rain falls"
LONG_B = "a dog barks " * 5 + "and a car passes by quickly"


@pytest.fixture(scope="module")
def minilm():
    return TEXT_TOWERS.get("minilm")()


def test_minilm_unit_vectors_and_paraphrase(minilm):
    e = embed_texts(minilm, ["a dog barks", "a dog is barking", "rain on a roof"], progress=False)
    assert e.dtype == np.float32 and e.shape == (3, 384) and minilm.embed_dim == 384
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    para, unrelated = float(e[0] @ e[1]), float(e[0] @ e[2])
    assert para > unrelated + 0.3, (para, unrelated)                # measured 0.92 vs 0.22


def test_mean_pooling_matches_sentence_transformers(minilm):
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(minilm_path()), device="cpu")
    texts = ["a dog barks", "Several elevator beeps are followed by a robotic female voice.", "rain"]
    ref = model.encode(texts, convert_to_numpy=True, normalize_embeddings=True)
    ours = embed_texts(minilm, texts, progress=False)
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_poolings_differ_and_hf_loads_local_folder():
    texts = ["a dog barks", "rain on a roof"]
    towers = {p: TEXT_TOWERS.get("hf")(name_or_path=minilm_path(), pooling=p) for p in ("mean", "cls", "penultimate_mean")}
    out = {p: embed_texts(t, texts, progress=False) for p, t in towers.items()}
    for p, e in out.items():
        assert e.shape == (2, 384), p
    assert not np.allclose(out["mean"], out["cls"], atol=1e-3)
    assert not np.allclose(out["mean"], out["penultimate_mean"], atol=1e-3)
    assert not towers["mean"].normalize and not np.allclose(np.linalg.norm(out["mean"], axis=1), 1.0)
    with pytest.raises(ValueError, match="pooling"):
        TextTower(minilm_path(), pooling="max")


def test_truncation_at_max_length():
    short = TEXT_TOWERS.get("minilm")(max_length=8)
    tok = short.tokenize([LONG_A, "dog"])
    assert tok["input_ids"].shape == (2, 8)
    assert tok["attention_mask"][1].sum().item() == 3              # [CLS] dog [SEP], then padding
    a, b = embed_texts(short, [LONG_A, LONG_B], progress=False)
    np.testing.assert_allclose(a, b, atol=1e-6)                     # they differ only after token 8
    full = TEXT_TOWERS.get("minilm")(max_length=64)
    a, b = embed_texts(full, [LONG_A, LONG_B], progress=False)
    assert not np.allclose(a, b, atol=1e-3)


def test_embed_texts_batches_agree_and_no_grad(minilm):
    texts = ["a dog barks", "a cat meows loudly at night", "rain", "footsteps on gravel", "a bell"]
    one = embed_texts(minilm, texts, batch_size=64, progress=False)
    small = embed_texts(minilm, texts, batch_size=2, progress=False)
    np.testing.assert_allclose(one, small, atol=1e-5)
    assert embed_texts(minilm, [], progress=False).shape == (0, 384)
    with torch.enable_grad():
        y = minilm(["a dog barks"])
    assert y.requires_grad                                          # the tower itself is trainable by default


def test_freeze_and_device():
    t = TEXT_TOWERS.get("minilm")(freeze=True, device="cpu")
    assert t.device == torch.device("cpu")
    assert not any(p.requires_grad for p in t.parameters())
    t.train()
    assert not t.model.training                                     # frozen: dropout stays off


def test_unknown_model_offline_gives_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="hf download atrlib-test/no-such-model") as e:
        TEXT_TOWERS.get("hf")(name_or_path="atrlib-test/no-such-model", pooling="cls")
    assert "offline" in str(e.value) and "minilm" in str(e.value)
