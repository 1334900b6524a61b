"""BEATs audio tower (Chen et al., 2022), state-dict compatible with ``BEATs_iter3_plus_AS2M.pt``.

The released file is ``{"cfg": {...}, "model": state_dict}``; every size is taken from its
``cfg`` (:meth:`BEATsConfig.from_checkpoint_cfg`) and the state dict loads with ``strict=True``.
Module names are the authors'::

    patch_embedding.weight                        (512, 1, 16, 16)  16x16 patches, no bias
    layer_norm.*                                  (512,)
    post_extract_proj.*                           (768, 512)
    encoder.pos_conv.0.{weight_g, weight_v, bias} conv positional embedding, weight-normed (dim 2)
    encoder.layer_norm.*                          (768,)
    encoder.layers.N.self_attn.{q,k,v,out}_proj.*           (768, 768)
    encoder.layers.N.self_attn.grep_linear.*, grep_a        gate of the relative position bias
    encoder.layers.N.self_attn.relative_attention_bias.weight  (320, 12), one table shared by all layers
    encoder.layers.N.{self_attn_layer_norm, fc1, fc2, final_layer_norm}.*
    predictor.*                                   (527, 768), fine-tuned checkpoints only

The computation::

    wave (batch, samples) @ 16 kHz
      -> Kaldi fbank of wave·2^15: 128 bins, 25 ms / 10 ms   (batch, frames, 128)
      -> (x - 15.41663) / (2 · 6.55582)
      -> 16x16 patch conv                                    (batch, 512, frames/16, 8)
      -> time-major patch sequence, LayerNorm, Linear        (batch, patches, 768)   patches = frames/16 · 8
      -> + GELU(conv positional embedding), LayerNorm
      -> 12 post-LN ("deep norm") layers with gated relative position bias
      -> frames: (batch, patches, 768) with a validity mask; pooled: masked mean (batch, 768)

One time step of patches is 16 fbank frames = 160 ms and holds 8 frequency patches.
``frames="time"`` averages those 8 into one vector per 160 ms.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from atrlib.models.frames import masked_mean
from atrlib.models.kaldi_fbank import KaldiFbank, KaldiFbankConfig, frames_for
from atrlib.models.towers import register_variants
from atrlib.models.weights import torch_load_weights_only, tower_weights

PathLike = Union[str, Path]
BEATS_WEIGHTS = "beats-iter3-plus-as2m"  # atrlib.models.weights name of BEATs_iter3_plus_AS2M.pt


@dataclass(frozen=True)
class BEATsConfig:
    # -- the authors' cfg keys (the checkpoint's "cfg" overrides these) --------------------
    input_patch_size: int = 16            # square patch over (frames, mel bins)
    embed_dim: int = 512                  # patch embedding width
    conv_bias: bool = False               # bias in the patch conv
    encoder_layers: int = 12              # transformer layers
    encoder_embed_dim: int = 768          # transformer width = frame_dim = embed_dim of the tower
    encoder_ffn_embed_dim: int = 3072     # feed-forward width
    encoder_attention_heads: int = 12     # attention heads
    activation_fn: str = "gelu"           # feed-forward activation: "gelu" or "relu"
    layer_norm_first: bool = False        # pre-LN layers (False: post-LN, as released)
    deep_norm: bool = True                # residual scaled by (2·layers)^(1/4) in post-LN layers
    dropout: float = 0.0                  # dropout on residual branches (training)
    attention_dropout: float = 0.0        # dropout on attention weights (training)
    activation_dropout: float = 0.0       # dropout after the FFN activation (training)
    encoder_layerdrop: float = 0.0        # probability of skipping a layer (training)
    dropout_input: float = 0.0            # dropout on the projected patches (training)
    conv_pos: int = 128                   # kernel of the convolutional positional embedding
    conv_pos_groups: int = 16             # groups of that convolution
    relative_position_embedding: bool = True  # T5-style bucketed relative position bias
    num_buckets: int = 320                # relative position buckets
    max_distance: int = 800               # distance at which buckets stop growing
    gru_rel_pos: bool = True              # gate the relative bias by the query (BEATs' "grep")
    finetuned_model: bool = False         # the checkpoint has an AudioSet predictor
    predictor_dropout: float = 0.1        # dropout before the predictor (training)
    predictor_class: int = 527            # predictor outputs
    # -- atrlib: front end and outputs ------------------------------------------------------
    sample_rate: int = 16000              # Hz of the input waveform
    mel_bins: int = 128                   # Kaldi fbank bins
    fbank_mean: float = 15.41663          # fbank normalisation: (x - mean) / (2 · std)
    fbank_std: float = 6.55582
    frames: str = "patches"               # forward_frames: "patches" (all, time-major) or "time" (mean of a time step's patches)

    @classmethod
    def from_checkpoint_cfg(cls, cfg: Dict[str, Any], base: Optional["BEATsConfig"] = None) -> "BEATsConfig":
        """``base`` (default: the released defaults) with every field the checkpoint's ``cfg``
        dict names replaced. Keys atrlib does not use (training-only settings such as
        ``layer_wise_gradient_decay_ratio``) are ignored: one that changed a tensor shape would
        make the strict state-dict load fail."""
        known = {f.name for f in fields(cls)}
        return replace(base or cls(), **{k: v for k, v in cfg.items() if k in known})

    @property
    def min_samples(self) -> int:
        """Shortest waveform that makes one row of patches (input_patch_size fbank frames)."""
        fb = self.fbank_config()
        return fb.win_length + (self.input_patch_size - 1) * fb.hop_length

    def fbank_config(self) -> KaldiFbankConfig:
        return KaldiFbankConfig(sample_rate=self.sample_rate, num_mel_bins=self.mel_bins, input_scale=2.0 ** 15)


BEATS_CONFIGS: Dict[str, BEATsConfig] = {
    "beats": BEATsConfig(),
    # tests only: same code, 2 layers of width 32, 16 mel bins (2 frequency patches of 8)
    "beats-tiny": BEATsConfig(input_patch_size=8, embed_dim=16, encoder_layers=2, encoder_embed_dim=32,
                              encoder_ffn_embed_dim=64, encoder_attention_heads=4, conv_pos=16, conv_pos_groups=4,
                              num_buckets=32, max_distance=64, mel_bins=16),
}


def relative_position_buckets(query_len: int, key_len: int, num_buckets: int, max_distance: int,
                              device=None) -> torch.Tensor:
    """T5's bidirectional buckets of (key - query) offsets, (query_len, key_len) int64: half the
    buckets per direction, exact below half of that, log-spaced up to max_distance beyond."""
    rel = (torch.arange(key_len, device=device)[None, :]
           - torch.arange(query_len, device=device)[:, None])              # (q, k): j - i
    half = num_buckets // 2
    bucket = (rel > 0).long() * half                                      # (q, k)
    dist = rel.abs()
    exact = half // 2
    log_ratio = torch.log(dist.clamp(min=1).float() / exact) / math.log(max_distance / exact)
    far = (exact + (log_ratio * (half - exact)).long()).clamp(max=half - 1)  # (q, k)
    return bucket + torch.where(dist < exact, dist, far)                  # (q, k)


class GatedRelPosSelfAttention(nn.Module):
    """Multi-head self-attention with BEATs' query-gated relative position bias.

    bias[b, h, i, j] = gate[b, h, i] · table[bucket(j - i), h], with gate = a·(b·grep_a - 1) + 2,
    (a, b) = sigmoid of pairwise sums of ``grep_linear(q_i)`` (8 outputs -> 2 x 4).
    """

    def __init__(self, dim: int, heads: int, dropout: float, gated: bool):
        super().__init__()
        self.heads, self.head_dim, self.dropout = heads, dim // heads, dropout
        if self.head_dim * heads != dim:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.gated = gated
        if gated:
            self.grep_linear = nn.Linear(self.head_dim, 8)
            self.grep_a = nn.Parameter(torch.ones(1, heads, 1, 1))
        self.relative_attention_bias: Optional[nn.Embedding] = None     # set (shared) by the encoder

    def forward(self, x: torch.Tensor, pos_bias: Optional[torch.Tensor],
                key_valid: Optional[torch.Tensor]) -> torch.Tensor:
        b, n, d = x.shape
        q = self.q_proj(x).view(b, n, self.heads, self.head_dim).transpose(1, 2)  # (batch, heads, n, head_dim)
        k = self.k_proj(x).view(b, n, self.heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, n, self.heads, self.head_dim).transpose(1, 2)
        mask = None
        if pos_bias is not None:
            mask = pos_bias                                               # (1, heads, n, n)
            if self.gated:
                g = torch.sigmoid(self.grep_linear(q).view(b, self.heads, n, 2, 4).sum(-1))  # (batch, heads, n, 2)
                gate = g[..., :1] * (g[..., 1:] * self.grep_a - 1.0) + 2.0   # (batch, heads, n, 1)
                mask = gate * pos_bias                                    # (batch, heads, n, n)
        if key_valid is not None:
            pad = torch.zeros(key_valid.shape, dtype=q.dtype, device=q.device).masked_fill(~key_valid, float("-inf"))
            pad = pad[:, None, None, :]                                   # (batch, 1, 1, n)
            mask = pad if mask is None else mask + pad
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                             dropout_p=self.dropout if self.training else 0.0)  # (batch, heads, n, head_dim)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, d))        # (batch, n, dim)


class EncoderLayer(nn.Module):
    """Self-attention + FFN, post-LN with deep-norm residual scaling (or pre-LN)."""

    def __init__(self, c: BEATsConfig):
        super().__init__()
        d = c.encoder_embed_dim
        self.self_attn = GatedRelPosSelfAttention(d, c.encoder_attention_heads, c.attention_dropout, c.gru_rel_pos)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, c.encoder_ffn_embed_dim)
        self.fc2 = nn.Linear(c.encoder_ffn_embed_dim, d)
        self.final_layer_norm = nn.LayerNorm(d)
        if c.activation_fn not in ("gelu", "relu"):
            raise ValueError(f"activation_fn {c.activation_fn!r} not supported (gelu, relu)")
        self.act = F.gelu if c.activation_fn == "gelu" else F.relu
        self.pre_ln = c.layer_norm_first
        self.alpha = (2.0 * c.encoder_layers) ** 0.25 if c.deep_norm and not c.layer_norm_first else 1.0
        self.dropout, self.act_dropout = c.dropout, c.activation_dropout

    def _ffn(self, x: torch.Tensor) -> torch.Tensor:
        h = F.dropout(self.act(self.fc1(x)), self.act_dropout, self.training)  # (batch, n, ffn)
        return F.dropout(self.fc2(h), self.dropout, self.training)           # (batch, n, dim)

    def forward(self, x, pos_bias, key_valid):
        if self.pre_ln:
            x = x + F.dropout(self.self_attn(self.self_attn_layer_norm(x), pos_bias, key_valid), self.dropout,
                              self.training)
            return x + self._ffn(self.final_layer_norm(x))
        x = self.self_attn_layer_norm(
            x * self.alpha + F.dropout(self.self_attn(x, pos_bias, key_valid), self.dropout, self.training))
        return self.final_layer_norm(x * self.alpha + self._ffn(x))       # (batch, n, dim)


class WeightNormConv1d(nn.Module):
    """Grouped Conv1d whose weight is ``weight_g · weight_v / ‖weight_v‖`` (norm over all dims but
    the kernel dim 2: fairseq's ``weight_norm(conv, dim=2)``), then 'same' trimming."""

    def __init__(self, dim: int, kernel: int, groups: int):
        super().__init__()
        self.kernel, self.groups = kernel, groups
        v = torch.randn(dim, dim // groups, kernel) * math.sqrt(4.0 / (kernel * dim))
        self.weight_v = nn.Parameter(v)                                   # (dim, dim/groups, kernel)
        self.weight_g = nn.Parameter(v.norm(dim=(0, 1), keepdim=True))    # (1, 1, kernel)
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.weight_v
        w = v * (self.weight_g / v.norm(dim=(0, 1), keepdim=True))        # (dim, dim/groups, kernel)
        y = F.conv1d(x, w, self.bias, padding=self.kernel // 2, groups=self.groups)  # (batch, dim, n + 1 if even)
        return y[:, :, :-1] if self.kernel % 2 == 0 else y               # (batch, dim, n)


class BEATsEncoder(nn.Module):
    def __init__(self, c: BEATsConfig):
        super().__init__()
        self.pos_conv = nn.Sequential(WeightNormConv1d(c.encoder_embed_dim, c.conv_pos, c.conv_pos_groups))
        self.layers = nn.ModuleList([EncoderLayer(c) for _ in range(c.encoder_layers)])
        self.rel_pos = c.relative_position_embedding
        if self.rel_pos:
            table = nn.Embedding(c.num_buckets, c.encoder_attention_heads)  # one table, every layer's name
            for layer in self.layers:
                layer.self_attn.relative_attention_bias = table
        self.layer_norm = nn.LayerNorm(c.encoder_embed_dim)
        self.cfg = c

    def position_bias(self, n: int, device) -> Optional[torch.Tensor]:
        if not self.rel_pos:
            return None
        c = self.cfg
        buckets = relative_position_buckets(n, n, c.num_buckets, c.max_distance, device)  # (n, n)
        table = self.layers[0].self_attn.relative_attention_bias
        return table(buckets).permute(2, 0, 1).unsqueeze(0)               # (1, heads, n, n)

    def forward(self, x: torch.Tensor, valid: Optional[torch.Tensor]) -> torch.Tensor:
        c = self.cfg
        if valid is not None:
            x = x.masked_fill(~valid[..., None], 0.0)                     # (batch, n, dim)
        x = x + F.gelu(self.pos_conv(x.transpose(1, 2))).transpose(1, 2)  # (batch, n, dim)
        if not c.layer_norm_first:
            x = self.layer_norm(x)
        x = F.dropout(x, c.dropout, self.training)
        bias = self.position_bias(x.shape[1], x.device)
        for layer in self.layers:
            if self.training and c.encoder_layerdrop > 0 and torch.rand(()) < c.encoder_layerdrop:
                continue
            x = layer(x, bias, valid)                                     # (batch, n, dim)
        return self.layer_norm(x) if c.layer_norm_first else x


class BEATs(nn.Module):
    """BEATs as an audio tower: wave (batch, samples) at 16 kHz -> (batch, 768), or patch frames."""

    def __init__(self, cfg: BEATsConfig = BEATsConfig()):
        super().__init__()
        if cfg.frames not in ("patches", "time"):
            raise ValueError(f"frames={cfg.frames!r}; use 'patches' or 'time'")
        if cfg.mel_bins % cfg.input_patch_size:
            raise ValueError(f"mel_bins {cfg.mel_bins} is not a multiple of input_patch_size {cfg.input_patch_size}")
        self.cfg = cfg
        self.sample_rate = cfg.sample_rate
        self.embed_dim = self.frame_dim = cfg.encoder_embed_dim
        self.frame_hop_samples = cfg.input_patch_size * cfg.fbank_config().hop_length  # one time step of patches
        self.fbank = KaldiFbank(cfg.fbank_config())
        p = cfg.input_patch_size
        self.patch_embedding = nn.Conv2d(1, cfg.embed_dim, kernel_size=p, stride=p, bias=cfg.conv_bias)
        self.layer_norm = nn.LayerNorm(cfg.embed_dim)
        self.post_extract_proj = (nn.Linear(cfg.embed_dim, cfg.encoder_embed_dim)
                                  if cfg.embed_dim != cfg.encoder_embed_dim else None)
        self.encoder = BEATsEncoder(cfg)
        if cfg.finetuned_model:
            self.predictor = nn.Linear(cfg.encoder_embed_dim, cfg.predictor_class)
        self._init_weights()

    def _init_weights(self):
        """BERT-style init as the authors' (normal 0.02), deep-norm scaled projections."""
        c = self.cfg
        for m in self.encoder.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=0.02)
        if c.deep_norm:
            beta = (8.0 * c.encoder_layers) ** -0.25
            for layer in self.encoder.layers:
                a = layer.self_attn
                for lin, gain in ((a.k_proj, 1.0), (a.q_proj, 1.0), (a.v_proj, beta), (a.out_proj, beta),
                                  (layer.fc1, beta), (layer.fc2, beta)):
                    nn.init.xavier_normal_(lin.weight, gain=gain)
        nn.init.xavier_normal_(self.patch_embedding.weight)
        if self.post_extract_proj is not None:
            nn.init.xavier_normal_(self.post_extract_proj.weight)
            nn.init.zeros_(self.post_extract_proj.bias)

    # -- stages --------------------------------------------------------------------------
    def preprocess(self, wave: torch.Tensor) -> torch.Tensor:
        """Normalised Kaldi fbank: (batch, samples) -> (batch, frames, mel_bins)."""
        c = self.cfg
        if wave.dim() == 1:
            wave = wave.unsqueeze(0)                                      # (batch, samples)
        if wave.shape[-1] < c.min_samples:
            wave = F.pad(wave, (0, c.min_samples - wave.shape[-1]))
        fbank = self.fbank(wave)                                          # (batch, frames, mel_bins)
        return (fbank - c.fbank_mean) / (2 * c.fbank_std)

    def encode_fbank(self, fbank: torch.Tensor, frame_valid: Optional[torch.Tensor] = None
                     ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Normalised fbank (batch, frames, mel_bins) [+ frame validity (batch, frames) bool] ->
        patch tokens (batch, steps · freq_patches, dim) in time-major order, and their validity
        (a patch is valid when any of its frames is)."""
        c, p = self.cfg, self.cfg.input_patch_size
        x = self.patch_embedding(fbank.unsqueeze(1))                      # (batch, embed, steps, freq_patches)
        b, _, steps, fp = x.shape
        x = x.flatten(2).transpose(1, 2)                                  # (batch, steps · freq_patches, embed)
        x = self.layer_norm(x)
        if frame_valid is None:
            valid = None
        else:
            step_valid = frame_valid[:, :steps * p].reshape(b, steps, p).any(-1)  # (batch, steps)
            valid = step_valid.repeat_interleave(fp, dim=1)               # (batch, steps · freq_patches)
        if self.post_extract_proj is not None:
            x = self.post_extract_proj(x)                                 # (batch, n, dim)
        x = F.dropout(x, c.dropout_input, self.training)
        x = self.encoder(x, valid)                                        # (batch, n, dim)
        if valid is None:
            valid = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        return x, valid

    def _patches(self, wave: torch.Tensor, lengths: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        fbank = self.preprocess(wave)                                     # (batch, frames, mel_bins)
        frame_valid = None
        if lengths is not None:
            n = frames_for(torch.as_tensor(lengths, device=fbank.device), self.fbank.cfg)  # (batch,)
            n = n.clamp(min=1)                                            # a clip shorter than a window: its first frame
            frame_valid = torch.arange(fbank.shape[1], device=fbank.device)[None, :] < n[:, None]  # (batch, frames)
        return self.encode_fbank(fbank, frame_valid)

    # -- the tower interface -------------------------------------------------------------
    def forward_frames(self, wave: torch.Tensor, lengths: Optional[torch.Tensor] = None
                       ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(batch, samples) [+ lengths (batch,) samples of real audio] -> frames (batch, T, dim)
        and mask (batch, T) bool, True = valid. T = patches (time-major, 8 per 160 ms) or time
        steps (``cfg.frames == "time"``)."""
        x, valid = self._patches(wave, lengths)                           # (batch, n, dim), (batch, n)
        if self.cfg.frames == "time":
            fp = self.cfg.mel_bins // self.cfg.input_patch_size
            x = x.view(x.shape[0], -1, fp, x.shape[-1]).mean(2)           # (batch, steps, dim)
            valid = valid.view(valid.shape[0], -1, fp).any(-1)           # (batch, steps)
        return x, valid

    def forward(self, wave: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Pooled clip embedding: mean of the valid patch tokens, (batch, dim)."""
        x, valid = self._patches(wave, lengths)                           # (batch, n, dim), (batch, n)
        return masked_mean(x, valid)                                      # (batch, dim)

    def tag(self, wave: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """AudioSet probabilities of a fine-tuned checkpoint: sigmoid of the masked mean of
        per-patch logits, (batch, predictor_class)."""
        if not self.cfg.finetuned_model:
            raise RuntimeError("this BEATs has no predictor (cfg.finetuned_model is False): "
                               "load a fine-tuned checkpoint such as BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt")
        x, valid = self._patches(wave, lengths)
        logits = self.predictor(F.dropout(x, self.cfg.predictor_dropout, self.training))  # (batch, n, classes)
        return torch.sigmoid(masked_mean(logits, valid))                  # (batch, classes)


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------
def load_beats_checkpoint(path: PathLike) -> Tuple[Dict[str, Any], Dict[str, torch.Tensor]]:
    """``(cfg, state_dict)`` of a BEATs checkpoint ``{"cfg": {...}, "model": state_dict}``,
    read with numpy-safe ``weights_only`` loading (no arbitrary unpickling)."""
    ckpt = torch_load_weights_only(path)
    if not (isinstance(ckpt, dict) and isinstance(ckpt.get("cfg"), dict) and isinstance(ckpt.get("model"), dict)):
        got = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path}: not a BEATs checkpoint; expected {{'cfg': dict, 'model': state_dict}}, got {got}")
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in ckpt["model"].items()}
    return dict(ckpt["cfg"]), sd


def build_beats(name: str = "beats", pretrained: Union[bool, PathLike, None] = None,
                weights: Optional[PathLike] = None, **overrides) -> BEATs:
    """A BEATs variant by name; ``overrides`` replace :class:`BEATsConfig` fields.

    pretrained: None / False = random init; True = the published ``BEATs_iter3_plus_AS2M.pt``
    (``beats`` only, via ``atrlib.models.weights``); a path = that checkpoint (``weights=`` is the
    same). With a checkpoint, every architecture size comes from its ``cfg`` (the variant's
    and ``overrides``' atrlib fields — front end, ``frames`` — still apply), and the state dict
    loads with ``strict=True``.
    """
    if name not in BEATS_CONFIGS:
        raise KeyError(f"unknown BEATs variant {name!r}; known: {', '.join(BEATS_CONFIGS)}")
    path = tower_weights(name, {"beats": BEATS_WEIGHTS}, pretrained, weights)
    if path is None:
        return BEATs(replace(BEATS_CONFIGS[name], **overrides))
    cfg_dict, sd = load_beats_checkpoint(path)
    model = BEATs(replace(BEATsConfig.from_checkpoint_cfg(cfg_dict, base=BEATS_CONFIGS[name]), **overrides))
    model.load_state_dict(sd, strict=True)
    return model


register_variants(build_beats, {  # every row of BEATS_CONFIGS, full size and its tiny twin for tests
    "beats": "BEATs iter3+ (AS2M): 16 kHz, 768-d patches every 160 ms x 8 frequency bands, 90.31 M parameters.",
    "beats-tiny": "Two layers of width 32 on 16 fbank bins: the BEATs code path for tests.",
})


__all__ = ["BEATs", "BEATsConfig", "BEATS_CONFIGS", "build_beats", "load_beats_checkpoint",
           "relative_position_buckets"]
