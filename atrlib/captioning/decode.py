"""From audio to words: greedy and beam search over any model that gives next-piece
log-probabilities, and ensembles that average them.

A *source* is one model over one list of clips: ``source.steps(clip_indices)`` prepares a
batch (runs the encoder once) and returns an object whose ``logprobs(rows, prefix)`` gives
(N, tokenizer size) log-probabilities of the next word piece for ``prefix`` (N, l) tokenizer
ids, row r reading clip ``rows[r]`` of the batch. Sources:

- :class:`CaptionerSource` — a trained :class:`~atrlib.captioning.model.Captioner` over its
  E_A features;
- :class:`QFormerSource` — the ATG head of a run trained with the Q-Former terms
  (``infonce+atc+atm+atg``): BLIP-2's causal LM over [queries; caption], where caption piece i
  sees every query and pieces <= i, so the last position of a prefix predicts the next piece
  ([CLS] starts, [SEP] ends, as ATG was trained);
- :class:`EnsembleSource` — several sources on the same clips and tokenizer: at every step the
  mean of their log-probabilities (a piece one member never predicts stays impossible).

:func:`beam_search` keeps ``beam_size`` hypotheses per clip, ranked by log-probability /
length ** ``length_penalty`` (length in generated pieces, the end piece included); a finished
hypothesis stays in the beam with its score frozen. ``beam_size=1`` is greedy decoding.
"""
from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn.functional as F


class CaptionerSource:
    def __init__(self, model, features, name: str = "captioner"):
        if len(features) and features.dim != model.feat_dim:
            from atrlib.errors import ConfigError

            raise ConfigError(f"captioner {name!r} reads {model.feat_dim}-d features but E_A gives {features.dim}-d "
                              f"({features.source.get('run')}, {features.kind}); use the run it was trained on")
        self.model, self.features, self.name = model, features, name
        self.tokenizer = model.vocab.tokenizer
        self.bos_id, self.eos_id = model.vocab.bos_id, model.vocab.eos_id
        self.signature = model.vocab.signature
        self.n_clips = len(features)

    def steps(self, idx):
        m = self.model
        x, mask = self.features.get(idx, m.cfg.frame_stride if self.features.kind == "frames" else 1, m.device)
        with torch.no_grad():
            memory, pad = m.encode(x, mask)

        class _Steps:
            @staticmethod
            @torch.no_grad()
            def logprobs(rows, prefix):
                toks = m.vocab.to_compact(prefix.to(m.device))
                logits = m.decode(memory[rows.to(m.device)], pad[rows.to(m.device)], toks)[:, -1]  # (N, V)
                return m.vocab.expand(F.log_softmax(logits.float(), -1))                        # (N, full)
        return _Steps()


class QFormerSource:
    """The ATG head of a Q-Former run over the frames of its own audio tower."""

    def __init__(self, encoder, frames, name: str = "qformer-atg"):
        from atrlib.captioning.vocab import tokenizer_signature
        from atrlib.errors import ConfigError

        if "qformer" not in getattr(encoder, "extra_heads", {}):
            raise ConfigError(f"{name}: this run has no Q-Former, so it has no ATG head to caption with (train it "
                              "with loss='infonce+atc+atm+atg')")
        self.q = encoder.extra_heads["qformer"].eval()
        self.frames, self.name = frames, name
        t = self.tokenizer = self.q.tokenizer
        self.bos_id, self.eos_id = int(t.cls_token_id), int(t.sep_token_id)
        self.signature = tokenizer_signature(t)
        self.n_clips = len(frames)
        self.never = [i for i in t.all_special_ids if i != self.eos_id]  # [PAD], [CLS], [UNK], [MASK]

    def steps(self, idx):
        q = self.q
        fr, fm = self.frames.get(idx, 1, q.device)
        never = self.never

        class _Steps:
            @staticmethod
            @torch.no_grad()
            def logprobs(rows, prefix):
                prefix, rows = prefix.to(q.device), rows.to(q.device)
                logits = q.lm_logits(prefix, torch.ones_like(prefix), fr[rows], fm[rows])[:, -1].float()  # (N, V)
                logits[:, never] = float("-inf")
                return F.log_softmax(logits, -1)
        return _Steps()


