"""Training a dual encoder: :class:`TrainConfig` and :func:`fit`, one loop read top to bottom.

    cfg = TrainConfig(dataset="synth", model="synth-small-minilm", loss="infonce", epochs=10)
    data, full_pairs = run_data(cfg)              # {"train": ..., "val": ..., "test": ...}
    model = run_model(cfg)                        # create_model(cfg.model, **cfg.model_overrides)
    history = fit(cfg, model, data, full_pairs)   # writes out_dir/{last,best,history.json,cost.json}
    metrics = finish_run(cfg, model, data, history)   # sim_<split>.npz + metrics.json

Devices, precision and distribution are config fields handled by Hugging Face ``accelerate``:
``device="auto"`` takes a GPU when there is one; ``precision="bf16"|"fp16"`` turns on mixed
precision; ``accelerate launch -m atrlib train --config ...`` runs data-parallel on several
GPUs, and contrastive losses then see the embeddings of every process (negatives span the
global batch; gradients flow through the local slice, :func:`gather_with_grad`).

Frozen towers are run once over the data (cached on disk, :mod:`atrlib.audio.embeddings`) and only
the heads train — fast on a CPU. Trainable audio towers get waveforms held in memory
(``preload_audio``) or read from disk by DataLoader workers, with an optional random crop
(``train_crop_seconds``). Scoring runs every clip unpadded (clips of equal length batch
together), as search does.

Checkpoints: ``out_dir/last/`` after every epoch (model.safetensors, ``trainer.pt`` with the
optimizer / scheduler / RNG state — loadable with ``torch.load(weights_only=True)`` — and
``state.json`` with epoch, step, history, best) and ``out_dir/best/`` at each new best
validation mAP@10. Both are written to a temporary folder and swapped in with renames, so a
kill never leaves a broken checkpoint. ``resume=True`` continues from ``last/`` and, on the
CPU, reproduces an uninterrupted run exactly: each epoch's shuffle comes from a generator
seeded with (seed, epoch) and the torch RNG state (dropout, SpecAugment, crops) is restored.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from atrlib.data.splits import load_splits
from atrlib.files import write_json, write_metrics
from atrlib.losses.distributed import gather_with_grad
from atrlib.losses.objective import build_objective
from atrlib.models.dual import DualEncoder, load_into
from atrlib.models.inputs import PairSet, SplitInputs, epoch_order, random_crops
from atrlib.retrieval.metrics import retrieval_scores
from atrlib.retrieval.scoring import save_run_outputs, similarity, split_metrics
from atrlib.train.checkpoints import clean_partial_saves, find_checkpoint, save_best, save_checkpoint
from atrlib.train import tracking
from atrlib.train.config import TrainConfig
from atrlib.train.dev_run import NOTE, dev_run_config, dev_run_data, pair_count
from atrlib.train.cost import write_run_cost
from atrlib.train.mixup import mixup_embeddings
from atrlib.train.preflight import check_split_overlap, overlap_note, prepare_out_dir, split_overlap


def _lr_lambda(total: int, warmup: int, kind: str):
    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if kind != "cosine":
            return 1.0
        p = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, p)))
    return f


def freeze_except(model: torch.nn.Module, prefixes: str) -> None:
    """``prefixes`` (comma-separated, e.g. ``"extra_heads"``): every parameter whose name starts
    with none of them stops training; a prefix that names no trainable parameter is an error.
    ``""``: nothing changes."""
    keep = tuple(p.strip() for p in prefixes.split(",") if p.strip())
    if not keep:
        return
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    for k in keep:
        if not any(n.startswith(k) for n in names):
            tops = sorted({n.split(".")[0] for n in names})
            raise ValueError(f"train_only={prefixes!r}: no trainable parameter starts with {k!r}; the model's parts: "
                             f"{', '.join(tops)}")
    for n, p in model.named_parameters():
        if not n.startswith(keep):
            p.requires_grad_(False)


def param_groups(model: DualEncoder, lr: float, head_lr: float, weight_decay: float) -> List[dict]:
    """AdamW groups: towers at ``lr``, heads + temperature at ``head_lr`` (or ``lr``); no
    weight decay on biases, norms and the temperature (tensors of fewer than 2 dims)."""
    groups: Dict[tuple, List[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            tower = name.startswith(("audio_tower.", "text_tower."))
            groups.setdefault((tower, p.ndim >= 2), []).append(p)
    return [{"params": ps, "lr": lr if tower else (head_lr or lr), "weight_decay": weight_decay if decay else 0.0}
            for (tower, decay), ps in sorted(groups.items(), reverse=True)]


def adamw(groups: List[dict], lr: float) -> torch.optim.AdamW:
    """AdamW with torch's fused kernel where every parameter's device and dtype have one (CPU
    and CUDA, float types): the same update rule, ~4x faster per step on the small heads trained
    over cached embeddings on CPU; otherwise torch's default implementation."""
    try:
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    except (RuntimeError, ValueError):  # a device or dtype without the fused kernel
        return torch.optim.AdamW(groups, lr=lr)


