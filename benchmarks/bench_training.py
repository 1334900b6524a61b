"""Frozen-mode training throughput at Clotho scale on the CPU; prints a table.

    PYTHONPATH=. python benchmarks/bench_training.py      # ~25 s on 2 cores

With both towers frozen, :func:`atrlib.train.loop.fit` trains only the two heads on features
computed once. This times that loop on random inputs of Clotho development size:
19,195 caption-clip pairs (3,839 clips x 5 captions), 2,048-d audio features (CNN14's size)
and 768-d text features (BERT's), symmetric InfoNCE with a learnable temperature, for MLP
heads (2,048/768 -> 512 -> 1,024) and linear heads (-> 1,024), at batch 64 and 256.

One step mirrors ``fit``: a DataLoader over (audio features of the clip, text features of the
caption, clip id) in a seeded shuffled order, both heads, L2 normalisation, the loss, backward,
gradient clipping at 1.0, AdamW, the cosine LambdaLR step, ``zero_grad``. (accelerate is left
out: on one CPU process it adds nothing to the step.) Each row times one whole epoch
(``len(pairs) // batch`` steps) after ``WARMUP`` untimed steps; "pairs/s" counts caption-clip
pairs through the heads per second. The last line times the DataLoader alone (indexing and
collating the pairs), the part of each epoch that is not the model.
"""
from __future__ import annotations

import math
import time

import atrlib  # noqa: F401  (thread settings before torch)
import torch
import torch.nn.functional as F

from atrlib.losses import get_loss
from atrlib.models.heads import build_head

N_CLIPS, PER_CLIP = 3839, 5              # Clotho v2.1 development split
AUDIO_DIM, TEXT_DIM = 2048, 768          # CNN14 embedding, BERT-base hidden size
EMBED, HIDDEN = 1024, 512                # shared space, MLP hidden units (cnn14-bert config)
WARMUP = 3                               # untimed steps first (allocator, threads)


class Pairs(torch.utils.data.Dataset):
    """Index i -> (audio features of caption i's clip, text features of caption i, clip id),
    as atrlib.train.loop.PairSet gives it for frozen towers."""

    def __init__(self, audio: torch.Tensor, text: torch.Tensor, clip_of: torch.Tensor):
        self.audio, self.text, self.clip_of = audio, text, clip_of

    def __len__(self):
        return len(self.clip_of)

    def __getitem__(self, i):
        c = int(self.clip_of[i])
        return self.audio[c], self.text[i], c


def bench(head: str, batch: int, data: Pairs) -> dict:
    torch.manual_seed(0)
    audio_head = build_head(head, AUDIO_DIM, EMBED, hidden=HIDDEN, dropout=0.1)
    text_head = build_head(head, TEXT_DIM, EMBED, hidden=HIDDEN, dropout=0.1)
    log_scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    params = [*audio_head.parameters(), *text_head.parameters(), log_scale]
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-4)
    steps_per_epoch = len(data) // batch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps_per_epoch))))
    loss_fn = get_loss("infonce")
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0)).tolist()
    loader = torch.utils.data.DataLoader(data, batch_size=batch, sampler=order, drop_last=True)
    audio_head.train(), text_head.train()

    def step(a_feat, t_feat, clips) -> float:
        a = F.normalize(audio_head(a_feat), dim=-1)                           # (batch, EMBED)
        t = F.normalize(text_head(t_feat), dim=-1)                            # (batch, EMBED)
        terms = loss_fn(a, t, clips, log_scale.clamp(max=math.log(100.0)).exp())
        loss = sum(terms.values())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    for i, b in enumerate(loader):                                            # warm-up, untimed
        if i == WARMUP:
            break
        step(*b)
    t0 = time.perf_counter()
    losses = [step(*b) for b in loader]                                       # one epoch
    seconds = time.perf_counter() - t0
    return {"head": head, "batch": batch, "params": sum(p.numel() for p in params),
            "ms/step": 1000 * seconds / len(losses), "pairs/s": len(losses) * batch / seconds, "s/epoch": seconds,
            "loss": losses[-1]}


def loader_only(data: Pairs, batch: int) -> float:
    """Seconds to index and collate one epoch of pairs, no model."""
    loader = torch.utils.data.DataLoader(data, batch_size=batch, sampler=list(range(len(data))), drop_last=True)
    t0 = time.perf_counter()
    for _ in loader:
        pass
    return time.perf_counter() - t0


def main() -> None:
    g = torch.Generator().manual_seed(0)
    audio = torch.randn(N_CLIPS, AUDIO_DIM, generator=g)                       # (clips, 2048)
    text = torch.randn(N_CLIPS * PER_CLIP, TEXT_DIM, generator=g)              # (captions, 768)
    clip_of = torch.arange(N_CLIPS).repeat_interleave(PER_CLIP)                # (captions,)
    data = Pairs(audio, text, clip_of)
    print(f"frozen-mode training, CPU ({torch.get_num_threads()} threads, torch {torch.__version__}): "
          f"{len(data):,} pairs, audio {AUDIO_DIM}-d, text {TEXT_DIM}-d -> {EMBED}-d, InfoNCE, AdamW")
    print(f"{'head':<7}{'batch':>6}{'params':>12}{'ms/step':>10}{'pairs/s':>10}{'s/epoch':>9}")
    for head in ("mlp", "linear"):
        for batch in (64, 256):
            r = bench(head, batch, data)
            print(f"{r['head']:<7}{r['batch']:>6}{r['params']:>12,}{r['ms/step']:>10.1f}{r['pairs/s']:>10,.0f}"
                  f"{r['s/epoch']:>9.1f}")
    for batch in (64, 256):
        print(f"DataLoader alone, batch {batch}: {loader_only(data, batch):.1f} s/epoch")


if __name__ == "__main__":
    main()
