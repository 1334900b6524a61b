"""Multi-term training objectives: contrastive losses plus the cross-modal terms of the seed
systems, named and weighted in one string.

    loss = "infonce+acml+mlml"            # Samsung 2024: A-CCL + A-CML + MLML, equal weights
    loss = "infonce+0.5*acml+mlml"        # weights in the string ...
    loss_kwargs = {"weights": {"acml": 0.5}, "crossattn": {"num_layers": 2, "frame_stride": 10}}
    loss = "infonce+atc+atm+atg"          # Lingban 2023: the BLIP-2 Q-Former terms
    loss = "infonce+0.1*tag_msle"         # Xiaomi CLAP-TAG (lambda = 0.1)
    loss = "infonce+claip"                # Xiaomi CLA-IP, loss_kwargs={"claip": {"path": "img.npz"}}

Terms (all in ``atrlib.losses.LOSSES``, so recipes say their names):

==========  ===========================================================  =====================
name        what                                                         needs
==========  ===========================================================  =====================
acml        audio-caption matching: the caption re-read with cross-      crossattn head, frames
            attention to the audio frames, an MLP says match / no match;
            per example one hard negative caption (for its audio) and
            one hard negative audio (for its caption), sampled from the
            in-batch contrastive similarities (softmax, never the same
            clip); binary cross-entropy over positives and negatives
mlml        masked LM conditioned on audio: 60 % of caption tokens        crossattn head, frames
            masked (80 % [MASK], 10 % random, 10 % kept), BertForMaskedLM's
            head, loss on masked positions (causal self-attention by
            default, VAST's P(t_m | t_<m, a); ``causal=False``: BERT's)
atc         Q-Former audio-text contrastive: max over queries of          qformer head, frames
            query · text, symmetric InfoNCE (same-clip pairs masked)
atm         Q-Former matching: hard negatives as acml, 2-way itm head     qformer head, frames
atg         Q-Former audio-grounded caption generation (causal LM)        qformer head, frames
tag_msle    lambda · MSLE between the trained tower's tag probabilities  trainable tagging tower
tag_mae     ... or their MAE, and a frozen copy's (the teacher)
claip       InfoNCE image -> text between precomputed image embeddings   image head, a file
            per caption and the caption embeddings
==========  ===========================================================  =====================

Every term is called as ``term(batch, model) -> {name: scalar}`` with a :class:`CrossBatch`
(the gathered contrastive embeddings plus this process's frames, captions, waveforms);
:class:`Objective` keeps the standard loss signature for :func:`atrlib.train.loop.fit`:
``objective(audio_emb, text_emb, clip_ids, logit_scale, batch=...)``. With several processes
the embeddings, frames and token ids are gathered (:func:`atrlib.losses.distributed.gather_with_grad`),
so hard negatives come from the global batch.

References: Li et al. "Align before fuse" (ALBEF, NeurIPS 2021); Li et al. "BLIP-2" (ICML 2023);
Chen et al. "VAST" (NeurIPS 2023); the seed reports in ``../shared/seeds``.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from atrlib.losses import LOSSES, Terms
from atrlib.losses.distributed import gather_with_grad

# --------------------------------------------------------------------------- the batch


@dataclass
class CrossBatch:
    """What cross-modal terms see. Global (gathered over processes): ``audio_emb``,
    ``text_emb`` (G, E), ``clip_ids`` (G,). Local (this process's slice, rows ``offset`` ..
    ``offset + n`` of the global batch): ``captions`` (n strings), ``frames`` (n, T, D),
    ``frame_mask`` (n, T), ``wave`` (n, samples) or None."""

    audio_emb: Tensor
    text_emb: Tensor
    clip_ids: Tensor
    logit_scale: Tensor
    captions: List[str]
    frames: Optional[Tensor] = None
    frame_mask: Optional[Tensor] = None
    wave: Optional[Tensor] = None
    caption_idx: Optional[Tensor] = None  # (n,) local rows of the training captions (distill, listwise)
    offset: int = 0
    cache: Dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.captions)

    @property
    def distributed(self) -> bool:
        return len(self.clip_ids) != self.n


# --------------------------------------------------------------------------- shared pieces


def sample_hard_negatives(sim: Tensor, same: Tensor, generator: Optional[torch.Generator] = None
                          ) -> Tuple[Tensor, Tensor]:
    """One negative column per row of ``sim`` (rows, cols), drawn with probability
    softmax(sim[row]) over the columns where ``same`` is False (ALBEF's hard negatives).
    Returns (index (rows,), valid (rows,)); a row without any negative is not valid (index 0)."""
    logits = sim.detach().float().masked_fill(same, float("-inf"))             # (rows, cols)
    valid = (~same).any(1)                                                      # (rows,)
    probs = torch.softmax(logits[valid], dim=1)
    idx = torch.zeros(len(sim), dtype=torch.long, device=sim.device)
    if valid.any():
        idx[valid] = torch.multinomial(probs, 1, generator=generator).squeeze(1)
    return idx, valid


def infonce_from_logits(logits: Tensor, clip_ids: Tensor, positives: str = "diagonal") -> Tensor:
    """Symmetric InfoNCE on a (B, B) audio x text logit matrix, as ``atrlib.losses.contrastive.InfoNCE``:
    ``positives="diagonal"`` (CLIP's and BLIP-2's ITC: other pairs of the same clip count as
    negatives) or ``"mask"`` (they are removed from the denominators)."""
    if positives not in ("diagonal", "mask"):
        raise ValueError(f"positives must be 'diagonal' or 'mask', not {positives!r}")
    if positives == "mask":
        same = clip_ids[:, None] == clip_ids[None, :]
        off = same & ~torch.eye(len(clip_ids), dtype=torch.bool, device=logits.device)
        logits = logits.masked_fill(off, float("-inf"))
    target = torch.arange(len(clip_ids), device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def mask_tokens(input_ids: Tensor, attention_mask: Tensor, special_ids: Sequence[int], mask_id: int,
                vocab_size: int, prob: float = 0.6, generator: Optional[torch.Generator] = None
                ) -> Tuple[Tensor, Tensor]:
    """BERT's masking at rate ``prob`` over real, non-special tokens: of the chosen tokens 80 %
    become ``mask_id``, 10 % a random token, 10 % stay. Returns (masked ids, labels) (B, L);
    labels are -100 except at chosen positions."""
    dev = input_ids.device
    u = lambda: torch.rand(input_ids.shape, generator=generator).to(dev)       # noqa: E731
    eligible = attention_mask.bool() & ~torch.isin(input_ids, torch.tensor(list(special_ids), device=dev))
    chosen = eligible & (u() < prob)                                            # (B, L)
    labels = input_ids.masked_fill(~chosen, -100)
    r = u()
    to_mask = chosen & (r < 0.8)
    to_random = chosen & (r >= 0.8) & (r < 0.9)
    rand_ids = torch.randint(vocab_size, input_ids.shape, generator=generator).to(dev)
    out = torch.where(to_mask, torch.full_like(input_ids, mask_id), input_ids)
    out = torch.where(to_random, rand_ids, out)
    return out, labels


def _gather_tokens(tok: Dict[str, Tensor]) -> Tuple[Tensor, Tensor]:
    return gather_with_grad(tok["input_ids"]), gather_with_grad(tok["attention_mask"])


def _negative_pairs(b: CrossBatch, sim: Tensor, generator=None):
    """Hard negatives of the local rows: for each local caption a negative audio (global index),
    for each local audio a negative caption (global index), and which exist."""
    rows = torch.arange(b.offset, b.offset + b.n, device=sim.device)
    same = b.clip_ids[:, None] == b.clip_ids[None, :]                           # (G, G)
    neg_audio, ok_a = sample_hard_negatives(sim.T[rows], same[rows], generator)  # caption j -> audio
    neg_text, ok_t = sample_hard_negatives(sim[rows], same[rows], generator)    # audio i -> caption
    return neg_audio, ok_a, neg_text, ok_t


# --------------------------------------------------------------------------- terms


class CrossModalTerm(nn.Module):
    """Base of the cross-modal terms: ``head`` names the extra head it trains (built by
    :class:`Objective` with ``head_defaults`` unless the model has it), ``needs`` what the
    batch must carry."""

    head: Optional[str] = None
    head_defaults: Dict[str, Any] = {}
    needs: Tuple[str, ...] = ()
    cross_modal = True

    def forward(self, audio_emb, text_emb=None, clip_ids=None, logit_scale=None, **kw):  # pragma: no cover
        raise TypeError(f"{type(self).__name__} is a cross-modal term: build it into an objective, "
                        "build_objective('infonce+<term>', model) (atrlib.losses.crossmodal)")

    def term(self, b: CrossBatch, model) -> Terms:
        raise NotImplementedError


@LOSSES.register("acml")
class ACML(CrossModalTerm):
    """Audio-caption matching with hard negatives (see the module table). ``temperature``:
    None = use the batch's logit scale for the sampling softmax."""

    head, needs = "crossattn", ("frames", "captions")
    head_defaults = {"text_model": "minilm"}

    def __init__(self, temperature: Optional[float] = None):
        super().__init__()
        self.temperature = temperature

    def term(self, b: CrossBatch, model) -> Terms:
        head = model.extra_heads["crossattn"]
        tok = head.tokenize(b.captions, pad_to_max=b.distributed)
        ids_g, am_g = _gather_tokens(tok)
        fr_g, fm_g = gather_with_grad(b.frames), gather_with_grad(b.frame_mask)
        scale = b.logit_scale if self.temperature is None else 1.0 / self.temperature
        with torch.no_grad():
            sim = scale * b.audio_emb @ b.text_emb.T                            # (G, G) audio x text
        neg_a, ok_a, neg_t, ok_t = _negative_pairs(b, sim)
        ids, am = tok["input_ids"], tok["attention_mask"]
        all_ids = torch.cat([ids, ids[ok_a], ids_g[neg_t[ok_t]]])               # (n + na + nt, L)
        all_am = torch.cat([am, am[ok_a], am_g[neg_t[ok_t]]])
        all_fr = torch.cat([b.frames, fr_g[neg_a[ok_a]], b.frames[ok_t]])       # (n + na + nt, T, D)
        all_fm = torch.cat([b.frame_mask, fm_g[neg_a[ok_a]], b.frame_mask[ok_t]])
        logits = head.match_logits(all_ids, all_am, all_fr, all_fm)             # (n + na + nt,)
        target = torch.zeros_like(logits)
        target[:b.n] = 1.0
        return {"acml": F.binary_cross_entropy_with_logits(logits, target)}


@LOSSES.register("mlml")
class MLML(CrossModalTerm):
    """Masked language modelling conditioned on the audio frames (see the module table)."""

    head, needs = "crossattn", ("frames", "captions")
    head_defaults = {"text_model": "minilm"}

    def __init__(self, mask_prob: float = 0.6, causal: bool = True):
        super().__init__()
        self.mask_prob, self.causal = float(mask_prob), bool(causal)

    def term(self, b: CrossBatch, model) -> Terms:
        head = model.extra_heads["crossattn"]
        tok = head.tokenize(b.captions)
        t = head.tokenizer
        masked, labels = mask_tokens(tok["input_ids"], tok["attention_mask"], t.all_special_ids, t.mask_token_id,
                                     len(t), self.mask_prob)
        sel = labels != -100                                                    # (n, L)
        if not sel.any():
            return {"mlml": sum(p.sum() for p in head.mlm_head.parameters()) * 0.0}
        logits = head.mlm_logits(masked, tok["attention_mask"], b.frames, b.frame_mask, causal=self.causal,
                                 positions=sel)                                 # (masked tokens, vocab)
        return {"mlml": F.cross_entropy(logits.float(), labels[sel])}


def _qformer(model):
    return model.extra_heads["qformer"]


def _qformer_sim(b: CrossBatch, model) -> Tuple[Tensor, Dict[str, Tensor]]:
    """(G, G) audio x text ATC similarity (max over queries), with gradients through the local
    slice; cached in the batch for ATM."""
    if "qformer_sim" not in b.cache:
        q = _qformer(model)
        tok = q.tokenize(b.captions, pad_to_max=b.distributed)
        qa = gather_with_grad(q.embed_audio(b.frames, b.frame_mask))            # (G, Q, E)
        te = gather_with_grad(q.embed_text(tok["input_ids"], tok["attention_mask"]))  # (G, E)
        b.cache["qformer_sim"] = torch.einsum("iqe,je->ijq", qa, te).amax(-1)   # (G, G)
        b.cache["qformer_tok"] = tok
    return b.cache["qformer_sim"], b.cache["qformer_tok"]


@LOSSES.register("atc")
class ATC(CrossModalTerm):
    """Q-Former audio-text contrastive loss (BLIP-2's ITC; see the module table). ``positives``:
    ``"diagonal"`` (BLIP-2: other captions of the same clip count as negatives) or ``"mask"``."""

    head, needs = "qformer", ("frames", "captions")

    def __init__(self, positives: str = "diagonal"):
        super().__init__()
        self.positives = positives

    def term(self, b: CrossBatch, model) -> Terms:
        sim, _ = _qformer_sim(b, model)
        return {"atc": infonce_from_logits(_qformer(model).logit_scale * sim, b.clip_ids, self.positives)}


@LOSSES.register("atm")
class ATM(CrossModalTerm):
    """Q-Former audio-text matching with hard negatives from the ATC similarities (BLIP-2's ITM)."""

    head, needs = "qformer", ("frames", "captions")

    def term(self, b: CrossBatch, model) -> Terms:
        q = _qformer(model)
        sim, tok = _qformer_sim(b, model)
        ids_g, am_g = _gather_tokens(tok)
        fr_g, fm_g = gather_with_grad(b.frames), gather_with_grad(b.frame_mask)
        neg_a, ok_a, neg_t, ok_t = _negative_pairs(b, (q.logit_scale * sim).detach())
        ids, am = tok["input_ids"], tok["attention_mask"]
        all_ids = torch.cat([ids, ids[ok_a], ids_g[neg_t[ok_t]]])
        all_am = torch.cat([am, am[ok_a], am_g[neg_t[ok_t]]])
        all_fr = torch.cat([b.frames, fr_g[neg_a[ok_a]], b.frames[ok_t]])
        all_fm = torch.cat([b.frame_mask, fm_g[neg_a[ok_a]], b.frame_mask[ok_t]])
        logits = q.itm_logits(all_ids, all_am, all_fr, all_fm)                  # (n + na + nt, 2)
        target = torch.zeros(len(logits), dtype=torch.long, device=logits.device)
        target[:b.n] = 1
        return {"atm": F.cross_entropy(logits, target)}


@LOSSES.register("atg")
class ATG(CrossModalTerm):
    """Q-Former audio-grounded text generation: next-token cross-entropy of the caption under
    the multimodal causal mask (BLIP-2's ITG; the first token, [CLS], acts as its [DEC])."""

    head, needs = "qformer", ("frames", "captions")

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = float(label_smoothing)

    def term(self, b: CrossBatch, model) -> Terms:
        q = _qformer(model)
        tok = q.tokenize(b.captions)
        logits = q.lm_logits(tok["input_ids"], tok["attention_mask"], b.frames, b.frame_mask)  # (n, L, V)
        labels = tok["input_ids"].masked_fill(tok["attention_mask"] == 0, -100)[:, 1:]         # (n, L-1)
        return {"atg": F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                                       ignore_index=-100, label_smoothing=self.label_smoothing)}