# ---------------------------------------------------------------------------------------------
# the loop
# ---------------------------------------------------------------------------------------------
def fit(cfg: TrainConfig, model: DualEncoder, data: Dict[str, Any], train_pairs_full: Optional[int] = None) -> List[dict]:
    """Train ``model`` on ``data["train"]``, validating on ``data["val"]`` every epoch.

    Returns the history (one dict per epoch: ``epoch``, ``train_loss`` and each
    ``train_<term>`` of the loss, ``lr``, ``logit_scale``, ``val_R@1`` ... ``val_mAP@10``,
    ``seconds``); leaves the best weights (by validation mAP@10) loaded in ``model``, on
    the training device. ``cfg.max_audio_seconds`` (when set) replaces the model config's.
    ``cfg.fast_dev_run`` = N: N optimiser steps in one epoch at a small batch
    (:mod:`atrlib.train.dev_run`); ``data`` is then already cut to the clips N batches need.
    ``train_pairs_full``: the pairs per epoch of the whole training split (the cost projection's;
    default: ``data["train"]``'s).
    """
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    # 1. devices, precision, seeds; a dry run's settings (the user's config is what is recorded)
    user_cfg, cfg = cfg, dev_run_config(cfg)
    want_cpu = cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available())
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' but no CUDA GPU is visible; use device='auto' or 'cpu'")
    precision = cfg.precision
    if want_cpu and precision == "fp16":
        print("fp16 needs a GPU; training in full precision on the CPU")
        precision = "no"
    acc = Accelerator(mixed_precision=precision, gradient_accumulation_steps=cfg.grad_accum, cpu=want_cpu,
                      **tracking.accelerator_kwargs(cfg))  # report_to: TensorBoard / W&B / MLflow
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out_dir)
    check_split_overlap(data, cfg.allow_split_overlap)  # no testing on clips trained on, unless allowed
    if acc.is_main_process:
        prepare_out_dir(user_cfg)  # never replace an earlier run; resume only an unchanged configuration
    out.mkdir(parents=True, exist_ok=True)
    show = cfg.progress and acc.is_main_process
    if acc.is_main_process:
        clean_partial_saves(out)
    if cfg.max_audio_seconds:
        model.config = replace(model.config, max_audio_seconds=cfg.max_audio_seconds)
    model.to(acc.device)

    # 2. inputs: frozen towers run once (cached), waveforms preloaded otherwise
    train_in = SplitInputs(model, data["train"], cfg.embed_batch_size, show, cfg.preload_audio)
    val_in = SplitInputs(model, data["val"], cfg.embed_batch_size, show, cfg.preload_audio)
    if cfg.paraphrases:  # caption augmentation from a file (atrlib.train.augment)
        from atrlib.train.augment import attach_paraphrases

        attach_paraphrases(train_in, model, cfg.paraphrases, cfg.paraphrase_prob, progress=show)
    crop = int(round(cfg.train_crop_seconds * model.sample_rate)) if not model.config.audio.frozen else 0

    # 3. loss, optimiser, schedule
    loss_fn = build_objective(cfg.loss, model, train_in, **cfg.loss_kwargs)   # cross-modal terms add their heads
    if cfg.mixup_pairs:
        if model.config.audio.frozen or model.config.text.frozen:
            raise ValueError("mixup_pairs needs trainable audio and text towers (it mixes log-mels and word "
                             "embeddings); set audio.frozen and text.frozen to false or mixup_pairs=0")
        if acc.num_processes > 1 or hasattr(loss_fn, "pair_set"):
            raise ValueError("mixup_pairs runs in one process with a contrastive loss only (no cross-modal terms)")
    freeze_except(model, cfg.train_only)
    optimizer = adamw(param_groups(model, cfg.lr, cfg.head_lr, cfg.weight_decay), lr=cfg.lr)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    n_pairs = len(train_in.caption_clip) if cfg.pairs == "captions" else len(data["train"])
    batches = n_pairs // cfg.batch_size if n_pairs > cfg.batch_size else 1   # drop_last when more than one batch
    steps_per_epoch = math.ceil(math.ceil(batches / acc.num_processes) / cfg.grad_accum)
    total = steps_per_epoch * cfg.epochs
    warmup = int(cfg.warmup if cfg.warmup >= 1 else cfg.warmup * total)
    if cfg.scheduler == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=2)
    elif cfg.scheduler in ("cosine", "none"):
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(total, warmup, cfg.scheduler))
    else:
        raise ValueError(f"scheduler must be 'cosine', 'plateau' or 'none', not {cfg.scheduler!r}")

    # 4. start fresh, from other weights (two-stage training), or resume
    history: List[dict] = []
    start_epoch, step, best, bad_epochs = 0, 0, -1.0, 0
    if cfg.init_from:
        from safetensors.torch import load_file

        src = Path(cfg.init_from)
        src = src / "best" if (src / "best" / "model.safetensors").exists() else src
        load_into(model, load_file(str(src / "model.safetensors")), new_heads=True)  # stage 2 may add heads
    ckpt = find_checkpoint(out) if cfg.resume else None
    if ckpt is not None:
        from safetensors.torch import load_file

        load_into(model, load_file(str(ckpt / "model.safetensors")))
        trainer = torch.load(ckpt / "trainer.pt", map_location="cpu", weights_only=True)
        optimizer.load_state_dict(trainer["optimizer"])
        if trainer["scheduler"] is not None:
            scheduler.load_state_dict(trainer["scheduler"])
        state = json.loads((ckpt / "state.json").read_text())
        history, start_epoch, step = state["history"], state["epoch"], state["step"]
        best, bad_epochs = state["best"], state["bad_epochs"]
        torch.set_rng_state(trainer["torch_rng"])
        if trainer["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(trainer["cuda_rng"])
        if show:
            print(f"resumed from {ckpt} after epoch {start_epoch} (best val mAP@10 {best:.4f})")
    model, optimizer = acc.prepare(model, optimizer)
    tracked = tracking.start(acc, user_cfg)  # the user's settings are what the trackers record
    write_run_cost(user_cfg, acc, model, train_in, val_in, loss_fn, train_pairs_full)  # cost.json; the run unchanged
    core: DualEncoder = acc.unwrap_model(model)

    # 5. epochs
    for epoch in range(start_epoch, cfg.epochs):
        if cfg.patience and bad_epochs >= cfg.patience:
            break
        t0 = time.time()
        model.train()
        order = epoch_order(train_in, cfg.pairs, cfg.seed, epoch)
        pairs = loss_fn.pair_set(train_in) if hasattr(loss_fn, "pair_set") else PairSet(train_in)  # + caption index
        loader = torch.utils.data.DataLoader(pairs, batch_size=cfg.batch_size, sampler=order,
                                             drop_last=len(order) > cfg.batch_size, num_workers=cfg.num_workers)
        loader = acc.prepare_data_loader(loader, device_placement=True)
        sums: Dict[str, float] = {}
        n_batches = 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not show, leave=False)
        for audio, text, clips, *caption_idx in bar:
            if cfg.fast_dev_run and n_batches >= cfg.fast_dev_run:
                break  # a dry run: N optimiser steps
            step += 1
            if cfg._debug_exit_at_step is not None and step == cfg._debug_exit_at_step:
                os._exit(137)  # a hard kill, for the resume test: no cleanup, no flush
            if crop:
                audio = random_crops(audio, train_in.lengths[clips.cpu()], crop)  # (batch, crop samples)
            with acc.accumulate(model):
                with acc.autocast():
                    pair_ids = clips
                    if cfg.mixup_pairs:                                             # mixed pairs appended as positives
                        a, t, mixed = mixup_embeddings(core, audio, list(text), cfg.mixup_pairs, cfg.mixup_alpha)
                        pair_ids = torch.cat([clips, -1 - torch.arange(len(mixed.first), device=clips.device)])
                    else:
                        a, t = model(audio, text)                                  # (batch, E) each
                    a, t, ids = gather_with_grad(a), gather_with_grad(t), gather_with_grad(pair_ids)
                    lens = None if crop or train_in.lengths is None else train_in.lengths[clips.cpu()].to(audio.device)
                    cross = {"batch": loss_fn.batch(core, audio, clips, caption_idx[0], lens), "model": core} \
                        if caption_idx else {}                                  # frames + captions of cross-modal terms
                    terms = loss_fn(a.float(), t.float(), ids, core.logit_scale, **cross)   # {name: scalar}
                    loss = sum(terms.values())
                acc.backward(loss)
                if acc.sync_gradients and cfg.max_grad_norm:
                    acc.clip_grad_norm_(params, cfg.max_grad_norm)
                optimizer.step()
                if acc.sync_gradients and cfg.scheduler != "plateau":
                    scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            n_batches += 1
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
            bar.set_postfix(loss=f"{sums['loss'] / n_batches:.4f}")
            if cfg.log_every and step % cfg.log_every == 0 and acc.is_main_process:
                print(f"step {step}: loss {sums['loss'] / n_batches:.4f}  lr {optimizer.param_groups[0]['lr']:.2e}")

        # 6. validate, keep the best, checkpoint
        val = similarity(core, val_in)
        scores = retrieval_scores(val.sim, val.relevant)
        if cfg.scheduler == "plateau":
            scheduler.step(scores["mAP@10"])
        entry = {"epoch": epoch + 1, "train_loss": sums.get("loss", float("nan")) / max(1, n_batches),
                 **{f"train_{k}": v / max(1, n_batches) for k, v in sums.items() if k != "loss"},
                 "lr": optimizer.param_groups[0]["lr"], "logit_scale": float(core.logit_scale.detach()),
                 **{f"val_{k}": float(v) for k, v in scores.items() if k != "n_queries"},
                 "step": step, "seconds": round(time.time() - t0, 2)}
        history.append(entry)
        if tracked:
            tracking.log_epoch(acc, entry)
        improved = scores["mAP@10"] > best or cfg.select_on == "last"
        best, bad_epochs = (scores["mAP@10"], 0) if improved else (best, bad_epochs + 1)
        if acc.is_main_process:
            if improved:
                save_best(out, core)
            save_checkpoint(out, core, optimizer, scheduler,
                            {"epoch": epoch + 1, "step": step, "history": history, "best": best,
                             "bad_epochs": bad_epochs, "config": user_cfg.to_dict()})
            write_json(out / "history.json", history)
            if show or cfg.log_every:
                print(f"epoch {epoch + 1}: loss {entry['train_loss']:.4f}  val mAP@10 {scores['mAP@10']:.4f}  "
                      f"R@1 {scores['R@1']:.4f}  ({entry['seconds']:.1f} s){'  *best*' if improved else ''}")
        acc.wait_for_everyone()

    # 7. leave the best weights in the model; a dry run drops last/ (optimizer state: 3x the weights on disk)
    if (out / "best" / "model.safetensors").exists():
        from safetensors.torch import load_file

        load_into(core, load_file(str(out / "best" / "model.safetensors")))
    if cfg.fast_dev_run and acc.is_main_process:
        import shutil

        shutil.rmtree(out / "last", ignore_errors=True)
    return history


