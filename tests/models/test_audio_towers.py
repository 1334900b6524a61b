"""Audio towers: PANNs CNN14 (official layout, front end), aisfx (package weights and outputs), small CNN."""
import os
import pickle

import numpy as np
import pytest
import torch

import atrlib  # noqa: F401  (thread settings before torch work)
from atrlib.audio.features import LogMel
from atrlib.audio.mel import mel_matrix
from atrlib.models.aisfx_tower import (AisfxTower, aisfx, aisfx_package_checkpoint, convert_aisfx_checkpoint,
                                       load_aisfx_weights)
from atrlib.models.cnn14 import Cnn14, build_cnn14, load_panns_state_dict
from atrlib.models.frontend import SpecAugment
from atrlib.models.small_cnn import SmallCNN, SmallCNNConfig
from atrlib.models.towers import AUDIO_TOWERS
from atrlib.models.weights import torch_load_weights_only
from atrlib.paths import cache_dir


def _has_aisfx() -> bool:
    try:
        aisfx_package_checkpoint()
        return True
    except FileNotFoundError:
        return False


needs_aisfx = pytest.mark.skipif(not _has_aisfx(), reason="aisfx package (pip install --no-deps aisfx==0.1.2) absent")


@pytest.fixture(scope="module")
def cnn14_model():
    torch.manual_seed(0)
    return build_cnn14("cnn14").eval()


def _clotho_clip(shared, sample_rate, seconds):
    from atrlib.audio.io import load_audio

    wavs = sorted((shared / "data" / "clotho_mini" / "clotho_audio_evaluation").glob("*.wav"))
    if not wavs:
        pytest.skip("no clotho_mini clips in ../shared")
    x, _ = load_audio(wavs[0], sample_rate=sample_rate, duration=seconds)
    return wavs[0], torch.from_numpy(x)


def test_towers_are_registered():
    for name in ("cnn14", "cnn14-tiny", "aisfx", "small-cnn"):
        assert name in AUDIO_TOWERS
    for name in ("cnn14-tiny", "small-cnn"):
        tower = AUDIO_TOWERS.get(name)()
        assert isinstance(tower.sample_rate, int) and isinstance(tower.embed_dim, int)


@pytest.mark.parametrize("kw", [
    dict(sr=32000, n_fft=1024, n_mels=64, fmin=50, fmax=14000),                 # PANNs
    dict(sr=44100, n_fft=2048, n_mels=96, fmin=0, fmax=22050, htk=True, norm=1.0),  # aisfx
    dict(sr=16000, n_fft=512, n_mels=64, fmin=20, fmax=8000, norm=None),
])
def test_mel_matrix_matches_librosa(kw):
    import librosa

    ours, ref = mel_matrix(**kw), librosa.filters.mel(**kw)
    assert ours.shape == ref.shape == (kw["n_mels"], kw["n_fft"] // 2 + 1)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6 * ref.max())


# ---------------------------------------------------------------------------------------------
# CNN14
# ---------------------------------------------------------------------------------------------
def official_cnn14_layout() -> dict:
    """Every key and shape of the official Cnn14 (classes 527, 64 mels, n_fft 1024), written out
    from the PANNs architecture: torchlibrosa front end, bn0, six ConvBlocks, fc1, fc_audioset."""
    def bn(prefix, n):
        return {f"{prefix}.weight": (n,), f"{prefix}.bias": (n,), f"{prefix}.running_mean": (n,),
                f"{prefix}.running_var": (n,), f"{prefix}.num_batches_tracked": ()}

    keys = {"spectrogram_extractor.stft.conv_real.weight": (513, 1, 1024),
            "spectrogram_extractor.stft.conv_imag.weight": (513, 1, 1024),
            "logmel_extractor.melW": (513, 64)}
    keys.update(bn("bn0", 64))
    chans = [1, 64, 128, 256, 512, 1024, 2048]
    for i in range(6):
        cin, cout = chans[i], chans[i + 1]
        keys[f"conv_block{i + 1}.conv1.weight"] = (cout, cin, 3, 3)
        keys[f"conv_block{i + 1}.conv2.weight"] = (cout, cout, 3, 3)
        keys.update(bn(f"conv_block{i + 1}.bn1", cout))
        keys.update(bn(f"conv_block{i + 1}.bn2", cout))
    keys.update({"fc1.weight": (2048, 2048), "fc1.bias": (2048,),
                 "fc_audioset.weight": (527, 2048), "fc_audioset.bias": (527,)})
    return keys


def test_cnn14_state_dict_is_the_official_layout(cnn14_model):
    ours = {k: tuple(v.shape) for k, v in cnn14_model.state_dict().items()}
    expected = official_cnn14_layout()
    assert sorted(ours) == sorted(expected)
    assert ours == expected
    trainable = sum(p.numel() for p in cnn14_model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in cnn14_model.parameters() if not p.requires_grad)
    assert trainable == 80_753_615            # the paper's "80.8 M"
    assert frozen == 2 * 513 * 1024 + 513 * 64  # STFT kernels + mel matrix, frozen as in torchlibrosa


def test_cnn14_checkpoint_round_trip_strict(cnn14_model, tmp_path, monkeypatch):
    import atrlib.models.weights

    sd = cnn14_model.state_dict()
    path = tmp_path / "Cnn14_mAP=0.431.pth"
    torch.save({"iteration": 0, "model": sd}, path)                    # the official file's structure
    asked = []
    monkeypatch.setattr(atrlib.models.weights, "resolve_weights", lambda name, *a, **k: asked.append(name) or path)
    loaded = AUDIO_TOWERS.get("cnn14")(pretrained=True)
    assert asked == ["panns-cnn14"]
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, sd[k]), k
    # a missing key fails (strict=True); shown on the tiny variant, which takes the same path
    tiny = {k: v for k, v in build_cnn14("cnn14-tiny").state_dict().items() if k != "fc1.bias"}
    torch.save({"model": tiny}, path)
    with pytest.raises(RuntimeError, match="fc1.bias"):
        build_cnn14("cnn14-tiny", pretrained=path)


