"""The moment head: dense anchors over a frame sequence, conditioned on a sentence, trained with span losses.

A small network in the spirit of Moment-DETR / QD-DETR, made to train on a CPU in seconds:
frozen frame features (one vector per second, :mod:`atrlib.moments.encoders`) and a frozen
sentence embedding go in; for every frame ``t`` and every anchor width ``w_k`` (seconds) a
matching score and a refined ``(centre, width)`` come out::

    frames (B, T, D) -> LayerNorm -> Linear                    (B, T, H)
    sentence (B, Dt) -> Linear -> (γ, β)                       (B, 2H)     FiLM: the sentence scales and
    h = ReLU(γ ⊙ frames + β)                                   (B, T, H)   shifts every frame
    h = h + attention(h, h)    (masked self-attention over the recording, 4 heads)
    h = h + ReLU(Conv1d_d(h)) for d in dilations (1, 2, 4)     (B, T, H)   temporal context
    logits = Linear(h)                                         (B, T, K)   one score per anchor
    deltas = Linear(h)                                         (B, T, K, 2)

    anchor (t, k): centre c = t + 0.5, width w_k frames; prediction centre = c + dc w_k,
    width = w_k exp(dw)  -> [centre - width / 2, centre + width / 2], clipped to the recording.

The sentence conditions the frames by FiLM (one sentence vector, not cross-attention over its
tokens: the frozen text tower gives one pooled vector, and on a few dozen training sentences
the smaller interaction trains more reliably).

**Matching: nearest anchors** (not Hungarian). An anchor is positive for a ground-truth window
when its IoU with that window is at least ``pos_iou``, and every ground-truth window also
takes its best anchor (so each has at least one). **Loss** = ``cls_weight`` × sigmoid focal
loss over all valid anchors (α 0.25, γ 2, divided by the positives) + over the positives,
``l1_weight`` × L1 of (centre, width) in units of the recording's length + ``giou_weight`` ×
(1 − generalised IoU) — the three terms of Moment-DETR's span loss.

:func:`decode` turns the outputs into at most 10 windows (best scores, temporal NMS).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from atrlib.moments.spans import ScoredWindow, temporal_nms


@dataclass(frozen=True)
class HeadConfig:
    """The head's shape (stored beside its weights)."""

    frame_dim: int                                        # features per frame (the encoder's, + 1 cosine channel)
    text_dim: int = 384                                   # the sentence embedding's size (MiniLM: 384)
    hidden: int = 64                                      # width of every layer
    widths: Tuple[float, ...] = (1, 2, 3, 4, 6, 8, 12, 16)  # anchor widths in frames
    dilations: Tuple[int, ...] = (1, 2, 4)                # one residual conv block per entry
    attention_heads: int = 4                              # self-attention over the frames (0: none)
    dropout: float = 0.1

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "HeadConfig":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


class MomentHead(nn.Module):
    """``forward(frames (B, T, D), mask (B, T), text (B, Dt)) -> (logits (B, T, K), deltas (B, T, K, 2))``."""

    def __init__(self, cfg: HeadConfig):
        super().__init__()
        self.cfg = cfg
        h = cfg.hidden
        self.register_buffer("feat_mean", torch.zeros(cfg.frame_dim))  # set from the train split (fit)
        self.register_buffer("feat_std", torch.ones(cfg.frame_dim))
        self.frame_in = nn.Sequential(nn.LayerNorm(cfg.frame_dim), nn.Linear(cfg.frame_dim, h))
        self.film = nn.Linear(cfg.text_dim, 2 * h)
        self.attn = nn.MultiheadAttention(h, cfg.attention_heads, dropout=cfg.dropout, batch_first=True) \
            if cfg.attention_heads else None
        self.convs = nn.ModuleList(nn.Conv1d(h, h, 3, padding=d, dilation=d) for d in cfg.dilations)
        self.drop = nn.Dropout(cfg.dropout)
        k = len(cfg.widths)
        self.cls = nn.Linear(h, k)
        self.reg = nn.Linear(h, 2 * k)
        nn.init.constant_(self.cls.bias, -2.0)  # start from "few anchors match" (focal-loss prior)
        nn.init.zeros_(self.reg.weight)
        nn.init.zeros_(self.reg.bias)
        self.register_buffer("widths", torch.tensor(cfg.widths, dtype=torch.float32))

    def forward(self, frames: torch.Tensor, mask: torch.Tensor, text: torch.Tensor):
        b, t, _ = frames.shape
        x = (frames - self.feat_mean) / self.feat_std                      # (B, T, D)
        x = self.frame_in(x)                                               # (B, T, H)
        gamma, beta = self.film(text).chunk(2, dim=-1)                     # (B, H) each
        x = F.relu(x * (1 + gamma[:, None]) + beta[:, None])              # (B, T, H)
        x = x * mask[..., None]
        if self.attn is not None:
            a, _ = self.attn(x, x, x, key_padding_mask=~mask, need_weights=False)  # (B, T, H)
            x = x + self.drop(a)
        for conv in self.convs:
            y = conv(x.transpose(1, 2)).transpose(1, 2)                    # (B, T, H)
            x = (x + self.drop(F.relu(y))) * mask[..., None]
        logits = self.cls(x)                                               # (B, T, K)
        deltas = self.reg(x).view(b, t, -1, 2)                             # (B, T, K, 2)
        return logits, deltas


