"""EfficientAT mn04 (architecture, strict load, reference tags) and atrlib.models.weights (resolution,
verified atomic downloads, the offline message)."""
import os
from pathlib import Path

import numpy as np
import pytest

import atrlib  # noqa: F401  (thread settings before torch)
import torch

from atrlib.models import weights as W
from atrlib.models.efficientat import EfficientAT, audioset_labels, efficientat_mn04, load_checkpoint, top_tags
from atrlib.models.towers import AUDIO_TOWERS

MN04_PARAMS = 983_599


# ---------------------------------------------------------------------------------------------
# Architecture (no weights needed)
# ---------------------------------------------------------------------------------------------
def test_random_init_shapes_and_param_count():
    torch.manual_seed(0)
    m = AUDIO_TOWERS.get("efficientat-mn04")(pretrained=False)
    assert sum(p.numel() for p in m.parameters()) == MN04_PARAMS
    assert (m.sample_rate, m.embed_dim, m.hidden_dim, m.num_classes) == (32000, 384, 512, 527)
    assert not m.training
    wave = torch.randn(2, 32000) * 0.1                              # (batch, samples): 1 s
    with torch.no_grad():
        logits, emb = m.tag_and_embed(wave)
        assert logits.shape == (2, 527) and emb.shape == (2, 384)
        assert torch.allclose(m(wave), emb) and torch.allclose(m.tag(wave), logits)
        assert m.tag(wave[0]).shape == (1, 527)                     # a single 1-D waveform
    assert torch.isfinite(logits).all()


def test_width_is_one_parameter():
    m = EfficientAT(width_mult=1.0)
    assert (m.embed_dim, m.hidden_dim) == (960, 1280)
    with torch.no_grad():
        logits, emb = m.eval().tag_and_embed(torch.zeros(1, 16000))
    assert logits.shape == (1, 527) and emb.shape == (1, 960)


def test_state_dict_matches_released_key_list(shared):
    listed = {}
    for line in (shared / "weights/efficientat_mn04/state_dict_keys.txt").read_text().splitlines():
        key, shape = line.split("\t")
        listed[key] = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
    ours = {k: tuple(v.shape) for k, v in EfficientAT(0.4).state_dict().items()}
    assert ours == listed


@pytest.fixture(scope="module")
def ref_kaldi(request):
    from reference_code import kaldi_reference, reference_cache, stub_torchaudio

    path = kaldi_reference(reference_cache(request.config, "atrlib-torchaudio-kaldi"))
    with stub_torchaudio(path) as kaldi:
        yield kaldi


def test_front_end_equals_authors_eval_path(ref_kaldi):
    """The preset against the authors' ``AugmentMelSTFT.forward`` in eval mode, step by step, with
    torchaudio's ``get_mel_banks`` (the function they call): pre-emphasis conv [-0.97, 1], STFT
    (n_fft 1024, hop 320, symmetric Hann 800), power, Kaldi mels fmin 0 / fmax 32000 // 2 - 2000 // 2,
    log(x + 1e-5), (x + 4.5) / 5."""
    from atrlib.audio.features import FEATURE_PRESETS, LogMel

    g = torch.Generator().manual_seed(0)
    wave = 0.1 * torch.randn(2, 32000, generator=g)                   # (batch, samples)
    x = torch.nn.functional.conv1d(wave[:, None], torch.tensor([[[-0.97, 1.0]]]))[:, 0]   # (batch, samples - 1)
    spec = torch.stft(x, 1024, hop_length=320, win_length=800, center=True, normalized=False,
                      window=torch.hann_window(800, periodic=False), return_complex=True)
    power = spec.abs() ** 2                                          # (batch, 513, frames)
    fmax = 32000 // 2 - 2000 // 2
    banks, _ = ref_kaldi.get_mel_banks(128, 1024, 32000, 0.0, fmax, vtln_low=100.0, vtln_high=-500.0,
                                       vtln_warp_factor=1.0)
    banks = torch.nn.functional.pad(banks, (0, 1))                   # (128, 513)
    ref = (torch.log(banks @ power + 1e-5) + 4.5) / 5.0             # (batch, 128, frames)
    ours = LogMel(FEATURE_PRESETS["efficientat"])(wave)
    assert FEATURE_PRESETS["efficientat"].fmax == fmax == 15000
    assert ours.shape == ref.shape
    assert (ours - ref).abs().max().item() < 1e-4


