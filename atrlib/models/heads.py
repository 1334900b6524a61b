"""Projection heads: a tower's features (batch, in_dim) -> the shared space (batch, out_dim).

``linear`` is one affine map (CLAP and most DCASE baselines); ``mlp`` is the 2-layer adapter
of the 2022 Huawei/UPF system (Linear-ReLU-Dropout-Linear, 512 hidden units). The dual
encoder L2-normalises what they return.
"""
from __future__ import annotations

from torch import nn


class LinearHead(nn.Linear):
    """(batch, in_dim) -> (batch, out_dim), one linear map."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__(in_dim, out_dim)


class MLPHead(nn.Sequential):
    """(batch, in_dim) -> Linear -> (batch, hidden) -> ReLU -> Dropout -> Linear -> (batch, out_dim)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 512, dropout: float = 0.1):
        super().__init__(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
                         nn.Linear(hidden, out_dim))


HEADS = {"linear": LinearHead, "mlp": MLPHead}


def build_head(kind: str, in_dim: int, out_dim: int, **kw) -> nn.Module:
    """``kind`` = ``"linear"`` or ``"mlp"``; ``kw`` (``hidden``, ``dropout``) go to the MLP
    and are ignored by the linear head."""
    if kind == "linear":
        return LinearHead(in_dim, out_dim)
    if kind == "mlp":
        return MLPHead(in_dim, out_dim, **kw)
    raise ValueError(f"unknown head {kind!r}; use one of {', '.join(HEADS)}")
