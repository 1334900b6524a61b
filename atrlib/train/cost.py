"""What a training run costs: measured on one small batch, projected to the paper's batch, the
full training set and a named GPU; every run writes ``<out_dir>/cost.json``.

    cost = measure_run_cost(cfg, model, train_in, val_in, loss_fn, device)  # a dict, as cost.json
    p = project(cost, gpu="A40", utilisation=0.35)                          # whole-run FLOPs and hours
    p = project(cost, train_pairs=19_195 + 49_838, batch_size=64)          # another data size / batch

What is measured, and how:

- **FLOPs** of one training step (forward + backward of the run's own loss on a real batch, the
  first ``b`` pairs of epoch 1's order) by ``torch.utils.flop_counter.FlopCounterMode`` (matmuls,
  convolutions, attention: 2 FLOPs per multiply-add; element-wise ops are not counted), at
  ``b = min(batch_size, measure_batch)`` and at ``2b``; the paper's batch (``cfg.batch_size``) by
  the line through both; the check is ``2 x FLOPs(b)`` against the FLOPs measured at ``2b``.
- **Activation memory**: the bytes of the tensors autograd saves for backward
  (``torch.autograd.graph.saved_tensors_hooks``, unique storages, parameters left out), at ``b`` and
  ``2b``, scaled to the paper's batch the same way and checked the same way.
- **Parameters, gradients, AdamW state**: exact from the parameter counts and dtypes (AdamW keeps
  ``exp_avg`` and ``exp_avg_sq`` per trainable element and one float32 ``step`` per tensor).
- **Forward FLOPs per validation clip and caption** (no grad), for the validation every epoch.
- **Feature cache**: frozen towers' cached outputs (``atrlib.audio.embeddings``) and memory-mapped
  frames (``atrlib.audio.frames``) as stored; preloaded waveforms of a trainable tower (in memory).

The measurement runs on the run's own model before its first optimiser step — no copy, so a
900 M-parameter model does not need its weights and gradients twice — and puts back what a
forward and backward in training mode can change: the gradients, every buffer (batch-norm
statistics), every module's train/eval mode and the torch / numpy / Python RNG states. Nothing
steps an optimizer. The run trains exactly as without it (tests/train/test_cost.py).
"""
from __future__ import annotations

import json
import random
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

COST_FILE = "cost.json"
MEASURE_BATCH = 2          # b: small, so full-size towers on a CPU measure in seconds
UTILISATION = 0.35         # model FLOPs utilisation assumed for the projection
UTILISATION_RANGE = (0.2, 0.5)  # ... and the interval printed beside it


# ----------------------------------------------------------------------------- GPU classes
@dataclass(frozen=True)
class GPUClass:
    """Dense peak TFLOPS (no structured sparsity) per precision, from NVIDIA's datasheets."""
    name: str
    fp32: float      # CUDA cores, FP32
    tf32: float      # TF32 tensor cores (= fp32 where the chip has none)
    half: float      # FP16 / BF16 tensor cores, FP32 accumulate
    memory_gib: float


# Sources (dense numbers; the datasheets print the sparse ones with a *, twice these):
#   A40: NVIDIA A40 datasheet (2021): FP32 37.4, TF32 74.8, BF16/FP16 149.7 TFLOPS, 48 GB.
#   A100: NVIDIA A100 Tensor Core GPU datasheet (SXM 80 GB): FP32 19.5, TF32 156, BF16/FP16 312.
#   H100: NVIDIA H100 Tensor Core GPU datasheet (SXM): FP32 67, TF32 989*/2, BF16/FP16 1,979*/2.
#   V100: NVIDIA V100 datasheet (SXM2): FP32 15.7, tensor (FP16) 125; no TF32.
#   RTX 2080 Ti: NVIDIA Turing architecture whitepaper, Table 1 (reference clocks): FP32 13.4,
#   FP16 tensor with FP32 accumulate 53.8 (107.6 with FP16 accumulate); no TF32, no BF16.
GPUS: Dict[str, GPUClass] = {g.name: g for g in (
    GPUClass("A40", 37.4, 74.8, 149.7, 48),
    GPUClass("A100", 19.5, 156.0, 312.0, 80),
    GPUClass("H100", 67.0, 494.5, 989.5, 80),
    GPUClass("V100", 15.7, 15.7, 125.0, 32),
    GPUClass("RTX 2080 Ti", 13.4, 13.4, 53.8, 11),
)}