def finish_run(cfg: TrainConfig, model: DualEncoder, data: Dict[str, Any], history: List[dict]) -> Dict[str, Any]:
    """Score the trained ``model`` on the validation and test splits, write
    ``sim_<split>.npz`` and ``metrics.json`` (+ ``params.json``) into ``cfg.out_dir``;
    return the metrics."""

    out = Path(cfg.out_dir)
    metrics: Dict[str, Any] = {"epochs_run": len(history),
                               "best_val_mAP@10": max((h["val_mAP@10"] for h in history), default=float("nan"))}
    if cfg.fast_dev_run:
        metrics["fast_dev_run"] = NOTE.format(n=cfg.fast_dev_run)
    sims = save_run_outputs(out, model, {k: data[k] for k in ("val", "test") if k in data},
                            cfg.embed_batch_size, cfg.progress)
    for key, sm in sims.items():
        metrics[key] = split_metrics(sm, data[key])
    metrics["splits"] = {k: d.split for k, d in data.items()}  # role -> the dataset's split name (sim_<name>.npz)
    overlap = split_overlap(data)
    if overlap:
        metrics["split_overlap"] = {"clips": {k: len(v) for k, v in overlap.items()}, "note": overlap_note(overlap)}
    write_metrics(out, metrics, params=cfg.to_dict(),
                  key_metrics=["test/t2a/mAP@10", "test/t2a/R@1", "test/t2a/R@10", "best_val_mAP@10", "epochs_run"])
    tracking.finish(cfg, metrics)  # the test metrics with their intervals, then the trackers close
    return metrics


