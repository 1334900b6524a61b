"""The data types of a recipe (the paper, its reported rows, the trained variants, notes) and
the settings the recipes share. Pure data: no torch, no files read.

Numbers are the reports' own (``../shared/seeds/``, :data:`SEEDS_DIR`), text-to-audio on the
Clotho evaluation split ("development-testing"), as fractions (CAU and Lingban print
percentages; :func:`_row` divides by ``scale``). Confidence intervals are given only where a
report prints them (Huawei/UPF: jackknife 95 %).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

METRICS = ("R@1", "R@5", "R@10", "mAP@10")
SEEDS_DIR = "../shared/seeds"  # the technical reports, relative to the repository root


# ----------------------------------------------------------------------------- the data types
@dataclass(frozen=True)
class Paper:
    title: str       # as printed
    team: str        # affiliation
    authors: str     # as printed
    year: int        # challenge year
    task: str        # DCASE task
    seed_file: str   # the report's text in ../shared/seeds/


@dataclass(frozen=True)
class Score:
    value: float                   # as a fraction
    low: Optional[float] = None    # 95 % CI, where the report gives one
    high: Optional[float] = None

    def text(self) -> str:
        return f"{self.value:.3f}" + (f" ({self.low:.3f}–{self.high:.3f})" if self.low is not None else "")


@dataclass(frozen=True)
class Reported:
    """One row of a report's results table (Clotho evaluation, text-to-audio)."""
    name: str          # the report's label (System 3, ATAE-NP-F, ...)
    description: str   # what it is
    kind: str          # single / ensemble / baseline
    r1: Score
    r5: Score
    r10: Score
    map10: Score

    def scores(self) -> Dict[str, Score]:
        return dict(zip(METRICS, (self.r1, self.r5, self.r10, self.map10)))


def _row(name, description, kind, r1, r5, r10, map10, scale=1.0, cis=None) -> Reported:
    cis = cis or [(None, None)] * 4
    vals = [Score(round(v / scale, 6), *(None if x is None else round(x / scale, 6) for x in ci))
            for v, ci in zip((r1, r5, r10, map10), cis)]
    return Reported(name, description, kind, *vals)


@dataclass(frozen=True)
class Variant:
    """One trained system: a name and the TrainConfig fields that differ from the stage's
    base (``model``, ``epochs``, ``batch_size``, ``lr``, ``dataset`` come from the profile)."""
    name: str
    fields: Dict[str, Any] = field(default_factory=dict)
    tiny_fields: Dict[str, Any] = field(default_factory=dict)  # replaced at size=tiny (models)
    stands_for: str = ""  # the reported system it corresponds to, if any
    in_tiny: bool = True  # also trained by the size=tiny smoke run

    def as_dict(self, tiny: bool = False) -> Dict[str, Any]:
        return {"name": self.name, **self.fields, **(self.tiny_fields if tiny else {})}


@dataclass(frozen=True)
class Note:
    what: str   # a setting or a missing part
    why: str    # the reason / the report's words


@dataclass(frozen=True)
class Recipe:
    name: str
    paper: Paper
    reported: Tuple[Reported, ...]
    single: str                     # the reported system our single run is compared with
    ensemble: Optional[str]         # ... and our ensemble, if the paper had one
    ensemble_rule: str              # how our ensemble is formed: "top-4" (by validation mAP@10), "all"
    base: Dict[str, Any]            # 05_ensemble base settings at full size: model, epochs, batch_size, lr, dataset
    tiny_base: Dict[str, Any]       # ... at size=tiny
    variants: Tuple[Variant, ...]   # the trained systems; the first stands for ``single``
    kfold: int                      # k-fold members of the base model (05_ensemble's kfold), 0 = none
    settings: Tuple[Note, ...]      # the paper's settings in words (towers, losses, optimiser, data)
    left_out: Tuple[Note, ...]      # what this workbench does not do here, and why
    choices: Tuple[Note, ...]       # where the report is silent or contradicts itself: what we chose
    order: int = 100                # place in ``recipe_names()`` (the reports by year); unset: after those, by name

    def reported_system(self, name: str) -> Reported:
        for r in self.reported:
            if r.name == name:
                return r
        raise KeyError(f"{self.name}: no reported system {name!r}; known: {', '.join(r.name for r in self.reported)}")

    @property
    def single_variant(self) -> Variant:
        return self.variants[0]

    def variant_dicts(self, tiny: bool = False) -> List[Dict[str, Any]]:
        return [v.as_dict(tiny) for v in self.variants if v.in_tiny or not tiny]


# ----------------------------------------------------------------------------- shared settings
_ADAM = {"weight_decay": 0.0}  # Adam without weight decay = AdamW with weight_decay 0
_NO_CLIP = {"max_grad_norm": 0.0}
