"""Projection heads from a tower's features into the shared embedding space."""
from __future__ import annotations

from torch import nn


class LinearHead(nn.Linear):
    """One linear map (CLAP / most DCASE baselines)."""


class MLPHead(nn.Sequential):
    """Linear-ReLU-Dropout-Linear: the 2-layer adapters of the 2022 Huawei/UPF system (512 units)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 512, dropout: float = 0.1):
        super().__init__(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, out_dim))


def build_head(kind: str, in_dim: int, out_dim: int, hidden: int = 512, dropout: float = 0.1) -> nn.Module:
    """``kind`` = ``"linear"`` or ``"mlp"``."""
    if kind == "linear":
        return LinearHead(in_dim, out_dim)
    if kind == "mlp":
        return MLPHead(in_dim, out_dim, hidden, dropout)
    raise ValueError(f"unknown head {kind!r}; use 'linear' or 'mlp'")