def run_data(cfg: TrainConfig, data: Optional[Dict[str, Any]] = None):
    """(the splits a run trains and scores on, the full training split's pairs per epoch): the
    splits ``cfg`` names (or ``data``), cut to the clips N batches need under ``fast_dev_run``."""
    data = data if data is not None else load_splits(cfg)
    return dev_run_data(data, cfg), pair_count(data["train"], cfg.pairs)


def run_model(cfg: TrainConfig) -> DualEncoder:
    """The model ``cfg`` names, with its overrides; random weights, offline, when ``cfg.pretrained`` is false."""
    from atrlib.models.dual import create_model

    return create_model(cfg.model, **{**cfg.model_overrides, **({} if cfg.pretrained else {"pretrained": False})})


def run_training(cfg: TrainConfig, data: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """What notebook 02 and ``python -m atrlib train`` do: data, model, :func:`fit`,
    :func:`finish_run`. Returns history, metrics, model and data."""
    torch.manual_seed(cfg.seed)
    data, full_pairs = run_data(cfg, data)
    model = run_model(cfg)
    history = fit(cfg, model, data, train_pairs_full=full_pairs)
    from accelerate import PartialState

    # with several processes (accelerate launch / torchrun) only the main one scores and writes
    metrics = finish_run(cfg, model, data, history) if PartialState().is_main_process else {}
    return {"history": history, "metrics": metrics, "model": model, "data": data}
