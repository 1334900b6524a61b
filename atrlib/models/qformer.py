"""The BLIP-2 Q-Former over audio frames (Lingban 2023): learnable query tokens that
cross-attend to frozen audio frame features, sharing self-attention layers with text.

It is transformers' ``Blip2QFormerModel`` (with its ``Blip2TextEmbeddings``), audio frames in
place of image patches, plus the heads of ``Blip2ForImageTextRetrieval`` (``audio_proj`` =
its ``vision_projection``, ``text_proj``, ``itm_head``, ``query_tokens``) and an LM head for
ATG (transformers' ``BertOnlyMLMHead``, decoder tied to the word embeddings, as BLIP-2's
``BertLMHeadModel``)::

    frames (B, T, frame_dim) -> LayerNorm ->  keys / values of the cross-attention (every
                                              ``cross_attention_frequency``-th layer)
    queries (B, Q, H) ─┐
    caption (B, L)  ───┴─ one BERT-like transformer; which tokens see which is set by the mask:

    ATC  uni-modal: queries alone (cross-attending to audio) -> audio_proj -> (B, Q, E) normalised;
         text alone -> text_proj(first token) -> (B, E); similarity = max over queries.
    ATM  bidirectional: [queries; caption] see each other -> itm_head on the query outputs,
         mean over queries -> 2 logits (no match, match).
    ATG  multimodal causal: queries see queries; caption token i sees all queries and
         tokens <= i -> LM head -> next-token logits.

``init_from_bert(path)`` copies a BERT checkpoint into it as BLIP-2 did (self-attention and both
FFNs; token-type embedding 0 folded into the position embeddings, so the text-only path equals
``BertModel`` on the same ids); cross-attention layers, queries and heads stay random.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from atrlib.models.crossattn import _resolve, store_tied_once


def qformer_masks(query_len: int, attention_mask: torch.Tensor, kind: str, dtype=torch.float32) -> torch.Tensor:
    """(B, 1, Q+L, Q+L) additive masks over [queries; caption] for ``kind`` = ``"bidirectional"``
    (ATM) or ``"causal"`` (ATG: queries see only queries; caption token i sees every query and
    caption tokens <= i). ``attention_mask`` (B, L) is the caption's padding mask."""
    b, n = attention_mask.shape
    dev = attention_mask.device
    keys = torch.cat([torch.ones(b, query_len, dtype=torch.bool, device=dev), attention_mask.bool()], 1)  # (B, Q+L)
    keep = keys[:, None, None, :].expand(b, 1, query_len + n, query_len + n).clone()   # (B, 1, Q+L, Q+L)
    if kind == "causal":
        keep[:, :, :query_len, query_len:] = False                               # queries never see text
        tri = torch.ones(n, n, dtype=torch.bool, device=dev).tril()
        keep[:, :, query_len:, query_len:] &= tri                                # text sees earlier text
    elif kind != "bidirectional":
        raise ValueError(f"kind must be 'bidirectional' or 'causal', not {kind!r}")
    zero = torch.zeros((), dtype=dtype, device=dev)
    return torch.where(keep, zero, torch.finfo(dtype).min)


