"""The aisfx sound-effects CNN as an audio tower (PyPI ``aisfx`` 0.1.2, "X-Sequential-CE").

The package ships ``aisfx/models/checkpoint.pth`` (25 MB): a ``CrossNet`` trained across nine
sound-effect libraries, i.e. an ``EmbeddingNet`` (the DCASE cross-task "Cnn_9layers": four
blocks of two 3x3 conv + BN + ReLU, 64-128-256-512 channels, 2x2 max pooling after the first
three) and one classifier head per library (``fc.*``, unused here). Its embedding is 512-d.

Input pipeline, as the package's librosa path computes it (``aisfx.inference`` constants and
``aisfx/spectrogram/spectrogram_librosa.py``), here in torch so it runs batched:

    wave (batch, samples) at 44.1 kHz
      -> / max|wave| per clip                   peak normalisation
      -> STFT n_fft 2048, hop 1024, periodic Hann, centred with zero padding (librosa >= 0.10)
      -> power -> 96 HTK mels 0-22050 Hz, each triangle scaled to sum 1 (librosa ``norm=1``)
      -> log10(1e4 · x + 1) / 9.4578 ("original" min-max normalisation, min 0)
                                                (batch, frames, 96)
      -> blocks of 100 frames (~2.3 s), hop 50 (``emb_hop_size=0.5``), an incomplete last
         block dropped; a clip shorter than one block is zero-padded to 100 frames
                                                (batch · blocks, 100, 96)
      -> EmbeddingNet: mean over mel axis, max over time      (batch · blocks, 512)
      -> mean over a clip's blocks (``clip_pool``)             (batch, 512)

The package's own inference gives one 512-d vector per block; the clip embedding (mean of
blocks) is our choice. Note: the package's librosa helper returns (mels, frames) while its
blocking and network expect (frames, mels) as its Essentia path gives; we use (frames, mels).
The original paper computed spectrograms with Essentia (which the package leaves optional);
we follow the package's librosa path, which its docs say may score slightly lower.

Weights: :func:`convert_aisfx_checkpoint` reads the package file once and writes
``cache_dir()/"weights"/"aisfx.safetensors"``; every later load reads the safetensors.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from atrlib.audio.mel import mel_matrix
from atrlib.files import atomic_path
from atrlib.models.frames import frames_mask
from atrlib.models.panns_blocks import ConvBlock
from atrlib.models.towers import AUDIO_TOWERS
from atrlib.paths import cache_dir

PathLike = Union[str, Path]

SAMPLE_RATE = 44100          # Hz (aisfx.inference.SAMPLE_RATE)
N_FFT = 2048                 # SPEC_BLOCK_LENGTH
HOP = 1024                   # SPEC_HOP_LENGTH
N_MELS = 96                  # MEL_BINS
FMIN, FMAX = 0.0, 22050.0    # F_MIN, F_MAX
SPEC_MAX = 9.457798957824707  # spectrogram_normalize(spec_norm="original"): (x - 0) / (max - 0)
BLOCK_FRAMES = 100           # EMB_BLOCK_LENGTH (~2.3 s)
BLOCK_HOP = 50               # round(EMB_BLOCK_LENGTH * emb_hop_size), emb_hop_size = 0.5


# ---------------------------------------------------------------------------------------------
# Weights: one conversion to safetensors
# ---------------------------------------------------------------------------------------------
def aisfx_package_checkpoint() -> Path:
    """Path of ``checkpoint.pth`` inside the installed ``aisfx`` package (found without importing it)."""
    spec = importlib.util.find_spec("aisfx")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the aisfx package is not installed; run: pip install --no-deps aisfx==0.1.2")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / "checkpoint.pth"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; reinstall: pip install --no-deps --force-reinstall aisfx==0.1.2")
    return path


def default_safetensors_path() -> Path:
    return cache_dir() / "weights" / "aisfx.safetensors"


def convert_aisfx_checkpoint(src: Optional[PathLike] = None, dst: Optional[PathLike] = None,
                             force: bool = False) -> Path:
    """Convert the package's pickle checkpoint to safetensors once; return the safetensors path.

    This is the only place atrlib unpickles the aisfx file, and only this known package file
    (``src`` defaults to it). The file is ``(state_dict, ds_dict)`` where ``ds_dict`` maps
    library name -> (head index as numpy int64, classes); ``torch.load(weights_only=True)``
    refuses the numpy ints, so we allow-list numpy's scalar/dtype reconstructors only
    (:func:`atrlib.models.weights.torch_load_weights_only`) rather than ``weights_only=False``:
    the same file loads and no arbitrary code can run. Every tensor (including the unused
    classifier heads) goes to ``dst`` (default ``cache_dir()/"weights"/"aisfx.safetensors"``),
    ``ds_dict`` into its metadata as JSON. An existing ``dst`` is returned untouched unless
    ``force``.
    """
    from safetensors.torch import save_file

    from atrlib.models.weights import torch_load_weights_only

    dst = Path(dst) if dst is not None else default_safetensors_path()
    if dst.exists() and not force:
        return dst
    src = Path(src) if src is not None else aisfx_package_checkpoint()
    weights, ds_dict = torch_load_weights_only(src)
    tensors = {k: v.detach().contiguous() for k, v in weights.items()}
    meta = {"source": f"aisfx package checkpoint {src.name}",
            "ds_dict": json.dumps({k: [int(i), int(n)] for k, (i, n) in ds_dict.items()})}
    with atomic_path(dst) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return dst


def load_aisfx_weights(path: Optional[PathLike] = None) -> Tuple[Dict[str, torch.Tensor], Dict[str, Tuple[int, int]]]:
    """(every tensor of the checkpoint, ds_dict) from the safetensors file (converted on first use)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path) if path is not None else convert_aisfx_checkpoint()
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    ds_dict = {k: (int(i), int(n)) for k, (i, n) in json.loads(meta.get("ds_dict", "{}")).items()}
    return load_file(str(path)), ds_dict


