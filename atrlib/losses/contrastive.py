"""Every training loss of the seed systems: one signature, named terms, a registry.

Each loss is an ``nn.Module`` called as::

    terms = loss(audio_emb, text_emb, clip_ids, logit_scale)   # dict[str, scalar Tensor]
    total = sum(terms.values())                               # what training backpropagates

* ``audio_emb``, ``text_emb``: (batch, dim); row i of each forms the i-th pair. They must be
  **L2-normalised by the caller**: every loss reads ``a @ t.T`` as a cosine similarity.
* ``clip_ids``: (batch,) int64, the clip of each pair. A clip may occur several times in a
  batch (with different captions). What a loss does with the other captions of a clip
  follows its reference code: ``infonce`` (default) and ``ntxent_mei`` count them as
  negatives, as CLIP's and Mei et al.'s code do (``positives="mask"`` removes them);
  ``ntxent_simclr``, ``supcon``, the triplets and ``pair_loss`` never use them as negatives
  (SupCon and the pair loss treat them as positives).
* ``logit_scale``: scalar tensor, 1/temperature, already exponentiated. Losses without a
  temperature ignore it.

Weights are applied inside, so the returned terms are summed as they are; each term is
logged under its key.

====================  ================================================  ========================================
name                  what / citation                                   defaults
====================  ================================================  ========================================
``infonce``           symmetric InfoNCE (CLIP; Radford et al. 2021),    ``positives="diagonal"``; uses
                      = open_clip's ``ClipLoss``                        logit_scale
``ntxent_mei``        Mei et al.'s ``NTXent`` (the CAU 2023 "NT-Xent"): ``temperature=0.07``
                      symmetric cross-modal InfoNCE over B x B logits
``ntxent_simclr``     NT-Xent over 2B views (SimCLR; Chen et al.        ``temperature=None`` (use logit_scale)
                      2020), in- and cross-modal negatives; ``ntxent``
                      is its old name (same loss, term ``ntxent``)
``supcon``            supervised contrastive over both modalities,      ``temperature=None`` (use logit_scale)
                      clip ids as labels (Khosla et al. 2020)
``triplet_sum``       bidirectional hinge, sum over negatives (VSE;     ``margin=0.2``
                      Kiros et al. 2014; Mei et al. 2022)
``triplet_max``       bidirectional hinge, hardest negative (VSE++;     ``margin=0.2``
                      Faghri et al. 2018; Mei et al. 2022)
``triplet_weighted``  polynomial pair weighting (Wei et al. 2020, as    ``margin=0.2``, ``pos_coef=(0.2,-0.7,
                      used by Mei et al. 2022)                          0.5)``, ``neg_coef=(0.9,-0.4,0.03)``
``vicreg``            invariance/variance/covariance between paired     ``inv_weight=25, var_weight=25,
                      audio and text (Bardes et al. 2022)               cov_weight=1, gamma=1, eps=1e-4``
``infonce+vicreg``    ``infonce`` plus ``vicreg`` scaled by a weight    ``vicreg_weight=1.0`` (+ both above)
``pair_loss``         cosine pair loss over all 2B x 2B pairs (Weck     ``reduction="separate"``
                      et al. 2022, Huawei/UPF, DCASE 2022 Task 6b) =
                      pytorch-metric-learning's ``ContrastiveLoss``
====================  ================================================  ========================================

Reference code each loss equals on the same inputs (tests/losses/test_loss_fidelity.py): open_clip
``ClipLoss`` (``infonce``), Mei et al.'s ``tools/loss.py`` (``ntxent_mei``, ``triplet_sum`` =
``BiDirectionalRankingLoss``, ``triplet_max`` = ``TripletLoss``, ``triplet_weighted`` =
``WeightTriplet``), SupContrast / pytorch-metric-learning ``SupConLoss`` (``supcon``),
facebookresearch/vicreg (``vicreg``), pytorch-metric-learning ``ContrastiveLoss`` (``pair_loss``).

References: Radford et al. "Learning transferable visual models from natural language
supervision" (ICML 2021); Chen et al. "A simple framework for contrastive learning of visual
representations" (ICML 2020); Khosla et al. "Supervised contrastive learning" (NeurIPS
2020); Faghri et al. "VSE++" (BMVC 2018); Wei et al. "Universal weighting metric learning
for cross-modal matching" (CVPR 2020); Mei et al. "On metric learning for audio-text
cross-modal retrieval" (Interspeech 2022); Bardes et al. "VICReg" (ICLR 2022); Weck et al.
"Matching text and audio embeddings: exploring transfer-learning strategies for
language-based audio retrieval" (DCASE Workshop 2022).

Example::

    loss = get_loss("infonce")
    terms = loss(a, t, clip_ids, model.logit_scale.exp())    # {"infonce": tensor(...)}
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from atrlib.losses import LOSSES, Terms


# --------------------------------------------------------------------------- helpers


def _check(audio_emb: Tensor, text_emb: Tensor, clip_ids: Tensor) -> None:
    if audio_emb.ndim != 2 or audio_emb.shape != text_emb.shape:
        raise ValueError(
            f"audio_emb {tuple(audio_emb.shape)} and text_emb {tuple(text_emb.shape)} "
            "must both be (batch, dim)"
        )
    if clip_ids.shape != (audio_emb.shape[0],):
        raise ValueError(f"clip_ids {tuple(clip_ids.shape)} must be ({audio_emb.shape[0]},)")


def _same_clip(clip_ids: Tensor) -> Tensor:
    """(n,) ids -> (n, n) bool, True where two rows belong to the same clip (diagonal included)."""
    return clip_ids[:, None] == clip_ids[None, :]


def _scale(logit_scale, temperature: Optional[float]):
    """The multiplier of cosine similarities: 1/temperature if fixed, else logit_scale."""
    return logit_scale if temperature is None else 1.0 / temperature


# --------------------------------------------------------------------------- contrastive


@LOSSES.register("infonce")
class InfoNCE(nn.Module):
    """Symmetric InfoNCE (CLIP): mean of audio->text and text->audio cross-entropy.

    Logits are ``logit_scale * a @ t.T`` (batch, batch); the target of row i is column i.

    positives: how the other pairs of the same clip in the batch are treated:
        ``"diagonal"`` (default): not at all — they stay in the softmax as negatives, exactly
        as open_clip's ``ClipLoss`` and Mei et al.'s ``NTXent`` compute it (Mei's code builds
        a same-clip mask but applies it after the log-softmax, off the diagonal it reads, so
        it changes nothing).
        ``"mask"``: their logits are removed from the softmax denominators; the target stays
        the diagonal (no seed system's code does this; an option for batches that hold a
        clip several times).
        ``"spread"``: the target of row i is spread uniformly over all same-clip columns.
    """

    def __init__(self, positives: str = "diagonal"):
        super().__init__()
        if positives not in ("diagonal", "mask", "spread"):
            raise ValueError(f"positives must be 'diagonal', 'mask' or 'spread', got {positives!r}")
        self.positives = positives

    def forward(self, audio_emb: Tensor, text_emb: Tensor, clip_ids: Tensor, logit_scale) -> Terms:
        _check(audio_emb, text_emb, clip_ids)
        logits = logit_scale * audio_emb @ text_emb.T  # (batch, batch) audio x text
        same = _same_clip(clip_ids)  # (batch, batch), symmetric
        if self.positives == "diagonal":
            target = torch.arange(len(clip_ids), device=logits.device)  # (batch,)
        elif self.positives == "mask":
            off_diag = same & ~torch.eye(len(clip_ids), dtype=torch.bool, device=same.device)
            logits = logits.masked_fill(off_diag, float("-inf"))
            target = torch.arange(len(clip_ids), device=logits.device)  # (batch,)
        else:
            target = same.to(logits.dtype) / same.sum(1, keepdim=True)  # (batch, batch) rows sum to 1
        a2t = F.cross_entropy(logits, target)
        t2a = F.cross_entropy(logits.T, target)  # mask and target are symmetric
        return {"infonce": 0.5 * (a2t + t2a)}


@LOSSES.register("ntxent_mei")
class NTXentMei(nn.Module):
    """Mei et al.'s ``NTXent`` (``tools/loss.py`` of "On metric learning for audio-text
    cross-modal retrieval"), the loss the CAU 2023 report calls NT-Xent.

    Symmetric cross-modal InfoNCE over the (B, B) audio x text cosine matrix divided by a
    fixed temperature: 0.5 * (CE(a->t) + CE(t->a)) with the diagonal as targets; other
    captions of the same clip are negatives (as in their code). Not the SimCLR 2B-view loss
    (``ntxent_simclr``): no in-modality negatives.

    temperature: 0.07 (their default); ``None`` uses the ``logit_scale`` passed in, which makes
        it ``infonce``.
    """

    def __init__(self, temperature: Optional[float] = 0.07):
        super().__init__()
        self.temperature = temperature
        self._infonce = InfoNCE(positives="diagonal")

    def forward(self, audio_emb: Tensor, text_emb: Tensor, clip_ids: Tensor, logit_scale=None) -> Terms:
        scale = _scale(logit_scale, self.temperature)
        return {"ntxent_mei": self._infonce(audio_emb, text_emb, clip_ids, scale)["infonce"]}


@LOSSES.register("ntxent_simclr")
class NTXentSimCLR(nn.Module):
    """NT-Xent over 2B views (SimCLR): the B audio and B text embeddings stacked into one set.

    Each view's positive is its pair partner (audio i <-> text i); the softmax runs over all
    other 2B-1 views, so negatives are both cross-modal and in-modality. Views of the same
    clip other than the partner are masked out of the denominator (with distinct clips this
    is SimCLR's loss exactly). Not Mei et al.'s NT-Xent: that is ``ntxent_mei``.

    temperature: fixed temperature (SimCLR style, e.g. 0.07 or 0.1) when given; ``None``
        (default) uses the ``logit_scale`` passed in, like ``infonce``.
    """

    term = "ntxent_simclr"

    def __init__(self, temperature: Optional[float] = None):
        super().__init__()
        self.temperature = temperature

    def forward(self, audio_emb: Tensor, text_emb: Tensor, clip_ids: Tensor, logit_scale) -> Terms:
        _check(audio_emb, text_emb, clip_ids)
        b = len(clip_ids)
        z = torch.cat([audio_emb, text_emb])  # (2B, dim)
        ids = torch.cat([clip_ids, clip_ids])  # (2B,)
        logits = _scale(logit_scale, self.temperature) * z @ z.T  # (2B, 2B)
        partner = torch.arange(2 * b, device=z.device).roll(b)  # (2B,) audio i <-> text i
        drop = _same_clip(ids)  # self and every same-clip view ...
        drop[torch.arange(2 * b), partner] = False  # ... except the partner
        logits = logits.masked_fill(drop, float("-inf"))
        return {self.term: F.cross_entropy(logits, partner)}


@LOSSES.register("ntxent")
class NTXent(NTXentSimCLR):
    """``ntxent``: the old name of :class:`NTXentSimCLR` (the SimCLR 2B-view loss), kept so
    existing configs and notebooks run unchanged; its term is still called ``ntxent``. For
    the CAU / Mei et al. "NT-Xent" use ``ntxent_mei``."""

    term = "ntxent"


@LOSSES.register("supcon")
class SupCon(nn.Module):
    """Supervised contrastive loss (Khosla et al. 2020, "L_out") over the 2B views.

    Labels are the clip ids: for every view, all other views of the same clip (its partner,
    the other captions of the clip and their audio) are positives; the softmax runs over all
    other views. Loss of a view = mean over its positives of -log softmax; then the mean.

    temperature: fixed temperature when given; ``None`` (default) uses ``logit_scale``.
    """

    def __init__(self, temperature: Optional[float] = None):
        super().__init__()
        self.temperature = temperature

    def forward(self, audio_emb: Tensor, text_emb: Tensor, clip_ids: Tensor, logit_scale) -> Terms:
        _check(audio_emb, text_emb, clip_ids)
        z = torch.cat([audio_emb, text_emb])  # (2B, dim)
        ids = torch.cat([clip_ids, clip_ids])  # (2B,)
        eye = torch.eye(len(ids), dtype=torch.bool, device=z.device)
        logits = _scale(logit_scale, self.temperature) * z @ z.T  # (2B, 2B)
        log_prob = logits.masked_fill(eye, float("-inf")).log_softmax(1)  # (2B, 2B), -inf on self
        pos = _same_clip(ids) & ~eye  # (2B, 2B), every row has at least its partner
        per_view = -log_prob.masked_fill(~pos, 0.0).sum(1) / pos.sum(1)  # (2B,)
        return {"supcon": per_view.mean()}


# --------------------------------------------------------------------------- triplet


def _hinges(sim: Tensor, same: Tensor, margin: float):
    """Hinge costs of both directions; same-clip entries (diagonal included) set to 0.

    sim (B, B) audio x text. Returns (a2t, t2a), both (B, B):
    a2t[i, j] = max(0, margin + sim[i, j] - sim[i, i])  audio anchor i, negative caption j
    t2a[i, j] = max(0, margin + sim[i, j] - sim[j, j])  caption anchor j, negative audio i
    """
    pos = sim.diagonal()  # (B,)
    a2t = (margin + sim - pos[:, None]).clamp(min=0).masked_fill(same, 0.0)
    t2a = (margin + sim - pos[None, :]).clamp(min=0).masked_fill(same, 0.0)
    return a2t, t2a


class _BidirectionalTriplet(nn.Module):
    """Hinges of both directions (:func:`_hinges`), reduced per anchor by :meth:`reduce`, / B."""

    name = ""

    def __init__(self, margin: float = 0.2):
        super().__init__()
        self.margin = margin

    def reduce(self, a2t: Tensor, t2a: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, audio_emb: Tensor, text_emb: Tensor, clip_ids: Tensor, logit_scale=None) -> Terms:
        _check(audio_emb, text_emb, clip_ids)
        a2t, t2a = _hinges(audio_emb @ text_emb.T, _same_clip(clip_ids), self.margin)  # (B, B) each
        return {self.name: self.reduce(a2t, t2a) / len(clip_ids)}


@LOSSES.register("triplet_sum")
class TripletSum(_BidirectionalTriplet):
    """Bidirectional triplet (VSE): hinge summed over every negative, both directions.

    Normalised by the batch size as Mei et al. 2022 do: (sum a2t + sum t2a) / B.
    margin: cosine margin between a positive and a negative (default 0.2).
    """

    name = "triplet_sum"

    def reduce(self, a2t: Tensor, t2a: Tensor) -> Tensor:
        return a2t.sum() + t2a.sum()


@LOSSES.register("triplet_max")
class TripletMax(_BidirectionalTriplet):
    """Bidirectional triplet with the hardest negative only (VSE++), both directions.

    Per anchor the largest hinge over its negatives (0 if it has none); (sum a2t + sum t2a) / B.
    margin: cosine margin (default 0.2).
    """

    name = "triplet_max"

    def reduce(self, a2t: Tensor, t2a: Tensor) -> Tensor:
        return a2t.amax(1).sum() + t2a.amax(0).sum()  # rows: audio anchors, cols: caption anchors


@LOSSES.register("triplet_weighted")
class TripletWeighted(nn.Module):
    """Polynomial pair weighting (Wei et al. 2020) as used by Mei et al. 2022.

    For each anchor (audio rows, then caption columns of ``sim = a @ t.T``) with positive
    similarity p = sim[i, i] and hardest negative n (largest similarity to another clip):
    if n + margin > p (the anchor has an informative negative), it adds
    ``max(0, P(p)) + max(0, N(n))`` with the polynomials
    ``P(s) = pos_coef[0] s^2 + pos_coef[1] s + pos_coef[2]`` and
    ``N(s) = neg_coef[0] s^2 + neg_coef[1] s + neg_coef[2]``, whose slopes are the pair
    weights. The total over both directions is divided by B.

    margin: which negatives are informative (default 0.2); pos_coef / neg_coef: Mei et al.'s
    values (0.2, -0.7, 0.5) and (0.9, -0.4, 0.03). Equal to their ``WeightTriplet`` except
    for one case: their code drops a positive cosine >= 1 - 1e-5 and then takes ``min()`` of
    the empty selection, which raises an error; here such an anchor is computed like any other.
    """

    def __init__(
        self,
        margin: float = 0.2,
        pos_coef: Sequence[float] = (0.2, -0.7, 0.5),
        neg_coef: Sequence[float] = (0.9, -0.4, 0.03),
    ):
        super().__init__()
        self.margin = margin
        self.pos_coef = tuple(float(c) for c in pos_coef)
        self.neg_coef = tuple(float(c) for c in neg_coef)

    @staticmethod
    def _poly(s: Tensor, c) -> Tensor:
        return (c[0] * s * s + c[1] * s + c[2]).clamp(min=0)

    def _direction(self, sim: Tensor, same: Tensor) -> Tensor:
        """Sum over anchors = rows of sim (B, B) whose positive is the diagonal."""
        pos = sim.diagonal()  # (B,)
        has_neg = (~same).any(1)  # (B,)
        hardest = sim.masked_fill(same, float("-inf")).amax(1)  # (B,), -inf without negatives
        hardest = torch.where(has_neg, hardest, torch.zeros_like(hardest))  # keep gradients finite
        active = has_neg & (hardest + self.margin > pos)  # (B,)
        per_anchor = self._poly(pos, self.pos_coef) + self._poly(hardest, self.neg_coef)  # (B,)
        return (per_anchor * active).sum()

    def forward(self, audio_emb: Tensor, text_emb: Tensor, clip_ids: Tensor, logit_scale=None) -> Terms:
        _check(audio_emb, text_emb, clip_ids)
        sim = audio_emb @ text_emb.T  # (B, B)
        same = _same_clip(clip_ids)  # symmetric
        total = self._direction(sim, same) + self._direction(sim.T, same)
        return {"triplet_weighted": total / len(clip_ids)}


# --------------------------------------------------------------------------- VICReg


@LOSSES.register("vicreg")
class VICReg(nn.Module):
    """VICReg (Bardes et al. 2022) between paired audio and text embeddings.

    inv = mean squared error between a_i and t_i; var = mean over dims of
    max(0, gamma - sqrt(Var + eps)), averaged over the two modalities; cov = sum of squared
    off-diagonal covariances / dim, summed over the two modalities. Returned already weighted
    (defaults 25 / 25 / 1 as in the paper).

    Note: on L2-normalised embeddings the per-dimension std is about 1/sqrt(dim) at best, so
    with the paper's gamma=1 the variance hinge never reaches zero; it acts as a constant push
    to spread the batch. Pass gamma (e.g. 1/sqrt(dim)) to change that.
    """

    def __init__(
        self,
        inv_weight: float = 25.0,
        var_weight: float = 25.0,
        cov_weight: float = 1.0,
        gamma: float = 1.0,
        eps: float = 1e-4,
    ):
        super().__init__()
        self.inv_weight, self.var_weight, self.cov_weight = inv_weight, var_weight, cov_weight
        self.gamma, self.eps = gamma, eps

    def _var_cov(self, z: Tensor):
        n, d = z.shape
        z = z - z.mean(0)  # (n, d)
        std = torch.sqrt(z.var(0) + self.eps)  # (d,), unbiased like the paper
        var = F.relu(self.gamma - std).mean()
        cov = z.T @ z / (n - 1)  # (d, d)
        off = cov - torch.diag(cov.diagonal())
        return var, off.pow(2).sum() / d

    def forward(self, audio_emb: Tensor, text_emb: Tensor, clip_ids: Tensor, logit_scale=None) -> Terms:
        _check(audio_emb, text_emb, clip_ids)
        if len(clip_ids) < 2:
            raise ValueError("vicreg needs a batch of at least 2 pairs")
        inv = F.mse_loss(audio_emb, text_emb)
        var_a, cov_a = self._var_cov(audio_emb)
        var_t, cov_t = self._var_cov(text_emb)
        return {
            "vicreg_inv": self.inv_weight * inv,
            "vicreg_var": self.var_weight * 0.5 * (var_a + var_t),
            "vicreg_cov": self.cov_weight * (cov_a + cov_t),
        }


@LOSSES.register("infonce+vicreg")
class InfoNCEVICReg(nn.Module):
    """``infonce`` plus ``vicreg`` with every VICReg term multiplied by ``vicreg_weight``.

    Returns {"infonce", "vicreg_inv", "vicreg_var", "vicreg_cov"}. Extra keyword arguments go
    to :class:`VICReg` (inv_weight, var_weight, cov_weight, gamma, eps); ``positives`` goes to
    :class:`InfoNCE`.
    """

    def __init__(self, vicreg_weight: float = 1.0, positives: str = "diagonal", **vicreg_kwargs):
        super().__init__()
        self.vicreg_weight = vicreg_weight
        self.infonce = InfoNCE(positives=positives)
        self.vicreg = VICReg(**vicreg_kwargs)

    def forward(self, audio_emb: Tensor, text_emb: Tensor, clip_ids: Tensor, logit_scale) -> Terms:
        terms = self.infonce(audio_emb, text_emb, clip_ids, logit_scale)
        for k, v in self.vicreg(audio_emb, text_emb, clip_ids).items():
            terms[k] = self.vicreg_weight * v
        return terms


# --------------------------------------------------------------------------- pair loss


@LOSSES.register("pair_loss")
class PairLoss(nn.Module):
    """Cosine pair loss over every pair of the 2B embeddings (Weck et al. 2022).

    With s the cosine similarity of two different embeddings among the B audio and B text
    ones (audio-text, audio-audio and text-text pairs, self-pairs excluded, each unordered
    pair counted twice, which leaves means unchanged): a matching pair (same clip) costs
    max(0, 1 - s), a non-matching pair max(0, s). Only non-zero terms are averaged.

    reduction:
        ``"separate"`` (default): mean of the non-zero matching terms plus mean of the
        non-zero non-matching terms — what the Huawei/UPF system ran: pytorch-metric-learning's
        ``ContrastiveLoss(pos_margin=1, neg_margin=0, distance=CosineSimilarity())`` with its
        default ``AvgNonZeroReducer`` (tested against that package).
        ``"joint"``: one mean over all non-zero terms (the report's wording "the mean across
        all non-zero loss values"); the many non-matching terms then shrink the matching part.

    Returns {"pair_pos", "pair_neg"}: the matching and non-matching parts of that mean
    (they sum to the loss).
    """

    def __init__(self, reduction: str = "separate"):
        super().__init__()
        if reduction not in ("joint", "separate"):
            raise ValueError(f"reduction must be 'joint' or 'separate', got {reduction!r}")
        self.reduction = reduction

    def forward(self, audio_emb: Tensor, text_emb: Tensor, clip_ids: Tensor, logit_scale=None) -> Terms:
        _check(audio_emb, text_emb, clip_ids)
        z = torch.cat([audio_emb, text_emb])  # (2B, dim)
        ids = torch.cat([clip_ids, clip_ids])  # (2B,)
        sim = z @ z.T  # (2B, 2B) cosine
        not_self = ~torch.eye(len(ids), dtype=torch.bool, device=z.device)
        match = _same_clip(ids) & not_self
        nonmatch = ~_same_clip(ids)
        pos = (1.0 - sim).clamp(min=0) * match  # (2B, 2B)
        neg = sim.clamp(min=0) * nonmatch  # (2B, 2B)
        n_pos, n_neg = (pos > 0).sum(), (neg > 0).sum()
        if self.reduction == "joint":
            denom = (n_pos + n_neg).clamp(min=1)
            return {"pair_pos": pos.sum() / denom, "pair_neg": neg.sum() / denom}
        return {"pair_pos": pos.sum() / n_pos.clamp(min=1), "pair_neg": neg.sum() / n_neg.clamp(min=1)}
