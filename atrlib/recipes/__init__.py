"""The five seed systems and the DCASE 2025 baseline as named recipes: the paper, its reported numbers, the settings, what
the workbench leaves out and why — pure data, one module per system, plus the helpers of the
reproduction report.

    base.py          the data types (Paper, Reported, Variant, Note, Recipe), METRICS, shared settings
    huawei2022.py    Huawei / UPF, DCASE 2022: frozen PANNs + distilroberta, pair loss
    cau2023.py       Chung-Ang University, DCASE 2023: PANNs x Sentence-BERT under six losses, ensembled
    xiaomi2023.py    Xiaomi, DCASE 2023: CLAP and CLAP-TAG on a 9:1 re-split, the 4 best ensembled
    lingban2023.py   Lingban, DCASE 2023: frozen BEATs and a Q-Former (ATC / ATM / ATG)
    samsung2024.py   Samsung Research China-Nanjing, DCASE 2024: BEATs + BERT, A-CML / MLML, k-fold ensemble
    dcase2025_baseline.py  CP-JKU, the DCASE 2025 task 6 baseline: PaSST + RoBERTa-large, InfoNCE, both protocols
    reproduce.py     a recipe's TrainConfig and batch profile; the 06_reproduce tables, cost and text

The registry fills itself on first use by importing every module of this package and the
``atrlib.recipes`` entry points (each seed module registers its recipe), so

    r = get_recipe("samsung2024")
    r.reported_system("System 6").map10.value     # 0.37, as the technical report prints it

works after ``from atrlib.recipes import get_recipe`` alone; ``recipe_names()`` lists them in
the reports' order (by year, :attr:`~atrlib.recipes.base.Recipe.order`).

Each recipe has a batch profile ``notebooks/params/<name>.yaml`` (GPU on Clotho:
``python -m atrlib run --profile <name> -p root=/data/clotho``; CPU smoke at tiny size:
``-p size=tiny``). Where a paper had one system, two seeds are trained: the second is the seed
spread the paper does not report.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, List

from atrlib.registry import Registry

if TYPE_CHECKING:
    from atrlib.recipes.base import Recipe

RECIPES: Registry = Registry("recipe", package="atrlib.recipes", entry_point="atrlib.recipes")


def recipe_names() -> List[str]:
    """Every registered recipe, in the reports' order (``Recipe.order``, then the name)."""
    return sorted(RECIPES.names(), key=lambda n: (RECIPES.get(n).order, n))


def get_recipe(name: str) -> Recipe:
    names = recipe_names()
    if name not in names:
        raise KeyError(f"unknown recipe {name!r}; known: {', '.join(names)}")
    return RECIPES.get(name)


__all__ = ["RECIPES", "get_recipe", "recipe_names"]
