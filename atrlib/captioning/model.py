"""The captioner of Xiaomi's task 6a sub-system (§2.2.1, eq. 5): on top of a frozen audio
encoder E_A, a bidirectional GRU encoder E_AC, a Transformer decoder D_AC reading the word
embeddings WE(w) of the caption so far, and a word classifier::

    features (B, T, D) -> LayerNorm -> Linear(D, H) -> BiGRU (3 layers) -> memory (B, T, 2H)
    caption  (N, L)    -> WE + position  -> TransformerDecoder (2 layers, causal,
                                            cross-attention to the memory of its clip) -> Linear -> (N, L, V)

One clip's memory serves all of its captions (``clip_index``), so the encoder runs once per
clip per step. Saved as ``captioner.json`` (config, feature size, vocabulary) +
``captioner.safetensors``; loading never unpickles.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Tuple

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from atrlib.captioning.config import CaptionerConfig
from atrlib.captioning.vocab import PAD, Vocabulary

MODEL_FILES = ("captioner.json", "captioner.safetensors")


class Captioner(nn.Module):
    """See the module docstring. ``feat_dim``: the size of E_A's output vectors."""

    def __init__(self, cfg: CaptionerConfig, feat_dim: int, vocab: Vocabulary, source: dict | None = None):
        super().__init__()
        self.cfg, self.feat_dim, self.vocab = cfg, int(feat_dim), vocab
        self.source = dict(source or {})  # where E_A came from: run folder, features kind (for the record)
        h, d = cfg.hidden, 2 * cfg.hidden
        self.in_norm = nn.LayerNorm(self.feat_dim)
        self.in_proj = nn.Linear(self.feat_dim, h)
        self.encoder = nn.GRU(h, h, num_layers=cfg.gru_layers, batch_first=True, bidirectional=True,
                              dropout=cfg.dropout if cfg.gru_layers > 1 else 0.0)
        self.word_emb = nn.Embedding(len(vocab), d, padding_idx=PAD)
        self.pos_emb = nn.Embedding(cfg.max_tokens + 2, d)
        layer = nn.TransformerDecoderLayer(d, cfg.attention_heads, cfg.ff_dim, cfg.dropout, batch_first=True)
        self.decoder = nn.TransformerDecoder(layer, cfg.decoder_layers)
        self.drop = nn.Dropout(cfg.dropout)
        self.classifier = nn.Linear(d, len(vocab))

    @property
    def device(self) -> torch.device:
        return self.classifier.weight.device

    # -- E_AC ---------------------------------------------------------------------------------
    def encode(self, feats: torch.Tensor, mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(memory (B, T, 2H), padding mask (B, T), True = padding) of E_A's outputs."""
        x = self.drop(torch.relu(self.in_proj(self.in_norm(feats.float()))))        # (B, T, H)
        lengths = mask.sum(1).clamp(min=1).cpu()
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.encoder(packed)
        memory, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])  # (B, T, 2H)
        return memory, ~mask.bool()

    # -- D_AC + classifier --------------------------------------------------------------------
    def decode(self, memory: torch.Tensor, memory_pad: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """(N, L, V) next-piece logits of ``tokens`` (N, L) compact ids, each row reading the
        memory row of the same index (expand the memory per caption first)."""
        n, length = tokens.shape
        pos = torch.arange(length, device=tokens.device).clamp(max=self.pos_emb.num_embeddings - 1)
        x = self.drop(self.word_emb(tokens) + self.pos_emb(pos)[None])                 # (N, L, 2H)
        causal = torch.ones(length, length, dtype=torch.bool, device=tokens.device).triu(1)  # True = not seen
        y = self.decoder(x, memory, tgt_mask=causal, tgt_key_padding_mask=tokens == PAD,
                         memory_key_padding_mask=memory_pad, tgt_is_causal=True)     # (N, L, 2H)
        return self.classifier(y)                                                       # (N, L, V)

    def forward(self, feats, mask, tokens, clip_index) -> torch.Tensor:
        """Teacher forcing: logits (N, L, V) of every caption ``tokens`` (N, L) given the
        features of its clip ``clip_index`` (N,) into the batch's clips ``feats`` (B, T, D)."""
        memory, pad = self.encode(feats, mask)
        return self.decode(memory[clip_index], pad[clip_index], tokens)

    # -- files --------------------------------------------------------------------------------
    def save(self, folder) -> Path:
        from safetensors.torch import save_file

        from atrlib.files import write_json

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "captioner.json", {"config": self.cfg.to_dict(), "feat_dim": self.feat_dim,
                                           "vocab": self.vocab.to_dict(), "source": self.source})
        save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()},
                  str(out / "captioner.safetensors"))
        return out


def is_captioner(folder) -> bool:
    return all((Path(folder) / f).is_file() for f in MODEL_FILES)


def load_captioner(folder, device: str = "cpu") -> Captioner:
    """A captioner saved by :meth:`Captioner.save`, in eval mode; a missing or damaged file is a
    :class:`~atrlib.errors.WeightsFileError` naming it."""
    from safetensors.torch import load_file

    from atrlib.errors import WeightsFileError

    d = Path(folder)
    for f in MODEL_FILES:
        if not (d / f).is_file():
            raise WeightsFileError(f"{d / f}: missing; a trained captioner folder holds {' and '.join(MODEL_FILES)} "
                                   "(train one with notebook 07 or atrlib.captioning.train.train_captioner)")
    try:
        meta = json.loads((d / "captioner.json").read_text(encoding="utf-8"))
        model = Captioner(CaptionerConfig.from_dict(meta["config"]), meta["feat_dim"],
                          Vocabulary.from_dict(meta["vocab"]), meta.get("source"))
        model.load_state_dict(load_file(str(d / "captioner.safetensors")))
    except (ValueError, KeyError, TypeError, RuntimeError, OSError) as e:
        raise WeightsFileError(f"{d}: the captioner cannot be loaded ({type(e).__name__}: "
                               f"{str(e).splitlines()[0] if str(e) else ''}); its files are damaged or from "
                               "another version; train it again") from e
    except Exception as e:  # safetensors' own error type
        if type(e).__name__ != "SafetensorError":
            raise
        raise WeightsFileError(f"{d / 'captioner.safetensors'}: not a readable safetensors file ({e})") from e
    return model.to(device).eval()
