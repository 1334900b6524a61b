"""Heads, the dual encoder built from the shipped JSON configs, and save / load.

References are independent of the code under test: parameter counts by hand from the layer
shapes, head outputs by explicit matrix products, round trips against the saved model's
outputs, and a clamp against ``min(scale, 100)``.
"""
import atrlib  # noqa: F401  (thread settings before torch)

import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from atrlib.models.dual import (ModelConfig, create_model, get_model_config, load_into, load_model,
                                model_config_names, model_state, save_model)
from atrlib.models.heads import LinearHead, MLPHead, build_head

SHIPPED = ["aisfx-minilm", "beats-bert", "beats-tiny-minilm", "cnn14-bert", "cnn14-roberta", "efficientat-minilm",
           "passt-roberta", "passt-tiny-minilm", "resnet38-sbert", "synth-small-minilm", "synth-stats-minilm",
           "synth-tiny", "wavegram-logmel-cnn14-sbert"]
MINILM_PARAMS = 22_713_216  # all-MiniLM-L6-v2 (6 layers, 384-d): the published 22.7 M


def linear(i, o):
    """Parameters of nn.Linear(i, o)."""
    return i * o + o


def mlp(i, h, o):
    """Parameters of MLPHead(i, o, hidden=h)."""
    return linear(i, h) + linear(h, o)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create_model("synth-tiny").eval()


@pytest.fixture(scope="module")
def stats():
    torch.manual_seed(0)
    return create_model("synth-stats-minilm").eval()


@pytest.fixture(scope="module")
def waves():
    g = torch.Generator().manual_seed(1)
    return 0.1 * torch.randn(3, 3 * 16000, generator=g)          # (batch, samples) 3 s at 16 kHz


CAPTIONS = ["a high tone, then rapid clicks", "a deep hum in the rain", "pink noise while beeps join in"]


# ---------------------------------------------------------------------------------------------
# heads
# ---------------------------------------------------------------------------------------------
def test_linear_head_is_one_affine_map():
    torch.manual_seed(0)
    head = build_head("linear", 10, 4)
    assert isinstance(head, LinearHead)
    x = torch.randn(3, 10)
    assert head(x).shape == (3, 4)
    torch.testing.assert_close(head(x), x @ head.weight.T + head.bias)
    assert sum(p.numel() for p in head.parameters()) == linear(10, 4)


def test_mlp_head_layers_and_output():
    torch.manual_seed(0)
    head = build_head("mlp", 10, 4, hidden=6, dropout=0.5)
    assert isinstance(head, MLPHead)
    l1, relu, drop, l2 = head
    assert (l1.in_features, l1.out_features, l2.in_features, l2.out_features) == (10, 6, 6, 4)
    assert drop.p == 0.5
    assert sum(p.numel() for p in head.parameters()) == mlp(10, 6, 4)
    x = torch.randn(5, 10)
    want = torch.clamp(x @ l1.weight.T + l1.bias, min=0) @ l2.weight.T + l2.bias   # (5, 4)
    torch.testing.assert_close(head.eval()(x), want)
    head.train()
    assert not torch.allclose(head(x), want)  # dropout 0.5 is active in training mode


def test_unknown_head_raises():
    with pytest.raises(ValueError, match="linear.*mlp"):
        build_head("nope", 4, 4)


# ---------------------------------------------------------------------------------------------
# configs
# ---------------------------------------------------------------------------------------------
def test_shipped_config_names():
    """Every seed pairing and demo config ships (recipes may add more)."""
    assert set(SHIPPED) <= set(model_config_names())


@pytest.mark.parametrize("name", model_config_names())
def test_every_shipped_config_parses(name):
    cfg = get_model_config(name)
    assert cfg.name == name
    assert cfg.head in ("linear", "mlp") and cfg.embed_dim > 0 and cfg.max_audio_seconds > 0
    assert cfg.audio.name and cfg.text.name


def test_unknown_config_name_lists_the_shipped_ones():
    with pytest.raises(KeyError) as e:
        get_model_config("no-such-model")
    msg = str(e.value)
    assert "no-such-model" in msg and all(n in msg for n in SHIPPED)


def test_unknown_config_key_raises():
    with pytest.raises(ValueError, match="embed_dims"):
        ModelConfig.from_dict({"embed_dims": 3})


def test_partial_tower_override_merges_into_the_shipped_tower():
    base = get_model_config("synth-tiny")
    cfg = get_model_config("synth-tiny", audio={"frozen": True}, embed_dim=16)
    assert cfg.audio.frozen and not base.audio.frozen
    assert cfg.audio.name == "small-cnn" and cfg.audio.kwargs == base.audio.kwargs   # untouched fields kept
    assert cfg.audio.kwargs["channels"] == [8, 16]
    assert cfg.text == base.text and cfg.embed_dim == 16 and base.embed_dim == 32
    assert get_model_config("synth-tiny") == base  # the shipped config is not changed by an override
    merged = get_model_config("synth-tiny", audio={"kwargs": {"embed_dim": 16}}).audio.kwargs
    assert merged == {**base.audio.kwargs, "embed_dim": 16}                    # tower kwargs merge too
    assert create_model("synth-tiny", audio={"kwargs": {"embed_dim": 16}}).audio_tower.embed_dim == 16


