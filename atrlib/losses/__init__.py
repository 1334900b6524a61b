"""Losses: every training loss and cross-modal term of the seed systems, by name.

One signature for all of them (:mod:`atrlib.losses.contrastive` says it): a loss returns a dict
of named scalar terms that training sums and logs. The registry fills itself on first use by
importing every module of this package and the ``atrlib.losses`` entry points, so
``get_loss("acml")`` works after ``from atrlib.losses import get_loss`` alone.

    contrastive.py   InfoNCE, NT-Xent (two variants), SupCon, triplets, VICReg, pair loss
    crossmodal.py    terms on a cross-attention head or Q-Former: A-CML, MLML, ATC/ATM/ATG, tagging, CLA-IP
    distill.py       ensemble distillation from teacher similarity matrices
    relevance.py     soft relevance from caption similarity and its list-wise term
    objective.py     "infonce+0.5*acml" specs, summed into one training objective
    distributed.py   the global batch across processes
"""
from __future__ import annotations

from typing import Dict

from torch import Tensor, nn

from atrlib.registry import Registry

LOSSES: Registry = Registry("loss", package="atrlib.losses", entry_point="atrlib.losses")

Terms = Dict[str, Tensor]


def get_loss(name: str, **kwargs) -> nn.Module:
    """Build the loss registered as ``name`` with ``kwargs`` (KeyError lists the names)."""
    return LOSSES.get(name)(**kwargs)


__all__ = ["LOSSES", "Terms", "get_loss"]
