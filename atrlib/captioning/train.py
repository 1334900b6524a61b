"""Training a captioner: teacher-forced word-level cross-entropy (Xiaomi's eq. 6) with E_A
frozen, pre-training on one corpus then fine-tuning on another, one loop read top to bottom.

    data = {"train": CaptionData(features, captions), "val": ...}
    model, history = train_captioner(cfg, data["train"], data["val"], pretrain=CaptionData(...),
                                     out_dir="reports/lab/07_captioning/captioner")

Each step takes ``caption_batch_size`` (audio, caption) pairs of similar length (less padding);
E_AC runs once per distinct clip of the step and each caption reads its clip's memory. The checkpoint kept is the fine-tuning epoch
with the lowest validation loss (teacher-forced cross-entropy on the validation captions);
without a validation split, the last. Adam at a constant ``caption_lr`` (the report gives only
its maximum), gradients clipped at norm 1.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from atrlib.captioning.config import CaptionerConfig, resolve_device
from atrlib.captioning.features import FeatureSet
from atrlib.captioning.model import Captioner
from atrlib.captioning.vocab import PAD, Vocabulary


@dataclass
class CaptionData:
    """One corpus split: E_A's features of each clip and each clip's reference captions."""

    features: FeatureSet
    captions: List[List[str]]   # clip -> its captions
    name: str = ""

    def __post_init__(self):
        if len(self.features) != len(self.captions):
            raise ValueError(f"{self.name}: {len(self.features)} clips of features but {len(self.captions)} caption lists")

    @classmethod
    def from_dataset(cls, features: FeatureSet, dataset) -> "CaptionData":
        """The captions of an :class:`~atrlib.data.base.AudioCaptionDataset` (clip order kept)."""
        caps: List[List[str]] = [[] for _ in range(len(dataset))]
        for c, clip in zip(dataset.captions_flat(), dataset.caption_clip_index()):
            caps[int(clip)].append(c)
        return cls(features, caps, f"{dataset.name}/{dataset.split}")

    def flat(self) -> Tuple[List[str], torch.Tensor]:
        """(every caption, (N,) its clip index)."""
        caps = [c for cs in self.captions for c in cs]
        clip = torch.tensor([i for i, cs in enumerate(self.captions) for _ in cs], dtype=torch.long)
        return caps, clip


def caption_loss(logits: torch.Tensor, tokens: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy of each next piece (logits (N, L, V) at positions 0..L-2 predict
    tokens 1..L-1); padding is not counted."""
    target = tokens[:, 1:]                                                          # (N, L-1)
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), target.reshape(-1),
                           ignore_index=PAD, label_smoothing=label_smoothing)


class _Corpus:
    """A split's captions as compact ids, and the batches of an epoch."""

    def __init__(self, data: CaptionData, vocab: Vocabulary, max_tokens: int):
        caps, self.clip = data.flat()
        self.data = data
        self.tokens = vocab.encode(caps, max_tokens) if caps else torch.zeros(0, 2, dtype=torch.long)  # (N, L)
        self.lengths = (self.tokens != PAD).sum(1)                                   # (N,)

    def batches(self, size: int, generator: Optional[torch.Generator] = None, pairs: str = "captions"
                ) -> List[torch.Tensor]:
        """Caption rows in steps of ``size``. Training (a generator): shuffled (``pairs="clips"``:
        one random caption per clip), then sorted by length within windows of 50 steps (less
        padding), the steps shuffled again. Validation (no generator): in order (``"clips"``: each
        clip's first caption)."""
        n = len(self.tokens)
        if generator is None:  # validation: every caption, or with pairs="clips" the first of each clip
            rows = torch.arange(n)
            if pairs == "clips":
                rows = rows[torch.cat([torch.ones(1, dtype=torch.bool), self.clip[1:] != self.clip[:-1]])] if n else rows
            return list(rows.split(size))
        order = torch.randperm(n, generator=generator)
        if pairs == "clips":  # the first of each clip's rows in a random order: one random caption per clip
            seen, keep = set(), []
            for r in order.tolist():
                c = int(self.clip[r])
                if c not in seen:
                    seen.add(c)
                    keep.append(r)
            order = torch.tensor(keep, dtype=torch.long)
        window = size * 50
        parts = []
        for w in order.split(window):
            parts += list(w[torch.argsort(self.lengths[w], stable=True)].split(size))
        return [parts[i] for i in torch.randperm(len(parts), generator=generator).tolist()]

    def batch(self, rows: torch.Tensor, stride: int, device):
        """(features (B, T, D), mask, tokens (n, L) trimmed, clip of each caption (n,) into the B clips)."""
        clips, local = torch.unique(self.clip[rows], return_inverse=True)
        toks = self.tokens[rows]
        toks = toks[:, :int(self.lengths[rows].max())]                               # (n, L) trimmed
        feats, mask = self.data.features.get(clips.tolist(), stride)
        return feats.to(device), mask.to(device), toks.to(device), local.to(device)


