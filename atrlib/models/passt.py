"""PaSST audio tower (Koutini et al., 2022), state-dict compatible with the authors' released
``.pt`` files (the hear21passt layout): ``passt`` = ``passt-s-f128-p16-s10-ap.476-swa.pt``
(hear21passt ``passt_s_swa_p16_128_ap476``: 16x16 patches, stride 10 x 10, 12 x 99 patches per
10 s) and ``passt-s16`` = ``passt-s-f128-p16-s16-ap.468.pt`` (``passt_s_p16_s16_128_ap468``:
stride 16 x 16, no overlap, input_tdim 1000, 8 x 62 patches per 10 s; the DCASE 2025 task 6
baseline's tower). Shapes below are the stride-10 ones.

A ViT over log-mel patches with separate frequency and time positional embeddings and two
tokens (class + distillation). Module names are the authors'::

    patch_embed.proj.{weight, bias}       (768, 1, 16, 16)   16x16 patches, stride 10 x 10
    cls_token, dist_token                 (1, 1, 768)
    new_pos_embed                         (1, 2, 768)        positions of the two tokens
    freq_new_pos_embed                    (1, 768, 12, 1)    one per frequency patch
    time_new_pos_embed                    (1, 768, 1, 99)    one per time patch (10 s)
    blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}.*   12 pre-LN blocks
    norm.*                                (768,)             final LayerNorm (eps 1e-6)
    head.0.* (LayerNorm), head.1.* (527, 768), head_dist.* (527, 768)

The computation::

    wave (batch, samples) @ 32 kHz, cut into 10-s windows
      -> pre-emphasis 0.97, |STFT|^2 (n_fft 1024, symmetric Hann 800, hop 320), 128 Kaldi mels
         0-15 kHz (the authors' eval-mode range), log(x + 1e-5), (x + 4.5) / 5
                                                           (windows, 128, frames)   frames <= 1000
      -> patch conv                                        (windows, 768, 12, T')  T' <= 99
      -> + time and frequency positional embeddings; in training, structured patch-out
         drops s_patchout_t time columns and s_patchout_f frequency rows at random
      -> [cls, dist, patches] through 12 blocks, LayerNorm
      -> pooled: (cls + dist) / 2 (the authors' "features"), averaged over a clip's windows
      -> frames: the patch tokens, time-major (12 per 100 ms), windows concatenated

``frames="time"`` averages the frequency patches of each time column (one frame per 100 ms).
With ``lengths`` given, patches past a clip's end are masked out of attention and frames.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from atrlib.audio.features import FeatureConfig, LogMel
from atrlib.models.frames import masked_mean
from atrlib.models.towers import register_variants
from atrlib.models.weights import torch_load_weights_only, tower_weights

PathLike = Union[str, Path]
# variant -> atrlib.models.weights name of its published file
PASST_WEIGHTS = {"passt": "passt-s-swa-ap476",       # passt-s-f128-p16-s10-ap.476-swa.pt
                 "passt-s16": "passt-s16-ap468"}     # passt-s-f128-p16-s16-ap.468.pt


@dataclass(frozen=True)
class PaSSTConfig:
    # -- front end (the authors' AugmentMelSTFT in eval mode) ------------------------------
    sample_rate: int = 32000              # Hz of the input waveform
    n_fft: int = 1024                     # FFT size
    win_length: int = 800                 # symmetric Hann window, centred in n_fft
    hop_length: int = 320                 # 10 ms
    n_mels: int = 128                     # Kaldi-style mel bins
    fmin: float = 0.0                     # lowest mel edge, Hz
    fmax: float = 15000.0                 # highest mel edge, Hz: sr/2 - fmax_aug_range/2 (2000), as in eval
    preemphasis: float = 0.97             # y[t] = x[t+1] - 0.97·x[t]
    # -- the transformer --------------------------------------------------------------------
    patch_size: int = 16                  # square patches over (mels, frames)
    fstride: int = 10                     # patch stride over mel bins
    tstride: int = 10                     # patch stride over frames
    input_tdim: int = 998                 # frames the time embedding was trained for (-> input_tdim // tstride columns)
    embed_dim: int = 768                  # token width = embed_dim = frame_dim of the tower
    depth: int = 12                       # transformer blocks
    num_heads: int = 12                   # attention heads
    mlp_ratio: float = 4.0                # MLP hidden = mlp_ratio · embed_dim
    qkv_bias: bool = True                 # bias in the qkv projection
    num_classes: int = 527                # AudioSet head outputs
    drop_rate: float = 0.0                # dropout after the position embeddings, attention proj and MLP (training)
    attn_drop_rate: float = 0.0           # dropout on attention weights (training)
    drop_path_rate: float = 0.0           # stochastic depth, linear over blocks (training)
    s_patchout_t: int = 0                 # time columns dropped at random in training (authors: 40 for 10-s clips)
    s_patchout_f: int = 0                 # frequency rows dropped at random in training (authors: 4)
    # -- atrlib -------------------------------------------------------------------------------
    window_seconds: float = 10.0          # longer clips are cut into windows of this length
    frames: str = "patches"               # forward_frames: "patches" (time-major) or "time" (mean per time column)

    def feature_config(self) -> FeatureConfig:
        return FeatureConfig(sample_rate=self.sample_rate, n_fft=self.n_fft, win_length=self.win_length,
                             hop_length=self.hop_length, n_mels=self.n_mels, fmin=self.fmin, fmax=self.fmax,
                             window_periodic=False, center=True, power=2.0, preemphasis=self.preemphasis,
                             mel_scale="kaldi", log="log", log_offset=1e-5, norm_mean=-4.5, norm_std=5.0)

    @property
    def grid(self) -> Tuple[int, int]:
        """(frequency rows, time columns) of the positional embeddings, as the authors size them."""
        return self.n_mels // self.fstride, self.input_tdim // self.tstride

    @property
    def window_samples(self) -> int:
        return int(round(self.window_seconds * self.sample_rate))


PASST_CONFIGS: Dict[str, PaSSTConfig] = {
    "passt": PaSSTConfig(s_patchout_t=40, s_patchout_f=4),   # passt_s_swa_p16_128_ap476, the authors' patch-out
    # passt_s_p16_s16_128_ap468 (hear21passt get_model: fstride = tstride = 16, input_tdim 1000 as the DCASE
    # 2025 baseline builds it; grid 8 x 62). Patch-out 40 / 4: PaSST's ex_audioset.py default_conf, which its
    # named config passt_s_p16_s16_128_ap468 (config_updates.py: arch and strides only) does not override
    "passt-s16": PaSSTConfig(fstride=16, tstride=16, input_tdim=1000, s_patchout_t=40, s_patchout_f=4),
    # tests only: same code, 2 blocks of width 32 on 32 mel bins, 8x8 patches with stride 8 (mels) x 4 (frames)
    "passt-tiny": PaSSTConfig(n_mels=32, patch_size=8, fstride=8, tstride=4, input_tdim=200,
                              embed_dim=32, depth=2, num_heads=4, num_classes=10, window_seconds=2.0),
}


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, qkv_bias: bool, attn_drop: float, proj_drop: float):
        super().__init__()
        self.heads, self.attn_drop, self.proj_drop = heads, attn_drop, proj_drop
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, key_valid: Optional[torch.Tensor]) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # 3 x (batch, heads, n, hd)
        mask = None if key_valid is None else key_valid[:, None, None, :]   # (batch, 1, 1, n)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                             dropout_p=self.attn_drop if self.training else 0.0)  # (batch, heads, n, hd)
        out = self.proj(out.transpose(1, 2).reshape(b, n, d))             # (batch, n, dim)
        return F.dropout(out, self.proj_drop, self.training)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, drop: float):
        super().__init__()
        self.fc1, self.fc2, self.drop = nn.Linear(dim, hidden), nn.Linear(hidden, dim), drop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.dropout(F.gelu(self.fc1(x)), self.drop, self.training)      # (batch, n, hidden)
        return F.dropout(self.fc2(x), self.drop, self.training)           # (batch, n, dim)


class Block(nn.Module):
    """Pre-LN transformer block with stochastic depth."""

    def __init__(self, c: PaSSTConfig, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(c.embed_dim, eps=1e-6)
        self.attn = Attention(c.embed_dim, c.num_heads, c.qkv_bias, c.attn_drop_rate, c.drop_rate)
        self.norm2 = nn.LayerNorm(c.embed_dim, eps=1e-6)
        self.mlp = Mlp(c.embed_dim, int(c.embed_dim * c.mlp_ratio), c.drop_rate)
        self.drop_path = drop_path

    def _path(self, y: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_path == 0.0:
            return y
        keep = 1.0 - self.drop_path
        return y * torch.empty(y.shape[0], 1, 1, device=y.device, dtype=y.dtype).bernoulli_(keep) / keep

    def forward(self, x: torch.Tensor, key_valid: Optional[torch.Tensor]) -> torch.Tensor:
        x = x + self._path(self.attn(self.norm1(x), key_valid))          # (batch, n, dim)
        return x + self._path(self.mlp(self.norm2(x)))                   # (batch, n, dim)


class PatchEmbed(nn.Module):
    def __init__(self, c: PaSSTConfig):
        super().__init__()
        self.proj = nn.Conv2d(1, c.embed_dim, kernel_size=c.patch_size, stride=(c.fstride, c.tstride))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.proj(mel.unsqueeze(1))                                # (batch, dim, freq rows, time cols)


class PaSST(nn.Module):
    """PaSST as an audio tower: wave (batch, samples) at 32 kHz -> (batch, 768), or patch frames."""

    def __init__(self, cfg: PaSSTConfig = PaSSTConfig()):
        super().__init__()
        if cfg.frames not in ("patches", "time"):
            raise ValueError(f"frames={cfg.frames!r}; use 'patches' or 'time'")
        rows, cols = cfg.grid
        if (cfg.n_mels - cfg.patch_size) // cfg.fstride + 1 != rows:
            raise ValueError(f"{cfg.n_mels} mel bins with patch {cfg.patch_size} / stride {cfg.fstride} give "
                             f"{(cfg.n_mels - cfg.patch_size) // cfg.fstride + 1} rows, but the frequency "
                             f"embedding has n_mels // fstride = {rows}")
        self.cfg = cfg
        self.sample_rate = cfg.sample_rate
        self.embed_dim = self.frame_dim = cfg.embed_dim
        self.frame_hop_samples = cfg.tstride * cfg.hop_length             # one time column of patches
        self.mel = LogMel(cfg.feature_config())
        d = cfg.embed_dim
        self.patch_embed = PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, d))
        self.new_pos_embed = nn.Parameter(torch.zeros(1, 2, d))
        self.freq_new_pos_embed = nn.Parameter(torch.zeros(1, d, rows, 1))
        self.time_new_pos_embed = nn.Parameter(torch.zeros(1, d, 1, cols))
        rates = torch.linspace(0, cfg.drop_path_rate, cfg.depth).tolist()
        self.blocks = nn.ModuleList([Block(cfg, r) for r in rates])
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.head = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, cfg.num_classes))
        self.head_dist = nn.Linear(d, cfg.num_classes)
        self._init_weights()

    def _init_weights(self):
        """The authors' ViT init: truncated normal 0.02 for tokens, embeddings and Linear layers."""
        for p in (self.cls_token, self.dist_token, self.new_pos_embed, self.freq_new_pos_embed,
                  self.time_new_pos_embed):
            nn.init.trunc_normal_(p, std=0.02, a=-2.0, b=2.0)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02, a=-2.0, b=2.0)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @property
    def max_frames(self) -> int:
        """Most spectrogram frames one window may have (time embedding columns x stride + patch)."""
        c = self.cfg
        return (c.grid[1] - 1) * c.tstride + c.patch_size + c.tstride - 1

    # -- stages --------------------------------------------------------------------------
    def encode_mel(self, mel: torch.Tensor, frame_valid: Optional[torch.Tensor] = None
                   ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-mel windows (batch, n_mels, frames) [+ frame validity (batch, frames)] ->
        ((cls + dist) / 2 (batch, dim), patch tokens (batch, cols · rows, dim) time-major,
        their validity (batch, cols · rows)). A patch is valid when it starts at a valid frame."""
        c = self.cfg
        if mel.shape[-1] < c.patch_size:
            mel = F.pad(mel, (0, c.patch_size - mel.shape[-1]))
        x = self.patch_embed(mel)                                         # (batch, dim, rows, cols)
        b, d, rows, cols = x.shape
        if cols > self.time_new_pos_embed.shape[-1]:
            raise ValueError(f"{mel.shape[-1]} frames make {cols} time patches; the time embedding has "
                             f"{self.time_new_pos_embed.shape[-1]} (at most {self.max_frames} frames per window)")
        x = x + self.time_new_pos_embed[:, :, :, :cols] + self.freq_new_pos_embed  # (batch, dim, rows, cols)
        col_valid = torch.ones(b, cols, dtype=torch.bool, device=x.device)
        if frame_valid is not None:
            starts = torch.arange(cols, device=x.device) * c.tstride      # (cols,) first frame of each column
            col_valid = frame_valid[:, starts]                           # (batch, cols)
        if self.training and c.s_patchout_t and cols > c.s_patchout_t:
            keep = torch.randperm(cols, device=x.device)[:cols - c.s_patchout_t].sort().values
            x, col_valid, cols = x[:, :, :, keep], col_valid[:, keep], len(keep)
        if self.training and c.s_patchout_f and rows > c.s_patchout_f:
            keep = torch.randperm(rows, device=x.device)[:rows - c.s_patchout_f].sort().values
            x, rows = x[:, :, keep, :], len(keep)
        x = x.flatten(2).transpose(1, 2)                                  # (batch, rows · cols, dim) freq-major
        tokens = torch.cat([self.cls_token.expand(b, -1, -1), self.dist_token.expand(b, -1, -1)], 1)
        x = torch.cat([tokens + self.new_pos_embed, x], dim=1)            # (batch, 2 + rows · cols, dim)
        x = F.dropout(x, c.drop_rate, self.training)
        key_valid = None
        if frame_valid is not None:
            patch_valid = col_valid[:, None, :].expand(b, rows, cols).reshape(b, rows * cols)
            key_valid = torch.cat([torch.ones(b, 2, dtype=torch.bool, device=x.device), patch_valid], 1)
        for block in self.blocks:
            x = block(x, key_valid)                                       # (batch, 2 + rows · cols, dim)
        x = self.norm(x)
        pooled = (x[:, 0] + x[:, 1]) / 2                                  # (batch, dim)
        patches = x[:, 2:].view(b, rows, cols, d).transpose(1, 2)          # (batch, cols, rows, dim)
        valid = col_valid[:, :, None].expand(b, cols, rows)               # (batch, cols, rows)
        return pooled, patches.reshape(b, cols * rows, d), valid.reshape(b, cols * rows)

    def _windows(self, wave: torch.Tensor, lengths: Optional[torch.Tensor]):
        """Cut (batch, samples) into (batch · windows, window) [zero-padding the last] and
        per-window real lengths (batch · windows,) or None when nothing is padded."""
        c = self.cfg
        if wave.dim() == 1:
            wave = wave.unsqueeze(0)                                      # (batch, samples)
        b, n = wave.shape
        w = c.window_samples
        n_win = max(1, math.ceil(n / w))
        if n_win > 1 and n % w:
            wave = F.pad(wave, (0, n_win * w - n))                        # (batch, n_win · w)
            if lengths is None:
                lengths = torch.full((b,), n, device=wave.device)
        wins = wave.reshape(b * n_win, -1) if n_win > 1 else wave         # (batch · n_win, window)
        if lengths is None:
            return wins, n_win, None
        starts = torch.arange(n_win, device=wave.device) * w              # (n_win,)
        win_len = (torch.as_tensor(lengths, device=wave.device)[:, None] - starts[None, :]).clamp(0, wins.shape[1])
        return wins, n_win, win_len.reshape(-1)                           # (batch · n_win,)

    def _encode(self, wave: torch.Tensor, lengths: Optional[torch.Tensor]):
        b = 1 if wave.dim() == 1 else wave.shape[0]
        wins, n_win, win_len = self._windows(wave, lengths)
        mel = self.mel(wins.float())                                      # (batch · n_win, n_mels, frames)
        frame_valid = None
        if win_len is not None:
            starts = torch.arange(mel.shape[-1], device=mel.device) * self.cfg.hop_length
            frame_valid = starts[None, :] < win_len.clamp(min=1)[:, None]  # (batch · n_win, frames)
        pooled, patches, valid = self.encode_mel(mel, frame_valid)
        win_valid = valid.any(1) if win_len is None else win_len > 0      # (batch · n_win,)
        if win_len is not None:
            valid = valid & win_valid[:, None]
        return (pooled.view(b, n_win, -1), win_valid.view(b, n_win),
                patches.reshape(b, -1, patches.shape[-1]), valid.reshape(b, -1))

    # -- the tower interface -------------------------------------------------------------
    def forward_frames(self, wave: torch.Tensor, lengths: Optional[torch.Tensor] = None
                       ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(batch, samples) [+ lengths (batch,)] -> frames (batch, T, dim), mask (batch, T) bool
        (True = valid). T = windows x time columns x frequency rows (``frames="patches"``) or
        windows x time columns (``"time"``)."""
        _, _, x, valid = self._encode(wave, lengths)
        if self.cfg.frames == "time":
            rows = self.cfg.grid[0] - (self.cfg.s_patchout_f if self.training and self.cfg.s_patchout_f else 0)
            x = x.view(x.shape[0], -1, rows, x.shape[-1]).mean(2)          # (batch, cols, dim)
            valid = valid.view(valid.shape[0], -1, rows).any(-1)          # (batch, cols)
        return x, valid

    def forward(self, wave: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The authors' "features" ((cls + dist) / 2 after the last norm), averaged over the
        windows holding real audio: (batch, dim)."""
        pooled, win_valid, _, _ = self._encode(wave, lengths)             # (batch, n_win, dim), (batch, n_win)
        return masked_mean(pooled, win_valid)                             # (batch, dim)

    def tag(self, wave: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """AudioSet probabilities: sigmoid(head(features)) per window, averaged, (batch, classes)."""
        pooled, win_valid, _, _ = self._encode(wave, lengths)
        return masked_mean(torch.sigmoid(self.head(pooled)), win_valid)   # (batch, classes)


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------
def load_passt_state_dict(path: PathLike) -> Dict[str, torch.Tensor]:
    """The model state dict of an authors' PaSST file (a bare state dict or ``{"model": sd}``),
    read with numpy-safe ``weights_only`` loading. Pre-conv checkpoints stored the patch
    projection flattened; it is reshaped to the conv layout as the authors' loader does."""
    ckpt = torch_load_weights_only(path)
    sd = ckpt["model"] if isinstance(ckpt, dict) and isinstance(ckpt.get("model"), dict) else ckpt
    if not isinstance(sd, dict) or "patch_embed.proj.weight" not in {k.replace("module.", "", 1) for k in sd}:
        raise ValueError(f"{path}: not a PaSST state dict (no 'patch_embed.proj.weight'); expected the authors' "
                         "released .pt file")
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
    w = sd["patch_embed.proj.weight"]
    if w.dim() < 4:
        side = int(round(math.sqrt(w[0].numel())))
        sd["patch_embed.proj.weight"] = w.reshape(w.shape[0], 1, side, side)
    return sd


def build_passt(name: str = "passt", pretrained: Union[bool, PathLike, None] = None,
                weights: Optional[PathLike] = None, **overrides) -> PaSST:
    """A PaSST variant by name; ``overrides`` replace :class:`PaSSTConfig` fields.

    pretrained: None / False = random init; True = the published file of ``passt``
    (``passt-s-f128-p16-s10-ap.476-swa.pt``) or ``passt-s16`` (``passt-s-f128-p16-s16-ap.468.pt``),
    via ``atrlib.models.weights``; a path = that file (``weights=`` is the same). Weights load with
    ``strict=True``.
    """
    if name not in PASST_CONFIGS:
        raise KeyError(f"unknown PaSST variant {name!r}; known: {', '.join(PASST_CONFIGS)}")
    model = PaSST(replace(PASST_CONFIGS[name], **overrides))
    path = tower_weights(name, PASST_WEIGHTS, pretrained, weights)
    if path is not None:
        model.load_state_dict(load_passt_state_dict(path), strict=True)
    return model


register_variants(build_passt, {  # every row of PASST_CONFIGS, full size and its tiny twin for tests
    "passt": "PaSST-S (patch 16, stride 10, 128 mels): 32 kHz, 10-s windows, 768-d, 86.15 M parameters, structured patch-out in training.",
    "passt-s16": "PaSST-S (patch 16, stride 16, no overlap, 128 mels; AudioSet mAP .468): 8 x 62 patches per 10-s window, 768-d, the DCASE 2025 task 6 baseline's tower.",
    "passt-tiny": "Two blocks of width 32 on 32 mel bins, 2-s windows: the PaSST code path for tests.",
})


__all__ = ["PaSST", "PaSSTConfig", "PASST_CONFIGS", "build_passt", "load_passt_state_dict"]
