"""PaSST tower: strict loading of the authors' layout, and equality with their code (hear21passt
0.0.26) on the same random weights — network, patch-out, front end, windows; for stride 10
(``passt``) and stride 16 (``passt-s16``, the DCASE 2025 baseline's, built by hear21passt's own
``get_model``). The stride-16 file's hash is trusted on first use (``atrlib.models.weights``)."""
import pytest
import torch

import atrlib  # noqa: F401  (thread settings before torch work)
from atrlib.errors import WeightsNotFoundError
from atrlib.models.passt import PASST_CONFIGS, build_passt
from atrlib.models.towers import AUDIO_TOWERS
from reference_code import import_reference, kaldi_reference, reference_cache
from reference_towers import passt_front_end as _ref_front_end
from reference_towers import passt_pair as _pair
from reference_towers import passt_s16_pair


@pytest.fixture(scope="module")
def kaldi_py(request):
    return kaldi_reference(reference_cache(request.config, "atrlib-torchaudio-kaldi"))


@pytest.fixture(scope="module")
def ref_passt(kaldi_py):
    return import_reference("hear21passt.models.passt", kaldi_py, "hear21passt==0.0.26")


def _ref_tokens(ref, mel):
    """The reference's output and its token sequence after the final norm (via a hook)."""
    seen = {}
    h = ref.norm.register_forward_hook(lambda m, i, o: seen.__setitem__("x", o))
    try:
        logits, feats = ref(mel.unsqueeze(1))
    finally:
        h.remove()
    return logits, feats, seen["x"]


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def _time_major(tokens, rows):
    """Reference patch tokens (batch, rows · cols, dim), frequency-major -> time-major."""
    b, n, d = tokens.shape
    return tokens.view(b, rows, n // rows, d).transpose(1, 2).reshape(b, n, d)


def test_registered_and_attributes():
    for name in ("passt", "passt-s16", "passt-tiny"):
        assert name in AUDIO_TOWERS
    tower = AUDIO_TOWERS.get("passt-tiny")()
    assert (tower.sample_rate, tower.embed_dim, tower.frame_dim, tower.frame_hop_samples) == (32000, 32, 32, 1280)


@pytest.mark.parametrize("frames", [200, 137, 8])
def test_tiny_equals_reference_from_mels(ref_passt, frames):
    ref, ours, cfg = _pair(ref_passt, "passt-tiny")
    mel = torch.randn(2, cfg.n_mels, frames, generator=torch.Generator().manual_seed(frames))
    with torch.no_grad():
        logits, feats, tokens = _ref_tokens(ref, mel)
        pooled, patches, valid = ours.encode_mel(mel)
    assert valid.all() and patches.shape == (2, tokens.shape[1] - 2, 32)
    assert _rel(pooled, feats) <= 1e-4
    assert _rel(ours.head(pooled), logits) <= 1e-4
    assert _rel(patches, _time_major(tokens[:, 2:], cfg.grid[0])) <= 1e-4


def test_patchout_in_training_equals_reference(ref_passt):
    ref, ours, cfg = _pair(ref_passt, "passt-tiny", s_patchout_t=7, s_patchout_f=1)
    ref.train(), ours.train()
    mel = torch.randn(2, cfg.n_mels, 200, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(5)
    _, feats, tokens = _ref_tokens(ref, mel)
    torch.manual_seed(5)
    pooled, patches, valid = ours.encode_mel(mel)
    cols = (200 - cfg.patch_size) // cfg.tstride + 1
    assert patches.shape[1] == (cols - 7) * (cfg.grid[0] - 1) == tokens.shape[1] - 2
    assert _rel(pooled, feats) <= 1e-4
    assert _rel(patches, _time_major(tokens[:, 2:], cfg.grid[0] - 1)) <= 1e-4


def _wave3s():
    g = torch.Generator().manual_seed(0)
    return 0.3 * torch.sin(torch.arange(3 * 32000) * 0.07) + 0.05 * torch.randn(2, 3 * 32000, generator=g)


def test_front_end_equals_reference(kaldi_py):
    """The authors' mel front end in eval mode (0-15 kHz, as hear21passt's get_basic_model sets it)."""
    mel = _ref_front_end(kaldi_py)
    assert mel.fmax == PASST_CONFIGS["passt"].fmax == 15000
    ours = build_passt("passt", depth=1).eval()                            # the real front end, one block
    wave = _wave3s()
    with torch.no_grad():
        ref_mel, our_mel = mel(wave), ours.mel(wave)                       # (2, 128, frames)
    assert our_mel.shape == ref_mel.shape == (2, 128, 1 + (3 * 32000 - 1) // 320)
    assert (our_mel - ref_mel).abs().max() <= 1e-4 * ref_mel.abs().max()


@pytest.mark.slow
def test_full_size_equals_reference_from_waveform(ref_passt, kaldi_py):
    """Real sizes, the authors' wrapper (mel + network), from the waveform."""
    wrapper = import_reference("hear21passt.wrapper", kaldi_py, "hear21passt==0.0.26")
    ref_net, ours, cfg = _pair(ref_passt, "passt")
    ref = wrapper.PasstBasicWrapper(mel=_ref_front_end(kaldi_py), net=ref_net, mode="all").eval()
    wave = _wave3s()
    with torch.no_grad():
        ref_out = ref(wave)                                                # (2, 527 + 768)
        pooled, probs = ours(wave), ours.tag(wave)
    assert _rel(pooled, ref_out[:, 527:]) <= 1e-4
    assert _rel(probs, torch.sigmoid(ref_out[:, :527])) <= 1e-4


def test_stride16_equals_reference_from_waveform_and_in_training(ref_passt, kaldi_py):
    """passt-s16 against hear21passt's passt_s_p16_s16_128_ap468 (get_model as the DCASE 2025
    baseline calls it, pretrained=False) on the same random weights: the authors' wrapper (mel +
    network) on a 3-s clip in eval mode, and the baseline's patch-out (15 columns, 2 rows) in training."""
    wrapper = import_reference("hear21passt.wrapper", kaldi_py, "hear21passt==0.0.26")
    ref_net, ours, cfg = passt_s16_pair(ref_passt, s_patchout_t=15, s_patchout_f=2)
    assert (cfg.fstride, cfg.tstride, cfg.input_tdim, cfg.grid) == (16, 16, 1000, (8, 62))
    assert ref_net.patch_embed.grid_size == cfg.grid and ref_net.time_new_pos_embed.shape[-1] == 62
    ref = wrapper.PasstBasicWrapper(mel=_ref_front_end(kaldi_py), net=ref_net, mode="all").eval()
    wave = _wave3s()
    with torch.no_grad():
        ref_out = ref(wave)                                                # (2, 527 + 768)
        pooled, probs = ours(wave), ours.tag(wave)
        frames, mask = ours.forward_frames(wave)
    assert _rel(pooled, ref_out[:, 527:]) <= 1e-4
    assert _rel(probs, torch.sigmoid(ref_out[:, :527])) <= 1e-4
    cols = (1 + (3 * 32000 - 1) // 320 - 16) // 16 + 1                     # 301 frames -> 18 columns
    assert frames.shape == (2, cols * 8, 768) and mask.all()
    ref_net.train(), ours.train()
    mel = ours.mel(wave)                                                   # (2, 128, 301)
    torch.manual_seed(5)
    _, feats, tokens = _ref_tokens(ref_net, mel)
    torch.manual_seed(5)
    pooled, patches, _ = ours.encode_mel(mel)
    assert patches.shape[1] == (cols - 15) * (8 - 2) == tokens.shape[1] - 2
    assert _rel(pooled, feats) <= 1e-4
    assert _rel(patches, _time_major(tokens[:, 2:], 8 - 2)) <= 1e-4


def test_stride16_ten_seconds_fill_the_time_embedding():
    """A 10-s window (1001 frames) makes 62 time columns of 8 rows: the whole embedding."""
    model = build_passt("passt-s16", depth=1).eval()
    assert model.cfg.grid == (8, 62) and model.frame_hop_samples == 16 * 320
    with torch.no_grad():
        frames, mask = model.forward_frames(0.1 * torch.randn(1, 10 * 32000))
    assert frames.shape == (1, 62 * 8, 768) and mask.all()


def test_stride16_weights_entry_and_trust_on_first_use(tmp_path, monkeypatch, capsys):
    """The published file is named with its release URL; it has no checksum on record, so the
    first download records its sha256 (printed) and later loads are checked against that record."""
    import atrlib.models.weights as W
    from atrlib.errors import ChecksumError

    spec = W.KNOWN_WEIGHTS["passt-s16-ap468"]
    assert spec.filename == "passt-s-f128-p16-s16-ap.468.pt" and (spec.sha256, spec.md5) == (None, None)
    assert spec.url == ("https://github.com/kkoutini/PaSST/releases/download/v0.0.2-audioset/"
                        "passt-s-f128-p16-s16-ap.468.pt")                 # hear21passt 0.0.26 default_cfgs
    monkeypatch.setenv("ATRLIB_OFFLINE", "1")
    monkeypatch.setenv("ATRLIB_WEIGHTS", str(tmp_path / "none"))
    monkeypatch.setenv("ATRLIB_SHARED", str(tmp_path / "no-shared"))
    monkeypatch.setenv("ATRLIB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(WeightsNotFoundError) as e:
        build_passt("passt-s16", pretrained=True)
    assert spec.filename in str(e.value) and spec.url in str(e.value)
    # trust on first use, on a local stand-in for the release file
    monkeypatch.delenv("ATRLIB_OFFLINE")
    src = tmp_path / "remote.pt"
    src.write_bytes(b"stand-in for the checkpoint")
    local = W.WeightSpec("passt-s16-ap468", spec.filename, src.as_uri(), subdir="passt")
    got = W.resolve_weights(local, progress=False)
    digest = W.file_digest(src)
    assert (got.parent / (got.name + ".sha256")).read_text() == f"{digest}  {spec.filename}\n"
    assert digest in capsys.readouterr().out
    assert W.resolve_weights(local, download=False) == got                 # unchanged: passes the check
    got.write_bytes(b"changed")
    with pytest.raises(ChecksumError, match="recorded at its first download"):
        W.resolve_weights(local, download=False)


def test_long_clips_are_cut_into_windows(ref_passt):
    ref, ours, cfg = _pair(ref_passt, "passt-tiny")
    wave = 0.1 * torch.randn(1, 2 * cfg.window_samples, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        halves = [_ref_tokens(ref, ours.mel(w))[1:] for w in wave.split(cfg.window_samples, dim=1)]
        pooled = ours(wave)
        frames, mask = ours.forward_frames(wave)
    assert _rel(pooled, (halves[0][0] + halves[1][0]) / 2) <= 1e-4
    ref_frames = torch.cat([_time_major(t[:, 2:], cfg.grid[0]) for _, t in halves], 1)
    assert frames.shape == ref_frames.shape and mask.all()
    assert _rel(frames, ref_frames) <= 1e-4


def test_lengths_mask_padding_out_of_attention():
    """With lengths, what lies after the last valid patch's receptive field cannot change the
    valid outputs; without lengths it does."""
    model = build_passt("passt-tiny").eval()
    c = model.cfg
    length = 20000
    last_col = (length - 1) // (c.tstride * c.hop_length)                  # last column starting inside
    reach = (last_col * c.tstride + c.patch_size - 1) * c.hop_length + c.n_fft // 2 + 1
    a = 0.1 * torch.randn(1, c.window_samples, generator=torch.Generator().manual_seed(3))
    b = a.clone()
    b[:, reach:] = 0.5 * torch.randn(1, c.window_samples - reach, generator=torch.Generator().manual_seed(4))
    lengths = torch.tensor([length])
    with torch.no_grad():
        fa, ma = model.forward_frames(a, lengths)
        fb, mb = model.forward_frames(b, lengths)
        pa, pb = model(a, lengths), model(b, lengths)
        ua, ub = model(a), model(b)
    assert torch.equal(ma, mb) and ma.sum() == (last_col + 1) * c.grid[0]
    assert _rel(fa[ma], fb[mb]) <= 1e-5 and _rel(pa, pb) <= 1e-5
    assert _rel(ua, ub) > 1e-3


def test_time_frames_and_training_shapes():
    model = build_passt("passt-tiny", frames="time", s_patchout_t=5, s_patchout_f=1)
    wave = 0.1 * torch.randn(2, 40000)
    model.eval()
    with torch.no_grad():
        frames, mask = model.forward_frames(wave)
    cols = (model.mel(wave).shape[-1] - 8) // 4 + 1
    assert frames.shape == (2, cols, 32) and mask.all()
    model.train()
    f, m = model.forward_frames(wave)
    assert f.shape == (2, cols - 5, 32) and m.shape == (2, cols - 5)
    model(wave).pow(2).sum().backward()                                    # trainable end to end (heads unused)
    assert all(p.grad is not None for n, p in model.named_parameters() if not n.startswith("head"))


def test_checkpoint_files_load_strictly_and_missing_weights_say_what_to_do(tmp_path, monkeypatch):
    src = build_passt("passt-tiny")
    torch.save(src.state_dict(), tmp_path / "plain.pt")
    torch.save({"model": {f"module.{k}": v for k, v in src.state_dict().items()}}, tmp_path / "wrapped.pt")
    wave = 0.1 * torch.randn(1, 30000)
    with torch.no_grad():
        want = src.eval()(wave)
        for f in ("plain.pt", "wrapped.pt"):
            assert torch.allclose(build_passt("passt-tiny", weights=tmp_path / f).eval()(wave), want)
    sd = src.state_dict()
    sd.pop("head_dist.bias")
    torch.save(sd, tmp_path / "short.pt")
    with pytest.raises(RuntimeError, match="head_dist.bias"):
        build_passt("passt-tiny", weights=tmp_path / "short.pt")
    torch.save({"cfg": {}, "model": {"x": torch.zeros(1)}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a PaSST state dict"):
        build_passt("passt-tiny", weights=tmp_path / "other.pt")
    with pytest.raises(ValueError, match="no published weights"):
        build_passt("passt-tiny", pretrained=True)
    monkeypatch.setenv("ATRLIB_OFFLINE", "1")
    monkeypatch.setenv("ATRLIB_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("ATRLIB_SHARED", str(tmp_path / "no-shared"))
    with pytest.raises(WeightsNotFoundError) as e:
        build_passt("passt", pretrained=True)
    assert "passt-s-f128-p16-s10-ap.476-swa.pt" in str(e.value) and "github.com/kkoutini/PaSST" in str(e.value)


def test_too_many_frames_for_the_time_embedding_is_a_clear_error():
    model = build_passt("passt-tiny").eval()
    with pytest.raises(ValueError, match="time embedding"):
        model.encode_mel(torch.zeros(1, 32, model.max_frames + 1))
    model.encode_mel(torch.zeros(1, 32, model.max_frames))


@pytest.mark.slow
def test_model_configs_build_with_random_weights():
    """passt-roberta (the Samsung ensemble pairing) builds its real-size PaSST on the CPU with random
    weights (the text tower swapped for the offline MiniLM); the tiny config runs end to end."""
    from atrlib.models.dual import TowerConfig, create_model, get_model_config

    cfg = get_model_config("passt-roberta")
    assert (cfg.audio.name, cfg.audio.pretrained, cfg.text.kwargs["name_or_path"]) == ("passt", True, "roberta-large")
    model = create_model("passt-roberta", audio={"pretrained": None}, text=TowerConfig("minilm", frozen=True))
    assert model.audio_tower.embed_dim == 768
    assert model.audio_tower.cfg.fmax == cfg.audio_cfg["fmax"] == 15000.0 and model.audio_tower.sample_rate == 32000
    assert model.summary()["audio_tower"]["trainable"] == 86_153_758


def test_tiny_model_config_runs_end_to_end():
    from atrlib.models.dual import create_model

    tiny = create_model("passt-tiny-minilm").eval()
    with torch.no_grad():
        a, t = tiny.encode_audio(0.1 * torch.randn(2, 96000)), tiny.encode_text(["a dog barks", "rain"])
    assert a.shape == t.shape == (2, 32)
    assert torch.allclose(a.norm(dim=1), torch.ones(2), atol=1e-5)
