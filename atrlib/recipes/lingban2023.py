"""Lingban Technology, DCASE 2023 task 6b: frozen BEATs frames and a Q-Former trained by BLIP-2's ATC,
ATM and ATG (report: ``lingban2023_beats_qformer.txt``).

Registers itself in :data:`atrlib.recipes.RECIPES` as ``lingban2023``."""
from __future__ import annotations

from atrlib.recipes import RECIPES
from atrlib.recipes.base import _ADAM, _NO_CLIP, Note, Paper, Recipe, Variant, _row

LINGBAN = Recipe(
    name="lingban2023",
    paper=Paper("Qformer based text audio retrieval system", "Lingban Technology", "Ziye Fan, Fengyun Zhu",
                2023, "DCASE 2023 task 6b", "lingban2023_beats_qformer.txt"),
    reported=(
        _row("Baseline", "the DCASE 2023 baseline", "baseline", 13.0, 34.3, 48.0, 22.2, 100),
        _row("System 1", "not fine-tuned on Clotho, no re-ranking", "single", 14.68, 40.08, 54.22, 25.30, 100),
        _row("System 2", "not fine-tuned, top-16 re-ranking", "single", 15.44, 40.61, 55.14, 26.18, 100),
        _row("System 3", "fine-tuned on Clotho, no re-ranking (best)", "single", 16.02, 40.19, 54.39, 26.47, 100),
        _row("System 4", "fine-tuned, top-16 re-ranking", "single", 14.56, 38.97, 53.26, 25.08, 100),
    ),
    single="System 3", ensemble=None, ensemble_rule="",
    base={"model": "lingban2023", "epochs": 24, "batch_size": 64, "lr": 0.0001, "dataset": "clotho"},
    tiny_base={"model": "lingban2023-tiny", "epochs": 2, "batch_size": 16, "dataset": "synth"},
    variants=(
        Variant("qformer", {"loss": "infonce+atc+atm+atg", "grad_accum": 4, "warmup": 1000.0, "scheduler": "cosine",
                            **_ADAM, **_NO_CLIP}, stands_for="System 3"),
        Variant("qformer-seed1", {"loss": "infonce+atc+atm+atg", "grad_accum": 4, "warmup": 1000.0,
                                  "scheduler": "cosine", "seed": 1, **_ADAM, **_NO_CLIP}),
    ),
    kfold=0,
    settings=(
        Note("towers", "frozen BEATs iter3+ (AS2M) frame features (16 kHz, 768-d every 160 ms x 8 bands); a "
                       "Q-Former (bert-base initialised, learnable queries, cross-attention to the frames)"),
        Note("losses", "BLIP-2's three: audio-text contrastive (ATC), matching with hard negatives (ATM), "
                       "audio-grounded text generation (ATG)"),
        Note("optimiser", "Adam lr 1e-4, 1,000 linear warm-up steps, cosine annealing with a period of 1,800 "
                          "steps, batch 256 = 16 per GPU x 4 GPUs x 4 accumulation; fine-tuning on Clotho at 1e-5"),
        Note("data", "AudioCaps + Clotho development and validation pooled, 1,000 held out for validation; "
                     "training crops of 512 frames (10.24 s)"),
        Note("re-ranking", "optionally the ATM head re-orders each query's top 16"),
    ),
    left_out=(
        Note("AudioCaps pre-training and the 1e-5 fine-tuning stage", "AudioCaps is not bundled (atrlib.data."
             "audiocaps reads it); on Clotho alone both stages see the same data, so one stage at 1e-4 is run"),
        Note("retrieval through the Q-Former", "the workbench retrieves with the dual encoder (BEATs frames "
             "pooled + a bert-base text tower, trained by InfoNCE alongside ATC/ATM/ATG); the Q-Former's ATC "
             "embeddings are not used for scoring"),
        Note("top-16 re-ranking", "System 3 (the best) did not re-rank; `python -m atrlib evaluate --rerank 16` "
                                  "re-ranks a trained run with its ATM head"),
    ),
    choices=(
        Note("queries", "not given: 32 (BLIP-2's)"),
        Note("contrastive batch", "batch 64 per step (16 per GPU x 4 GPUs, gathered as BLIP-2 does) with 4 "
                                  "accumulation steps = 256 per optimiser step"),
        Note("epochs", "not given: 24 epochs = about 1,800 optimiser steps on Clotho development at 256 per step, "
                       "one cosine period (TrainConfig's cosine decays once over the run, no restarts)"),
        Note("weight decay", "Adam is named, none given: 0"),
    ),
    order=4,
)

RECIPES.register(LINGBAN.name, LINGBAN)