class EnsembleSource:
    """Members' log-probabilities averaged at every decoding step."""

    def __init__(self, members: Sequence, name: str = "ensemble"):
        from atrlib.errors import ConfigError

        members = list(members)
        if not members:
            raise ConfigError("an ensemble needs at least one captioner")
        first = members[0]
        for m in members[1:]:
            if m.signature != first.signature:
                raise ConfigError(f"{m.name} and {first.name} use different tokenizers; only captioners over one "
                                  "vocabulary can average their log-probabilities")
            if m.n_clips != first.n_clips:
                raise ConfigError(f"{m.name} has {m.n_clips} clips, {first.name} {first.n_clips}")
        self.members, self.name = members, name
        self.tokenizer, self.bos_id, self.eos_id = first.tokenizer, first.bos_id, first.eos_id
        self.signature, self.n_clips = first.signature, first.n_clips

    def steps(self, idx):
        parts = [m.steps(idx) for m in self.members]

        class _Steps:
            @staticmethod
            def logprobs(rows, prefix):
                lp = [p.logprobs(rows, prefix).float().cpu() for p in parts]
                return torch.stack(lp).mean(0)                                      # (N, V)
        return _Steps()


def beam_search(steps, n: int, bos_id: int, eos_id: int, beam_size: int = 3, length_penalty: float = 1.0,
                max_tokens: int = 30) -> List[List[int]]:
    """The best piece sequence (without [CLS]/[SEP]) for each of ``n`` clips of a prepared batch."""
    k = int(beam_size)
    rows = torch.arange(n)                                                        # (n,) one beam to start
    seqs = torch.full((n, 1), bos_id, dtype=torch.long)                           # (n*b, l)
    total = torch.zeros(n)                                                        # (n*b,) sum of log-probs
    done = torch.zeros(n, dtype=torch.bool)
    beams = 1
    for step in range(max_tokens + 1):
        lp = steps.logprobs(rows, seqs).float().cpu()                              # (n*b, V)
        if step == max_tokens:  # the last step may only end the caption
            keep = lp[:, eos_id].clone()
            lp.fill_(float("-inf"))
            lp[:, eos_id] = keep
        lp[done] = float("-inf")
        lp[done, eos_id] = 0.0                                                    # finished: stays, score frozen
        length = (seqs[:, 1:] != eos_id).sum(1) + 1                               # (n*b,) pieces after this step
        top_lp, top_tok = lp.topk(min(k, lp.shape[1]), dim=1)                     # (n*b, k): enough per beam
        cand = total[:, None] + top_lp                                            # (n*b, k)
        norm = cand / length[:, None].float().clamp(min=1) ** float(length_penalty)
        w = norm.shape[1]
        best = norm.view(n, beams * w).topk(min(k, beams * w), dim=1).indices      # (n, k')
        src = (best // w + torch.arange(n)[:, None] * beams).reshape(-1)           # rows in the old beams
        pick = (best % w).reshape(-1)
        tok = top_tok[src, pick]
        total = cand[src, pick]
        finite = torch.isfinite(total)
        seqs = torch.cat([seqs[src], tok[:, None]], 1)
        done = done[src] | (tok == eos_id) | ~finite
        beams = best.shape[1]
        rows = torch.arange(n).repeat_interleave(beams)
        if bool(done.all()):
            break
    length = ((seqs[:, 1:] != eos_id).sum(1) + 1).float()
    final = (total / length ** float(length_penalty)).view(n, beams)
    final = torch.where(torch.isfinite(final), final, torch.full_like(final, -1e30))
    pick = final.argmax(1) + torch.arange(n) * beams
    out = []
    for s in seqs[pick].tolist():
        body = s[1:]
        out.append(body[:body.index(eos_id)] if eos_id in body else body)
    return out


def generate(source, beam_size: int = 3, length_penalty: float = 1.0, max_tokens: int = 30,
             batch_size: int = 64, indices: Sequence[int] | None = None, progress: bool = False,
             as_ids: bool = False) -> List:
    """One caption per clip of ``source`` (or of ``indices``), in order: text, or with
    ``as_ids`` the tokenizer's piece ids."""
    from tqdm.auto import tqdm

    from atrlib.captioning.vocab import decode_ids

    idx = list(range(source.n_clips)) if indices is None else [int(i) for i in indices]
    out: List = []
    for s in tqdm(range(0, len(idx), batch_size), desc=f"captioning ({source.name})", disable=not progress):
        chunk = idx[s:s + batch_size]
        seqs = beam_search(source.steps(chunk), len(chunk), source.bos_id, source.eos_id, beam_size,
                           length_penalty, max_tokens)
        out += seqs if as_ids else [decode_ids(source.tokenizer, q) for q in seqs]
    return out


def greedy_reference(steps, n: int, bos_id: int, eos_id: int, max_tokens: int = 30) -> List[List[int]]:
    """Greedy decoding written as plainly as possible: the test's reference for beam size 1."""
    out = []
    for i in range(n):
        seq = [bos_id]
        for _ in range(max_tokens):
            lp = steps.logprobs(torch.tensor([i]), torch.tensor([seq]))[0]
            t = int(lp.argmax())
            if t == eos_id:
                break
            seq.append(t)
        out.append(seq[1:])
    return out
