"""The authors' audio towers beside ours on the same random weights (test- and bench-only).

Used by the equality tests in ``tests/models`` and by ``benchmarks/bench_towers.py`` (speed of
ours against the authors' code). Never imported by atrlib. The reference packages:

- ``panns-inference`` 0.1.1 (Cnn14) and ``panns-at-inference`` 0.1.4 (ResNet38,
  Wavegram_Logmel_Cnn14), over ``torchlibrosa`` 0.1.0. Their package ``__init__`` downloads a
  label file at import, so only their ``models.py`` is imported, under a stand-in package.
- ``hear21passt`` 0.0.26 (PaSST) and ``openbeats`` 0.1.1 (BEATs), imported under the stub
  torchaudio of :mod:`reference_code` (``kaldi_py`` is its ``kaldi.py``).

Each ``*_pair`` builds the reference with random weights (constants the authors' init sets are
randomised too, so no path is hidden) and loads them into ours with ``strict=True``; both come
back in eval mode. A missing package skips the test (``pytest.skip``) with the pip line.
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import sys
import types
from pathlib import Path

import pytest
import torch

from atrlib.models.beats import BEATS_CONFIGS, BEATs, BEATsConfig
from atrlib.models.passt import PASST_CONFIGS, PaSST
from atrlib.models.towers import AUDIO_TOWERS
from reference_code import import_reference

PANNS_ARGS = dict(sample_rate=32000, window_size=1024, hop_size=320, mel_bins=64, fmin=50, fmax=14000, classes_num=527)
# our tower name -> (reference package, its class, pip line)
PANNS = {"cnn14": ("panns_inference", "Cnn14", "panns-inference==0.1.1"),
         "resnet38": ("panns_AT_inference", "ResNet38", "panns-at-inference==0.1.4"),
         "wavegram-logmel-cnn14": ("panns_AT_inference", "Wavegram_Logmel_Cnn14", "panns-at-inference==0.1.4")}
PASST_PIP, BEATS_PIP = "hear21passt==0.0.26", "openbeats==0.1.1"
# the ESPnet port of BEATs adds two fixed all-ones convs that turn sample masks into patch masks;
# the authors' checkpoints do not have them
BEATS_ESPNET_ONLY = ("patch_embedding_pad.", "raw2fbank_pad.")
BEATS_AUTHOR_KEYS = [f.name for f in dataclasses.fields(BEATsConfig)][:25]   # named as in the authors' cfg


# ---------------------------------------------------------------------------------------------
# PANNs
# ---------------------------------------------------------------------------------------------
def panns_models(package: str, pip_hint: str):
    """``<package>/models.py`` imported without running ``<package>/__init__.py``."""
    for dep in ("torchlibrosa", package):
        if importlib.util.find_spec(dep) is None:
            pytest.skip(f"reference code absent: pip install --no-deps {pip_hint} torchlibrosa==0.1.0")
    alias = f"_atrlib_ref_{package}"
    if f"{alias}.models" in sys.modules:
        return sys.modules[f"{alias}.models"]
    folder = Path(importlib.util.find_spec(package).origin).parent
    stand_in = types.ModuleType(alias)
    stand_in.__path__ = [str(folder)]                      # a package with the same files, empty __init__
    sys.modules[alias] = stand_in
    return importlib.import_module(f"{alias}.models")


def randomise_(model: torch.nn.Module, seed: int) -> None:
    """Random values for every trainable weight and every BatchNorm buffer (frozen front end kept)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            fan_in = p[0].numel() if p.dim() > 1 else 1
            p.copy_(torch.randn(p.shape, generator=g) / fan_in ** 0.5)
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))


def panns_pair(name: str, seed: int = 0):
    """(the authors' ``name`` tower, ours) on the same random weights; the reference returns a
    dict (``embedding``, ``clipwise_output``), ours the embedding."""
    package, cls, pip_hint = PANNS[name]
    ref = getattr(panns_models(package, pip_hint), cls)(**PANNS_ARGS)
    randomise_(ref, seed)
    ours = AUDIO_TOWERS.get(name)()
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref.eval(), ours.eval()


# ---------------------------------------------------------------------------------------------
# PaSST
# ---------------------------------------------------------------------------------------------
def passt_net(ref_passt, cfg, seed: int = 0):
    """The authors' PaSST network (``hear21passt.models.passt``) for our config, random weights."""
    torch.manual_seed(seed)
    net = ref_passt.PaSST(img_size=(cfg.n_mels, cfg.input_tdim), patch_size=cfg.patch_size,
                          stride=(cfg.fstride, cfg.tstride), in_chans=1, num_classes=cfg.num_classes,
                          embed_dim=cfg.embed_dim, depth=cfg.depth, num_heads=cfg.num_heads, distilled=True,
                          s_patchout_t=cfg.s_patchout_t, s_patchout_f=cfg.s_patchout_f)
    with torch.no_grad():  # the authors init biases / LayerNorms / heads to constants: randomise them
        for k, v in net.state_dict().items():
            if k.endswith(".bias") or "norm" in k or k.startswith("head"):
                v.copy_(v + 0.1 * torch.randn_like(v))
    return net