def _epoch(model: Captioner, corpus: _Corpus, cfg: CaptionerConfig, device, optimizer=None,
           generator: Optional[torch.Generator] = None) -> float:
    """One pass (training when ``optimizer`` is given); the mean loss per caption piece."""
    train = optimizer is not None
    model.train(train)
    stride = cfg.frame_stride if corpus.data.features.kind == "frames" else 1
    total, count = 0.0, 0
    for i, rows in enumerate(corpus.batches(cfg.caption_batch_size, generator if train else None, cfg.caption_pairs)):
        if cfg.fast_dev_run and i >= cfg.fast_dev_run:
            break  # a dry run: N batches
        feats, mask, toks, local = corpus.batch(rows, stride, device)
        with torch.set_grad_enabled(train):
            loss = caption_loss(model(feats, mask, toks, local), toks, cfg.label_smoothing if train else 0.0)
        if train:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
        n = int((toks[:, 1:] != PAD).sum())
        total, count = total + float(loss.detach()) * n, count + n
    return total / max(count, 1)


def train_captioner(cfg: CaptionerConfig, train: CaptionData, val: Optional[CaptionData] = None,
                    pretrain: Optional[CaptionData] = None, out_dir=None, progress: bool = False
                    ) -> Tuple[Captioner, List[Dict]]:
    """Pre-train on ``pretrain`` for ``cfg.pretrain_epochs`` (skipped when 0 or None), then
    fine-tune on ``train`` for ``cfg.finetune_epochs``, keeping the fine-tuning epoch with the
    lowest ``val`` loss. Returns (model on its device, in eval mode; history: one dict per
    epoch with ``stage, epoch, train_loss, val_loss, seconds``). With ``out_dir`` the model and
    ``history.json`` are written there."""
    from tqdm.auto import tqdm

    # 1. device, seed, vocabulary (the word pieces of every training caption), model
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    corpora = [d for d in (pretrain if cfg.pretrain_epochs else None, train) if d is not None]
    if not any(c for d in corpora for cs in d.captions for c in cs):
        from atrlib.errors import DatasetError

        raise DatasetError(f"{train.name or 'training data'}: no captions to train a captioner on")
    vocab = Vocabulary.from_captions(cfg.text_model, [c for d in corpora for cs in d.captions for c in cs])
    model = Captioner(cfg, train.features.dim, vocab, source=train.features.source).to(device)
    stages = ([("pretrain", pretrain, cfg.pretrain_epochs)] if pretrain is not None and cfg.pretrain_epochs else []) \
        + [("finetune", train, cfg.finetune_epochs)]
    if cfg.fast_dev_run:  # a dry run: one epoch of N batches per stage
        stages = [(stage, data, min(1, epochs)) for stage, data, epochs in stages]
    val_corpus = _Corpus(val, vocab, cfg.max_tokens) if val is not None else None

    # 2. the two stages, each with a fresh Adam (the report: "the same settings")
    history: List[Dict] = []
    best, best_state = float("inf"), None
    bar = tqdm(total=sum(e for _, _, e in stages), desc="captioner", disable=not progress)
    for stage, data, epochs in stages:
        corpus = _Corpus(data, vocab, cfg.max_tokens)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.caption_lr)
        for epoch in range(epochs):
            t0 = time.time()
            g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch + (0 if stage == "pretrain" else 500_000))
            train_loss = _epoch(model, corpus, cfg, device, optimizer, g)
            with torch.no_grad():
                val_loss = _epoch(model, val_corpus, cfg, device) if val_corpus is not None else float("nan")
            history.append({"stage": stage, "epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss,
                            "seconds": round(time.time() - t0, 3)})
            if stage == "finetune" and (val_corpus is None or val_loss < best):
                best, best_state = val_loss, copy.deepcopy(model.state_dict())
            bar.update(1)
    bar.close()

    # 3. the chosen epoch's weights, saved with the history
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    if out_dir is not None:
        from atrlib.files import write_json

        model.save(out_dir)
        write_json(Path(out_dir) / "history.json", history)
    return model, history


def chosen_epoch(history: Sequence[Dict]) -> Optional[int]:
    """The fine-tuning epoch whose weights were kept (lowest validation loss, else the last)."""
    ft = [h for h in history if h["stage"] == "finetune"]
    if not ft:
        return None
    vals = [h["val_loss"] for h in ft]
    if any(v != v for v in vals):
        return ft[-1]["epoch"]
    return ft[min(range(len(ft)), key=lambda i: vals[i])]["epoch"]


def train_on_run(cfg: CaptionerConfig, run, splits: Dict, pretrain_dataset=None, out_dir=None,
                 progress: bool = False) -> Tuple[Captioner, List[Dict], Dict[str, CaptionData]]:
    """What notebook 07 does for one E_A: the run's audio tower over every split of
    ``splits`` (``{"train", "val", ...}`` datasets; cached), then :func:`train_captioner` on
    ``train`` (choosing on ``val``), pre-trained on ``pretrain_dataset`` when given. Returns
    (model, history, {split key: CaptionData})."""
    from atrlib.captioning.features import encoder_features, load_encoder

    run = str(Path(run).resolve())
    enc = load_encoder(run, resolve_device(cfg.device))
    data = {k: CaptionData.from_dataset(encoder_features(enc, ds, cfg.features, progress, run=run), ds)
            for k, ds in splits.items()}
    pre = None
    if pretrain_dataset is not None and cfg.pretrain_epochs:
        pre = CaptionData.from_dataset(encoder_features(enc, pretrain_dataset, cfg.features, progress, run=run),
                                       pretrain_dataset)
    model, history = train_captioner(cfg, data["train"], data.get("val"), pretrain=pre, out_dir=out_dir,
                                     progress=progress)
    return model, history, data