class TagRegulariser(CrossModalTerm):
    """CLAP-TAG: distance between the trained audio tower's tag probabilities and a frozen
    teacher's. ``teacher="config"`` rebuilds the tower from the model config's published
    weights (exact on resume); ``"copy"`` copies the tower when the objective is built."""

    needs = ("wave",)
    kind = "msle"

    def __init__(self, teacher: str = "config"):
        super().__init__()
        if teacher not in ("config", "copy"):
            raise ValueError(f"teacher must be 'config' or 'copy', not {teacher!r}")
        self.teacher_source = teacher
        self._teacher: List[nn.Module] = []  # a list: not a submodule, never saved or optimised

    def prepare(self, model) -> None:
        tower = model.audio_tower
        if not callable(getattr(tower, "tag", None)):
            raise ValueError(f"tag_{self.kind} needs an audio tower with a tagging head (tag(wave) -> logits); "
                             f"{model.config.audio.name!r} has none")
        if model.config.audio.frozen:
            raise ValueError(f"tag_{self.kind} regularises a trainable audio tower; {model.config.audio.name!r} is frozen")
        if self.teacher_source == "config":
            if model.config.audio.pretrained in (None, False):
                raise ValueError(f"tag_{self.kind} with teacher='config' needs published weights (audio.pretrained); "
                                 "pass teacher='copy' to copy the tower as it starts")
            from atrlib.models.dual import _build_tower

            teacher = _build_tower("audio", model.config.audio)
        else:
            teacher = copy.deepcopy(tower)
        for p in teacher.parameters():
            p.requires_grad_(False)
        self._teacher = [teacher.eval().to(next(tower.parameters()).device)]

    def distance(self, p_student: Tensor, p_teacher: Tensor) -> Tensor:
        if self.kind == "msle":
            return (torch.log1p(p_student) - torch.log1p(p_teacher)).pow(2).mean()
        return (p_student - p_teacher).abs().mean()

    def term(self, b: CrossBatch, model) -> Terms:
        if not self._teacher:
            self.prepare(model)
        with torch.no_grad():
            p_t = torch.sigmoid(self._teacher[0].tag(b.wave).float())          # (n, classes)
        p_s = torch.sigmoid(model.audio_tower.tag(b.wave).float())              # (n, classes)
        return {f"tag_{self.kind}": self.distance(p_s, p_t)}