def precision_key(precision: str, tf32: Optional[bool] = None) -> str:
    """The peak a run's matmuls meet: ``"half"`` under fp16 / bf16 autocast, ``"tf32"`` when
    float32 matmuls may use TF32 (``torch.get_float32_matmul_precision() != "highest"``), else
    ``"fp32"``."""
    if precision in ("fp16", "bf16"):
        return "half"
    if tf32 is None:
        tf32 = torch.get_float32_matmul_precision() != "highest"
    return "tf32" if tf32 else "fp32"


def gpu_class(name: str) -> GPUClass:
    if name not in GPUS:
        raise KeyError(f"no GPU class {name!r}; known: {', '.join(GPUS)}")
    return GPUS[name]


# ----------------------------------------------------------------------------- measuring one step
@dataclass(frozen=True)
class StepMeasure:
    batch: int
    flops: int             # forward + backward
    forward_flops: int
    activation_bytes: int  # saved for backward: unique storages, parameters left out
    seconds: float


def _storage_key(t: torch.Tensor) -> Tuple[int, int]:
    s = t.untyped_storage()
    return s.data_ptr(), s.nbytes()


def measure_step(loss_of_batch: Callable[[], torch.Tensor], params: Sequence[torch.Tensor] = (),
                 batch: int = 0) -> StepMeasure:
    """Run ``loss_of_batch()`` and its backward once, counting FLOPs and the bytes autograd saves.

    ``params``: tensors whose storages are not activations (the model's parameters and buffers,
    which backward also saves, e.g. a Linear's weight)."""
    from torch.utils.flop_counter import FlopCounterMode

    skip = {_storage_key(p) for p in params}
    saved: Dict[Tuple[int, int], int] = {}

    def pack(t: torch.Tensor):
        if t.layout == torch.strided and t.device.type != "meta":
            k = _storage_key(t)
            if k not in skip:
                saved[k] = k[1]
        return t

    t0 = time.perf_counter()
    counter = FlopCounterMode(display=False)
    with counter:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = loss_of_batch()
        forward = counter.get_total_flops()
        loss.backward()
    return StepMeasure(batch, int(counter.get_total_flops()), int(forward), int(sum(saved.values())),
                       time.perf_counter() - t0)


def forward_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of ``fn()`` run without gradients."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        fn()
    return int(counter.get_total_flops())


def linear_fit(b1: int, y1: float, b2: int, y2: float) -> Dict[str, float]:
    """The line through (b1, y1), (b2, y2): ``per_pair`` (slope) and ``fixed`` (intercept), and
    the proportional check ``predicted_b2 = y1 * b2 / b1`` against ``y2`` (``rel_error``)."""
    slope = (y2 - y1) / (b2 - b1)
    pred = y1 * b2 / b1
    return {"per_pair": slope, "fixed": y1 - slope * b1, "predicted_b2": pred, "measured_b2": y2,
            "rel_error": abs(pred - y2) / y2 if y2 else 0.0}


def at_batch(fit: Dict[str, float], batch: int) -> float:
    return fit["fixed"] + fit["per_pair"] * batch


# ----------------------------------------------------------------------------- memory
def adamw_state_bytes(params: Sequence[torch.Tensor]) -> int:
    """AdamW's state for ``params`` (trainable): exp_avg and exp_avg_sq of each element in its
    dtype, and a float32 ``step`` per tensor (torch >= 1.12 keeps it as a tensor)."""
    return sum(2 * p.numel() * p.element_size() + 4 for p in params)