def anchor_spans(head: MomentHead, t: int) -> torch.Tensor:
    """(T, K, 2) anchor windows in frames: centre t + 0.5, width w_k."""
    c = torch.arange(t, dtype=torch.float32, device=head.widths.device)[:, None] + 0.5  # (T, 1)
    w = head.widths[None, :]                                                            # (1, K)
    return torch.stack([c - w / 2, c + w / 2], dim=-1).expand(t, len(head.cfg.widths), 2)


def predicted_spans(head: MomentHead, deltas: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B, T, K, 2) predicted windows in frames, clipped to [0, length] of each recording."""
    b, t, k, _ = deltas.shape
    anchors = anchor_spans(head, t)                                    # (T, K, 2)
    c = anchors.mean(-1) + deltas[..., 0] * head.widths               # (B, T, K)
    w = head.widths * torch.exp(deltas[..., 1].clamp(-4, 4))          # (B, T, K)
    lo = (c - w / 2).clamp(min=0)
    hi = torch.minimum(c + w / 2, lengths.float()[:, None, None])
    return torch.stack([lo, torch.maximum(hi, lo + 1e-3)], dim=-1)      # (B, T, K, 2)


def _iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of windows (..., 2) against (M, 2) -> (..., M)."""
    lo = torch.maximum(a[..., None, 0], b[:, 0])
    hi = torch.minimum(a[..., None, 1], b[:, 1])
    inter = (hi - lo).clamp(min=0)
    return inter / ((a[..., 1] - a[..., 0])[..., None] + (b[:, 1] - b[:, 0]) - inter).clamp(min=1e-6)


def giou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Generalised IoU of paired windows (N, 2), (N, 2) -> (N,)."""
    inter = (torch.minimum(a[:, 1], b[:, 1]) - torch.maximum(a[:, 0], b[:, 0])).clamp(min=0)
    union = (a[:, 1] - a[:, 0]) + (b[:, 1] - b[:, 0]) - inter
    hull = torch.maximum(a[:, 1], b[:, 1]) - torch.minimum(a[:, 0], b[:, 0])
    return inter / union.clamp(min=1e-6) - (hull - union) / hull.clamp(min=1e-6)


def match_anchors(head: MomentHead, t: int, length: int, gt: torch.Tensor, pos_iou: float = 0.5
                  ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Nearest-anchor matching for one recording: (positive (T, K) bool, matched gt index (T, K)).
    Anchors past ``length`` are never positive."""
    anchors = anchor_spans(head, t)                                    # (T, K, 2)
    iou = _iou(anchors, gt)                                            # (T, K, M)
    valid = (torch.arange(t, device=gt.device) < length)[:, None]      # (T, 1)
    iou = iou * valid[..., None]
    best_iou, best_gt = iou.max(dim=-1)                                # (T, K)
    pos = best_iou >= pos_iou
    flat = iou.reshape(-1, iou.shape[-1])                              # (T K, M)
    top = flat.argmax(dim=0)                                           # (M,) each gt's best anchor
    pos.view(-1)[top] = True
    best_gt.view(-1)[top] = torch.arange(len(gt), device=gt.device)
    return pos, best_gt