def passt_pair(ref_passt, name: str, seed: int = 0, **overrides):
    """(the authors' network, ours, the config) on the same random weights."""
    cfg = dataclasses.replace(PASST_CONFIGS[name], **overrides)
    ref = passt_net(ref_passt, cfg, seed).eval()
    ours = PaSST(cfg).eval()
    assert set(ours.state_dict()) == set(ref.state_dict())
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours, cfg


def passt_s16_pair(ref_passt, seed: int = 0, **overrides):
    """(hear21passt's ``passt_s_p16_s16_128_ap468`` built as the DCASE 2025 task 6 baseline builds
    it — ``get_model(arch=..., pretrained=False, input_tdim=1000, fstride=16, tstride=16)`` — with
    random weights, our ``passt-s16`` with them loaded strictly, the config). ``overrides`` (e.g.
    the patch-out) go to both."""
    import contextlib
    import io

    cfg = dataclasses.replace(PASST_CONFIGS["passt-s16"], **overrides)
    torch.manual_seed(seed)
    with contextlib.redirect_stdout(io.StringIO()):                      # get_model prints the whole network
        ref = ref_passt.get_model(arch="passt_s_p16_s16_128_ap468", pretrained=False, n_classes=cfg.num_classes,
                                  fstride=cfg.fstride, tstride=cfg.tstride, input_fdim=cfg.n_mels,
                                  input_tdim=cfg.input_tdim, s_patchout_t=cfg.s_patchout_t,
                                  s_patchout_f=cfg.s_patchout_f)
    with torch.no_grad():  # constants of the authors' init randomised, as in passt_net
        for k, v in ref.state_dict().items():
            if k.endswith(".bias") or "norm" in k or k.startswith("head"):
                v.copy_(v + 0.1 * torch.randn_like(v))
    ours = PaSST(cfg).eval()
    assert set(ours.state_dict()) == set(ref.state_dict())
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref.eval(), ours, cfg


def passt_front_end(kaldi_py: Path):
    """The authors' mel front end in eval mode (0-15 kHz, as hear21passt's get_basic_model sets it)."""
    pre = import_reference("hear21passt.models.preprocess", kaldi_py, PASST_PIP)
    return pre.AugmentMelSTFT(n_mels=128, sr=32000, win_length=800, hopsize=320, n_fft=1024, freqm=0, timem=0,
                              fmin=0.0, fmax=None, fmin_aug_range=10, fmax_aug_range=2000).eval()


def passt_wrapper_pair(kaldi_py: Path, name: str = "passt", seed: int = 0):
    """(the authors' wrapper: mel + network, ``mode="all"``: 527 logits then the embedding, ours)."""
    ref_passt = import_reference("hear21passt.models.passt", kaldi_py, PASST_PIP)
    wrapper = import_reference("hear21passt.wrapper", kaldi_py, PASST_PIP)
    ref_net, ours, _ = passt_pair(ref_passt, name, seed)
    return wrapper.PasstBasicWrapper(mel=passt_front_end(kaldi_py), net=ref_net, mode="all").eval(), ours


# ---------------------------------------------------------------------------------------------
# BEATs
# ---------------------------------------------------------------------------------------------
def beats_author_cfg(cfg: BEATsConfig) -> dict:
    return {k: getattr(cfg, k) for k in BEATS_AUTHOR_KEYS}


def beats_pair(ref_module, name: str, seed: int = 0, **cfg_overrides):
    """(the reference encoder, ours, the config) with the reference's random weights loaded into
    ours, strictly. ``ref_module`` is ``openbeats.beats_encoder``."""
    cfg = dataclasses.replace(BEATS_CONFIGS[name], **cfg_overrides)
    torch.manual_seed(seed)
    ref = ref_module.BeatsEncoder(input_size=0, beats_config=beats_author_cfg(cfg), is_pretraining=False).eval()
    sd = {k: v for k, v in ref.state_dict().items() if not k.startswith(BEATS_ESPNET_ONLY)}
    with torch.no_grad():  # the reference inits grep_a to ones and biases to zero: randomise them too
        for k, v in sd.items():
            if k.endswith("grep_a") or k.endswith(".bias") or k.endswith("weight_g"):
                v.copy_(v + 0.1 * torch.randn_like(v))
    ours = BEATs(cfg).eval()
    assert set(ours.state_dict()) == set(sd)
    ours.load_state_dict(sd, strict=True)
    return ref, ours, cfg