def test_panns_style_checkpoint_with_numpy_sampler_state(tmp_path):
    """Released PANNs files also hold the training sampler's numpy arrays (written by numpy 1.x,
    legacy torch format). weights_only=True alone refuses them; our loader allows numpy data only."""
    tiny = build_cnn14("cnn14-tiny")
    ck = {"iteration": 10000, "model": {f"module.{k}": v for k, v in tiny.state_dict().items()},
          "sampler": {"indexes_per_class": [np.arange(5), np.arange(3)], "queue": [1, 0],
                      "pointers_of_classes": [0, 2]}}
    path = tmp_path / "panns_like.pth"
    torch.save(ck, path, _use_new_zipfile_serialization=False)
    raw = path.read_bytes().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")  # numpy 1.x names
    path.write_bytes(raw)
    with pytest.raises(pickle.UnpicklingError, match="numpy"):
        torch.load(path, map_location="cpu", weights_only=True)
    sd = load_panns_state_dict(path)
    assert sorted(sd) == sorted(tiny.state_dict())        # "module." (DataParallel) prefix stripped
    assert build_cnn14("cnn14-tiny", weights=path) is not None
    np.testing.assert_array_equal(torch_load_weights_only(path)["sampler"]["indexes_per_class"][0], np.arange(5))


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo should-not-run",))


