"""Training a dual encoder: :class:`TrainConfig` and :func:`fit`, one loop read top to bottom.

    cfg = TrainConfig(dataset="synth", model="synth-small-minilm", loss="infonce", epochs=10)
    data = load_splits(cfg)                       # {"train": ..., "val": ..., "test": ...}
    model = create_model(cfg.model, **cfg.model_overrides)
    history = fit(cfg, model, data)               # writes out_dir/{last,best,history.json}
    metrics = finish_run(cfg, model, data, history)   # sim_<split>.npz + metrics.json

Devices, precision and distribution are config fields handled by Hugging Face ``accelerate``:
``device="auto"`` takes a GPU when there is one; ``precision="bf16"|"fp16"`` turns on mixed
precision; ``accelerate launch -m atrlib train --config ...`` runs data-parallel on several
GPUs, and contrastive losses then see the embeddings of every process (negatives span the
global batch; gradients flow through the local slice, :func:`gather_with_grad`).

Frozen towers are run once over the data (cached on disk, :mod:`atrlib.embeddings`) and only
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
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from atrlib.checkpoints import clean_partial_saves, find_checkpoint, save_best, save_checkpoint
from atrlib.config import field_help, option
from atrlib.distributed import gather_with_grad
from atrlib.files import write_json, write_metrics
from atrlib.objectives import build_objective
from atrlib.metrics import retrieval_scores
from atrlib.mixup import mixup_embeddings
from atrlib.models.dual import DualEncoder, load_into
from atrlib.preflight import check_split_overlap, check_values, overlap_note, prepare_out_dir, split_overlap
from atrlib.scoring import save_run_outputs, similarity, split_metrics
from atrlib.train_inputs import PairSet, SplitInputs, epoch_order, load_splits, random_crops


@dataclass
class TrainConfig:
    """Everything one training run needs; each field has a help string (`field_help(TrainConfig)`,
    `python -m atrlib train --help`). YAML files and notebook parameter cells use these names."""

    # data
    dataset: str = option("synth", "registered dataset name: synth, clotho, folder")
    root: str = option("", "dataset folder ('' = the dataset's default)")
    size: str = option("demo", "synth only: tiny / smoke / demo, or a number of train clips")
    dataset_kwargs: Dict[str, Any] = option(factory=dict, help="extra keywords for the dataset loader (on_error, ...)")
    train_split: str = option("train", "split to train on (clotho: development)")
    val_split: str = option("validation", "split for validation mAP@10, early stopping and the best checkpoint")
    test_split: str = option("test", "split scored at the end ('' = none; clotho: evaluation)")
    max_clips: int = option(0, "use only the first N clips of each split (0 = all)")
    fold: int = option(-1, "k-fold: train on train+val minus fold `fold` and validate on it (-1 = off; the test "
                           "split is unchanged; atrlib.experiments.kfold.make_folds)")
    folds: int = option(5, "k-fold: number of folds of the train+val clips (used when fold >= 0)")
    # model and loss
    model: str = option("synth-stats-minilm", "shipped model config name or a JSON path")
    model_overrides: Dict[str, Any] = option(factory=dict, help="ModelConfig fields to replace, e.g. {embed_dim: 512}")
    loss: str = option("infonce", "atrlib.losses registry name")
    loss_kwargs: Dict[str, Any] = option(factory=dict, help="keywords for the loss, e.g. {margin: 0.2}")
    max_audio_seconds: float = option(0.0, "crop audio to this many seconds (0 = the model config's)")
    train_crop_seconds: float = option(0.0, "trainable audio tower: train on random windows this long (0 = off)")
    mixup_pairs: int = option(0, "mix-up (Samsung pre-training): mixed audio-caption pairs appended to each batch as "
                                 "extra positives, mixed on log-mels and word embeddings; needs trainable towers (0 = off)")
    mixup_alpha: float = option(1.0, "mix-up weights ~ Beta(alpha, alpha)")
    paraphrases: str = option("", "caption augmentation: a file of paraphrases keyed by caption (JSON / CSV, "
                                  "atrlib.augment); '' = none")
    paraphrase_prob: float = option(0.0, "probability that a training caption is replaced by one of its paraphrases")
    # optimisation
    epochs: int = option(30, "passes over the training pairs")
    batch_size: int = option(64, "pairs per step and process")
    lr: float = option(1e-3, "peak AdamW learning rate")
    head_lr: float = option(0.0, "lr of heads and temperature (0 = lr); e.g. 10x lr when fine-tuning towers")
    train_only: str = option("", "train only parameters whose names start with these comma-separated prefixes, "
                                 "e.g. 'extra_heads' (the matching head on a frozen dual encoder: a second stage); "
                                 "'' = all")
    weight_decay: float = option(1e-4, "AdamW weight decay (not on biases, norms or the temperature)")
    warmup: float = option(0.05, "linear warm-up: a fraction of all steps if < 1, else a number of steps")
    scheduler: str = option("cosine", "'cosine' (per step), 'plateau' (halve after 2 flat val mAP@10 epochs), 'none'")
    grad_accum: int = option(1, "micro-batches per optimiser step")
    max_grad_norm: float = option(1.0, "gradient clipping norm (0 = off)")
    pairs: str = option("captions", "'captions': all caption-clip pairs each epoch; 'clips': one caption per clip")
    # hardware
    device: str = option("auto", "'auto' (a GPU if present), 'cpu', 'cuda'")
    precision: str = option("no", "'no', 'fp16' (GPU only), 'bf16'")
    num_workers: int = option(0, "DataLoader workers (they read audio from disk when preload_audio is off)")
    preload_audio: bool = option(True, "trainable audio tower: hold every waveform in memory (small datasets)")
    embed_batch_size: int = option(32, "clips per batch when running towers for embeddings and scoring")
    # bookkeeping
    seed: int = option(0, "seeds initialisation, shuffles, dropout and augmentation")
    out_dir: str = option("runs/train", "checkpoints (last/, best/) and history.json go here")
    patience: int = option(0, "early stopping after N epochs without a better val mAP@10 (0 = off)")
    select_on: str = option("val_mAP@10", "best/ = the epoch with the best 'val_mAP@10', or the 'last' epoch (e.g. "
                                          "train_only='extra_heads': the dual encoder's validation score cannot move)")
    resume: bool = option(False, "continue from out_dir/last when it exists (the configuration must be unchanged)")
    overwrite: bool = option(False, "an out_dir already holding a run is moved aside to <out_dir>.prev-<time> "
                                    "(default: refuse)")
    allow_split_overlap: bool = option(False, "train even when train/validation/test share clips (default: refuse); "
                                              "metrics.json then records the overlap")
    init_from: str = option("", "start from these weights (a saved model folder or run folder): two-stage training")
    progress: bool = option(True, "tqdm progress bars")
    log_every: int = option(0, "print the running loss every N steps (0 = only the per-epoch line)")
    _debug_exit_at_step: Optional[int] = option(None, "tests: os._exit(137) at this global step, a simulated kill")

    def __post_init__(self):
        d = self.to_dict()
        if self.init_from and self.epochs == 0:
            d.pop("epochs")  # epochs=0 with init_from: score the given weights without training
        check_values(d)  # numbers and choices, each error naming its field

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "TrainConfig":
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            listing = "\n".join(f"  {k}: {h}" for k, h in field_help(cls).items())
            raise ValueError(f"unknown training option(s) {unknown}; the options are:\n{listing}")
        return cls(**d)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


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


# ---------------------------------------------------------------------------------------------
# the loop
# ---------------------------------------------------------------------------------------------
def fit(cfg: TrainConfig, model: DualEncoder, data: Dict[str, Any]) -> List[dict]:
    """Train ``model`` on ``data["train"]``, validating on ``data["val"]`` every epoch.

    Returns the history (one dict per epoch: ``epoch``, ``train_loss`` and each
    ``train_<term>`` of the loss, ``lr``, ``logit_scale``, ``val_R@1`` ... ``val_mAP@10``,
    ``seconds``); leaves the best weights (by validation mAP@10) loaded in ``model``, on
    the training device. ``cfg.max_audio_seconds`` (when set) replaces the model config's.
    """
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    # 1. devices, precision, seeds
    want_cpu = cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available())
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' but no CUDA GPU is visible; use device='auto' or 'cpu'")
    precision = cfg.precision
    if want_cpu and precision == "fp16":
        print("fp16 needs a GPU; training in full precision on the CPU")
        precision = "no"
    acc = Accelerator(mixed_precision=precision, gradient_accumulation_steps=cfg.grad_accum, cpu=want_cpu)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out_dir)
    check_split_overlap(data, cfg.allow_split_overlap)  # no testing on clips trained on, unless allowed
    if acc.is_main_process:
        prepare_out_dir(cfg)  # never replace an earlier run; resume only an unchanged configuration
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
    if cfg.paraphrases:  # caption augmentation from a file (atrlib.augment)
        from atrlib.augment import attach_paraphrases

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
    optimizer = torch.optim.AdamW(param_groups(model, cfg.lr, cfg.head_lr, cfg.weight_decay), lr=cfg.lr)
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
                 "seconds": round(time.time() - t0, 2)}
        history.append(entry)
        improved = scores["mAP@10"] > best or cfg.select_on == "last"
        best, bad_epochs = (scores["mAP@10"], 0) if improved else (best, bad_epochs + 1)
        if acc.is_main_process:
            if improved:
                save_best(out, core)
            save_checkpoint(out, core, optimizer, scheduler,
                            {"epoch": epoch + 1, "step": step, "history": history, "best": best,
                             "bad_epochs": bad_epochs, "config": cfg.to_dict()})
            write_json(out / "history.json", history)
            if show or cfg.log_every:
                print(f"epoch {epoch + 1}: loss {entry['train_loss']:.4f}  val mAP@10 {scores['mAP@10']:.4f}  "
                      f"R@1 {scores['R@1']:.4f}  ({entry['seconds']:.1f} s){'  *best*' if improved else ''}")
        acc.wait_for_everyone()

    # 7. leave the best weights in the model
    if (out / "best" / "model.safetensors").exists():
        from safetensors.torch import load_file

        load_into(core, load_file(str(out / "best" / "model.safetensors")))
    return history


def finish_run(cfg: TrainConfig, model: DualEncoder, data: Dict[str, Any], history: List[dict]) -> Dict[str, Any]:
    """Score the trained ``model`` on the validation and test splits, write
    ``sim_<split>.npz`` and ``metrics.json`` (+ ``params.json``) into ``cfg.out_dir``;
    return the metrics."""

    out = Path(cfg.out_dir)
    metrics: Dict[str, Any] = {"epochs_run": len(history),
                               "best_val_mAP@10": max((h["val_mAP@10"] for h in history), default=float("nan"))}
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
    return metrics


def run_training(cfg: TrainConfig, data: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """What notebook 02 and ``python -m atrlib train`` do: data, model, :func:`fit`,
    :func:`finish_run`. Returns history, metrics, model and data."""
    from atrlib.models.dual import create_model

    torch.manual_seed(cfg.seed)
    data = data if data is not None else load_splits(cfg)
    model = create_model(cfg.model, **cfg.model_overrides)
    history = fit(cfg, model, data)
    from accelerate import PartialState

    # with several processes (accelerate launch / torchrun) only the main one scores and writes
    metrics = finish_run(cfg, model, data, history) if PartialState().is_main_process else {}
    return {"history": history, "metrics": metrics, "model": model, "data": data}