# ---------------------------------------------------------------------------------------------
# building
# ---------------------------------------------------------------------------------------------
def test_synth_tiny_summary_matches_a_hand_count(tiny):
    s = tiny.summary()
    # small-cnn, channels (8, 16), embed 32: bn0 over 64 mels, two conv3x3 (no bias) + BN, fc
    cnn = 2 * 64 + (1 * 8 * 9 + 2 * 8) + (8 * 16 * 9 + 2 * 16) + linear(16, 32)
    assert s["audio_tower"] == {"params": cnn, "trainable": cnn}
    assert s["text_tower"] == {"params": MINILM_PARAMS, "trainable": 0}      # frozen MiniLM
    assert s["audio_head"] == {"params": linear(32, 32), "trainable": linear(32, 32)}
    assert s["text_head"] == {"params": linear(384, 32), "trainable": linear(384, 32)}
    assert s["total"]["trainable"] == cnn + linear(32, 32) + linear(384, 32) + 1   # + the temperature


def test_synth_stats_summary_matches_a_hand_count(stats):
    s = stats.summary()
    audio_dim = 64 * (2 * 4 + 1)  # mel-stats: 64 mels x (mean + std per 4 segments + max)
    assert stats.audio_tower.embed_dim == audio_dim
    assert s["audio_tower"] == {"params": 0, "trainable": 0}                # parameter-free
    assert s["text_tower"] == {"params": MINILM_PARAMS, "trainable": 0}
    assert s["audio_head"]["trainable"] == mlp(audio_dim, 512, 256)
    assert s["text_head"]["trainable"] == mlp(384, 512, 256)
    assert s["total"]["trainable"] == mlp(audio_dim, 512, 256) + mlp(384, 512, 256) + 1
    assert stats.audio_head[2].p == 0.2                                        # head_dropout from the JSON


