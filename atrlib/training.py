"""Training a dual encoder: :class:`TrainConfig` and :func:`fit`, one loop read top to bottom.

    cfg = TrainConfig(dataset="synth", model="synth-small-minilm", loss="infonce", epochs=10)
    data = load_splits(cfg)                       # {"train": ..., "val": ..., "test": ...}
    model = create_model(cfg.model, **cfg.model_overrides)
    history = fit(cfg, model, data)               # writes out_dir/{last,best,history.json}

Devices, precision and distribution are config fields handled by Hugging Face ``accelerate``:
``device="auto"`` takes a GPU when there is one; ``precision="bf16"|"fp16"`` turns on mixed
precision; ``accelerate launch -m atrlib train --config ...`` runs data-parallel on several
GPUs, and contrastive losses then see the embeddings of every process (negatives span the
global batch; gradients flow through the local slice).

Frozen towers are run once over the data (cached on disk, :mod:`atrlib.embeddings`) and only
the heads train — fast on a CPU. Checkpoints: ``out_dir/last/`` every epoch and
``out_dir/best/`` at each new best validation mAP@10, both written to a temporary folder and
swapped in, so a kill never leaves a broken checkpoint; ``resume=True`` continues from
``last/`` and, on the CPU, reproduces an uninterrupted run exactly (shuffles are seeded per
epoch, the RNG state is restored). Checkpoints load with ``weights_only=True`` / safetensors.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from torch import nn

from atrlib.embeddings import audio_tower_embeddings, load_waves, text_tower_embeddings, weights_hash
from atrlib.losses import get_loss
from atrlib.metrics import retrieval_scores
from atrlib.models.dual import DualEncoder, load_into, model_state, save_model
from atrlib.simfile import SimilarityMatrix, relevance_from_clip_index


@dataclass
class TrainConfig:
    # data
    dataset: str = "synth"                # registered dataset name
    root: str = ""                        # dataset folder ("" = the dataset's default)
    size: str = "demo"                    # synth only: tiny / smoke / demo
    train_split: str = "train"            # split to train on
    val_split: str = "validation"         # split for validation mAP@10, early stopping, best checkpoint
    test_split: str = "test"              # split scored at the end ("" = none)
    max_clips: int = 0                    # use only the first N clips of each split (0 = all)
    # model and loss
    model: str = "synth-small-minilm"     # shipped model config name or JSON path
    model_overrides: Dict[str, Any] = field(default_factory=dict)  # ModelConfig fields to replace
    loss: str = "infonce"                 # atrlib.losses registry name
    loss_kwargs: Dict[str, Any] = field(default_factory=dict)      # passed to the loss
    # optimisation
    epochs: int = 10                      # passes over the training pairs
    batch_size: int = 32                  # pairs per step (per process)
    lr: float = 1e-3                      # peak AdamW learning rate
    weight_decay: float = 1e-4            # AdamW weight decay
    warmup: float = 0.05                  # linear warm-up, as a fraction of all steps
    scheduler: str = "cosine"             # "cosine" (per step), "plateau" (on val mAP@10), "none"
    grad_accum: int = 1                   # micro-batches per optimiser step
    max_grad_norm: float = 1.0            # gradient clipping (0 = off)
    pairs: str = "captions"               # "captions": every (caption, clip) pair per epoch; "clips": one random caption per clip
    # hardware
    device: str = "auto"                  # "auto" (GPU if present), "cpu", "cuda"
    precision: str = "no"                 # "no", "fp16" (GPU), "bf16"
    num_workers: int = 0                  # DataLoader workers (audio read from disk when > 0)
    embed_batch_size: int = 32            # clips per batch when running towers for embeddings
    # bookkeeping
    seed: int = 0                         # seeds init, shuffles, augmentation
    out_dir: str = "runs/train"           # checkpoints and history.json go here
    patience: int = 0                     # early stopping after N epochs without improvement (0 = off)
    resume: bool = False                  # continue from out_dir/last if it exists
    init_from: str = ""                   # start from these weights (a saved model folder): two-stage training
    progress: bool = True                 # progress bars
    _debug_exit_at_step: Optional[int] = None  # hard os._exit(137) at this micro-step: simulates a kill (tests)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown training option(s) {unknown}; known: {', '.join(sorted(known))}")
        return cls(**d)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
def load_splits(cfg: TrainConfig) -> Dict[str, Any]:
    """The train / val / test datasets named by ``cfg`` (test only when ``test_split``)."""
    from atrlib.data import load_dataset

    kw = dict(root=cfg.root or None, size=cfg.size)
    out = {"train": load_dataset(cfg.dataset, split=cfg.train_split, **kw).subset(cfg.max_clips),
           "val": load_dataset(cfg.dataset, split=cfg.val_split, **kw).subset(cfg.max_clips)}
    if cfg.test_split:
        out["test"] = load_dataset(cfg.dataset, split=cfg.test_split, **kw).subset(cfg.max_clips)
    return out


def tower_id(model: DualEncoder, part: str) -> dict:
    tc = getattr(model.config, part)
    tower = getattr(model, f"{part}_tower")
    return {"name": tc.name, "kwargs": tc.kwargs, "pretrained": str(tc.pretrained), "weights": weights_hash(tower)}


class SplitInputs:
    """What the model eats for one split: audio (waves, or frozen-tower features per clip),
    text (captions, or frozen-tower features per caption) and the caption -> clip index."""

    def __init__(self, model: DualEncoder, dataset, device: str = "cpu", batch_size: int = 32, progress: bool = True):
        c = model.config
        self.dataset = dataset
        self.caption_clip = torch.tensor(dataset.caption_clip_index(), dtype=torch.long)
        self.captions = dataset.captions_flat()
        if c.audio.frozen:
            self.audio = torch.from_numpy(audio_tower_embeddings(
                model.audio_tower, tower_id(model, "audio"), dataset, c.max_audio_seconds, batch_size, device,
                progress=progress))                                       # (clips, audio_dim)
        else:
            self.audio = load_waves(dataset, model.sample_rate, c.max_audio_seconds, progress=progress)  # (clips, samples)
        if c.text.frozen:
            self.text = torch.from_numpy(text_tower_embeddings(
                model.text_tower, tower_id(model, "text"), self.captions, progress=progress))  # (captions, text_dim)
        else:
            self.text = self.captions

    def text_batch(self, idx):
        return self.text[idx] if isinstance(self.text, torch.Tensor) else [self.text[i] for i in idx]


class PairSet(torch.utils.data.Dataset):
    """Index i -> (audio input of the clip, text input of caption i, clip index)."""

    def __init__(self, inputs: SplitInputs):
        self.x = inputs

    def __len__(self):
        return len(self.x.caption_clip)

    def __getitem__(self, i):
        c = int(self.x.caption_clip[i])
        return self.x.audio[c], self.x.text_batch([i])[0], c


def epoch_order(inputs: SplitInputs, mode: str, seed: int, epoch: int) -> List[int]:
    """Pair indices of one epoch, from a generator seeded by (seed, epoch): a resumed epoch
    replays exactly. ``"clips"`` keeps one random caption per clip."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    n = len(inputs.caption_clip)
    if mode == "captions":
        return torch.randperm(n, generator=g).tolist()
    if mode == "clips":
        by_clip: Dict[int, List[int]] = {}
        for i, c in enumerate(inputs.caption_clip.tolist()):
            by_clip.setdefault(c, []).append(i)
        picks = [caps[int(torch.randint(len(caps), (1,), generator=g))] for caps in by_clip.values()]
        return [picks[j] for j in torch.randperm(len(picks), generator=g).tolist()]
    raise ValueError(f"pairs must be 'captions' or 'clips', not {mode!r}")


