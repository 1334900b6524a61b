"""Caption augmentation from a file: paraphrases made elsewhere (an LLM, back-translation),
keyed by the caption they rephrase, mixed into training with a probability.

    TrainConfig(..., paraphrases="paraphrases.json", paraphrase_prob=0.3)

File forms (UTF-8):

* JSON: ``{"caption": ["paraphrase", ...], ...}`` or ``[{"caption": ..., "paraphrases": [...]}, ...]``;
* CSV with a header: ``caption,paraphrase`` (one row per paraphrase; a caption may repeat) or
  ``caption,paraphrase_1,paraphrase_2,...`` (empty cells ignored).

Captions are matched to the training split's captions by exact text, then ignoring case,
punctuation and spacing (:func:`atrlib.data.text.normalize_caption`). Each time a training pair is
drawn, its caption is replaced with probability ``paraphrase_prob`` by one of its paraphrases
chosen uniformly (torch's RNG: a resumed run replays it). With a frozen text tower the
paraphrases are embedded once (cached like the captions). Cross-modal terms that read the
caption text (acml, mlml, distill, listwise) keep the original caption.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Dict, List

import torch

from atrlib.data.text import normalize_caption
from atrlib.errors import ParaphraseFileError


def load_paraphrases(path) -> Dict[str, List[str]]:
    """caption -> its paraphrases, from a JSON or CSV file (module docstring)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no paraphrase file here (JSON caption -> [paraphrases] or CSV caption,paraphrase)")
    out: Dict[str, List[str]] = {}

    def add(cap, para, where):
        if not isinstance(cap, str) or not cap.strip():
            raise ParaphraseFileError(f"{p}, {where}: empty or non-text caption {cap!r}")
        if not isinstance(para, str):
            raise ParaphraseFileError(f"{p}, {where}: paraphrase {para!r} is not text")
        if para.strip() and para.strip() != cap.strip():
            lst = out.setdefault(cap.strip(), [])
            if para.strip() not in lst:
                lst.append(para.strip())

    if p.suffix.lower() == ".json":
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except ValueError as e:
            raise ParaphraseFileError(f"{p}: not valid JSON ({e}); write {{\"caption\": [\"paraphrase\", ...]}}") from None
        if isinstance(data, dict):
            for cap, paras in data.items():
                if not isinstance(paras, list):
                    raise ParaphraseFileError(f"{p}, key {cap[:60]!r}: the value must be a list of paraphrases")
                for para in paras:
                    add(cap, para, f"key {cap[:60]!r}")
        elif isinstance(data, list):
            for n, rec in enumerate(data):
                if not isinstance(rec, dict) or "caption" not in rec or not isinstance(rec.get("paraphrases"), list):
                    raise ParaphraseFileError(f"{p}, item {n}: needs {{\"caption\": ..., \"paraphrases\": [...]}}")
                for para in rec["paraphrases"]:
                    add(rec["caption"], para, f"item {n}")
        else:
            raise ParaphraseFileError(f"{p}: JSON must be an object caption -> list, or a list of records")
    else:
        with open(p, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            if not header or header[0] != "caption" or len(header) < 2:
                raise ParaphraseFileError(f"{p}, line 1: header {header} must start with 'caption' followed by "
                                          "'paraphrase' or 'paraphrase_1', 'paraphrase_2', ...")
            for n, row in enumerate(reader, start=2):
                if not any(c.strip() for c in row):
                    continue
                if len(row) > len(header):
                    raise ParaphraseFileError(f"{p}, line {n}: {len(row)} fields for {len(header)} columns; "
                                              "quote paraphrases that contain commas")
                for para in row[1:]:
                    add(row[0], para, f"line {n}")
    if not out:
        raise ParaphraseFileError(f"{p}: no paraphrase found (every entry empty or equal to its caption)")
    return out


class CaptionAugmenter:
    """Caption index -> the text input of a training pair: the caption, or with probability
    ``prob`` one of its paraphrases. ``inputs``: :class:`atrlib.models.inputs.SplitInputs`."""

    def __init__(self, inputs, table: Dict[str, List[str]], prob: float, model=None, progress: bool = False):
        if not 0.0 <= float(prob) <= 1.0:
            raise ValueError(f"paraphrase_prob must be in [0, 1], got {prob}")
        self.inputs, self.prob = inputs, float(prob)
        loose = {normalize_caption(k): v for k, v in table.items()}
        self.options: List[List[int]] = []         # caption index -> rows of self.texts
        self.texts: List[str] = []
        for cap in inputs.captions:
            paras = table.get(cap.strip()) or loose.get(normalize_caption(cap)) or []
            self.options.append(list(range(len(self.texts), len(self.texts) + len(paras))))
            self.texts.extend(paras)
        self.covered = sum(1 for o in self.options if o)
        if not self.covered:
            raise ParaphraseFileError(f"none of the {len(inputs.captions)} training captions of "
                                      f"{inputs.dataset.name}/{inputs.dataset.split} is a key of the paraphrase file "
                                      f"(e.g. {inputs.captions[0]!r}); keys must be the caption texts")
        self.features = None
        if inputs.text_frozen:  # embed the paraphrases once, as the captions were
            from atrlib.audio.embeddings import text_tower_embeddings
            from atrlib.models.inputs import tower_id

            self.features = torch.from_numpy(text_tower_embeddings(model.text_tower, tower_id(model, "text"),
                                                                   self.texts, progress=progress))  # (paraphrases, D)

    def __call__(self, i: int):
        opts = self.options[i]
        if opts and self.prob > 0 and float(torch.rand(())) < self.prob:
            k = opts[int(torch.randint(len(opts), ()))]
            return self.features[k] if self.features is not None else self.texts[k]
        return self.inputs.text_batch([i])[0]


def attach_paraphrases(inputs, model, path, prob: float, progress: bool = False) -> CaptionAugmenter:
    """Load ``path`` and hook a :class:`CaptionAugmenter` into ``inputs`` (its ``augment``)."""
    inputs.augment = CaptionAugmenter(inputs, load_paraphrases(path), prob, model, progress)
    if progress:
        print(f"paraphrases: {inputs.augment.covered} of {len(inputs.captions)} training captions have "
              f"{len(inputs.augment.texts)} in all; each used with probability {prob}")
    return inputs.augment