@LOSSES.register("tag_msle")
class TagMSLE(TagRegulariser):
    kind = "msle"


@LOSSES.register("tag_mae")
class TagMAE(TagRegulariser):
    kind = "mae"


@LOSSES.register("claip")
class CLAIP(CrossModalTerm):
    """CLA-IP: InfoNCE image -> text over the captions of the batch that have an image
    embedding. ``path``: an ``.npz`` with ``captions`` (N strings) and ``embeddings`` (N, D),
    e.g. CLIP embeddings of images generated from each caption; the ``image`` head maps them
    into the shared space. ``symmetric``: add text -> image (the report uses image -> text)."""

    head, needs = "image", ("captions",)

    def __init__(self, path: str = "", symmetric: bool = False):
        super().__init__()
        if not path:
            raise ValueError("claip needs loss_kwargs={'claip': {'path': 'image_embeddings.npz'}} (captions + embeddings)")
        with np.load(path, allow_pickle=False) as z:
            if "captions" not in z or "embeddings" not in z:
                raise ValueError(f"{path}: needs arrays 'captions' (N strings) and 'embeddings' (N, D); has {list(z)}")
            caps, emb = [str(c) for c in z["captions"]], np.asarray(z["embeddings"], np.float32)
        if len(caps) != len(emb):
            raise ValueError(f"{path}: {len(caps)} captions but {len(emb)} embeddings")
        self.row = {c.strip(): i for i, c in enumerate(caps)}
        self.embeddings = torch.from_numpy(emb)
        self.symmetric = symmetric
        self.head_defaults = {"image_dim": int(emb.shape[1])}

    def term(self, b: CrossBatch, model) -> Terms:
        rows = [self.row.get(c.strip(), -1) for c in b.captions]
        has = torch.tensor([r >= 0 for r in rows], device=b.text_emb.device)    # (n,)
        emb = self.embeddings[[max(r, 0) for r in rows]].to(b.text_emb.device)  # (n, D)
        img = F.normalize(model.extra_heads["image"](emb), dim=-1)              # (n, E)
        img_g, has_g = gather_with_grad(img), gather_with_grad(has.to(torch.uint8)).bool()  # (G, E), (G,)
        if not has_g.any():
            return {"claip": img.sum() * 0.0}
        t, ids = b.text_emb[has_g], b.clip_ids[has_g]
        logits = b.logit_scale * img_g[has_g] @ t.T                             # (m, m) image x text
        same = ids[:, None] == ids[None, :]
        logits = logits.masked_fill(same & ~torch.eye(len(ids), dtype=torch.bool, device=t.device), float("-inf"))
        target = torch.arange(len(ids), device=t.device)
        loss = F.cross_entropy(logits, target)
        if self.symmetric:
            loss = 0.5 * (loss + F.cross_entropy(logits.T, target))
        return {"claip": loss}


# --------------------------------------------------------------------------- the objective