# ---------------------------------------------------------------------------------------------
# scoring
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def embed_split(model: DualEncoder, inputs: SplitInputs, batch_size: int = 64, device=None):
    """L2-normalised (clip embeddings (clips, E), caption embeddings (captions, E))."""
    was_training = model.training
    model.eval()
    device = device or next(model.parameters()).device
    a_parts, t_parts = [], []
    for s in range(0, len(inputs.audio), batch_size):
        x = inputs.audio[s:s + batch_size].to(device)
        a_parts.append((model.project_audio(x) if model.config.audio.frozen else model.encode_audio(x)).float().cpu())
    for s in range(0, len(inputs.captions), batch_size):
        idx = list(range(s, min(s + batch_size, len(inputs.captions))))
        t = inputs.text_batch(idx)
        t = model.project_text(t.to(device)) if model.config.text.frozen else model.encode_text(t)
        t_parts.append(t.float().cpu())
    model.train(was_training)
    return torch.cat(a_parts), torch.cat(t_parts)


def similarity(model: DualEncoder, inputs: SplitInputs, system: str = "model") -> SimilarityMatrix:
    """Text-to-audio :class:`SimilarityMatrix` of a split (the evaluate stage's format)."""
    a, t = embed_split(model, inputs)
    ds = inputs.dataset
    return SimilarityMatrix(sim=(t @ a.T).numpy().astype(np.float32), query_ids=ds.caption_ids(),
                            item_ids=ds.clip_ids, relevant=relevance_from_clip_index(ds.caption_clip_index()),
                            meta={"system": system, "dataset": ds.name, "split": ds.split, "direction": "t2a"})


