"""BEATs tower: strict loading of the authors' layout, and equality with the reference encoder
(openbeats 0.1.1, an MIT port of the authors' BEATs code) on the same random weights."""
import dataclasses

import pytest
import torch

import atrlib  # noqa: F401  (thread settings before torch work)
from atrlib.errors import WeightsNotFoundError
from atrlib.models.beats import BEATS_CONFIGS, BEATs, build_beats, relative_position_buckets
from atrlib.models.towers import AUDIO_TOWERS
from reference_code import import_reference, kaldi_reference, reference_cache
from reference_towers import BEATS_ESPNET_ONLY as ESPNET_ONLY
from reference_towers import beats_author_cfg as _author_cfg
from reference_towers import beats_pair as _pair

@pytest.fixture(scope="module")
def ref_module(request):
    path = kaldi_reference(reference_cache(request.config, "atrlib-torchaudio-kaldi"))
    return import_reference("openbeats.beats_encoder", path, "openbeats==0.1.1")


def _waves(batch, seconds, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (0.1 * torch.randn(batch, int(16000 * seconds), generator=g)).clamp(-1, 1)


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def test_registered_and_attributes():
    for name in ("beats", "beats-tiny"):
        assert name in AUDIO_TOWERS
    tower = AUDIO_TOWERS.get("beats-tiny")()
    assert (tower.sample_rate, tower.embed_dim, tower.frame_dim, tower.frame_hop_samples) == (16000, 32, 32, 1280)


def test_relative_buckets_match_reference(ref_module):
    attn = ref_module.MultiheadAttention(32, 4, self_attention=True, has_relative_attention_bias=True,
                                         num_buckets=320, max_distance=800)
    for n in (7, 500, 1400):
        rel = torch.arange(n)[None, :] - torch.arange(n)[:, None]
        assert torch.equal(relative_position_buckets(n, n, 320, 800), attn._relative_positions_bucket(rel))


def test_tiny_equals_reference_from_waveform(ref_module):
    """The whole pipeline (the reference runs torchaudio's Kaldi fbank) on 2.3 s of audio."""
    ref, ours, cfg = _pair(ref_module, "beats-tiny", mel_bins=128, input_patch_size=16)
    wave = _waves(2, 2.3)
    with torch.no_grad():
        ref_x, ref_len, _ = ref(wave, torch.tensor([wave.shape[1]] * 2))   # (2, patches, 32)
        frames, mask = ours.forward_frames(wave)
        pooled = ours(wave)
    assert frames.shape == ref_x.shape == (2, (1 + (wave.shape[1] - 400) // 160) // 16 * 8, 32)
    assert mask.all() and (ref_len == frames.shape[1]).all()
    assert _rel(frames, ref_x) <= 1e-4
    assert torch.allclose(pooled, ref_x.mean(1), atol=1e-5)


@pytest.mark.parametrize("overrides", [
    {},
    dict(deep_norm=False, layer_norm_first=True, gru_rel_pos=False),      # the pre-LN branch
    dict(relative_position_embedding=False, gru_rel_pos=False, embed_dim=32),  # no bias, no projection
])
def test_tiny_equals_reference_from_fbank_with_padding(ref_module, overrides):
    ref, ours, cfg = _pair(ref_module, "beats-tiny", seed=1, **overrides)
    g = torch.Generator().manual_seed(3)
    fbank = 15.0 + 6.0 * torch.randn(2, 8 * 9, cfg.mel_bins, generator=g)  # raw fbank, 9 patch rows
    pad = torch.zeros(2, 72, dtype=torch.bool)
    pad[1, 40:] = True                                                     # clip 2: 5 rows of 8 frames are real
    with torch.no_grad():
        ref_x, ref_pad, *_ = ref.extract_features(fbank, pad, skip_fbank_extraction=True)
        x, valid = ours.encode_fbank((fbank - cfg.fbank_mean) / (2 * cfg.fbank_std), ~pad)
    assert torch.equal(valid, ~ref_pad)
    assert valid.sum(1).tolist() == [9 * 2, 5 * 2]                        # 2 frequency patches per row
    assert _rel(x[valid], ref_x[valid]) <= 1e-4


def test_padding_does_not_change_a_clip():
    """With lengths given, a clip's frames and embedding do not depend on the zeros after it
    (a clip whose fbank frames fill whole rows of patches: 400 + 159·160 samples = 160 frames)."""
    model = BEATs(BEATS_CONFIGS["beats-tiny"]).eval()
    short = _waves(1, 25840 / 16000, seed=5)
    other = _waves(1, 2.6, seed=6)
    padded = torch.cat([torch.nn.functional.pad(short, (0, other.shape[1] - short.shape[1])), other])
    lengths = torch.tensor([short.shape[1], other.shape[1]])
    with torch.no_grad():
        alone, (f1, m1) = model(short), model.forward_frames(short)
        both, (f, m) = model(padded, lengths=lengths), model.forward_frames(padded, lengths=lengths)
        unmasked = model(padded)
    n = f1.shape[1]
    assert n == 160 // 8 * 2 and m1.all()
    assert m[0].sum() == n and m[0, :n].all() and m[1].all()
    assert _rel(f[0, :n], f1[0]) <= 1e-5
    assert _rel(both[0], alone[0]) <= 1e-5
    assert _rel(unmasked[0], alone[0]) > 1e-3                              # without lengths the zeros count


def test_time_frames_average_the_frequency_patches():
    model = BEATs(dataclasses.replace(BEATS_CONFIGS["beats-tiny"], frames="time")).eval()
    wave = _waves(2, 1.7)
    with torch.no_grad():
        frames, mask = model.forward_frames(wave)
        patches, _ = model.encode_fbank(model.preprocess(wave))
    assert frames.shape == (2, patches.shape[1] // 2, 32) and mask.all()
    assert torch.allclose(frames, patches.view(2, -1, 2, 32).mean(2))


@pytest.mark.slow
def test_full_size_config_loads_the_reference_state_dict_strictly(ref_module, tmp_path):
    """The released architecture (every size from the checkpoint cfg): a checkpoint file in the
    authors' {"cfg", "model"} layout builds the same network and the same outputs."""
    cfg = BEATS_CONFIGS["beats"]
    author_cfg = _author_cfg(cfg)
    author_cfg["layer_wise_gradient_decay_ratio"] = 0.6                   # a training-only key: ignored
    torch.manual_seed(0)
    ref = ref_module.BeatsEncoder(input_size=0, beats_config=author_cfg, is_pretraining=False).eval()
    sd = {k: v for k, v in ref.state_dict().items() if not k.startswith(ESPNET_ONLY)}
    torch.save({"cfg": author_cfg, "model": sd}, tmp_path / "BEATs_iter3_plus_AS2M.pt")
    ours = build_beats("beats-tiny", weights=tmp_path / "BEATs_iter3_plus_AS2M.pt").eval()  # sizes from cfg
    assert ours.cfg.encoder_layers == 12 and ours.embed_dim == 768 and ours.cfg.mel_bins == 16
    ours = build_beats("beats", pretrained=tmp_path / "BEATs_iter3_plus_AS2M.pt", mel_bins=128).eval()
    n_params = sum(p.numel() for p in ours.parameters())
    assert n_params == sum(p.numel() for p in ref.parameters()) - 16 * 16 - 400  # minus the ESPnet pads
    wave = _waves(1, 1.0)
    with torch.no_grad():
        ref_x, _, _ = ref(wave, torch.tensor([wave.shape[1]]))
        x, _ = ours.forward_frames(wave)
    assert x.shape == ref_x.shape == (1, 48, 768)
    assert _rel(x, ref_x) <= 1e-4


def test_wrong_files_and_missing_weights_say_what_to_do(tmp_path, monkeypatch):
    torch.save({"model": {}}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="not a BEATs checkpoint"):
        build_beats("beats", weights=tmp_path / "bad.pt")
    sd = BEATs(BEATS_CONFIGS["beats-tiny"]).state_dict()
    sd.pop("encoder.layer_norm.bias")
    torch.save({"cfg": _author_cfg(BEATS_CONFIGS["beats-tiny"]), "model": sd}, tmp_path / "short.pt")
    with pytest.raises(RuntimeError, match="encoder.layer_norm.bias"):
        build_beats("beats-tiny", weights=tmp_path / "short.pt", mel_bins=16)
    with pytest.raises(ValueError, match="no published weights"):
        build_beats("beats-tiny", pretrained=True)
    monkeypatch.setenv("ATRLIB_OFFLINE", "1")
    monkeypatch.setenv("ATRLIB_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("ATRLIB_SHARED", str(tmp_path / "no-shared"))
    with pytest.raises(WeightsNotFoundError) as e:
        build_beats("beats", pretrained=True)
    assert "BEATs_iter3_plus_AS2M.pt" in str(e.value) and "https://" in str(e.value)


def test_frozen_and_trainable():
    tower = AUDIO_TOWERS.get("beats-tiny")()
    wave = _waves(2, 1.0)
    tower.train()
    tower(wave).pow(2).sum().backward()
    grads = [p.grad for p in tower.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)
    assert tower.encoder.layers[1].self_attn.relative_attention_bias is tower.encoder.layers[0].self_attn.relative_attention_bias


@pytest.mark.slow
def test_model_configs_build_with_random_weights():
    """beats-bert (the Samsung / Lingban pairing) builds its real-size BEATs on the CPU with random
    weights (the text tower swapped for the offline MiniLM); the tiny config runs end to end."""
    from atrlib.models.dual import TowerConfig, create_model, get_model_config

    cfg = get_model_config("beats-bert")
    assert (cfg.audio.name, cfg.audio.pretrained, cfg.text.kwargs["name_or_path"]) == ("beats", True, "bert-base-uncased")
    model = create_model("beats-bert", audio={"pretrained": None}, text=TowerConfig("minilm", frozen=True))
    assert model.audio_tower.embed_dim == 768
    assert model.audio_tower.cfg.fbank_std == cfg.audio_cfg["fbank_std"] and model.audio_tower.sample_rate == 16000
    assert model.summary()["audio_tower"]["trainable"] == 90_311_792


def test_tiny_model_config_runs_end_to_end():
    from atrlib.models.dual import create_model

    tiny = create_model("beats-tiny-minilm").eval()
    with torch.no_grad():
        a, t = tiny.encode_audio(_waves(2, 1.0)), tiny.encode_text(["a dog barks", "rain"])
    assert a.shape == t.shape == (2, 32)
    assert torch.allclose(a.norm(dim=1), torch.ones(2), atol=1e-5)


def test_finetuned_checkpoints_tag_with_their_predictor():
    """A fine-tuned cfg adds ``predictor`` (527 x 768 in the released AS2M model); tag() is the
    sigmoid of the per-patch logits averaged over the valid patches, as the authors' code does."""
    model = BEATs(dataclasses.replace(BEATS_CONFIGS["beats-tiny"], finetuned_model=True, predictor_class=5)).eval()
    assert model.predictor.weight.shape == (5, 32)
    wave = _waves(2, 1.0)
    lengths = torch.tensor([16000, 9000])
    with torch.no_grad():
        probs = model.tag(wave, lengths)
        frames, mask = model.forward_frames(wave, lengths)
    logits = frames @ model.predictor.weight.T + model.predictor.bias     # (2, n, 5)
    want = torch.stack([torch.sigmoid(logits[i][mask[i]].mean(0)) for i in range(2)])
    assert torch.allclose(probs, want, atol=1e-6)
    with pytest.raises(RuntimeError, match="no predictor"):
        BEATs(BEATS_CONFIGS["beats-tiny"]).tag(wave)