def parameter_report(model: nn.Module) -> Dict[str, Any]:
    """Trainable / frozen parameter counts per part (``DualEncoder.summary()``'s parts) and bytes."""
    summary = model.summary() if hasattr(model, "summary") else {
        "total": {"params": sum(p.numel() for p in model.parameters()),
                  "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad)}}
    parts = {k: {"trainable": v["trainable"], "frozen": v["params"] - v["trainable"]} for k, v in summary.items()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    return {"parts": parts,
            "param_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
            "grad_bytes": sum(p.numel() * p.element_size() for p in trainable),
            "adamw_state_bytes": adamw_state_bytes(trainable)}


def cache_report(train_in, val_in, loss_fn=None, pair_ratio: float = 1.0) -> Dict[str, Any]:
    """Bytes of the features a run caches (frozen towers' outputs, on disk as float32 .npy;
    memory-mapped frames) or preloads (waveforms of a trainable tower, in memory), this run's and
    scaled to the full training set (``pair_ratio`` = full pairs / this run's pairs)."""
    def nbytes(x):
        return int(x.numel() * x.element_size()) if isinstance(x, torch.Tensor) else 0

    out: Dict[str, Any] = {}
    for name, inp in (("train", train_in), ("val", val_in)):
        audio, text = nbytes(inp.audio), nbytes(inp.text)
        out[name] = {"audio_bytes": audio, "text_bytes": text,
                     "audio_kind": ("frozen tower outputs (disk cache)" if inp.audio_frozen else
                                    "preloaded waveforms (memory)" if inp.audio is not None else "read per batch"),
                     "text_kind": "frozen tower outputs (disk cache)" if inp.text_frozen else "caption strings"}
    frames = getattr(loss_fn, "frames", None)
    out["frames_bytes"] = int(frames.nbytes) if frames is not None else 0
    train = out["train"]["audio_bytes"] + out["train"]["text_bytes"] + out["frames_bytes"]
    out["train_bytes_full"] = int(round(train * pair_ratio))
    return out


# ----------------------------------------------------------------------------- the run's step, measured in place
def _peak_rss_bytes() -> int:
    """The process's peak resident set (``ru_maxrss``: KiB on Linux, bytes on macOS); 0 where the
    ``resource`` module is missing (Windows)."""
    try:
        import resource
    except ImportError:
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def _precision_context(precision: str, device: torch.device):
    if precision == "bf16" or (precision == "fp16" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
    import contextlib

    return contextlib.nullcontext()


def _rng_state(device: torch.device):
    return (torch.get_rng_state(), torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
            np.random.get_state(), random.getstate())


def _set_rng_state(state) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state_all(state[1])
    np.random.set_state(state[2])
    random.setstate(state[3])


class _Snapshot:
    """What a training-mode forward and backward of ``model`` can change, kept to be put back:
    each module's mode, each buffer's value (batch-norm statistics), each parameter's gradient."""

    def __init__(self, model: nn.Module):
        self.modes = [(m, m.training) for m in model.modules()]
        self.buffers = [(b, b.detach().clone()) for b in model.buffers()]
        self.grads = [(p, None if p.grad is None else p.grad.detach().clone()) for p in model.parameters()]

    def restore(self) -> None:
        for m, mode in self.modes:
            m.training = mode
        with torch.no_grad():
            for b, value in self.buffers:
                b.copy_(value)
        for p, g in self.grads:
            p.grad = g


def measure_run_cost(cfg, model: nn.Module, train_in, val_in, loss_fn, device: torch.device,
                     train_pairs_full: Optional[int] = None, measure_batch: int = MEASURE_BATCH) -> Dict[str, Any]:
    """cost.json's content for a run (module docstring). ``model`` and ``loss_fn`` as :func:`fit`
    holds them after its step 3; ``train_pairs_full``: pairs of the full training set when this
    run trains on fewer (fast_dev_run), default the run's own."""
    from atrlib.models.inputs import PairSet, epoch_order, random_crops
    from atrlib.train.mixup import mixup_embeddings

    t_start = time.perf_counter()
    rss0 = _peak_rss_bytes()
    device = torch.device(device)
    order = epoch_order(train_in, cfg.pairs, cfg.seed, 0)       # epoch 1's pairs, from their own generator
    n_pairs = len(order)
    full = int(train_pairs_full or n_pairs)
    b = max(1, min(cfg.batch_size, measure_batch, n_pairs // 2 or 1))
    sizes = [b, 2 * b] if 2 * b <= n_pairs else [b]
    crop = int(round(cfg.train_crop_seconds * model.sample_rate)) if not model.config.audio.frozen else 0
    pairs = loss_fn.pair_set(train_in) if hasattr(loss_fn, "pair_set") else PairSet(train_in)

    key = json.dumps([model.config.to_dict(), cfg.loss, cfg.loss_kwargs, cfg.precision, cfg.train_only, sizes, crop,
                      cfg.mixup_pairs, str(device), sorted(n for n, p in model.named_parameters() if p.requires_grad)],
                     sort_keys=True, default=str)
    if key in _MEASURED:  # the same model, loss and batch measured earlier in this process (another seed / lr)
        return _assemble(cfg, model, train_in, val_in, loss_fn, device, *_MEASURED[key], b=b, n_pairs=n_pairs,
                         full=full, t_start=t_start, rss0=rss0, reused=True)
    rng = _rng_state(device)
    snapshot = _Snapshot(model)
    twin = model  # measured in place (module docstring); everything it changes is put back below
    twin.train()  # DualEncoder.train keeps frozen towers in eval
    skip = list(twin.parameters()) + list(twin.buffers())
    amp = _precision_context(cfg.precision, device)

    def loss_on(n: int) -> Callable[[], torch.Tensor]:
        audio, text, clips, *caption_idx = torch.utils.data.default_collate([pairs[i] for i in order[:n]])
        audio, clips = audio.to(device), clips.to(device)
        text = text.to(device) if isinstance(text, torch.Tensor) else text

        def run() -> torch.Tensor:
            x, ids = audio, clips
            if crop:
                x = random_crops(x, train_in.lengths[clips.cpu()], crop)          # (batch, crop samples)
            with amp:
                if cfg.mixup_pairs:
                    a, t, mixed = mixup_embeddings(twin, x, list(text), cfg.mixup_pairs, cfg.mixup_alpha)
                    ids = torch.cat([clips, -1 - torch.arange(len(mixed.first), device=device)])
                else:
                    a, t = twin(x, text)                                              # (batch, E) each
                lens = None if crop or train_in.lengths is None else train_in.lengths[clips.cpu()].to(device)
                cross = {"batch": loss_fn.batch(twin, x, clips, caption_idx[0], lens), "model": twin} \
                    if caption_idx else {}
                terms = loss_fn(a.float(), t.float(), ids, twin.logit_scale, **cross)
                return sum(terms.values())
        return run

    try:
        steps: List[StepMeasure] = []
        for n in sizes:
            steps.append(measure_step(loss_on(n), skip, n))
            twin.zero_grad(set_to_none=True)                      # no optimizer step; gradients put back below
        twin.eval()
        nv = max(1, min(b, len(val_in.caption_clip), len(val_in.dataset)))
        va = torch.stack([val_in.clip_audio(i) for i in range(nv)]).to(device)
        vt = val_in.text_batch(range(nv))
        vt = vt.to(device) if isinstance(vt, torch.Tensor) else vt
        with amp:
            clip_flops = forward_flops(lambda: twin.project_audio(va) if model.config.audio.frozen
                                       else twin.encode_audio(va)) / nv
            caption_flops = forward_flops(lambda: twin.project_text(vt) if model.config.text.frozen
                                          else twin.encode_text(vt)) / nv
            frozen = frozen_tower_flops(twin, val_in, device)
    finally:
        snapshot.restore()
        _set_rng_state(rng)
    del twin, snapshot
    _MEASURED[key] = (steps, clip_flops, caption_flops, sizes, frozen)
    return _assemble(cfg, model, train_in, val_in, loss_fn, device, steps, clip_flops, caption_flops, sizes, frozen, b=b,
                     n_pairs=n_pairs, full=full, t_start=t_start, rss0=rss0, reused=False)


_MEASURED: Dict[str, Tuple[List[StepMeasure], float, float, List[int]]] = {}  # measurements by configuration


def frozen_tower_flops(model: nn.Module, val_in, device) -> Dict[str, float]:
    """Forward FLOPs of the frozen towers on one clip (its waveform, padded as in training) and
    one caption: what computing the cached features costs, once per clip and caption of the run."""
    from atrlib.audio.embeddings import load_wave

    out = {"per_clip": 0.0, "per_caption": 0.0}
    with torch.no_grad():
        if model.config.audio.frozen and len(val_in.dataset):
            wave = load_wave(val_in.dataset[0]["audio_path"], val_in.sample_rate, val_in.seconds, pad=True,
                             min_len=val_in.min_len)
            out["per_clip"] = float(forward_flops(lambda: model.audio_features(wave[None].to(device))))
        if model.config.text.frozen and val_in.captions:
            out["per_caption"] = float(forward_flops(lambda: model.text_features(val_in.captions[:1])))
    return out


def _assemble(cfg, model, train_in, val_in, loss_fn, device, steps, clip_flops, caption_flops, sizes, frozen, *, b, n_pairs,
              full, t_start, rss0, reused: bool) -> Dict[str, Any]:
    """cost.json from the measured steps (:func:`measure_run_cost`)."""
    rss1 = _peak_rss_bytes()
    params = parameter_report(model)
    fl = linear_fit(b, steps[0].flops, sizes[-1], steps[-1].flops) if len(steps) > 1 else \
        {"per_pair": steps[0].flops / b, "fixed": 0.0, "predicted_b2": None, "measured_b2": None, "rel_error": None}
    act = linear_fit(b, steps[0].activation_bytes, sizes[-1], steps[-1].activation_bytes) if len(steps) > 1 else \
        {"per_pair": steps[0].activation_bytes / b, "fixed": 0.0, "predicted_b2": None, "measured_b2": None,
         "rel_error": None}
    B = int(cfg.batch_size)
    ratio = full / n_pairs
    val_clips, val_captions = len(val_in.dataset) * ratio, len(val_in.caption_clip) * ratio
    embed = int(getattr(model.config, "embed_dim", 0))
    val_epoch = clip_flops * val_clips + caption_flops * val_captions + 2.0 * val_clips * val_captions * embed
    state = params["param_bytes"] + params["grad_bytes"] + params["adamw_state_bytes"]
    overhead = time.perf_counter() - t_start
    cost = {
        "model": cfg.model, "device": str(device), "precision": cfg.precision,
        "parameters": params,
        "measured": {"batches": [asdict(s) for s in steps],
                     "peak_rss_growth_bytes": rss1 - rss0,
                     "peak_rss_note": "growth of the process's peak RSS (ru_maxrss) while measuring; 0 when "
                                      "the process had already peaked higher",
                     "overhead_s": round(overhead, 4),
                     **({"reused": "measured earlier in this process on the same model, loss and batch sizes "
                                   "(another seed or learning rate)"} if reused else {})},
        "flops_fit": fl, "activation_fit": act,
        "paper_batch": B, "grad_accum": int(cfg.grad_accum), "epochs": int(cfg.epochs),
        "flops_per_step": at_batch(fl, B),
        "memory_bytes": {"params_grads_adamw": state, "activations": at_batch(act, B),
                         "total": state + at_batch(act, B)},
        "forward_flops": {"per_clip": clip_flops, "per_caption": caption_flops},
        "frozen_tower_flops": {**frozen, "note": "the frozen towers run once over every clip and caption (their "
                                                 "outputs are cached): FLOPs of one clip (padded) and one caption"},
        "data": {"train_pairs": n_pairs, "train_pairs_full": full, "clips_per_pair": len(train_in.dataset) / max(1, n_pairs),
                 "val_clips": val_clips,
                 "val_captions": val_captions, "pairs_mode": cfg.pairs},
        "val_flops_per_epoch": val_epoch,
        "feature_cache": cache_report(train_in, val_in, loss_fn, ratio),
    }
    if device.type == "cuda":
        cost["measured"]["cuda_max_allocated_bytes"] = int(torch.cuda.max_memory_allocated(device))
    cost["projection"] = project(cost)
    cost["uncertain"] = uncertain_notes(cost)
    return cost


# ----------------------------------------------------------------------------- the projection
def project(cost: Dict[str, Any], gpu: str = "A40", utilisation: float = UTILISATION,
            utilisation_range: Tuple[float, float] = UTILISATION_RANGE, batch_size: Optional[int] = None,
            train_pairs: Optional[int] = None, epochs: Optional[int] = None,
            precision: Optional[str] = None) -> Dict[str, Any]:
    """Whole-run FLOPs and time on ``gpu`` at ``utilisation`` (model FLOPs utilisation), from a
    cost dict's fits; ``batch_size`` / ``train_pairs`` / ``epochs`` / ``precision`` replace the
    run's. Steps per epoch as :func:`fit` counts them (drop_last when more than one batch)."""
    B = int(batch_size or cost["paper_batch"])
    n = int(train_pairs or cost["data"]["train_pairs_full"])
    E = int(epochs or cost["epochs"])
    g = gpu_class(gpu)
    key = precision_key(precision or cost["precision"])
    peak = getattr(g, key) * 1e12
    batches = n // B if n > B else 1
    per_step = at_batch(cost["flops_fit"], B)
    val = cost["val_flops_per_epoch"]
    fz, d = cost.get("frozen_tower_flops") or {}, cost["data"]
    clips = n * float(d.get("clips_per_pair", 0.0)) + float(d.get("val_clips", 0.0))   # every clip, once
    captions = n * (1.0 if d.get("pairs_mode", "captions") == "captions" else 5.0) + float(d.get("val_captions", 0.0))
    once = float(fz.get("per_clip", 0.0)) * clips + float(fz.get("per_caption", 0.0)) * captions
    total = E * (batches * per_step + val) + once

    def hours(u: float) -> float:
        return total / (peak * u) / 3600

    memory = cost["memory_bytes"]["params_grads_adamw"] + at_batch(cost["activation_fit"], B)
    return {"gpu": g.name, "precision_peak": key, "peak_tflops": getattr(g, key), "batch": B, "train_pairs": n,
            "epochs": E, "batches_per_epoch": batches, "optimizer_steps": E * -(-batches // int(cost.get("grad_accum", 1))),
            "flops_per_step": per_step, "train_flops": E * batches * per_step, "val_flops": E * val,
            "frozen_tower_flops": once,
            "total_flops": total, "utilisation": utilisation, "utilisation_range": list(utilisation_range),
            "gpu_hours": hours(utilisation), "gpu_hours_low": hours(utilisation_range[1]),
            "gpu_hours_high": hours(utilisation_range[0]), "memory_bytes": memory,
            "fits_in_memory": memory <= g.memory_gib * 2 ** 30}


def uncertain_notes(cost: Dict[str, Any]) -> List[str]:
    """Where the projection may be off, in words."""
    notes = [f"utilisation: {UTILISATION:.0%} of the dense peak is assumed (interval "
             f"{UTILISATION_RANGE[0]:.0%}-{UTILISATION_RANGE[1]:.0%}); real runs of small heads or short "
             "sequences reach less",
             "data loading, augmentation, checkpointing and scoring outside the counted matmuls are not timed",
             "FlopCounterMode counts matmuls, convolutions and attention only (element-wise ops, norms and the "
             "optimizer step are left out)",
             "padding: the measured batch is the run's own; batches of other clip lengths cost differently"]
    if cost["device"] == "cpu":
        notes.append("measured on the CPU in float32: activation bytes under fp16/bf16 autocast on a GPU are "
                     "smaller, and GPU kernels may save different tensors")
    if cost["precision"] in ("fp16", "bf16"):
        notes.append("mixed precision: the half-precision tensor-core peak is used for every FLOP, though some "
                     "ops run in float32")
    fit = cost["flops_fit"]
    if fit.get("rel_error") is None:
        notes.append("one batch size measured: FLOPs and activations scaled proportionally, unchecked")
    if cost["data"]["train_pairs"] != cost["data"]["train_pairs_full"]:
        notes.append("this run trained on fewer pairs than the full set; validation sizes scaled by the same ratio")
    if cost["paper_batch"] > 8 * cost["measured"]["batches"][0]["batch"]:
        notes.append("the paper's batch is extrapolated linearly from small measured batches (the batch x batch "
                     "similarity of a contrastive loss grows quadratically, but is small beside the towers)")
    return notes


def write_run_cost(cfg, acc, model: nn.Module, train_in, val_in, loss_fn,
                   train_pairs_full: Optional[int] = None) -> Optional[Dict[str, Any]]:
    """What :func:`atrlib.train.loop.fit` calls after preparing: on the main process, measure and
    write ``<out_dir>/cost.json``; prints one line."""
    from pathlib import Path

    from atrlib.files import write_json

    if not acc.is_main_process:
        return None
    cost = measure_run_cost(cfg, acc.unwrap_model(model), train_in, val_in, loss_fn, acc.device, train_pairs_full)
    write_json(Path(cfg.out_dir) / COST_FILE, cost)
    if cfg.progress or cfg.log_every:
        p = cost["projection"]
        print(f"cost: {cost['flops_per_step'] / 1e9:.3g} GFLOP/step at batch {cost['paper_batch']}, "
              f"{cost['memory_bytes']['total'] / 2 ** 30:.3g} GiB; {p['gpu_hours']:.3g} GPU-hours on one {p['gpu']} "
              f"({p['gpu_hours_low']:.3g}-{p['gpu_hours_high']:.3g}); measured in {cost['measured']['overhead_s']:.3f} s")
    return cost