# ---------------------------------------------------------------------------------------------
# distributed helpers
# ---------------------------------------------------------------------------------------------
def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` over all processes; the local slice keeps its gradient (open_clip's
    ``gather_features`` idea). Identity when not distributed."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    parts = [torch.zeros_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    parts[dist.get_rank()] = x
    return torch.cat(parts)


# ---------------------------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------------------------
def _swap_in(tmp: Path, final: Path) -> None:
    """Replace folder ``final`` by ``tmp`` so that one complete copy exists at every moment."""
    old = final.with_name(final.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)


def _write_json(path: Path, obj) -> None:
    from atrlib.reporting import write_json

    write_json(path, obj)


def save_checkpoint(out: Path, model: DualEncoder, optimizer, scheduler, state: dict) -> Path:
    """``out/last/``: model (safetensors), trainer state (optimizer, scheduler, RNG) and
    ``state.json`` (epoch, history, best), written atomically."""
    tmp = Path(tempfile.mkdtemp(prefix=".last.", dir=out))
    save_model(model, tmp)
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict() if scheduler else None,
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}, tmp / "trainer.pt")
    _write_json(tmp / "state.json", state)
    _swap_in(tmp, out / "last")
    return out / "last"


def find_checkpoint(out: Path) -> Optional[Path]:
    """``out/last`` (or ``last.old`` when a kill fell between the two renames of a swap)."""
    for d in (out / "last", out / "last.old"):
        if (d / "state.json").exists() and (d / "trainer.pt").exists() and (d / "model.safetensors").exists():
            return d
    return None


def save_best(out: Path, model: DualEncoder) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=".best.", dir=out))
    save_model(model, tmp)
    _swap_in(tmp, out / "best")


def _lr_lambda(total: int, warmup: int, kind: str):
    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if kind != "cosine":
            return 1.0
        p = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, p)))
    return f


# ---------------------------------------------------------------------------------------------
# the loop
# ---------------------------------------------------------------------------------------------
def fit(cfg: TrainConfig, model: DualEncoder, data: Dict[str, Any]) -> List[dict]:
    """Train ``model`` on ``data["train"]``, validating on ``data["val"]`` every epoch.

    Returns the history (one dict per epoch); leaves the best weights (by validation
    mAP@10) loaded in ``model``.
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
    out.mkdir(parents=True, exist_ok=True)
    show = cfg.progress and acc.is_main_process

    # 2. inputs: frozen towers run once (cached), waveforms preloaded otherwise
    train_in = SplitInputs(model, data["train"], str(acc.device), cfg.embed_batch_size, show)
    val_in = SplitInputs(model, data["val"], str(acc.device), cfg.embed_batch_size, show)

    # 3. loss, optimiser, schedule
    loss_fn = get_loss(cfg.loss, **cfg.loss_kwargs)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    n_pairs = len(train_in.caption_clip) if cfg.pairs == "captions" else len(data["train"])
    steps_per_epoch = max(1, (n_pairs // cfg.batch_size) // cfg.grad_accum)
    total = steps_per_epoch * cfg.epochs
    if cfg.scheduler == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=2)
    elif cfg.scheduler in ("cosine", "none"):
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, _lr_lambda(total, int(cfg.warmup * total), cfg.scheduler))
    else:
        raise ValueError(f"scheduler must be 'cosine', 'plateau' or 'none', not {cfg.scheduler!r}")

    # 4. start fresh, from other weights (two-stage), or resume
    history: List[dict] = []
    start_epoch, best, bad_epochs = 0, -1.0, 0
    if cfg.init_from:
        from safetensors.torch import load_file

        src = Path(cfg.init_from)
        src = src / "best" if (src / "best" / "model.safetensors").exists() else src
        load_into(model, load_file(str(src / "model.safetensors")))
    ckpt = find_checkpoint(out) if cfg.resume else None
    if ckpt is not None:
        from safetensors.torch import load_file

        load_into(model, load_file(str(ckpt / "model.safetensors")))
        trainer = torch.load(ckpt / "trainer.pt", map_location="cpu", weights_only=True)
        optimizer.load_state_dict(trainer["optimizer"])
        if trainer["scheduler"] is not None:
            scheduler.load_state_dict(trainer["scheduler"])
        state = json.loads((ckpt / "state.json").read_text())
        history, start_epoch, best, bad_epochs = state["history"], state["epoch"], state["best"], state["bad_epochs"]
        torch.set_rng_state(trainer["torch_rng"])
        if trainer["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(trainer["cuda_rng"])
        if show:
            print(f"resumed from {ckpt} after epoch {start_epoch} (best val mAP@10 {best:.4f})")
    model, optimizer = acc.prepare(model, optimizer)
    core = acc.unwrap_model(model)

    # 5. epochs
    step = 0
    for epoch in range(start_epoch, cfg.epochs):
        if cfg.patience and bad_epochs >= cfg.patience:
            break
        t0 = time.time()
        model.train()
        order = epoch_order(train_in, cfg.pairs, cfg.seed, epoch)
        loader = torch.utils.data.DataLoader(PairSet(train_in), batch_size=cfg.batch_size, sampler=order,
                                             drop_last=len(order) > cfg.batch_size, num_workers=cfg.num_workers)
        loader = acc.prepare_data_loader(loader, device_placement=True)
        sums: Dict[str, float] = {}
        n_batches = 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not show, leave=False)
        for audio, text, clips in bar:
            step += 1
            if cfg._debug_exit_at_step is not None and step == cfg._debug_exit_at_step:
                os._exit(137)  # a hard kill, for the resume test: no cleanup, no flush
            with acc.accumulate(model):
                with acc.autocast():
                    a, t = model(audio, text)                               # (batch, E) each
                    a, t, ids = gather_with_grad(a), gather_with_grad(t), gather_with_grad(clips)
                    terms = loss_fn(a.float(), t.float(), ids, core.logit_scale)
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
        improved = scores["mAP@10"] > best
        best, bad_epochs = (scores["mAP@10"], 0) if improved else (best, bad_epochs + 1)
        if acc.is_main_process:
            if improved:
                save_best(out, core)
            save_checkpoint(out, core, optimizer, scheduler,
                            {"epoch": epoch + 1, "history": history, "best": best, "bad_epochs": bad_epochs,
                             "config": cfg.to_dict()})
            _write_json(out / "history.json", history)
            if show:
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
    ``sim_<split>.npz`` and ``metrics.json`` into ``cfg.out_dir``; return the metrics."""
    from atrlib.metrics import evaluate_both, scores_with_ci
    from atrlib.reporting import write_metrics
    from atrlib.simfile import save_similarity

    out = Path(cfg.out_dir)
    metrics: Dict[str, Any] = {"epochs_run": len(history),
                               "best_val_mAP@10": max((h["val_mAP@10"] for h in history), default=float("nan"))}
    for key in ("val", "test"):
        if key not in data:
            continue
        sm = similarity(model, SplitInputs(model, data[key], progress=cfg.progress), system=str(out))
        save_similarity(out / f"sim_{data[key].split}.npz", sm)
        both = evaluate_both(sm.sim, data[key].caption_clip_index())
        ci = scores_with_ci(sm.sim, sm.relevant)
        metrics[key] = {"t2a": both["t2a"], "a2t": both["a2t"],
                        "t2a_ci": {k: ci[k] for k in ("R@1", "R@5", "R@10", "mAP@10")}}
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
    metrics = finish_run(cfg, model, data, history)
    return {"history": history, "metrics": metrics, "model": model, "data": data}
