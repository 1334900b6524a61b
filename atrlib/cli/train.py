"""``python -m atrlib train --config FILE.yaml [key=value ...]`` — exactly what notebook 02
does (:func:`atrlib.train.loop.run_training`), so ``accelerate launch -m atrlib train ...``
scales the same run out to several GPUs.

The YAML holds :class:`~atrlib.train.config.TrainConfig` fields; ``key=value`` overrides take
the type of the field they set (``epochs=3`` is an int, ``lr=1e-3`` a float, ``root=no`` the
string "no"; ``epochs=abc`` is an error naming ``epochs``). Unknown keys are an error that
lists the known ones. Values are checked before any data is read; an ``out_dir`` that holds
a run is refused unless ``resume=true`` (same configuration) or ``--overwrite``, which moves
only an earlier training run aside — never the dataset, the config, ``init_from`` or a folder of
the user's own (:func:`atrlib.files.check_output`). An empty ``out_dir`` is refused (it would
mean the current folder); leave it out for the default ``runs/train``.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Dict, List

import yaml

from atrlib.cli import report
from atrlib.config import parse_value
from atrlib.errors import PreflightError
from atrlib.train.config import typed_value


def build_config(config: str | None, overrides: List[str]):
    from atrlib.train.config import TrainConfig

    from dataclasses import MISSING, fields

    defaults = {f.name: (f.default if f.default is not MISSING else f.default_factory()) for f in fields(TrainConfig)}
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
        k = k.strip()
        d[k] = typed_value(k, v, defaults[k]) if k in defaults else parse_value(v)
    if "out_dir" in d and (d["out_dir"] is None or not str(d["out_dir"]).strip()):
        raise PreflightError(f"out_dir is empty{f' in {config}' if config else ''}; that would train into the current "
                             f"folder. Name a folder (out_dir=runs/my-run), or leave out_dir out for the default "
                             f"{defaults['out_dir']}")
    return TrainConfig.from_dict(d)


def check_out_dir(cfg, config: str | None = None) -> None:
    """Before any data is read: ``cfg.out_dir`` may receive a training run. An existing folder
    must hold an earlier training run (resumed, or moved aside with ``overwrite``); a folder
    of the user's own, another command's result or an input of the training is refused."""
    from atrlib.files import check_output, output_kind

    if cfg.resume and output_kind(cfg.out_dir) == "training":
        return  # prepare_out_dir checks that the configuration is unchanged
    check_output(cfg.out_dir, "training", cfg.overwrite, inputs=[cfg.root, cfg.init_from, config, cfg.paraphrases],
                 what="out_dir", error=PreflightError, also=", resume=true to continue it")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from atrlib.config import field_help
    from atrlib.train.config import TrainConfig

    p.add_argument("--config", help="YAML file of TrainConfig fields")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. epochs=3 lr=1e-3 device=cpu")
    p.add_argument("--overwrite", action="store_true", help="move an out_dir holding a run aside (<out_dir>.prev-<time>)")
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = "TrainConfig fields (YAML keys and key=value overrides):\n" + "\n".join(
        f"  {k:<20} {h}" for k, h in field_help(TrainConfig).items() if not k.startswith("_"))


def main(args) -> int:
    """1. config from YAML + overrides, 2. data, model, fit, test scores (run_training),
    3. a one-line summary. Returns 0, or 2 for a bad config."""
    import sys

    from dataclasses import replace

    from atrlib.errors import DiskWriteError
    from atrlib.train.loop import run_training

    try:
        cfg = build_config(args.config, args.overrides)
        if getattr(args, "overwrite", False):
            cfg = replace(cfg, overwrite=True)
    except (ValueError, FileNotFoundError, TypeError) as e:
        print(report(e), file=sys.stderr)
        return 2
    try:
        from atrlib.train.preflight import prepare_out_dir

        check_out_dir(cfg, args.config)
        prepare_out_dir(cfg)  # before any data is read: refuse / move aside an earlier run
        result = run_training(cfg)
    except (PreflightError, DiskWriteError) as e:  # a full disk or read-only place is the user's to fix: exit 2
        print(report(e), file=sys.stderr)
        return 2
    m = result["metrics"]
    if "test" in m:
        t = m["test"]["t2a"]
        print(f"test t2a: mAP@10 {t['mAP@10']:.4f}  R@1 {t['R@1']:.4f}  R@10 {t['R@10']:.4f}  -> {cfg.out_dir}")
    return 0
