"""Scoring a system on a dataset split: the text-to-audio similarity matrix, and its metrics.

One recipe for every front end (notebook 02's finish, notebook 03, ``atrlib evaluate``):
a :class:`~atrlib.retrieval.simfile.SimilarityMatrix` of a trained model (:func:`evaluate_model`) or of
any retriever (:func:`score_split`), then :func:`split_metrics` — the same metric schema
(``t2a``, ``a2t``, ``t2a_ci``) wherever it is computed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

import numpy as np
import torch

from atrlib.audio.embeddings import module_device, unpadded_batches
from atrlib.models.dual import DualEncoder
from atrlib.models.inputs import SplitInputs
from atrlib.retrieval.metrics import t2a_relevance
from atrlib.retrieval.simfile import SimilarityMatrix


@torch.no_grad()
def embed_split(model: DualEncoder, inputs: SplitInputs, batch_size: int = 64):
    """L2-normalised (clip embeddings (clips, E), caption embeddings (captions, E)); waveforms
    run unpadded, clips of equal length batched together."""
    was_training = model.training
    model.eval()
    device = module_device(model)
    n_clips = len(inputs.dataset)
    a = torch.zeros(n_clips, model.config.embed_dim)                             # (clips, E)
    if inputs.audio_frozen:
        for s in range(0, n_clips, batch_size):
            idx = list(range(s, min(s + batch_size, n_clips)))
            a[idx] = model.project_audio(inputs.audio[idx].to(device)).float().cpu()
    else:
        order = sorted(range(n_clips), key=lambda i: int(inputs.lengths[i]))
        for idx, waves in unpadded_batches(lambda i: inputs.clip_audio(i, pad=False), order, batch_size):
            a[idx] = model.encode_audio(waves.to(device)).float().cpu()         # (batch, E)
    t_parts = []
    for s in range(0, len(inputs.captions), batch_size):
        t = inputs.text_batch(range(s, min(s + batch_size, len(inputs.captions))))
        t = model.project_text(t.to(device)) if inputs.text_frozen else model.encode_text(t)
        t_parts.append(t.float().cpu())                                          # (batch, E)
    model.train(was_training)
    return a, torch.cat(t_parts)


def similarity(model: DualEncoder, inputs: SplitInputs, system: str = "model") -> SimilarityMatrix:
    """Text-to-audio :class:`SimilarityMatrix` (captions × clips) of a split."""
    a, t = embed_split(model, inputs)
    ds = inputs.dataset
    return SimilarityMatrix(sim=(t @ a.T).numpy().astype(np.float32), query_ids=ds.caption_ids(),
                            item_ids=ds.clip_ids, relevant=t2a_relevance(ds.caption_clip_index()),
                            meta={"system": system, "dataset": ds.name, "split": ds.split, "direction": "t2a"})


def evaluate_model(model: DualEncoder, dataset, batch_size: int = 32, progress: bool = False,
                   system: str = "model") -> SimilarityMatrix:
    """Text-to-audio similarity of a trained model on one dataset split (query ids =
    ``dataset.caption_ids()``, item ids = ``dataset.clip_ids``, relevance from
    ``caption_clip_index``)."""
    return similarity(model, SplitInputs(model, dataset, batch_size, progress), system=system)


def save_run_outputs(out_dir, model: DualEncoder, datasets: Dict[str, Any], batch_size: int = 32,
                     progress: bool = False) -> Dict[str, SimilarityMatrix]:
    """Score ``model`` on each dataset and write ``<out_dir>/sim_<dataset.split>.npz`` (the
    file name the evaluate and ensemble stages look for). Returns {key: matrix}."""
    from atrlib.retrieval.simfile import save_similarity

    out = {}
    for key, ds in datasets.items():
        out[key] = evaluate_model(model, ds, batch_size, progress, system=str(out_dir))
        save_similarity(Path(out_dir) / f"sim_{ds.split}.npz", out[key])
    return out


def score_split(retriever, dataset, system: str = "", progress: bool = True) -> SimilarityMatrix:
    """Text-to-audio similarity of every caption of ``dataset`` against its clips, for any
    retriever (``retriever.similarity(captions, audio_paths)``)."""
    sim = retriever.similarity(dataset.captions_flat(), dataset.audio_paths, progress=progress)
    return SimilarityMatrix(
        sim=np.asarray(sim, dtype=np.float32), query_ids=dataset.caption_ids(), item_ids=dataset.clip_ids,
        relevant=t2a_relevance(dataset.caption_clip_index()),
        meta={"system": system or getattr(retriever, "name", "retriever"), "dataset": dataset.name,
              "split": dataset.split, "direction": "t2a"},
    )


def split_metrics(sm: SimilarityMatrix, dataset) -> Dict[str, Any]:
    """``{"t2a": {...}, "a2t": {...}, "t2a_ci": {metric: {value, low, high, ...}}}`` of one split."""
    from atrlib.retrieval.metrics import evaluate_both, scores_with_ci

    both = evaluate_both(sm.sim, dataset.caption_clip_index())
    ci = scores_with_ci(sm.sim, sm.relevant)
    return {"t2a": both["t2a"], "a2t": both["a2t"], "t2a_ci": {k: ci[k] for k in ("R@1", "R@5", "R@10", "mAP@10")}}