@pytest.mark.parametrize("name", ["aisfx-minilm", "efficientat-minilm", "cnn14-bert", "cnn14-roberta"])
def test_pretrained_configs_build_offline_or_skip(name, monkeypatch):
    """Configs with pretrained towers build from local weights only; without them the test
    skips with the loader's own message (CNN14's 327 MB file and BERT / RoBERTa come from
    the internet, EfficientAT mn04 from ../shared)."""
    from atrlib.errors import WeightsNotFoundError

    monkeypatch.setenv("ATRLIB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    try:
        model = create_model(name)
    except (WeightsNotFoundError, OSError) as e:
        pytest.skip(f"{name} needs weights that are not on this machine (no internet): {str(e).splitlines()[0]}")
    cfg, s = model.config, model.summary()
    for part, tc in (("audio", cfg.audio), ("text", cfg.text)):
        assert (s[f"{part}_tower"]["trainable"] == 0) == tc.frozen
    stored = model_state(model)
    # every frozen tower of these configs is pretrained (or the PyPI MiniLM): not stored
    assert any(k.startswith("text_tower.") for k in stored) == (not cfg.text.frozen)
    assert any(k.startswith("audio_tower.") for k in stored) == (not cfg.audio.frozen)
    assert s["audio_head"]["trainable"] == mlp(model.audio_tower.embed_dim, cfg.head_hidden, cfg.embed_dim)


# ---------------------------------------------------------------------------------------------
# encoding
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
@pytest.mark.parametrize("which", ["tiny", "stats"])
def test_encodings_are_unit_vectors_of_embed_dim(which, request, waves):
    model = request.getfixturevalue(which)
    e = model.config.embed_dim
    a, t = model.encode_audio(waves), model.encode_text(CAPTIONS)
    assert a.shape == (3, e) and t.shape == (3, e)
    torch.testing.assert_close(a.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(t.norm(dim=1), torch.ones(3))
    # each is the head's output direction: cosine 1 with the unnormalised head output
    raw = model.audio_head(model.audio_features(waves))                   # (3, e)
    torch.testing.assert_close(F.cosine_similarity(a, raw), torch.ones(3))
    assert not torch.allclose(a[0], a[1])                                 # different clips, different vectors


@torch.no_grad()
def test_forward_in_frozen_mode_projects_tower_features(stats, waves):
    fa, ft = stats.audio_features(waves), stats.text_features(CAPTIONS)  # (3, 576), (3, 384)
    assert fa.shape == (3, 576) and ft.shape == (3, 384)
    a, t = stats(fa, ft)
    torch.testing.assert_close(a, stats.project_audio(fa), rtol=0, atol=0)
    torch.testing.assert_close(t, stats.project_text(ft), rtol=0, atol=0)
    torch.testing.assert_close(a, stats.encode_audio(waves))
    torch.testing.assert_close(t, stats.encode_text(CAPTIONS))


@torch.no_grad()
def test_forward_with_trainable_audio_tower_takes_waves(tiny, waves):
    ft = tiny.text_features(CAPTIONS)
    a, t = tiny(waves, ft)                                                 # audio tower not frozen: waves
    torch.testing.assert_close(a, tiny.encode_audio(waves))
    torch.testing.assert_close(t, tiny.project_text(ft))


def test_frozen_towers_stay_in_eval_mode():
    model = create_model("synth-tiny").train()
    assert model.training and model.audio_tower.training and model.audio_head.training
    assert not model.text_tower.training
    assert not any(m.training for m in model.text_tower.modules())        # dropout inside MiniLM off
    model.eval().train(True)
    assert not any(m.training for m in model.text_tower.modules())
    assert all(not p.requires_grad for p in model.text_tower.parameters())


def test_logit_scale_clamps_at_100():
    model = create_model("synth-stats-minilm")
    assert model.logit_scale.item() == pytest.approx(1 / 0.07, rel=1e-6)
    with torch.no_grad():
        model.log_scale.fill_(math.log(1000.0))
    assert model.logit_scale.item() == pytest.approx(100.0, rel=1e-6)
    model.logit_scale.backward()
    assert model.log_scale.grad.item() == 0.0                             # clamped: no gradient
    assert not create_model("synth-stats-minilm", learn_temperature=False).log_scale.requires_grad


# ---------------------------------------------------------------------------------------------
# save / load
# ---------------------------------------------------------------------------------------------
def test_save_load_round_trip_is_exact(tmp_path, waves):
    torch.manual_seed(3)
    model = create_model("synth-tiny").train()
    with torch.no_grad():
        model(waves, model.text_features(CAPTIONS))   # moves BN running statistics off their init
        model.log_scale.fill_(2.5)
    model.eval()
    save_model(model, tmp_path / "m")
    stored = load_file(str(tmp_path / "m" / "model.safetensors"))
    assert not any(k.startswith("text_tower.") for k in stored)          # MiniLM comes from its package
    assert "audio_tower.bn0.running_mean" in stored and "audio_tower.fc.weight" in stored
    assert json.loads((tmp_path / "m" / "config.json").read_text()) == json.loads(json.dumps(model.config.to_dict()))

    back = load_model(tmp_path / "m").eval()
    assert back.config == model.config
    with torch.no_grad():
        assert torch.equal(back.encode_audio(waves), model.encode_audio(waves))
        assert torch.equal(back.encode_text(CAPTIONS), model.encode_text(CAPTIONS))
    assert back.logit_scale.item() == pytest.approx(math.exp(2.5), rel=1e-6)


def test_frozen_pretrained_tower_is_not_stored(shared, tmp_path):
    from atrlib.errors import WeightsNotFoundError

    try:
        model = create_model("efficientat-minilm")
    except WeightsNotFoundError as e:
        pytest.skip(f"EfficientAT mn04 weights not in ../shared: {str(e).splitlines()[0]}")
    save_model(model, tmp_path / "m")
    keys = set(load_file(str(tmp_path / "m" / "model.safetensors")))
    assert keys == {k for k in model.state_dict() if k.startswith(("audio_head.", "text_head.", "log_scale"))}


def test_load_into_rejects_a_state_that_does_not_fit(tiny):
    good = model_state(tiny)
    wrong_shape = dict(good, **{"audio_head.weight": torch.zeros(5, 5)})
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_into(create_model("synth-tiny"), wrong_shape)
    missing = {k: v for k, v in good.items() if k != "text_head.bias"}
    with pytest.raises(RuntimeError, match="missing.*text_head.bias"):
        load_into(create_model("synth-tiny"), missing)
    no_cnn = {k: v for k, v in good.items() if not k.startswith("audio_tower.")}  # a trained tower must be stored
    with pytest.raises(RuntimeError, match="missing.*audio_tower"):
        load_into(create_model("synth-tiny"), no_cnn)
    with pytest.raises(RuntimeError, match="unexpected.*bogus"):
        load_into(create_model("synth-tiny"), dict(good, bogus=torch.zeros(1)))
    fresh = create_model("synth-tiny")
    load_into(fresh, good)                                                # the full stored state fits
    assert torch.equal(fresh.text_head.weight, tiny.text_head.weight)


def test_load_model_without_files_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json and model.safetensors"):
        load_model(tmp_path)
