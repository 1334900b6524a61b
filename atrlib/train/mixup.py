"""Cross-modal mix-up (as in the Samsung 2024 pre-training): mix some pairs of a batch on the
audio tower's log-mels and, with the same weights, the paired captions on the text tower's
word-embedding layer; the mixed pairs are appended to the batch as extra positives.

    log-mels (batch, ...), word embeddings (batch, tokens, hidden), masks (batch, tokens)
      -> pick n_mix ordered pairs (i, j), i != j, and weights lam ~ Beta(alpha, alpha)
      -> mel_k  = lam_k · mel_i  + (1 - lam_k) · mel_j
         word_k = lam_k · word_i + (1 - lam_k) · word_j, mask_k = mask_i OR mask_j
      -> appended: (batch + n_mix, ...)   row batch + k is the k-th mixed pair

Similarity over the grown batch is scored as usual (a contrastive loss's positives are the
diagonal), so each mixed clip has its mixed caption as positive and everything else as negatives.

:func:`mix_pairs` works on tensors; :func:`mixup_embeddings` runs a dual encoder's towers through
it: the audio tower needs ``logmel(wave)`` and ``forward_logmel(mel)`` (CNN14, ResNet38,
EfficientAT, small-cnn have them; Wavegram-Logmel-CNN14 also reads the raw wave, so it does not),
the text tower ``word_embeddings(texts)`` and ``forward_embeds(embeds, mask)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch


@dataclass
class MixedPairs:
    mels: torch.Tensor            # (batch + n_mix, ...) log-mels, the mixed ones appended
    embeds: torch.Tensor          # (batch + n_mix, tokens, hidden) word embeddings
    mask: torch.Tensor            # (batch + n_mix, tokens) attention mask
    first: torch.Tensor           # (n_mix,) long: index i of each mixed pair
    second: torch.Tensor          # (n_mix,) long: index j
    lam: torch.Tensor             # (n_mix,) weight of the first item


def mix_pairs(mels: torch.Tensor, embeds: torch.Tensor, mask: torch.Tensor, n_mix: int, alpha: float = 1.0,
              generator: Optional[torch.Generator] = None) -> MixedPairs:
    """Append ``n_mix`` mixed pairs (see the module docstring). ``n_mix`` is capped at the batch
    size; a batch of one cannot be mixed (returned unchanged). Random draws use ``generator``
    (or torch's global RNG), on the CPU, so results do not depend on the device."""
    b = mels.shape[0]
    if embeds.shape[0] != b or mask.shape != embeds.shape[:2]:
        raise ValueError(f"mels {tuple(mels.shape)}, embeds {tuple(embeds.shape)} and mask {tuple(mask.shape)} "
                         "must share the batch size, and mask must be (batch, tokens)")
    n = min(int(n_mix), b) if b > 1 else 0
    first = torch.randperm(b, generator=generator)[:n]                                   # (n,)
    shift = torch.randint(1, max(b, 2), (n,), generator=generator)                        # (n,) in [1, b)
    second = (first + shift) % b                                                          # (n,) never == first
    lam = _beta(alpha, n, generator) if generator is not None else torch.distributions.Beta(alpha, alpha).sample((n,))
    dev = mels.device
    fi, se, lm = first.to(dev), second.to(dev), lam.to(dev)
    w = lm.reshape(-1, *([1] * (mels.dim() - 1))).to(mels.dtype)                          # (n, 1, ...)
    mixed_mels = w * mels[fi] + (1 - w) * mels[se]                                        # (n, ...)
    we = lm[:, None, None].to(embeds.dtype)                                               # (n, 1, 1)
    mixed_embeds = we * embeds[fi] + (1 - we) * embeds[se]                                # (n, tokens, hidden)
    mixed_mask = (mask[fi].bool() | mask[se].bool()).to(mask.dtype)                       # (n, tokens)
    return MixedPairs(torch.cat([mels, mixed_mels]), torch.cat([embeds, mixed_embeds]),
                      torch.cat([mask, mixed_mask]), first, second, lam)


def _beta(alpha: float, n: int, generator: torch.Generator) -> torch.Tensor:
    """(n,) Beta(alpha, alpha) draws reproducible from ``generator``: torch's Beta sampler takes
    no generator, so it runs on a seed drawn from it, without touching the global RNG."""
    seed = int(torch.randint(0, 2 ** 31 - 1, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.distributions.Beta(alpha, alpha).sample((n,))


def mixup_embeddings(model, wave: torch.Tensor, texts: Sequence[str], n_mix: int, alpha: float = 1.0,
                     generator: Optional[torch.Generator] = None) -> Tuple[torch.Tensor, torch.Tensor, MixedPairs]:
    """(audio embeddings (batch + n_mix, E), text embeddings (batch + n_mix, E), the pairs) of a
    :class:`~atrlib.models.dual.DualEncoder` with both towers trainable, mixed pairs appended."""
    audio, text = model.audio_tower, model.text_tower
    for obj, need in ((audio, ("logmel", "forward_logmel")), (text, ("word_embeddings", "forward_embeds"))):
        missing = [m for m in need if not hasattr(obj, m)]
        if missing:
            raise TypeError(f"{type(obj).__name__} has no {', '.join(missing)}: mix-up needs a log-mel entry on the "
                            "audio tower and a word-embedding entry on the text tower")
    mels = audio.logmel(wave)                                                           # (batch, ...) log-mel
    embeds, mask = text.word_embeddings(list(texts))                                    # (batch, tokens, hidden)
    mixed = mix_pairs(mels, embeds, mask, n_mix, alpha, generator)
    a = model.project_audio(audio.forward_logmel(mixed.mels))                           # (batch + n, E)
    t = model.project_text(text.forward_embeds(mixed.embeds, mixed.mask))               # (batch + n, E)
    return a, t, mixed
