"""The captioner's settings in one typed dataclass (notebook 07's parameters carry the same
names and defaults; a test holds them equal).

Sizes follow Xiaomi's DCASE 2023 task 6a sub-system (§2.2.1, §3.3): a frozen audio encoder
E_A from a retrieval run, a 3-layer bidirectional GRU E_AC, a 2-layer Transformer decoder D_AC
and a word classifier; pre-training then fine-tuning with Adam at 5e-4, batch 32; beam search
of size 3. The widths are not given in the report: ours are small enough to train on a CPU.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict

from atrlib.config import option
from atrlib.train.config import resolve_device  # noqa: F401  (the captioner's device; used by captioning.train and the CLI)

FEATURE_KINDS = ("frames", "pooled", "embedding")


@dataclass
class CaptionerConfig:
    features: str = option("frames", "what the frozen audio tower E_A hands over: 'frames' (its frame sequence), "
                                     "'pooled' (one clip vector), 'embedding' (tower + the run's trained audio head)")
    frame_stride: int = option(4, "frames only: average this many consecutive frames into one encoder step")
    text_model: str = option("minilm", "the tokenizer of a text tower: 'minilm' (offline), a hub id or a folder")
    hidden: int = option(128, "GRU units per direction in E_AC; the decoder is 2 x hidden wide")
    gru_layers: int = option(3, "layers of the bidirectional GRU encoder E_AC (Xiaomi: 3)")
    decoder_layers: int = option(2, "Transformer decoder layers of D_AC (Xiaomi: 2)")
    attention_heads: int = option(4, "attention heads of each decoder layer")
    ff_dim: int = option(512, "feed-forward units of each decoder layer")
    dropout: float = option(0.2, "dropout in E_AC and D_AC")
    max_tokens: int = option(30, "longest caption in word pieces: training truncates, decoding stops there")
    pretrain_epochs: int = option(0, "epochs on the pre-training corpus (Xiaomi: 10); 0 skips pre-training")
    finetune_epochs: int = option(25, "epochs on the fine-tuning (target) corpus (Xiaomi: 15)")
    caption_batch_size: int = option(32, "(audio, caption) pairs per step (Xiaomi: 32)")
    caption_pairs: str = option("captions", "an epoch: every (clip, caption) pair ('captions') or one random caption "
                                            "per clip ('clips', 5x shorter on Clotho and the demo data)")
    caption_lr: float = option(0.0005, "Adam's learning rate (Xiaomi: up to 5e-4)")
    label_smoothing: float = option(0.0, "label smoothing of the word-level cross-entropy")
    beam_size: int = option(3, "beam width at decoding (Xiaomi: 3); 1 = greedy")
    length_penalty: float = option(1.0, "a beam's score is its log-probability / length ** length_penalty "
                                        "(0: raw log-probability, which favours short captions)")
    device: str = option("auto", "'auto' (a GPU if present), 'cpu', 'cuda'")
    seed: int = option(0, "seed of the initialisation and of the batch order")
    fast_dev_run: int = option(0, "N > 0: a dry run — each stage one epoch of N batches, N batches of validation "
                                  "(atrlib.train.dev_run); 0 = off")

    def __post_init__(self):
        if self.features not in FEATURE_KINDS:
            raise ValueError(f"features must be one of {', '.join(FEATURE_KINDS)}, not {self.features!r}")
        for name in ("frame_stride", "hidden", "gru_layers", "decoder_layers", "attention_heads", "ff_dim",
                     "max_tokens", "caption_batch_size", "beam_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        if (2 * self.hidden) % self.attention_heads:
            raise ValueError(f"2 x hidden ({2 * self.hidden}) must be divisible by attention_heads "
                             f"({self.attention_heads})")
        if self.pretrain_epochs < 0 or self.finetune_epochs < 0 or self.pretrain_epochs + self.finetune_epochs < 1:
            raise ValueError("pretrain_epochs and finetune_epochs must be >= 0 and train at least one epoch")
        if int(self.fast_dev_run) < 0:
            raise ValueError(f"fast_dev_run must be >= 0 (0 = off), got {self.fast_dev_run!r}")
        if self.caption_pairs not in ("captions", "clips"):
            raise ValueError(f"caption_pairs must be 'captions' or 'clips', not {self.caption_pairs!r}")
        if not self.caption_lr > 0 or not 0 <= self.dropout < 1 or not 0 <= self.label_smoothing < 1:
            raise ValueError("caption_lr must be > 0, dropout and label_smoothing in [0, 1)")

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "CaptionerConfig":
        from dataclasses import fields

        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})