class AudioQFormer(nn.Module):
    """See the module docstring. ``frame_dim``: the audio tower's frame size; ``embed_dim``:
    the contrastive space; ``text_model``: tokenizer (and ``init_from_bert`` weights when
    ``pretrained``) — ``"minilm"``, a BERT hub id / folder, or ``"tiny"`` (random, tests)."""

    def __init__(self, frame_dim: int, text_model: str = "minilm", pretrained: bool = True, num_queries: int = 8,
                 embed_dim: int = 256, num_layers: int = 0, cross_attention_frequency: int = 2, max_length: int = 40,
                 config_overrides: Optional[Dict] = None):
        super().__init__()
        from transformers import Blip2QFormerConfig, Blip2QFormerModel
        from transformers.models.blip_2.modeling_blip_2 import Blip2TextEmbeddings
        from transformers.models.bert.modeling_bert import BertOnlyMLMHead

        path = _resolve(text_model)
        self.settings = dict(frame_dim=int(frame_dim), text_model=text_model, pretrained=bool(pretrained),
                             num_queries=int(num_queries), embed_dim=int(embed_dim), num_layers=int(num_layers),
                             cross_attention_frequency=int(cross_attention_frequency), max_length=int(max_length),
                             config_overrides=dict(config_overrides or {}))
        from atrlib.models.offline_hf import text_config, text_tokenizer

        offline = text_model == "tiny" or not pretrained   # no BERT weights wanted: nothing downloaded either
        self.tokenizer = text_tokenizer(path, pretrained=not offline)
        self.max_length = int(max_length)
        if text_model == "tiny":
            from atrlib.models.crossattn import TINY_BERT

            bert = dict(TINY_BERT, vocab_size=self.tokenizer.vocab_size, hidden_act="gelu", layer_norm_eps=1e-12,
                        hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, pad_token_id=0)
        else:
            bert = text_config(path, pretrained=not offline).to_dict()
        keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings",
                "layer_norm_eps", "pad_token_id")
        qkw = {k: bert[k] for k in keys if k in bert}
        if num_layers:
            qkw["num_hidden_layers"] = int(num_layers)
        qkw.update(config_overrides or {})
        self.config = Blip2QFormerConfig(**qkw, encoder_hidden_size=int(frame_dim), use_qformer_text_input=True,
                                         cross_attention_frequency=int(cross_attention_frequency))
        h = self.config.hidden_size
        self.query_tokens = nn.Parameter(torch.randn(1, num_queries, h) * self.config.initializer_range)
        self.embeddings = Blip2TextEmbeddings(self.config)
        self.qformer = Blip2QFormerModel(self.config)
        self.frame_norm = nn.LayerNorm(int(frame_dim))
        self.audio_proj = nn.Linear(h, embed_dim)
        self.text_proj = nn.Linear(h, embed_dim)
        self.itm_head = nn.Linear(h, 2)
        self.lm_head = BertOnlyMLMHead(self.config)
        self.lm_head.predictions.decoder.weight = self.embeddings.word_embeddings.weight  # tied, as BLIP-2
        self.log_scale = nn.Parameter(torch.tensor(float(torch.log(torch.tensor(1 / 0.07)))))
        for m in (self.embeddings, self.lm_head, self.audio_proj, self.text_proj, self.itm_head):
            for sub in m.modules():  # BERT's initialisation (N(0, 0.02), zero biases) for the parts outside qformer
                if isinstance(sub, (nn.Linear, nn.Embedding)):
                    nn.init.normal_(sub.weight, std=self.config.initializer_range)
                if isinstance(sub, nn.Linear) and sub.bias is not None:
                    nn.init.zeros_(sub.bias)
        if pretrained and text_model != "tiny":
            self.init_from_bert(path)
        store_tied_once(self)

    # -- weights --------------------------------------------------------------------------
    def init_from_bert(self, path: str) -> None:
        """Copy a BERT checkpoint's embeddings and layers into the Q-Former (BLIP-2's init)."""
        from transformers import AutoModel

        sd = AutoModel.from_pretrained(path).state_dict()
        g = lambda k: sd[k] if k in sd else sd[f"bert.{k}"]  # noqa: E731
        with torch.no_grad():
            e = self.embeddings
            e.word_embeddings.weight.copy_(g("embeddings.word_embeddings.weight"))
            pos = g("embeddings.position_embeddings.weight") + g("embeddings.token_type_embeddings.weight")[0]
            e.position_embeddings.weight.copy_(pos)                              # type-0 embedding folded in
            self.qformer.layernorm.load_state_dict({"weight": g("embeddings.LayerNorm.weight"),
                                                    "bias": g("embeddings.LayerNorm.bias")})
            for i, layer in enumerate(self.qformer.encoder.layer):
                p = f"encoder.layer.{i}."
                for n in ("query", "key", "value"):
                    getattr(layer.attention.attention, n).load_state_dict(
                        {"weight": g(p + f"attention.self.{n}.weight"), "bias": g(p + f"attention.self.{n}.bias")})
                for dst, src in ((layer.attention.output.dense, "attention.output.dense"),
                                 (layer.attention.output.LayerNorm, "attention.output.LayerNorm"),
                                 (layer.intermediate.dense, "intermediate.dense"),
                                 (layer.intermediate_query.dense, "intermediate.dense"),
                                 (layer.output.dense, "output.dense"), (layer.output_query.dense, "output.dense"),
                                 (layer.output.LayerNorm, "output.LayerNorm"),
                                 (layer.output_query.LayerNorm, "output.LayerNorm")):
                    dst.load_state_dict({"weight": g(p + src + ".weight"), "bias": g(p + src + ".bias")})

    # -- inputs ---------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.query_tokens.device

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.log_scale.clamp(max=float(torch.log(torch.tensor(100.0)))).exp()

    def tokenize(self, captions: Sequence[str], pad_to_max: bool = False) -> Dict[str, torch.Tensor]:
        tok = self.tokenizer(list(captions), padding="max_length" if pad_to_max else True, truncation=True,
                             max_length=self.max_length, return_tensors="pt")
        return {"input_ids": tok["input_ids"].to(self.device), "attention_mask": tok["attention_mask"].to(self.device)}

    def _queries(self, b: int) -> torch.Tensor:
        return self.query_tokens.expand(b, -1, -1)                               # (B, Q, H)

    def _frame_mask(self, frame_mask: torch.Tensor) -> torch.Tensor:
        """(B, T) bool -> (B, 1, Q, T) additive cross-attention mask of the queries. Given 4-d:
        transformers would otherwise build it with Q + L rows when text rides along."""
        keep = frame_mask.bool()[:, None, None, :].expand(-1, 1, self.query_tokens.shape[1], -1)
        zero = torch.zeros((), device=frame_mask.device)
        return torch.where(keep, zero, torch.finfo(zero.dtype).min)

    # -- the three modes ------------------------------------------------------------------
    def audio_queries(self, frames: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """(B, Q, H): query outputs after cross-attending to the frames (uni-modal)."""
        out = self.qformer(query_embeds=self._queries(len(frames)), encoder_hidden_states=self.frame_norm(frames.float()),
                           encoder_attention_mask=self._frame_mask(frame_mask))
        return out.last_hidden_state                                             # (B, Q, H)

    def text_states(self, input_ids, attention_mask) -> torch.Tensor:
        """(B, L, H): the caption alone (uni-modal; no queries, no cross-attention)."""
        return self.qformer(query_embeds=self.embeddings(input_ids=input_ids), query_length=0,
                            attention_mask=attention_mask).last_hidden_state     # (B, L, H)

    def embed_audio(self, frames, frame_mask) -> torch.Tensor:
        """(B, Q, E) normalised query embeddings (ATC)."""
        return F.normalize(self.audio_proj(self.audio_queries(frames, frame_mask)), dim=-1)

    def embed_text(self, input_ids, attention_mask) -> torch.Tensor:
        """(B, E) normalised first-token embedding (ATC)."""
        return F.normalize(self.text_proj(self.text_states(input_ids, attention_mask)[:, 0]), dim=-1)

    def joint_states(self, input_ids, attention_mask, frames, frame_mask, kind: str) -> torch.Tensor:
        """(B, Q+L, H): [queries; caption] under the ``kind`` mask (:func:`qformer_masks`)."""
        q = self._queries(len(input_ids))
        x = self.embeddings(input_ids=input_ids, query_embeds=q)                 # (B, Q+L, H)
        mask = qformer_masks(q.shape[1], attention_mask, kind, x.dtype)
        return self.qformer(query_embeds=x, query_length=q.shape[1], attention_mask=mask,
                            encoder_hidden_states=self.frame_norm(frames.float()),
                            encoder_attention_mask=self._frame_mask(frame_mask)).last_hidden_state

    def itm_logits(self, input_ids, attention_mask, frames, frame_mask) -> torch.Tensor:
        """(B, 2) matching logits (no match, match): itm_head on the query outputs, mean over queries."""
        h = self.joint_states(input_ids, attention_mask, frames, frame_mask, "bidirectional")
        return self.itm_head(h[:, :self.query_tokens.shape[1]]).mean(1)          # (B, 2)

    def lm_logits(self, input_ids, attention_mask, frames, frame_mask) -> torch.Tensor:
        """(B, L, vocab) next-token logits of the caption under the multimodal causal mask."""
        h = self.joint_states(input_ids, attention_mask, frames, frame_mask, "causal")
        return self.lm_head(h[:, self.query_tokens.shape[1]:])                  # (B, L, vocab)

    def match_logits(self, input_ids, attention_mask, frames, frame_mask) -> torch.Tensor:
        """(B,) one match logit (log-odds of ``itm_logits``), the re-ranking score."""
        z = self.itm_logits(input_ids, attention_mask, frames, frame_mask)
        return z[:, 1] - z[:, 0]

    @torch.no_grad()
    def match_scores(self, captions: Sequence[str], frames: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        tok = self.tokenize(captions)
        return torch.sigmoid(self.match_logits(tok["input_ids"], tok["attention_mask"],
                                               frames.to(self.device), frame_mask.to(self.device)))

    @torch.no_grad()
    def similarity(self, captions: Sequence[str], frames: torch.Tensor, frame_mask: torch.Tensor,
                   batch_size: int = 64) -> torch.Tensor:
        """(captions, clips) ATC similarity: max over queries of query · text."""
        a = torch.cat([self.embed_audio(frames[s:s + batch_size].to(self.device), frame_mask[s:s + batch_size].to(self.device))
                       for s in range(0, len(frames), batch_size)])             # (clips, Q, E)
        ts = []
        for s in range(0, len(captions), batch_size):
            tok = self.tokenize(captions[s:s + batch_size])
            ts.append(self.embed_text(tok["input_ids"], tok["attention_mask"]))
        t = torch.cat(ts)                                                        # (captions, E)
        return torch.einsum("te,cqe->tcq", t, a).amax(-1)                        # (captions, clips)
