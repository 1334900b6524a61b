"""``fast_dev_run=N`` (PyTorch Lightning's name and meaning): a dry run that finds the bugs in
minutes before hours are booked on a GPU.

A run with ``fast_dev_run=N`` takes every path a real run takes — data, towers at their full
configured size, loss, optimiser and schedule, checkpoints, validation, test scoring,
``metrics.json``, ``cost.json``, the trackers — but only:

- N optimiser steps (one epoch, no gradient accumulation) at a small batch
  (``min(batch_size, fast_dev_batch)``: the paper's batch goes into the cost projection, not
  into the CPU's memory);
- the first N batches of training clips, and N batches (of ``fast_dev_batch`` clips) of the
  validation and test splits;
- one fold of a k-fold (:func:`folds_to_train`).

Its numbers mean nothing (it says so in ``metrics.json``); what it proves is that the run
goes through. Checkpoints are written as in a real run, then ``last/`` (weights and optimizer
state: about four times the weights on disk) is removed at the end; ``best/`` stays for the
stages after. With ``pretrained=False`` the towers are built with random weights, so nothing is
downloaded (:mod:`atrlib.models.offline_hf`).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Dict

NOTE = ("fast_dev_run: a dry run of {n} optimiser step(s) on a few clips; its metrics only show that every "
        "stage runs and mean nothing about the method")


def dev_run_config(cfg):
    """The settings the loop runs with under ``cfg.fast_dev_run`` (``cfg`` itself when off):
    one epoch, a small batch, no accumulation, no early stopping."""
    if not cfg.fast_dev_run:
        return cfg
    small = max(1, min(cfg.batch_size, cfg.fast_dev_batch))
    return replace(cfg, epochs=1, batch_size=small, grad_accum=1, patience=0,
                   embed_batch_size=max(1, min(cfg.embed_batch_size, cfg.fast_dev_batch)))


def pair_count(ds, pairs: str = "captions") -> int:
    """Training pairs per epoch of ``ds``: every caption-clip pair, or one per clip."""
    return len(ds.caption_clip_index()) if pairs == "captions" else len(ds)


def dev_run_data(data: Dict[str, Any], cfg) -> Dict[str, Any]:
    """The first clips of each split that N batches need: N x the small batch of training clips
    (each clip has at least one caption, so N full batches), N x ``fast_dev_batch`` clips of
    validation and test. ``data`` unchanged when ``fast_dev_run`` is 0."""
    if not cfg.fast_dev_run:
        return data
    return dev_run_splits(data, cfg.fast_dev_run, dev_run_config(cfg).batch_size, cfg.fast_dev_batch)


def dev_run_splits(splits: Dict[str, Any], n: int, batch: int = 2, eval_batch: int = 2) -> Dict[str, Any]:
    """``splits`` (role -> dataset) cut for a dry run of ``n`` batches: ``n * batch + 1`` training
    clips (one more, so drop_last keeps n full batches), ``n * eval_batch`` clips of the others;
    unchanged when ``n`` is 0."""
    if not n:
        return splits
    want = {"train": n * batch + (1 if n * batch > 1 else 0)}
    return {k: ds.subset(want.get(k, n * max(1, eval_batch))) for k, ds in splits.items()}


def folds_to_train(k: int, cfg) -> range:
    """The k-fold members a run trains: all ``k``, or the first only under ``fast_dev_run``."""
    return range(1 if cfg.fast_dev_run else k)


def eval_clips(max_clips: int, fast_dev_run: int, batch: int = 2) -> int:
    """Clips an evaluation stage (03) scores: ``max_clips`` (0 = all), or under ``fast_dev_run``
    N batches of ``batch`` clips (fewer when ``max_clips`` is smaller)."""
    if not fast_dev_run:
        return max_clips
    n = fast_dev_run * max(1, batch)
    return min(max_clips, n) if max_clips else n


def dev_run_counts(counts, fast_dev_run: int):
    """Per-split counts (08's recordings) under ``fast_dev_run``: at most N each; unchanged when off."""
    return list(counts) if not fast_dev_run else [min(int(c), fast_dev_run) for c in counts]
