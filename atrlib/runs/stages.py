"""The stage notebooks, in order: the one list that the tour, the index page, the tests and the
profiles' checks read.

A stage is a notebook ``notebooks/<name>.ipynb`` with a ``parameters`` cell; a profile
(:mod:`atrlib.runs.profiles`) says which stages a batch runs and with what. To add a stage:
write the notebook, add a :class:`StageInfo` line here, and list it in the profiles that run it
(``demo.yaml``, ``smoke.yaml``; see ``docs/extending.md``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple


@dataclass(frozen=True)
class StageInfo:
    name: str                 # notebook stem, e.g. "01_data"
    title: str                # what it does, in one line (the tour's table, the index page)
    try_parameters: str       # parameters worth changing first
    needs: Tuple[str, ...] = ()  # stages whose outputs it reads when a profile runs them together


STAGES: Tuple[StageInfo, ...] = (
    StageInfo("00_tour", "the task, the metrics worked out on three clips, the data", "—"),
    StageInfo("01_data", "what is in a split: sizes, captions, words, spectrograms, leakage audit",
              "dataset, split, model"),
    StageInfo("02_train", "train a dual encoder; curves; test metrics of the epoch chosen on validation",
              "model, loss, epochs, lr"),
    StageInfo("03_evaluate", "score one system: metrics with CIs, worst queries by ear, a search box",
              "system, split, query", needs=("02_train",)),
    StageInfo("04_loss_ablation", "every loss × seeds; the best loss chosen on validation, tested on test",
              "losses, seeds"),
    StageInfo("05_ensemble", "combine systems; weights, method and size chosen on validation",
              "systems, norm, kfold", needs=("04_loss_ablation",)),
    StageInfo("06_reproduce", "a seed system's paper numbers beside this run's, with CIs, cost and what was left out",
              "recipe", needs=("05_ensemble",)),
    StageInfo("07_captioning", "caption clips from a run's frozen audio tower (DCASE task 6a): challenge metrics with CIs "
              "against baselines, captions by ear, the caption bridge in the ensembles", "system, features, "
              "finetune_epochs, beam_size", needs=("02_train",)),
    StageInfo("08_moments", "when in a long recording: zero-shot, trained and head moment retrieval against chance, "
              "R1@IoU and mAP with CIs", "head_frames, head_epochs, recordings, system", needs=("02_train",)),
)


def stage_names() -> list[str]:
    """Stage names in order (``["00_tour", "01_data", ...]``)."""
    return [s.name for s in STAGES]


def stage_info(name: str) -> StageInfo:
    """The :class:`StageInfo` of ``name``; KeyError lists the stages."""
    for s in STAGES:
        if s.name == name:
            return s
    raise KeyError(f"unknown stage {name!r}; the stages are {', '.join(stage_names())}")