def test_frames_mean_is_the_embedding_and_spec_augment_trains():
    from atrlib.models.frames import check_tower

    torch.manual_seed(0)
    m = EfficientAT(0.4).eval()
    wave = torch.randn(2, 64000) * 0.1                              # 2 s
    with torch.no_grad():
        emb, frames, mask = check_tower(m, wave)
        _, m2 = m.forward_frames(wave, lengths=torch.tensor([64000, 20000]))
    assert frames.shape == (2, 7, 384) and bool(mask.all())         # 201 STFT frames / 32
    assert torch.allclose(frames.mean(dim=1), emb, atol=1e-6)
    assert m2[1].tolist() == [t * 10240 < 20000 for t in range(7)]
    aug = EfficientAT(0.4, spec_time_masks=1, spec_freq_masks=1)
    mel = aug.frontend(wave)                                          # (batch, 128, frames)
    torch.manual_seed(1)
    masked = aug.train().logmel(wave)
    changed = masked != mel
    assert bool(changed.any()) and torch.allclose(masked[changed], torch.tensor(0.9))   # log 0 after the affine
    assert torch.equal(aug.eval().logmel(wave), mel)


# ---------------------------------------------------------------------------------------------
# Pretrained weights: strict load and reference outputs
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mn04(shared):
    return efficientat_mn04()


def _probs(model, path):
    from atrlib.audio.io import load_audio

    x, _ = load_audio(path, sample_rate=model.sample_rate)
    with torch.no_grad():
        return model.tag(torch.from_numpy(x)[None])                # (1, 527) logits


def test_strict_load_every_key(shared, tmp_path):
    path = shared / "weights/efficientat_mn04/mn04_as_mAP_432.pt"
    sd = torch.load(path, map_location="cpu", weights_only=True)
    m = load_checkpoint(EfficientAT(0.4), path)
    assert sum(p.numel() for p in m.parameters()) == MN04_PARAMS
    for k, v in m.state_dict().items():
        assert torch.equal(v, sd[k]), k
    # a checkpoint missing one key is refused, not silently half-loaded
    del sd["classifier.5.bias"]
    torch.save(sd, tmp_path / "partial.pt")
    with pytest.raises(RuntimeError, match="classifier.5.bias"):
        load_checkpoint(EfficientAT(0.4), tmp_path / "partial.pt")


def test_dog_is_tagged_dog(mn04, shared):
    labels = audioset_labels()
    logits = _probs(mn04, shared / "data/animals/dog.mp3")
    p_dog = torch.sigmoid(logits)[0, labels.index("Dog")].item()
    assert p_dog == pytest.approx(0.851, abs=0.01)                  # measured 0.851 (mels 0-15 kHz; 0.854 with 16 kHz)
    assert "Dog" in [name for name, _ in top_tags(logits, 3, labels)[0]]


@pytest.mark.parametrize("animal, expected, k", [
    ("owl", {"Owl"}, 1),
    ("frog", {"Frog"}, 1),
    ("duck", {"Duck"}, 1),
    ("horse", {"Neigh, whinny", "Horse"}, 2),
    ("rooster", {"Chicken, rooster", "Crowing, cock-a-doodle-doo"}, 2),
    ("cow", {"Moo", "Cattle, bovinae"}, 3),
])
def test_other_animals(mn04, shared, animal, expected, k):
    top = {name for name, _ in top_tags(_probs(mn04, shared / f"data/animals/{animal}.mp3"), k)[0]}
    assert expected <= top, top


