"""Tower-independent front-end options: the segment rule, segment pooling around a tower,
random training windows, SpecAugment settings for any log-mel tower."""
import numpy as np
import pytest
import torch

import atrlib  # noqa: F401  (thread settings before torch work)
from atrlib.audio.io import segment_bounds
from atrlib.models.clip_frontend import (AudioFrontendConfig, ClipFrontend, configure_spec_augment, random_window,
                                         wrap_audio_tower)
from atrlib.models.frames import check_tower
from atrlib.models.towers import AUDIO_TOWERS


def test_segment_bounds_by_hand():
    assert segment_bounds(25, 10, 30, "pad", 1) == [(0, 10), (10, 20), (20, 25)]
    assert segment_bounds(45, 10, 30, "pad", 1) == [(0, 10), (10, 20), (20, 30)]      # cut at max_len
    assert segment_bounds(20 + 0, 10, None, "pad", 1) == [(0, 10), (10, 20)]
    assert segment_bounds(20 + 1, 10, None, "pad", 2) == [(0, 10), (10, 20)]          # a 1-sample tail dropped
    assert segment_bounds(3, 10, None, "pad", 5) == [(0, 3)]                          # the only segment stays
    assert segment_bounds(25, 10, None, "align", 5) == [(0, 10), (10, 20), (15, 25)]  # tail aligned to the end
    assert segment_bounds(24, 10, None, "align", 5) == [(0, 10), (10, 20)]
    assert segment_bounds(7, 10, None, "align", 5) == [(0, 7)]
    with pytest.raises(ValueError, match="tail"):
        segment_bounds(5, 2, tail="loop")


def _old_padded_cutter(x, sr, seconds, max_seconds, min_last):
    """The padded cutter atrlib.audio.io.segment had before segment_bounds (kept here as the reference)."""
    x = x[..., : int(max_seconds * sr)]
    seg, out = int(seconds * sr), []
    for s in range(0, max(x.shape[-1], 1), seg):
        piece = x[..., s:s + seg]
        if out and piece.shape[-1] < min_last * sr:
            break
        out.append(np.pad(piece, (0, seg - piece.shape[-1])))
    return out


@pytest.mark.parametrize("n", [1, 9, 10, 11, 19, 20, 21, 25, 29, 30, 31, 45])
def test_segment_bounds_reproduce_the_older_cutters(n):
    """Drop-in for the two cutters it replaces: the padded one audio.segment had, and the
    end-aligned one of the tag-bridge retriever (tagbridge.split_segments)."""
    from atrlib.audio.io import segment

    x = np.arange(1, n + 1, dtype=np.float32)
    pieces, ref = segment(x, 1, seconds=10, max_seconds=30, min_last=2), _old_padded_cutter(x, 1, 10, 30, 2)
    assert len(pieces) == len(ref) and all(np.array_equal(p, r) for p, r in zip(pieces, ref))
    aligned = segment(x, 1, seconds=10, max_seconds=None, min_last=2, tail="align")
    assert [(int(p[0]) - 1, int(p[-1])) for p in aligned] == segment_bounds(n, 10, None, "align", 2)
    try:
        from atrlib.retrieval.tagbridge import split_segments
    except ImportError:
        return
    assert [p.tolist() for p in split_segments(x, 1, 10.0, min_last=2)] == [p.tolist() for p in aligned]


def test_segment_pooling_equals_manual_mean():
    torch.manual_seed(0)
    tower = AUDIO_TOWERS.get("cnn14-tiny")().eval()
    sr = tower.sample_rate
    front = ClipFrontend(tower, AudioFrontendConfig(segment_seconds=1.0, max_seconds=3.0)).eval()
    wave = 0.1 * torch.randn(2, int(4.2 * sr))                          # longer than max: cut at 3 s
    lengths = torch.tensor([int(4.2 * sr), int(1.5 * sr)])              # clip 2: 1 s + a 0.5-s tail (dropped)
    with torch.no_grad():
        pooled, frames, mask = check_tower(front, wave)
        got = front(wave, lengths)
        segs = [tower(wave[:, s * sr:(s + 1) * sr]) for s in range(3)]  # (2, D) each
    assert torch.allclose(pooled, (segs[0] + segs[1] + segs[2]) / 3, atol=1e-6)
    assert torch.allclose(got[0], pooled[0], atol=1e-6)
    assert torch.allclose(got[1], segs[0][1], atol=1e-6)                # only its first segment counts
    with torch.no_grad():
        _, m = front.forward_frames(wave, lengths)
    per = frames.shape[1] // 3
    assert bool(m[0].all()) and m[1, :per].all() and not m[1, per:].any()
    mx = ClipFrontend(tower, AudioFrontendConfig(segment_seconds=1.0, max_seconds=3.0, segment_pool="max")).eval()
    with torch.no_grad():
        assert torch.allclose(mx(wave), torch.maximum(torch.maximum(segs[0], segs[1]), segs[2]), atol=1e-6)


def test_random_window_and_training_crop():
    wave = torch.arange(20.0).repeat(2, 1)                              # (2, 20)
    torch.manual_seed(0)
    out, lens = random_window(wave, torch.tensor([20, 6]), 4)
    assert out.shape == (2, 4) and lens.tolist() == [4, 4]
    assert out[1].max() <= 5 and bool((out[:, 1:] - out[:, :-1] == 1).all())   # inside the real audio, contiguous
    tower = AUDIO_TOWERS.get("mel-stats")()
    front = wrap_audio_tower(tower, {"train_crop_seconds": 0.5})
    seen = []
    tower.forward = lambda w: seen.append(w.shape) or torch.zeros(w.shape[0], tower.embed_dim)
    front.train()(torch.randn(2, 16000))
    front.eval()(torch.randn(2, 16000))
    assert seen == [(2, 8000), (2, 16000)]                              # cropped in training only
    assert wrap_audio_tower(tower, {}) is tower and wrap_audio_tower(tower, None) is tower


def test_spec_augment_settings_reach_any_log_mel_tower():
    for name, kw in [("cnn14-tiny", {}), ("resnet38-tiny", {}), ("small-cnn", {}),
                     ("efficientat-mn04", {"pretrained": False})]:
        tower = AUDIO_TOWERS.get(name)(**kw)
        assert configure_spec_augment(tower, time_masks=2, freq_masks=1, freq_width=4) >= 1
        sa = [m for m in tower.modules() if type(m).__name__ == "SpecAugment"][0]
        assert (sa.time_masks, sa.freq_masks, sa.freq_width) == (2, 1, 4)
    with pytest.raises(ValueError, match="SpecAugment"):
        wrap_audio_tower(AUDIO_TOWERS.get("mel-stats")(), {"spec_time_masks": 2})
    with pytest.raises(ValueError, match="unknown audio_frontend"):
        wrap_audio_tower(AUDIO_TOWERS.get("mel-stats")(), {"segments": 3})


def test_model_config_audio_frontend_wraps_the_tower():
    from atrlib.models.dual import create_model

    plain = create_model("synth-tiny")
    assert not isinstance(plain.audio_tower, ClipFrontend)
    model = create_model("synth-tiny", audio_frontend={"segment_seconds": 1.0, "max_seconds": 3.0,
                                                       "spec_time_masks": 1})
    assert isinstance(model.audio_tower, ClipFrontend) and model.audio_tower.tower.spec_augment.time_masks == 1
    model.eval()
    with torch.no_grad():
        emb = model.encode_audio(0.1 * torch.randn(2, 3 * model.sample_rate))
    assert emb.shape == (2, model.config.embed_dim)
