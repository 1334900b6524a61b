"""Every registered audio tower has the two outputs (``atrlib.models.frames``): pooled
``forward`` and ``forward_frames`` with a mask, plus ``sample_rate`` / ``embed_dim`` / ``frame_dim``.

A full-size tower is checked through its tiny twin (same class, same code path); ``hf-audio``
needs a model folder and is checked in test_hf_audio.py.
"""
import pytest
import torch

import atrlib  # noqa: F401  (thread settings before torch work)
from atrlib.models.frames import check_tower, frames_mask, masked_max, masked_mean, pool_frames
from atrlib.models.towers import AUDIO_TOWERS

TWIN = {"cnn14": "cnn14-tiny", "resnet38": "resnet38-tiny", "wavegram-logmel-cnn14": "wavegram-logmel-cnn14-tiny",
        "beats": "beats-tiny", "passt": "passt-tiny", "passt-s16": "passt-tiny", "efficientat-mn10": "efficientat-mn04",
        "hf-audio": "test_hf_audio.py"}
KWARGS = {"efficientat-mn04": dict(pretrained=False)}


# the library's own towers (other test modules register toy towers of their own)
BUILT_IN = [n for n in AUDIO_TOWERS.names() if AUDIO_TOWERS.get(n).__module__.startswith("atrlib.")]


@pytest.mark.parametrize("name", BUILT_IN)
def test_two_outputs(name):
    if name in TWIN:
        pytest.skip(f"checked through {TWIN[name]}")
    torch.manual_seed(0)
    tower = AUDIO_TOWERS.get(name)(**KWARGS.get(name, {})).eval()
    sr = tower.sample_rate
    wave = 0.1 * torch.randn(2, int(6.0 * sr))                          # 6 s
    with torch.no_grad():
        pooled, frames, mask = check_tower(tower, wave)
        _, short = tower.forward_frames(wave, lengths=torch.tensor([wave.shape[1], sr // 2]))
    assert torch.isfinite(pooled).all() and torch.isfinite(frames).all()
    assert bool(mask[:, 0].all()) and torch.equal(mask[0], mask[1])     # same length: same mask
    assert torch.equal(short[0], mask[0])                               # lengths = the whole input
    assert short[1, 0] and int(short[1].sum()) < int(short[0].sum())    # 0.5 s of 6 s: fewer valid frames


def test_twins_exist():
    for name, twin in TWIN.items():
        if name in AUDIO_TOWERS and twin.endswith(".py") is False:
            assert twin in AUDIO_TOWERS, f"{name} has no tiny twin {twin} registered"


def test_mask_and_pooling_helpers():
    m = frames_mask(torch.tensor([1000, 250, 1]), 3, 4, 300)
    assert m.tolist() == [[True] * 4, [True, False, False, False], [True, False, False, False]]
    assert frames_mask(None, 2, 3, 10).all()
    x = torch.tensor([[[1.0], [3.0], [100.0]], [[2.0], [-5.0], [7.0]]])   # (2, 3, 1)
    mask = torch.tensor([[True, True, False], [True, True, True]])
    assert torch.allclose(masked_mean(x, mask).flatten(), torch.tensor([2.0, 4.0 / 3.0]))
    assert masked_max(x, mask).flatten().tolist() == [3.0, 7.0]
    assert pool_frames(x, mask, "cls").flatten().tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="pooling"):
        pool_frames(x, mask, "attention")