# ---------------------------------------------------------------------------------------------
# The network (module names = the checkpoint's ``embedding_net.*`` keys)
# ---------------------------------------------------------------------------------------------
class EmbeddingNet(nn.Module):
    """(n, frames, mels) -> (n, 8 · base): four ConvBlocks, mean over mels, max over time."""

    def __init__(self, base: int = 64):
        super().__init__()
        widths = (1, base, 2 * base, 4 * base, 8 * base)
        for i in range(4):
            setattr(self, f"conv_block{i + 1}", ConvBlock(widths[i], widths[i + 1], init="kaiming"))
        self.out_dim = widths[-1]

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        x = spec[:, None]                                                 # (n, 1, frames, mels)
        for i, pool in enumerate((2, 2, 2, 1)):
            block = getattr(self, f"conv_block{i + 1}")
            x = block(x, (pool, pool), "max" if pool > 1 else "none")        # (n, 64·2^i, frames/2^i, mels/2^i)
        x = x.mean(dim=3)                                                 # (n, 512, frames')
        return x.amax(dim=2)                                              # (n, 512)


class AisfxFrontEnd(nn.Module):
    """wave (batch, samples) at 44.1 kHz -> normalised log-mel (batch, frames, 96)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("window", torch.hann_window(N_FFT, periodic=True), persistent=False)
        fb = mel_matrix(SAMPLE_RATE, N_FFT, N_MELS, FMIN, FMAX, htk=True, norm=1.0)       # (96, freq)
        self.register_buffer("melfb", torch.from_numpy(fb).T.contiguous(), persistent=False)  # (freq, 96)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        x = wave.float()                                                  # (batch, samples)
        peak = x.abs().amax(dim=1, keepdim=True)                          # (batch, 1)
        x = x / torch.where(peak > 0, peak, torch.ones_like(peak))
        spec = torch.stft(x, n_fft=N_FFT, hop_length=HOP, window=self.window, center=True,
                          pad_mode="constant", return_complex=True)       # (batch, freq, frames)
        power = spec.abs().pow(2).transpose(1, 2)                         # (batch, frames, freq)
        mel = power @ self.melfb                                          # (batch, frames, 96)
        return torch.log10(mel * 1e4 + 1.0) / SPEC_MAX                    # (batch, frames, 96)


class AisfxTower(nn.Module):
    """aisfx EmbeddingNet as an audio tower: wave (batch, samples) at 44.1 kHz -> (batch, 512)."""

    def __init__(self, clip_pool: str = "mean", block_frames: int = BLOCK_FRAMES, block_hop: int = BLOCK_HOP):
        super().__init__()
        if clip_pool not in ("mean", "max"):
            raise ValueError(f"clip_pool must be 'mean' or 'max', not {clip_pool!r}")
        self.sample_rate = SAMPLE_RATE
        self.clip_pool, self.block_frames, self.block_hop = clip_pool, block_frames, block_hop
        self.frontend = AisfxFrontEnd()
        self.embedding_net = EmbeddingNet(64)
        self.embed_dim = self.frame_dim = self.embedding_net.out_dim
        self.frame_hop_samples = block_hop * HOP                          # one block every 50 STFT hops

    def blocks(self, spec: torch.Tensor) -> torch.Tensor:
        """(batch, frames, mels) -> (batch, blocks, block_frames, mels), as ``aisfx.preprocessing.blocking``
        with ``drop_partial_block=True``."""
        if spec.shape[1] < self.block_frames:
            spec = F.pad(spec, (0, 0, 0, self.block_frames - spec.shape[1]))   # (batch, block_frames, mels)
        return spec.unfold(1, self.block_frames, self.block_hop).transpose(2, 3)  # (batch, blocks, block_frames, mels)

    def block_embeddings(self, wave: torch.Tensor) -> torch.Tensor:
        """One 512-d vector per block (what ``aisfx.inference`` saves): (batch, blocks, 512)."""
        if wave.dim() == 1:
            wave = wave.unsqueeze(0)                                      # (batch, samples)
        blocks = self.blocks(self.frontend(wave))                         # (batch, blocks, 100, 96)
        b, n = blocks.shape[:2]
        emb = self.embedding_net(blocks.reshape(b * n, *blocks.shape[2:]))  # (batch · blocks, 512)
        return emb.reshape(b, n, -1)                                      # (batch, blocks, 512)

    def forward_frames(self, wave: torch.Tensor, lengths: Optional[torch.Tensor] = None):
        """(block embeddings (batch, blocks, 512), mask (batch, blocks)): the frames are the ~2.3-s blocks."""
        emb = self.block_embeddings(wave)                                 # (batch, blocks, 512)
        return emb, frames_mask(lengths, emb.shape[0], emb.shape[1], self.frame_hop_samples, emb.device)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        emb = self.block_embeddings(wave)                                 # (batch, blocks, 512)
        return emb.mean(dim=1) if self.clip_pool == "mean" else emb.amax(dim=1)  # (batch, 512)


@AUDIO_TOWERS.register("aisfx")
def aisfx(pretrained: Union[bool, PathLike, None] = None, **kw) -> AisfxTower:
    """The aisfx tower. pretrained: True = the package's weights via the safetensors
    cache; a path = a safetensors file written by :func:`convert_aisfx_checkpoint`; None/False =
    random init (the default, like every tower).
    ``kw``: ``clip_pool`` ("mean" / "max"), ``block_frames``, ``block_hop``.
    Loads ``embedding_net.*`` strictly; the nine classifier heads (``fc.*``) are left out."""
    model = AisfxTower(**kw)
    if pretrained is None or pretrained is False:
        return model
    tensors, _ = load_aisfx_weights(None if pretrained is True else pretrained)
    sd = {k: v for k, v in tensors.items() if k.startswith("embedding_net.")}
    other = sorted({k.split(".")[0] for k in tensors if not k.startswith("embedding_net.")})
    if other != ["fc"] and other != []:
        raise ValueError(f"unexpected groups of keys in the aisfx weights: {other}")
    model.load_state_dict(sd, strict=True)
    return model
