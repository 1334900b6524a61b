"""Runs logged to the tracker a researcher uses, through ``accelerate``'s trackers.

``report_to`` (a TrainConfig field, a notebook parameter, a sweep parameter) names one or more of
``tensorboard`` (local event files), ``wandb`` (Weights & Biases; ``WANDB_MODE=offline`` works
without a network) and ``mlflow`` (a local SQLite store by default, or ``MLFLOW_TRACKING_URI``).
Metric names are the history's with '@' spelled ``_at_`` (MLflow refuses '@'): ``val_mAP_at_10``.
Logged: the config (flattened), every epoch's losses and validation metrics, the final test
metrics with their 95 % intervals, and the run folder's path. ``tracking_group`` puts the runs of
one sweep (or one ablation) into one group: the W&B group, the MLflow experiment, the
TensorBoard sub-folder.

Where the files go: ``tracking_dir`` (default ``<out_dir>/tracking``): TensorBoard writes
``<tracking_dir>/<group>/<run>/events.*``; MLflow, unless ``MLFLOW_TRACKING_URI`` is set, the
store ``<tracking_dir>/mlflow.db``. Open them with ``tensorboard --logdir <tracking_dir>`` and
``mlflow ui --backend-store-uri sqlite:///<tracking_dir>/mlflow.db``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

TRACKERS = ("tensorboard", "wandb", "mlflow")
_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow-skinny"}


def parse_report_to(value: str) -> List[str]:
    """``"tensorboard,mlflow"`` -> ``["tensorboard", "mlflow"]``; ``""`` / ``"none"`` -> [];
    ``"all"`` -> every tracker whose package is installed. Unknown names are an error."""
    from atrlib.errors import ConfigError

    names = [x.strip().lower() for x in str(value or "").replace(";", ",").split(",") if x.strip()]
    if names in ([], ["none"]):
        return []
    if names == ["all"]:
        return [t for t in TRACKERS if _installed(t)]
    bad = [n for n in names if n not in TRACKERS]
    if bad:
        raise ConfigError(f"report_to: unknown tracker(s) {', '.join(bad)}; use {', '.join(TRACKERS)} (comma-separated), "
                          "'all' or ''")
    missing = [n for n in names if not _installed(n)]
    if missing:
        raise ConfigError(f"report_to={value!r}: {', '.join(missing)} is not installed; pip install "
                          + " ".join(_PACKAGES[m] for m in missing))
    return list(dict.fromkeys(names))


def _installed(tracker: str) -> bool:
    import importlib.util

    return importlib.util.find_spec("mlflow" if tracker == "mlflow" else tracker) is not None


def tracking_dir(cfg) -> Path:
    return Path(cfg.tracking_dir) if getattr(cfg, "tracking_dir", "") else Path(cfg.out_dir) / "tracking"


def flat_config(d: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """Trackers take flat scalar configs: nested dicts joined with '.', lists as text."""
    out: Dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if k.startswith("_"):
            continue
        if isinstance(v, Mapping):
            out.update(flat_config(v, key + "."))
        elif isinstance(v, (bool, int, float, str)) or v is None:
            out[key] = "" if v is None else v
        else:
            out[key] = str(v)
    return out


_OUR_URIS: set = set()


def accelerator_kwargs(cfg) -> Dict[str, Any]:
    """``log_with`` (accelerate tracker objects, named and placed as the module docstring says)
    and ``project_dir`` for :class:`accelerate.Accelerator`; {} when nothing is tracked."""
    names = parse_report_to(getattr(cfg, "report_to", ""))
    if not names:
        return {}
    from accelerate.tracking import MLflowTracker, TensorBoardTracker, WandBTracker

    where = tracking_dir(cfg)  # created by the trackers when they start (after the run folder is checked)
    group = getattr(cfg, "tracking_group", "") or "atrlib"
    run = getattr(cfg, "tracking_run", "") or Path(cfg.out_dir).name or "run"
    made = []
    for name in names:
        if name == "tensorboard":
            made.append(TensorBoardTracker(f"{group}/{run}", str(where)))
        elif name == "mlflow":
            os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # offline: no usage reports
            uri = os.environ.get("MLFLOW_TRACKING_URI")
            if not uri or uri in _OUR_URIS:  # the user's own URI wins; one we set for an earlier run does not
                import mlflow

                where.mkdir(parents=True, exist_ok=True)
                uri = f"sqlite:///{(where / 'mlflow.db').resolve()}"  # a local store, one file
                _OUR_URIS.add(uri)
                mlflow.set_tracking_uri(uri)  # (mlflow also puts it into MLFLOW_TRACKING_URI)
            made.append(MLflowTracker(experiment_name=group, run_name=run))
        elif name == "wandb":
            made.append(WandBTracker("atrlib", group=group, name=run, dir=str(where)))
    return {"log_with": made, "project_dir": str(where)}


_OPEN: Dict[str, Any] = {}  # run folder -> the Accelerator whose trackers are still open


def start(acc, cfg) -> bool:
    """Start the run in every tracker with the config and the run folder (main process only);
    False when nothing is tracked. The trackers stay open for :func:`finish` (the test metrics)."""
    if not getattr(acc, "log_with", None):
        return False
    acc.init_trackers(getattr(cfg, "tracking_group", "") or "atrlib",
                      config={**flat_config(cfg.to_dict()), "run_dir": str(Path(cfg.out_dir).resolve())})
    _OPEN[str(Path(cfg.out_dir).resolve())] = acc
    return True


def finish(cfg, metrics: Mapping[str, Any]) -> None:
    """Log the final metrics (test with interval bounds, best validation) of ``cfg``'s run and
    close its trackers; nothing when the run was not tracked."""
    acc = _OPEN.pop(str(Path(cfg.out_dir).resolve()), None)
    if acc is None:
        return
    log_final(acc, metrics)
    acc.end_training()


def metric_name(key: str) -> str:
    """A metric's name as every tracker accepts it: ``val_mAP@10`` -> ``val_mAP_at_10`` (MLflow
    refuses '@'); one spelling in all trackers."""
    return key.replace("@", "_at_")


def numbers(entry: Mapping[str, Any], prefix: str = "") -> Dict[str, float]:
    """The numeric values of a history entry or a metrics dict (nested keys joined with '/',
    names by :func:`metric_name`)."""
    out: Dict[str, float] = {}
    for k, v in entry.items():
        if isinstance(v, Mapping):
            out.update(numbers(v, f"{prefix}{k}/"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and v == v:
            out[metric_name(f"{prefix}{k}")] = float(v)
    return out


def log_epoch(acc, entry: Mapping[str, Any]) -> None:
    acc.log(numbers({k: v for k, v in entry.items() if k != "epoch"}), step=int(entry["epoch"]))


def log_final(acc, metrics: Mapping[str, Any], step: Optional[int] = None) -> None:
    """The test (and validation) metrics of the chosen checkpoint, with their interval bounds."""
    keep = {k: metrics[k] for k in ("test", "val", "best_val_mAP@10", "epochs_run") if k in metrics}
    acc.log({f"final/{k}": v for k, v in numbers(keep).items()}, step=step)
