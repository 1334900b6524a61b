"""``hf-audio`` on tiny random transformers models saved to a folder by the test (no network)."""
import pytest
import torch

import atrlib  # noqa: F401  (thread settings before torch work)
from atrlib.models.frames import check_tower
from atrlib.models.hf_audio import HFAudioTower
from atrlib.models.towers import AUDIO_TOWERS

transformers = pytest.importorskip("transformers", reason="hf-audio needs transformers")


@pytest.fixture(scope="module")
def wav2vec2_dir(tmp_path_factory):
    """A 2-layer, 32-wide wav2vec2 (layer-norm feature encoder, attention mask) at 16 kHz."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(0)
    cfg = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
                         conv_dim=(16, 16, 16), conv_stride=(5, 4, 4), conv_kernel=(10, 4, 4),
                         num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, feat_extract_norm="layer",
                         do_stable_layer_norm=True, hidden_dropout=0.0, attention_dropout=0.0, feat_proj_dropout=0.0)
    d = tmp_path_factory.mktemp("tiny-wav2vec2")
    Wav2Vec2Model(cfg).save_pretrained(d)
    Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True, return_attention_mask=True).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def ast_dir(tmp_path_factory):
    """A 2-layer, 32-wide AST over 1.28 s of 64-bin fbank."""
    from transformers import ASTConfig, ASTFeatureExtractor, ASTModel

    torch.manual_seed(1)
    cfg = ASTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
                    num_mel_bins=64, max_length=128, frequency_stride=16, time_stride=16)
    d = tmp_path_factory.mktemp("tiny-ast")
    ASTModel(cfg).save_pretrained(d)
    ASTFeatureExtractor(num_mel_bins=64, max_length=128).save_pretrained(d)
    return d


def _waves(batch, samples, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(batch, samples, generator=g)


def test_wav2vec2_by_path_equals_direct_transformers(wav2vec2_dir):
    from transformers import AutoFeatureExtractor, AutoModel

    tower = AUDIO_TOWERS.get("hf-audio")(name_or_path=str(wav2vec2_dir)).eval()
    assert isinstance(tower, HFAudioTower) and tower.sample_rate == 16000 and tower.embed_dim == tower.frame_dim == 32
    wave = _waves(2, 8000)
    fe, model = AutoFeatureExtractor.from_pretrained(wav2vec2_dir), AutoModel.from_pretrained(wav2vec2_dir).eval()
    with torch.no_grad():
        pooled, frames, mask = check_tower(tower, wave)
        ref = model(**fe(list(wave.numpy()), sampling_rate=16000, return_tensors="pt")).last_hidden_state
    assert frames.shape == ref.shape and torch.allclose(frames, ref, atol=1e-6)
    assert bool(mask.all())
    assert torch.allclose(pooled, ref.mean(dim=1), atol=1e-6)


def test_padded_batch_equals_each_clip_alone(wav2vec2_dir):
    """lengths: the extractor sees each clip at its real length, the mask follows the model's
    output lengths, so a zero-padded clip pools to what it gives alone."""
    tower = HFAudioTower(wav2vec2_dir, pooling="mean").eval()
    wave = _waves(2, 8000, seed=3)
    lengths = torch.tensor([8000, 4321])
    with torch.no_grad():
        frames, mask = tower.forward_frames(wave, lengths=lengths)
        alone, alone_mask = tower.forward_frames(wave[1:, :4321])
    valid = int(tower.model._get_feat_extract_output_lengths(torch.tensor(4321)))
    assert mask[1].sum().item() == valid == alone.shape[1] < frames.shape[1] and bool(alone_mask.all())
    assert bool(mask[0].all())
    assert torch.allclose(frames[1, :valid], alone[0], atol=1e-5)


@pytest.mark.parametrize("pooling", ["mean", "max", "cls"])
def test_poolings_and_layer_choice(wav2vec2_dir, pooling):
    tower = HFAudioTower(wav2vec2_dir, pooling=pooling, layer=1).eval()
    wave = _waves(2, 6000)
    with torch.no_grad():
        frames, _ = tower.forward_frames(wave)
        out = tower(wave)
        hs = tower.model(**tower.extract(wave), output_hidden_states=True).hidden_states[1]
    assert torch.allclose(frames, hs, atol=1e-6)
    want = {"mean": hs.mean(1), "max": hs.amax(1), "cls": hs[:, 0]}[pooling]
    assert torch.allclose(out, want, atol=1e-6)


def test_ast_by_path_cls_token(ast_dir):
    tower = HFAudioTower(ast_dir, pooling="cls").eval()
    assert tower.sample_rate == 16000 and tower.embed_dim == 32
    wave = _waves(2, 16000)
    with torch.no_grad():
        pooled, frames, mask = check_tower(tower, wave)
    # 2 special tokens + (64 - 16) / 16 + 1 = 4 frequency x (128 - 16) / 16 + 1 = 8 time patches
    assert frames.shape == (2, 2 + 4 * 8, 32) and bool(mask.all())
    assert torch.equal(pooled, frames[:, 0])


def test_frozen_and_trainable(wav2vec2_dir):
    frozen = HFAudioTower(wav2vec2_dir, freeze=True).train()
    assert not frozen.model.training and not any(p.requires_grad for p in frozen.parameters())
    tower = HFAudioTower(wav2vec2_dir).train()
    tower(_waves(2, 4000)).pow(2).sum().backward()
    assert tower.model.encoder.layers[0].attention.q_proj.weight.grad.abs().sum() > 0


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="pooling"):
        HFAudioTower(tmp_path, pooling="attention")
    with pytest.raises(OSError, match="cannot load audio model"):
        HFAudioTower(tmp_path)                                            # an empty folder
    with pytest.raises(ValueError, match="name_or_path"):
        AUDIO_TOWERS.get("hf-audio")(name_or_path=str(tmp_path), pretrained=str(tmp_path))