def test_loader_still_refuses_code(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": {}, "x": _Evil()}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch_load_weights_only(path)


@pytest.mark.shared
def test_cnn14_front_end_equals_logmel_and_torch_stft(cnn14_model, shared):
    _, wave = _clotho_clip(shared, 32000, 5.0)
    x = wave[None]                                                      # (1, samples)
    with torch.no_grad():
        real, imag = cnn14_model.spectrogram_extractor.stft(x)          # (1, 1, frames, 513)
        ref = torch.stft(x, 1024, 320, window=torch.hann_window(1024), center=True, pad_mode="reflect",
                         return_complex=True)                           # (1, 513, frames)
        ours_db = cnn14_model.logmel(x)[0, 0].T                         # (64, frames)
        ref_db = LogMel("panns")(x)[0]                                  # (64, frames)
    scale = ref.abs().max()
    assert real.shape[2] == ref.shape[2] == 1 + wave.numel() // 320
    assert (real[0, 0].T - ref.real).abs().max() < 1e-5 * scale
    assert (imag[0, 0].T - ref.imag).abs().max() < 1e-5 * scale
    assert ours_db.shape == ref_db.shape
    assert (ours_db - ref_db).abs().max() < 1e-3                        # dB


def test_cnn14_forward_shapes(cnn14_model):
    torch.manual_seed(1)
    wave = 0.1 * torch.randn(2, 32000)                                  # 1 s at 32 kHz
    with torch.no_grad():
        emb = cnn14_model(wave)
        probs = cnn14_model.tag(wave)
        again = cnn14_model(wave)
        short = cnn14_model(wave[:, :3000])                             # shorter than 5 poolings: padded
    assert emb.shape == (2, 2048) and probs.shape == (2, 527) and short.shape == (2, 2048)
    assert torch.equal(emb, again) and bool((emb >= 0).all())          # eval: deterministic, post-ReLU
    assert bool(((probs > 0) & (probs < 1)).all())
    assert cnn14_model.sample_rate == 32000 and cnn14_model.embed_dim == 2048


def test_cnn14_tiny_trains():
    tower = AUDIO_TOWERS.get("cnn14-tiny")(spec_time_masks=2, spec_freq_masks=2)
    assert isinstance(tower, Cnn14) and len(tower.blocks) == 3 and tower.embed_dim == 32
    out = tower.train()(0.1 * torch.randn(2, 16000))
    out.sum().backward()
    assert out.shape == (2, 32)
    assert tower.conv_block1.conv1.weight.grad.abs().sum() > 0
    assert tower.spectrogram_extractor.stft.conv_real.weight.grad is None   # front end frozen
    with pytest.raises(ValueError, match="no published weights"):
        build_cnn14("cnn14-tiny", pretrained=True)


# ---------------------------------------------------------------------------------------------
# aisfx
# ---------------------------------------------------------------------------------------------
@needs_aisfx
def test_aisfx_converts_once_and_loads_strictly(tmp_path, monkeypatch):
    dst = tmp_path / "weights" / "aisfx.safetensors"
    assert convert_aisfx_checkpoint(dst=dst) == dst and dst.exists()
    tensors, ds_dict = load_aisfx_weights(dst)
    assert len(ds_dict) == 9 and ds_dict["prosfx"] == (0, 78)
    assert sum(k.startswith("embedding_net.") for k in tensors) == 48
    assert sum(k.startswith("fc.") for k in tensors) == 54                # 9 classifier heads x 3 layers x 2
    mtime = dst.stat().st_mtime_ns

    def no_unpickling(*a, **k):
        raise AssertionError("torch.load called after the conversion")

    with monkeypatch.context() as m:
        m.setattr(torch, "load", no_unpickling)
        assert convert_aisfx_checkpoint(dst=dst) == dst and dst.stat().st_mtime_ns == mtime
        tower = aisfx(pretrained=dst)
    for k, v in tower.state_dict().items():
        assert torch.equal(v, tensors[k]), k                            # every module key came from the file
    assert sorted(tower.state_dict()) == sorted(k for k in tensors if k.startswith("embedding_net."))
    # the default path: cache_dir()/weights/aisfx.safetensors, converted on first use, then reused
    AUDIO_TOWERS.get("aisfx")(pretrained=True)
    assert (cache_dir() / "weights" / "aisfx.safetensors").exists()
    with monkeypatch.context() as m:
        m.setattr(torch, "load", no_unpickling)
        tower = AUDIO_TOWERS.get("aisfx")(pretrained=True)
    assert tower.sample_rate == 44100 and tower.embed_dim == 512


@needs_aisfx
@pytest.mark.parametrize("frames", [40, 100, 149, 150, 151, 260])
def test_aisfx_blocking_matches_package(frames):
    from aisfx.preprocessing import blocking

    spec = np.random.default_rng(frames).random((frames, 96)).astype(np.float32)
    ref = blocking(spec, block_size=100, hop_size=50, drop_partial_block=True)
    ours = AisfxTower().blocks(torch.from_numpy(spec)[None])[0].numpy()
    assert ours.shape == ref.shape
    np.testing.assert_array_equal(ours, ref.astype(np.float32))


@pytest.mark.shared
@needs_aisfx
def test_aisfx_reproduces_package_embeddings(shared, tmp_path):
    """Our batched torch pipeline vs the package's own code path (librosa spectrogram,
    normalisation, blocking, its CrossNet with the same weights) on 5 s of a real clip."""
    import librosa
    import soundfile as sf
    from aisfx import inference, preprocessing
    from aisfx.spectrogram import spectrogram_librosa

    src, _ = _clotho_clip(shared, None, 5.0)
    y, _ = librosa.load(src, sr=44100, duration=5.0)
    clip = tmp_path / "clip.wav"
    sf.write(clip, y, 44100, subtype="FLOAT")
    y, _ = librosa.load(clip, sr=44100)

    spec = spectrogram_librosa.compute_spectrogram(str(clip), sr=44100.0, block_size=2048, hop_size=1024,
                                                   n_mels=96, f_min=0.0, f_max=22050.0)  # (mels, frames)
    spec = preprocessing.spectrogram_normalize(spec.T)  # (frames, mels), the orientation its network expects
    tensors, ds_dict = load_aisfx_weights()
    pkg_model = inference.load_bestModel(tensors, ds_dict, "cpu")
    ref = inference.model_get_embedding(spec, 0.5, True, pkg_model, "cpu")   # (blocks, 512)

    tower = aisfx(pretrained=True).eval()
    with torch.no_grad():
        ours = tower.block_embeddings(torch.from_numpy(y)[None])[0]      # (blocks, 512)
        clip_emb = tower(torch.from_numpy(y)[None])[0]                   # (512,)
    assert ref.shape == ours.shape == (3, 512)
    assert (ours - ref).abs().max() < 1e-4
    assert (clip_emb - ref.mean(0)).abs().max() < 1e-4


# ---------------------------------------------------------------------------------------------
# Small CNN and SpecAugment
# ---------------------------------------------------------------------------------------------
def test_spec_augment_masks_whole_stripes_in_training_only():
    aug = SpecAugment(time_masks=2, time_width=10, freq_masks=2, freq_width=6)
    x = torch.randn(4, 1, 50, 64) + 10.0                                # nothing is 0 before masking
    assert torch.equal(aug.eval()(x), x)
    torch.manual_seed(0)
    y = aug.train()(x)
    masked = y == 0
    assert bool(masked.any()) and torch.equal(y[~masked], x[~masked])
    for b in range(4):                                                  # every masked cell lies on a
        m = masked[b, 0]                                                # fully masked row or column
        full_rows, full_cols = m.all(dim=1), m.all(dim=0)
        assert torch.equal(m, full_rows[:, None] | full_cols[None, :])
        assert int(full_rows.sum()) <= 2 * 9 and int(full_cols.sum()) <= 2 * 5
    torch.manual_seed(0)
    assert torch.equal(aug(x), y)                                       # seeded: reproducible


def test_small_cnn_shapes_params_determinism_and_grads():
    torch.manual_seed(0)
    tower = AUDIO_TOWERS.get("small-cnn")(dropout=0.0)
    assert isinstance(tower, SmallCNN) and tower.sample_rate == 16000 and tower.embed_dim == 256
    # bn0 + 4 x (conv + BN) + fc, written out
    chans = [1, 32, 64, 128, 128]
    expected = 2 * 64 + sum(chans[i] * chans[i + 1] * 9 + 2 * chans[i + 1] for i in range(4)) + 128 * 256 + 256
    assert sum(p.numel() for p in tower.parameters()) == expected == 273_760

    wave = 0.1 * torch.randn(3, 16000)                                  # 1 s at 16 kHz
    tower.eval()
    with torch.no_grad():
        a, b = tower(wave), tower(wave)
    assert a.shape == (3, 256) and torch.equal(a, b)

    # SpecAugment: changes training-mode output (same batch statistics, masks on vs off)
    tower.train()
    tower.spec_augment.time_masks = tower.spec_augment.freq_masks = 0
    off = tower(wave)
    tower.spec_augment.time_masks = tower.spec_augment.freq_masks = 2
    torch.manual_seed(3)
    on = tower(wave)
    assert not torch.allclose(on, off)
    on.pow(2).sum().backward()
    assert tower.blocks[0][0].weight.grad is not None and tower.blocks[0][0].weight.grad.abs().sum() > 0
    # ... and not eval-mode output
    tower.eval()
    with torch.no_grad():
        c = tower(wave)
        tower.spec_augment.time_masks = tower.spec_augment.freq_masks = 0
        d = tower(wave)
    assert torch.equal(c, d)


def test_small_cnn_config_overrides_and_pretrained_path(tmp_path):
    small = SmallCNN(SmallCNNConfig(channels=(8, 16), embed_dim=12))
    path = tmp_path / "small.pt"
    torch.save(small.state_dict(), path)
    again = AUDIO_TOWERS.get("small-cnn")(pretrained=path, channels=(8, 16), embed_dim=12).eval()
    wave = 0.1 * torch.randn(2, 8000)
    with torch.no_grad():
        assert torch.equal(again(wave), small.eval()(wave))
    with pytest.raises(ValueError, match="no published weights"):
        AUDIO_TOWERS.get("small-cnn")(pretrained=True)
