"""PANNs towers (CNN14, ResNet38, Wavegram-Logmel-CNN14) against the authors' code.

References (test-only, never copied into atrlib): ``panns-at-inference`` 0.1.4 (ResNet38,
Wavegram_Logmel_Cnn14) and ``panns-inference`` 0.1.1 (Cnn14), both over ``torchlibrosa`` 0.1.0.
Their package ``__init__`` downloads a label file at import, so only their ``models.py`` is
imported, under a stand-in package (its relative import of ``pytorch_utils`` still works).

Each check: build the reference with the official constructor arguments, give every weight,
BatchNorm statistic and affine parameter random values (the authors' init zeroes some BN
scales, which would hide whole paths), load that state dict into our tower with
``strict=True`` (so keys and shapes are identical), and compare outputs in eval mode.
"""
from __future__ import annotations

import pytest
import torch

import atrlib  # noqa: F401  (thread settings before torch work)
from atrlib.models.frames import check_tower
from atrlib.models.resnet38 import ResNet38, build_resnet38
from atrlib.models.towers import AUDIO_TOWERS
from atrlib.errors import WeightsFileError
from atrlib.models.wavegram import WavegramLogmelCnn14, build_wavegram
from reference_towers import PANNS_ARGS, randomise_
from reference_towers import panns_models as reference_models

REL_TOL = 1e-4


