"""Huawei Technologies Munich / Universitat Pompeu Fabra, DCASE 2022 task 6b: frozen PANNs CNN14 and
distilroberta with MLP adapters, trained by a pair loss (report:
``huawei_upf2022_frozen_panns_distilroberta.txt``).

Registers itself in :data:`atrlib.recipes.RECIPES` as ``huawei2022``."""
from __future__ import annotations

from atrlib.recipes import RECIPES
from atrlib.recipes.base import _ADAM, _NO_CLIP, Note, Paper, Recipe, Variant, _row

HUAWEI = Recipe(
    name="huawei2022",
    paper=Paper("Aligning audio and text embeddings for the language-based audio retrieval task of the DCASE "
                "challenge 2022", "Huawei Technologies Munich / Universitat Pompeu Fabra",
                "Benno Weck, Miguel Pérez Fernández, Holger Kirchhoff, Xavier Serra", 2022, "DCASE 2022 task 6b",
                "huawei_upf2022_frozen_panns_distilroberta.txt"),
    reported=(
        _row("Challenge baseline", "the DCASE 2022 baseline", "baseline", 0.03, 0.11, 0.19, 0.07,
             cis=[(0.03, 0.04), (0.10, 0.12), (0.18, 0.20), (0.06, 0.07)]),
        _row("ATAE", "Clotho only", "single", 0.071, 0.217, 0.325, 0.136,
             cis=[(0.064, 0.078), (0.206, 0.228), (0.312, 0.337), (0.128, 0.143)]),
        _row("ATAE-ET", "Clotho + FSD50K (noisy) in one training set", "single", 0.064, 0.194, 0.288, 0.121,
             cis=[(0.057, 0.070), (0.184, 0.205), (0.275, 0.300), (0.114, 0.128)]),
        _row("ATAE-EP-F", "ATAE-ET fine-tuned on Clotho", "single", 0.067, 0.200, 0.299, 0.127,
             cis=[(0.061, 0.074), (0.189, 0.210), (0.286, 0.311), (0.120, 0.134)]),
        _row("ATAE-NP-F", "pre-trained on FSD50K only, fine-tuned on Clotho (best)", "single",
             0.072, 0.225, 0.325, 0.139, cis=[(0.065, 0.079), (0.214, 0.236), (0.313, 0.338), (0.131, 0.146)]),
    ),
    single="ATAE", ensemble=None, ensemble_rule="",
    base={"model": "huawei2022", "epochs": 100, "batch_size": 32, "lr": 0.001, "dataset": "clotho"},
    tiny_base={"model": "huawei2022-tiny", "epochs": 2, "batch_size": 16, "dataset": "synth"},
    variants=(
        Variant("atae", {"loss": "pair_loss", "patience": 10, "warmup": 0.0, "scheduler": "none", **_ADAM, **_NO_CLIP},
                stands_for="ATAE"),
        Variant("atae-seed1", {"loss": "pair_loss", "patience": 10, "warmup": 0.0, "scheduler": "none", "seed": 1,
                               **_ADAM, **_NO_CLIP}),
    ),
    kfold=0,
    settings=(
        Note("towers", "frozen PANNs CNN14 (2048-d post-activation penultimate layer, 32 kHz) and frozen "
                       "distilroberta-base (penultimate layer, 768-d, mean over tokens)"),
        Note("adapters", "two-layer perceptrons of 512 units, ReLU after the first layer, on both sides"),
        Note("loss", "pair loss: 1 - s for matching pairs, max(0, s) otherwise, over every audio/text, "
                     "text/text and audio/audio pair; mean of the non-zero terms (pytorch-metric-learning "
                     "ContrastiveLoss: atrlib pair_loss, reduction='separate')"),
        Note("optimiser", "Adam (lr 1e-3, betas 0.9/0.999, eps 1e-8), batch 32, mAP@10 on validation every "
                          "epoch, early stopping after 10 epochs without improvement, best epoch kept"),
        Note("data", "Clotho v2 official splits; ATAE-NP-F pre-trains on 40,966 FSD50K description/tag pairs"),
    ),
    left_out=(
        Note("FSD50K pre-training (ATAE-ET / -EP-F / -NP-F)",
             "needs FSD50K with the Freesound descriptions and tags the authors scraped; the fsd50k loader "
             "reads them from a captions CSV you supply (atrlib.data.fsd50k) — not bundled, so the recipe "
             "reproduces ATAE (Clotho only); the report finds no significant difference between the two"),
    ),
    choices=(
        Note("epochs", "not stated (early stopping only): at most 100 epochs with patience 10"),
        Note("adapter on the text", "the paper averages the adapted token embeddings; the workbench averages the "
                                    "penultimate-layer tokens and then adapts (the MLP is not linear, so the "
                                    "two differ)"),
        Note("text length", "not stated: 64 tokens (Clotho captions have 8-20 words)"),
        Note("second seed", "the paper reports one run; a second seed shows the spread"),
    ),
    order=1,
)

RECIPES.register(HUAWEI.name, HUAWEI)