def test_audioset_labels(shared, tmp_path, monkeypatch):
    labels = audioset_labels()
    assert len(labels) == 527 and labels[0] == "Speech" and labels[74] == "Dog"
    with pytest.raises(FileNotFoundError, match="class_labels_indices"):
        audioset_labels(tmp_path / "missing.csv")
    monkeypatch.setattr("atrlib.paths.shared_dir", lambda: None)
    monkeypatch.setattr("atrlib.models.weights.shared_dir", lambda: None)
    monkeypatch.setenv("ATRLIB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(FileNotFoundError, match="storage.googleapis.com"):
        audioset_labels()


# ---------------------------------------------------------------------------------------------
# atrlib.models.weights
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    """An empty cache, no $ATRLIB_WEIGHTS, no shared folder."""
    monkeypatch.setenv("ATRLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ATRLIB_WEIGHTS", raising=False)
    monkeypatch.delenv("ATRLIB_OFFLINE", raising=False)
    monkeypatch.setattr("atrlib.models.weights.shared_dir", lambda: None)
    return tmp_path / "cache" / "weights"


def _source(tmp_path, n=300_000):
    src = tmp_path / "remote" / "model.bin"
    src.parent.mkdir()
    src.write_bytes(np.random.default_rng(0).bytes(n))
    return src


def test_download_file_url_verified_and_atomic(tmp_path, clean_env, monkeypatch):
    src = _source(tmp_path)
    spec = W.WeightSpec("test-model", "model.bin", src.as_uri(), sha256=W.file_digest(src), size=src.stat().st_size)
    renames = []
    real_replace = os.replace

    def spy(a, b):
        renames.append((Path(a), Path(b)))
        real_replace(a, b)

    monkeypatch.setattr("atrlib.models.weights.os.replace", spy)
    got = W.resolve_weights(spec, progress=False)
    assert got == clean_env / "model.bin" and got.read_bytes() == src.read_bytes()
    # written to a temp file in the same folder, then renamed into place; nothing left behind
    assert len(renames) == 1 and renames[0][1] == got and renames[0][0].parent == got.parent
    assert renames[0][0].name.endswith(".part") and not renames[0][0].exists()
    assert sorted(p.name for p in clean_env.iterdir()) == ["model.bin"]
    # second call finds the cached copy without downloading
    assert W.resolve_weights(spec, download=False) == got and len(renames) == 1


def test_wrong_checksum_raises_and_leaves_nothing(tmp_path, clean_env):
    src = _source(tmp_path)
    spec = W.WeightSpec("test-model", "model.bin", src.as_uri(), sha256="0" * 64)
    with pytest.raises(W.ChecksumError, match="sha256"):
        W.resolve_weights(spec, progress=False)
    assert list(clean_env.iterdir()) == []
    bad_size = W.WeightSpec("test-model", "model.bin", src.as_uri(), size=12)
    with pytest.raises(W.ChecksumError, match="bytes"):
        W.resolve_weights(bad_size, progress=False)
    assert list(clean_env.iterdir()) == []


def test_offline_message_names_url_and_target(clean_env):
    spec = W.WeightSpec("test-model", "model.bin", "http://127.0.0.1:9/x", sha256="0" * 64)
    with pytest.raises(W.WeightsNotFoundError) as e:
        W.resolve_weights(spec, progress=False)
    msg = str(e.value)
    assert "http://127.0.0.1:9/x" in msg and str(clean_env / "model.bin") in msg and "path=" in msg
    assert not clean_env.exists() or list(clean_env.iterdir()) == []
    with pytest.raises(W.WeightsNotFoundError, match="download=False") as e:
        W.resolve_weights("efficientat-mn04", download=False)
    assert W.KNOWN_WEIGHTS["efficientat-mn04"].url in str(e.value)
    assert str(clean_env / "mn04_as_mAP_432.pt") in str(e.value)


def test_explicit_path_and_env_folder(tmp_path, clean_env, monkeypatch):
    f = tmp_path / "mine.pt"
    f.write_bytes(b"x")
    assert W.resolve_weights("efficientat-mn04", path=f) == f
    with pytest.raises(W.WeightsNotFoundError, match="does not exist"):
        W.resolve_weights("efficientat-mn04", path=tmp_path / "nope.pt")
    d = tmp_path / "weights-env"
    d.mkdir()
    (d / "mn04_as_mAP_432.pt").write_bytes(b"y")
    monkeypatch.setenv("ATRLIB_WEIGHTS", str(d))
    assert W.resolve_weights("efficientat-mn04", download=False) == d / "mn04_as_mAP_432.pt"


def test_shared_file_resolves_with_matching_checksum(shared, monkeypatch):
    monkeypatch.delenv("ATRLIB_WEIGHTS", raising=False)
    spec = W.KNOWN_WEIGHTS["efficientat-mn04"]
    p = W.resolve_weights("efficientat-mn04", download=False)
    assert p == shared / "weights/efficientat_mn04/mn04_as_mAP_432.pt"
    assert W.file_digest(p) == spec.sha256
    assert spec.sha256.startswith("899a8c62") and spec.sha256.endswith("453321c")
    W.verify_file(p, spec)  # size and sha256