def _wave(seconds: float, batch: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(batch, int(32000 * seconds), generator=g)    # (batch, samples)


def _compare(ours: torch.nn.Module, ref: torch.nn.Module, wave: torch.Tensor) -> None:
    with torch.no_grad():
        out = ref(wave)
        emb, probs = ours(wave), ours.tag(wave)
    for got, want in ((emb, out["embedding"]), (probs, out["clipwise_output"])):
        assert got.shape == want.shape
        scale = want.abs().max().item()
        assert scale > 0
        assert (got - want).abs().max().item() <= REL_TOL * scale


def _layout(model: torch.nn.Module) -> dict:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


# ---------------------------------------------------------------------------------------------
# Equal to the authors' code
# ---------------------------------------------------------------------------------------------
def test_resnet38_equals_authors_code():
    models = reference_models("panns_AT_inference", "panns-at-inference==0.1.4")
    ref = models.ResNet38(**PANNS_ARGS)
    randomise_(ref, 0)
    ref.eval()
    ours = build_resnet38("resnet38")
    assert _layout(ours) == _layout(ref)                                 # every key, every shape
    ours.load_state_dict(ref.state_dict(), strict=True)
    ours.eval()
    _compare(ours, ref, _wave(1.0))
    trainable = sum(p.numel() for p in ours.parameters() if p.requires_grad)
    assert trainable == sum(p.numel() for p in ref.parameters() if p.requires_grad) == 73_783_247


@pytest.mark.parametrize("seconds", [1.0, 2.0])                          # 100 and 200 hops: both branches agree
def test_wavegram_logmel_cnn14_equals_authors_code(seconds):
    models = reference_models("panns_AT_inference", "panns-at-inference==0.1.4")
    ref = models.Wavegram_Logmel_Cnn14(**PANNS_ARGS)
    randomise_(ref, 1)
    ref.eval()
    ours = build_wavegram("wavegram-logmel-cnn14")
    assert _layout(ours) == _layout(ref)
    ours.load_state_dict(ref.state_dict(), strict=True)
    ours.eval()
    _compare(ours, ref, _wave(seconds))
    trainable = sum(p.numel() for p in ours.parameters() if p.requires_grad)
    assert trainable == sum(p.numel() for p in ref.parameters() if p.requires_grad) == 81_065_487


def test_cnn14_equals_authors_code():
    models = reference_models("panns_inference", "panns-inference==0.1.1")
    ref = models.Cnn14(**PANNS_ARGS)
    randomise_(ref, 2)
    ref.eval()
    ours = AUDIO_TOWERS.get("cnn14")()
    assert _layout(ours) == _layout(ref)
    ours.load_state_dict(ref.state_dict(), strict=True)
    ours.eval()
    _compare(ours, ref, _wave(1.0))


# ---------------------------------------------------------------------------------------------
# Loading, lengths, frames, tiny variants
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, cls", [("resnet38-tiny", ResNet38), ("wavegram-logmel-cnn14-tiny", WavegramLogmelCnn14)])
def test_tiny_checkpoint_round_trip_strict(name, cls, tmp_path):
    torch.manual_seed(0)
    tower = AUDIO_TOWERS.get(name)()
    assert isinstance(tower, cls) and tower.embed_dim == 32 and tower.sample_rate == 32000
    path = tmp_path / "ckpt.pth"
    torch.save({"iteration": 0, "model": {f"module.{k}": v for k, v in tower.state_dict().items()}}, path)
    again = AUDIO_TOWERS.get(name)(pretrained=path).eval()
    wave = _wave(0.7)
    with torch.no_grad():
        assert torch.equal(again(wave), tower.eval()(wave))
    sd = {k: v for k, v in tower.state_dict().items() if k != "fc1.bias"}
    torch.save({"model": sd}, path)
    with pytest.raises(WeightsFileError, match=r"ckpt\.pth: these weights do not fit.*fc1\.bias"):
        AUDIO_TOWERS.get(name)(weights=path)
    with pytest.raises(ValueError, match="no published weights"):
        AUDIO_TOWERS.get(name)(pretrained=True)


@pytest.mark.parametrize("name, published", [("resnet38", "panns-resnet38"),
                                             ("wavegram-logmel-cnn14", "panns-wavegram-logmel-cnn14")])
def test_pretrained_true_asks_the_resolver(name, published, monkeypatch):
    import atrlib.models.weights as W

    spec = W.KNOWN_WEIGHTS[published]
    assert spec.url.startswith("https://zenodo.org/record/3987831/files/") and spec.md5 and len(spec.md5) == 32
    asked = []

    def fake(n, *a, **k):
        asked.append(n)
        raise W.WeightsNotFoundError("offline in this test")

    monkeypatch.setattr(W, "resolve_weights", fake)
    with pytest.raises(W.WeightsNotFoundError):
        AUDIO_TOWERS.get(name)(pretrained=True)
    assert asked == [published]


@pytest.mark.parametrize("samples", [3000, 10240, 16000 + 320, 16000 + 160])
def test_wavegram_any_length(samples):
    """Lengths where the two branches differ by one step (the authors' code fails there) run."""
    tower = AUDIO_TOWERS.get("wavegram-logmel-cnn14-tiny")().eval()
    with torch.no_grad():
        assert tower(_wave(samples / 32000)).shape == (2, 32)


@pytest.mark.parametrize("name", ["resnet38-tiny", "wavegram-logmel-cnn14-tiny"])
def test_frames_and_mask(name):
    tower = AUDIO_TOWERS.get(name)().eval()
    wave = _wave(2.0)                                                    # 201 STFT frames
    with torch.no_grad():
        pooled, frames, mask = check_tower(tower, wave)
        # the pooled embedding is the PANNs head applied to exactly these frames
        x = frames.transpose(1, 2)                                       # (batch, C, T)
        head = torch.relu(tower.fc1(x.amax(dim=2) + x.mean(dim=2)))
        assert torch.allclose(pooled, head, atol=1e-6)
        _, m = tower.forward_frames(wave, lengths=torch.tensor([wave.shape[1], 12000]))
    hop = tower.frame_hop_samples
    assert bool(mask.all()) and m[0].all()
    assert m[1].tolist() == [t * hop < 12000 for t in range(frames.shape[1])]
    assert frames.shape[2] == tower.frame_dim == 32


def test_logmel_entry_equals_wave_entry():
    tower = AUDIO_TOWERS.get("resnet38-tiny")().eval()
    wave = _wave(1.0)
    with torch.no_grad():
        assert torch.allclose(tower.forward_logmel(tower.logmel(wave)), tower(wave), atol=1e-6)


@pytest.mark.parametrize("name", ["resnet38-tiny", "wavegram-logmel-cnn14-tiny"])
def test_tiny_trains_with_spec_augment(name):
    tower = AUDIO_TOWERS.get(name)(spec_time_masks=2, spec_freq_masks=2).train()
    out = tower(_wave(0.5))
    out.pow(2).sum().backward()
    assert out.shape == (2, 32)
    assert tower.conv_block1.conv1.weight.grad.abs().sum() > 0
    assert tower.spectrogram_extractor.stft.conv_real.weight.grad is None   # front end frozen
