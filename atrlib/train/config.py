"""The training config: every setting of one run as a typed dataclass field with its help
string, and the rules its values must keep (checked when a config is built, and by
``atrlib run`` on the parameters a profile gives each stage, before anything runs).

- :class:`TrainConfig` — YAML files, ``key=value`` overrides and notebook parameter cells use
  its field names; ``field_help(TrainConfig)`` lists them.
- :data:`RULES` / :func:`check_values` — numbers and choices (``epochs=abc``, ``epochs=0``,
  ``batch_size=0``, a negative learning rate ...), each error naming the field.
- :func:`typed_value` — a typed-in string as the type a parameter declares (``"no"`` stays a
  string where a string is declared; ``"abc"`` for an int is an error naming the parameter).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from atrlib.config import field_help, option, parse_value
from atrlib.errors import ConfigError, PreflightError


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


# name -> (test, what is expected)
RULES: Dict[str, Tuple[Callable[[Any], bool], str]] = {
    "epochs": (lambda v: _int(v) and v >= 1, "an integer >= 1 (0 only with init_from: score given weights)"),
    "batch_size": (lambda v: _int(v) and v >= 1, "an integer >= 1"),
    "embed_batch_size": (lambda v: _int(v) and v >= 1, "an integer >= 1"),
    "grad_accum": (lambda v: _int(v) and v >= 1, "an integer >= 1"),
    "num_workers": (lambda v: _int(v) and v >= 0, "an integer >= 0"),
    "max_clips": (lambda v: _int(v) and v >= 0, "an integer >= 0 (0 = all clips)"),
    "patience": (lambda v: _int(v) and v >= 0, "an integer >= 0 (0 = off)"),
    "seed": (lambda v: _int(v), "an integer"),
    "log_every": (lambda v: _int(v) and v >= 0, "an integer >= 0"),
    "kfold": (lambda v: _int(v) and (v == 0 or v >= 2), "0 (off) or an integer >= 2"),
    "fast_dev_run": (lambda v: _int(v) and v >= 0, "an integer >= 0 (0 = off; N = N optimiser steps, a dry run)"),
    "fast_dev_batch": (lambda v: _int(v) and v >= 1, "an integer >= 1"),
    "pretrained": (lambda v: isinstance(v, bool), "true or false"),
    "lr": (lambda v: _num(v) and v >= 0, "a number >= 0"),
    "head_lr": (lambda v: _num(v) and v >= 0, "a number >= 0 (0 = lr)"),
    "weight_decay": (lambda v: _num(v) and v >= 0, "a number >= 0"),
    "warmup": (lambda v: _num(v) and v >= 0, "a number >= 0 (a fraction of all steps if < 1, else steps)"),
    "max_grad_norm": (lambda v: _num(v) and v >= 0, "a number >= 0 (0 = off)"),
    "max_audio_seconds": (lambda v: _num(v) and v >= 0, "a number of seconds >= 0 (0 = the model's)"),
    "train_crop_seconds": (lambda v: _num(v) and v >= 0, "a number of seconds >= 0 (0 = off)"),
    "scheduler": (lambda v: v in ("cosine", "plateau", "none"), "one of 'cosine', 'plateau', 'none'"),
    "select_on": (lambda v: v in ("val_mAP@10", "last"), "'val_mAP@10' or 'last'"),
    "pairs": (lambda v: v in ("captions", "clips"), "one of 'captions', 'clips'"),
    "precision": (lambda v: v in ("no", "fp16", "bf16"), "one of 'no', 'fp16', 'bf16'"),
    "device": (lambda v: isinstance(v, str) and (v in ("auto", "cpu", "cuda", "mps") or v.startswith("cuda:")),
               "'auto', 'cpu', 'cuda' or 'cuda:N'"),
    "seeds": (lambda v: isinstance(v, (list, tuple)) and len(v) > 0 and all(_int(x) for x in v),
              "a non-empty list of integers"),
    "top": (lambda v: _int(v) and v >= 1, "an integer >= 1"),
    "n_worst": (lambda v: _int(v) and v >= 0, "an integer >= 0"),
    "n_examples": (lambda v: _int(v) and v >= 0, "an integer >= 0"),
    "on_error": (lambda v: v in ("raise", "skip"), "'raise' or 'skip'"),
}


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'; 'cuda' without one is an error (the
    device of the stages that train outside ``accelerate``: the captioner, the moment head)."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} but no CUDA GPU is visible; use device='auto' or 'cpu'")
    return device


def check_values(values: Mapping[str, Any], where: str = "") -> None:
    """Raise :class:`PreflightError` for the first value in ``values`` that breaks its rule
    in :data:`RULES` (names without a rule are not checked). ``where`` prefixes the message."""
    for name, value in values.items():
        rule = RULES.get(name)
        if rule is not None and not rule[0](value):
            raise PreflightError(f"{where}{name} must be {rule[1]}, got {value!r}")


def typed_value(name: str, text: str, like: Any) -> Any:
    """``text`` typed in for parameter ``name`` whose declared default is ``like``.

    A string parameter gets the text exactly (``"a dog #1 barking"``, ``"no"``); an int, a
    float or a bool must read as one (else :class:`PreflightError` naming the parameter); a
    list or dict is parsed as YAML; a parameter declared ``None`` gets the YAML reading.
    """
    if isinstance(like, str):
        return text
    if isinstance(like, bool):
        t = text.strip().lower()
        if t in ("true", "yes", "on", "1"):
            return True
        if t in ("false", "no", "off", "0"):
            return False
        raise PreflightError(f"{name}={text!r}: expected true or false")
    if isinstance(like, int):
        try:
            return int(text.strip())
        except ValueError:
            v = parse_value(text)
            if _int(v):
                return v
            raise PreflightError(f"{name}={text!r}: expected an integer (like {like!r})") from None
    if isinstance(like, float):
        v = parse_value(text)
        if _num(v):
            return float(v)
        raise PreflightError(f"{name}={text!r}: expected a number (like {like!r})")
    v = parse_value(text)
    if isinstance(like, (list, tuple)) and not isinstance(v, list):
        raise PreflightError(f"{name}={text!r}: expected a list, e.g. [0, 1]")
    if isinstance(like, dict) and not isinstance(v, dict):
        raise PreflightError(f"{name}={text!r}: expected a mapping, e.g. {{key: value}}")
    return v


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
                           "split is unchanged; atrlib.data.splits.make_folds)")
    folds: int = option(5, "k-fold: number of folds of the train+val clips (used when fold >= 0)")
    # model and loss
    model: str = option("synth-stats-minilm", "shipped model config name or a JSON path")
    model_overrides: Dict[str, Any] = option(factory=dict, help="ModelConfig fields to replace, e.g. {embed_dim: 512}")
    pretrained: bool = option(True, "false: towers and heads at full size with random weights, nothing downloaded "
                                    "(with fast_dev_run: a dry run on a machine without the weights)")
    loss: str = option("infonce", "a registered loss name (atrlib.losses.LOSSES)")
    loss_kwargs: Dict[str, Any] = option(factory=dict, help="keywords for the loss, e.g. {margin: 0.2}")
    max_audio_seconds: float = option(0.0, "crop audio to this many seconds (0 = the model config's)")
    train_crop_seconds: float = option(0.0, "trainable audio tower: train on random windows this long (0 = off)")
    mixup_pairs: int = option(0, "mix-up (Samsung pre-training): mixed audio-caption pairs appended to each batch as "
                                 "extra positives, mixed on log-mels and word embeddings; needs trainable towers (0 = off)")
    mixup_alpha: float = option(1.0, "mix-up weights ~ Beta(alpha, alpha)")
    paraphrases: str = option("", "caption augmentation: a file of paraphrases keyed by caption (JSON / CSV, "
                                  "atrlib.train.augment); '' = none")
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
    fast_dev_run: int = option(0, "N > 0: a dry run — N optimiser steps (one epoch, batch min(batch_size, "
                                  "fast_dev_batch)), N batches of validation and test clips, one fold of a k-fold; "
                                  "everything is written as in a real run (atrlib.train.dev_run); 0 = off")
    fast_dev_batch: int = option(2, "fast_dev_run: pairs per step and clips per evaluation batch (the paper's "
                                    "batch_size still sets the cost projection)")
    progress: bool = option(True, "tqdm progress bars")
    log_every: int = option(0, "print the running loss every N steps (0 = only the per-epoch line)")
    report_to: str = option("", "log the run to trackers: tensorboard, wandb, mlflow (comma-separated), 'all' "
                                "(every installed one) or '' (none); atrlib.train.tracking")
    tracking_dir: str = option("", "where tracker files go ('' = <out_dir>/tracking): TensorBoard events, the "
                                   "MLflow file store (unless MLFLOW_TRACKING_URI is set)")
    tracking_group: str = option("", "the group of runs this one belongs to: a sweep, an ablation (W&B group, "
                                     "MLflow experiment, TensorBoard folder); '' = 'atrlib'")
    tracking_run: str = option("", "this run's name in the trackers ('' = the name of out_dir's folder)")
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
