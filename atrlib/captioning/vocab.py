"""Words in and out of the captioner: a text tower's tokenizer and the part of its vocabulary
the captions use.

The captioner predicts word pieces of a text tower's tokenizer (MiniLM's uncased BERT
vocabulary by default, shipped offline), so its captions and a retrieval model's text tower
read the same pieces. Its classifier covers only the pieces that occur in the training
captions (a few hundred on the demo data, a few thousand on Clotho) plus [PAD], [CLS] (the
start), [SEP] (the end) and [UNK]: the softmax stays small enough for a CPU. Decoding works
in the tokenizer's full id space (:meth:`Vocabulary.expand`), so captioners with different
sub-vocabularies and the Q-Former's LM head (the whole vocabulary) can be ensembled.
"""
from __future__ import annotations

import hashlib
from typing import Dict, List, Sequence

import torch

PAD, BOS, EOS, UNK = 0, 1, 2, 3  # compact ids of the special pieces


def tokenizer_path(text_model: str) -> str:
    """A tokenizer folder or hub id: ``"minilm"`` is the offline all-MiniLM-L6-v2."""
    if text_model in ("minilm", "tiny"):
        from atrlib.models.text_towers import minilm_path

        return str(minilm_path())
    return text_model


def load_tokenizer(text_model: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_path(text_model))


def tokenizer_signature(tok) -> str:
    """What must agree for two models' log-probabilities to be averaged: the vocabulary."""
    items = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    return hashlib.sha256("\n".join(k for k, _ in items).encode()).hexdigest()[:16]


def clean_caption(text: str) -> str:
    """A decoded caption as the challenge's files hold it: one line, single spaces, word
    pieces around a hyphen or an apostrophe joined ("low - pitched" -> "low-pitched")."""
    import re

    s = " ".join(str(text).replace("\n", " ").split())
    return re.sub(r"(\w) ?([-']) ?(\w)", r"\1\2\3", s)


class Vocabulary:
    """The tokenizer of ``text_model`` and the compact ids of the pieces the captions use."""

    def __init__(self, text_model: str, pieces: Sequence[int], tokenizer=None):
        self.text_model = text_model
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(text_model)
        t = self.tokenizer
        special = [t.pad_token_id, t.cls_token_id, t.sep_token_id, t.unk_token_id]
        rest = sorted({int(p) for p in pieces} - set(special))
        self.ids = torch.tensor(special + rest, dtype=torch.long)               # compact -> tokenizer id
        self.full_size = len(t)
        self.compact = torch.full((self.full_size,), UNK, dtype=torch.long)     # tokenizer id -> compact
        self.compact[self.ids] = torch.arange(len(self.ids))
        self.bos_id, self.eos_id = int(t.cls_token_id), int(t.sep_token_id)

    @classmethod
    def from_captions(cls, text_model: str, captions: Sequence[str]) -> "Vocabulary":
        tok = load_tokenizer(text_model)
        pieces = {i for ids in tok(list(captions), add_special_tokens=False)["input_ids"] for i in ids}
        return cls(text_model, sorted(pieces), tok)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def signature(self) -> str:
        return tokenizer_signature(self.tokenizer)

    def to_dict(self) -> Dict:
        return {"text_model": self.text_model, "pieces": [int(i) for i in self.ids[4:]]}

    @classmethod
    def from_dict(cls, d: Dict) -> "Vocabulary":
        return cls(d["text_model"], d["pieces"])

    def encode(self, captions: Sequence[str], max_tokens: int) -> torch.Tensor:
        """(N, L) compact ids ``[CLS] pieces… [SEP]`` padded with [PAD]; at most ``max_tokens``
        pieces between the two (longer captions are cut, the end piece kept)."""
        rows = self.tokenizer(list(captions), add_special_tokens=False)["input_ids"]
        seqs = [[BOS] + self.compact[torch.tensor(r[:max_tokens], dtype=torch.long)].tolist() + [EOS] for r in rows]
        out = torch.full((len(seqs), max(len(s) for s in seqs)), PAD, dtype=torch.long)  # (N, L)
        for i, s in enumerate(seqs):
            out[i, :len(s)] = torch.tensor(s)
        return out

    def to_compact(self, full_ids: torch.Tensor) -> torch.Tensor:
        return self.compact.to(full_ids.device)[full_ids]

    def expand(self, compact_logprobs: torch.Tensor) -> torch.Tensor:
        """(N, len(self)) log-probabilities -> (N, tokenizer size), -inf for pieces this
        vocabulary never predicts ([PAD] and [UNK] included: a caption never holds them)."""
        out = torch.full((len(compact_logprobs), self.full_size), float("-inf"), dtype=compact_logprobs.dtype,
                         device=compact_logprobs.device)
        keep = compact_logprobs.clone()
        keep[:, [PAD, UNK]] = float("-inf")
        out[:, self.ids.to(out.device)] = keep
        return out

    def decode(self, full_ids: Sequence[int]) -> str:
        return decode_ids(self.tokenizer, full_ids)


def decode_ids(tokenizer, full_ids: Sequence[int]) -> str:
    """Word pieces -> a caption: special pieces dropped, '##' pieces joined, one line."""
    ids: List[int] = [int(i) for i in full_ids]
    return clean_caption(tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=True))
