"""``python -m atrlib train --config FILE.yaml [key=value ...]`` — exactly what notebook 02
does (:func:`atrlib.training.run_training`), so ``accelerate launch -m atrlib train ...``
scales the same run out to several GPUs.

The YAML holds :class:`~atrlib.training.TrainConfig` fields; ``key=value`` overrides are
parsed as YAML scalars (``epochs=3`` is an int, ``lr=1e-3`` a float). Unknown keys are an
error that lists the known ones.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Dict, List

import yaml

from atrlib.config import parse_value

def build_config(config: str | None, overrides: List[str]):
    from atrlib.training import TrainConfig

    d: Dict[str, Any] = {}
    if config:
        p = Path(config)
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such config file")
        d = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        if not isinstance(d, dict):
            raise ValueError(f"{p}: expected a mapping of TrainConfig fields")
    for ov in overrides:
        if "=" not in ov:
            raise ValueError(f"override {ov!r} is not key=value")
        k, v = ov.split("=", 1)
        d[k.strip()] = parse_value(v)
    return TrainConfig.from_dict(d)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from atrlib.config import field_help
    from atrlib.training import TrainConfig

    p.add_argument("--config", help="YAML file of TrainConfig fields")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. epochs=3 lr=1e-3 device=cpu")
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = "TrainConfig fields (YAML keys and key=value overrides):\n" + "\n".join(
        f"  {k:<20} {h}" for k, h in field_help(TrainConfig).items() if not k.startswith("_"))


def main(args) -> int:
    """1. config from YAML + overrides, 2. data, model, fit, test scores (run_training),
    3. a one-line summary. Returns 0, or 2 for a bad config."""
    import sys

    from atrlib.training import run_training

    try:
        cfg = build_config(args.config, args.overrides)
    except (ValueError, FileNotFoundError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result = run_training(cfg)
    m = result["metrics"]
    if "test" in m:
        t = m["test"]["t2a"]
        print(f"test t2a: mAP@10 {t['mAP@10']:.4f}  R@1 {t['R@1']:.4f}  R@10 {t['R@10']:.4f}  -> {cfg.out_dir}")
    return 0