@dataclass(frozen=True)
class LossWeights:
    cls_weight: float = 1.0
    l1_weight: float = 5.0
    giou_weight: float = 1.0
    pos_iou: float = 0.5


def span_loss(head: MomentHead, logits: torch.Tensor, deltas: torch.Tensor, mask: torch.Tensor,
              gts: Sequence[torch.Tensor], w: LossWeights = LossWeights()) -> Dict[str, torch.Tensor]:
    """Named terms (``cls``, ``l1``, ``giou``) and their weighted sum ``loss`` for a batch;
    ``gts[i]`` (M_i, 2) are recording ``i``'s windows in frames."""
    b, t, k = logits.shape
    lengths = mask.sum(1)                                              # (B,)
    pred = predicted_spans(head, deltas, lengths)                      # (B, T, K, 2)
    target = torch.zeros_like(logits)
    pairs_p, pairs_g, scale = [], [], []
    for i, gt in enumerate(gts):
        pos, idx = match_anchors(head, t, int(lengths[i]), gt, w.pos_iou)
        target[i][pos] = 1.0
        pairs_p.append(pred[i][pos])                                   # (P_i, 2)
        pairs_g.append(gt[idx[pos]])                                   # (P_i, 2)
        scale.append(lengths[i].float().expand(int(pos.sum())))
    valid = mask[..., None].expand(b, t, k)
    n_pos = target.sum().clamp(min=1.0)
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")  # (B, T, K)
    p_t = p * target + (1 - p) * (1 - target)
    alpha = 0.25 * target + 0.75 * (1 - target)
    cls = (alpha * (1 - p_t) ** 2 * ce)[valid].sum() / n_pos
    sp, sg, s = torch.cat(pairs_p), torch.cat(pairs_g), torch.cat(scale)[:, None]
    cw = lambda x: torch.stack([x.mean(-1), x[:, 1] - x[:, 0]], dim=-1)  # noqa: E731  (centre, width)
    l1 = (cw(sp) / s - cw(sg) / s).abs().sum(-1).mean()
    g = (1 - giou(sp, sg)).mean()
    loss = w.cls_weight * cls + w.l1_weight * l1 + w.giou_weight * g
    return {"loss": loss, "cls": cls.detach(), "l1": l1.detach(), "giou": g.detach()}


def decode(head: MomentHead, logits: torch.Tensor, deltas: torch.Tensor, length: int, hop: float = 1.0,
           duration: float | None = None, top: int = 200, nms_iou: float = 0.5, max_windows: int = 10,
           offset: float = 0.0) -> List[ScoredWindow]:
    """One recording's outputs (T, K), (T, K, 2) -> ranked windows in seconds: the ``top`` best
    anchors of the valid frames, shifted by ``offset`` s, temporal NMS, at most ``max_windows``."""
    spans = predicted_spans(head, deltas[None], torch.tensor([length]))[0][:length]  # (L, K, 2)
    scores = torch.sigmoid(logits[:length]).reshape(-1)                # (L K,)
    spans = spans.reshape(-1, 2)
    order = torch.argsort(scores, descending=True)[:top]
    end = duration if duration is not None else length * hop
    cands = []
    for i in order.tolist():
        s, e = float(spans[i, 0]) * hop + offset, min(float(spans[i, 1]) * hop + offset, end)
        if e > s:
            cands.append((s, e, float(scores[i])))
    return temporal_nms(cands, nms_iou, max_windows)


def pad_batch(frames: Sequence[np.ndarray], device="cpu") -> Tuple[torch.Tensor, torch.Tensor]:
    """Frame arrays (T_i, D) -> (padded (B, T, D), mask (B, T))."""
    t = max(len(f) for f in frames)
    out = torch.zeros(len(frames), t, frames[0].shape[1])
    mask = torch.zeros(len(frames), t, dtype=torch.bool)
    for i, f in enumerate(frames):
        out[i, :len(f)] = torch.as_tensor(f, dtype=torch.float32)
        mask[i, :len(f)] = True
    return out.to(device), mask.to(device)
