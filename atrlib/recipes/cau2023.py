"""Chung-Ang University, DCASE 2023 task 6b: PANNs towers x Sentence-BERT under six losses (seven
tower/loss pairs) and their ensemble (report: ``cau2023_panns_sbert_losses.txt``).

Registers itself in :data:`atrlib.recipes.RECIPES` as ``cau2023``."""
from __future__ import annotations

from atrlib.recipes import RECIPES
from atrlib.recipes.base import _ADAM, _NO_CLIP, Note, Paper, Recipe, Variant, _row

_CAU_FIELDS = {"scheduler": "plateau", "warmup": 0.0, **_ADAM, **_NO_CLIP}
CAU = Recipe(
    name="cau2023",
    paper=Paper("Text-to-audio retrieval: ensemble combinations of the models", "Chung-Ang University",
                "Jiwon Park, SangJe Park, Changwon Lim", 2023, "DCASE 2023 task 6b",
                "cau2023_panns_sbert_losses.txt"),
    reported=(
        _row("CNN14 + SBERT, triplet-weighted", "best single system", "single", 13.86, 36.08, 49.24, 23.54, 100),
        _row("CNN14 + SBERT, triplet-max", "", "single", 13.74, 35.25, 48.44, 23.00, 100),
        _row("CNN14 + SBERT, NT-Xent", "", "single", 13.40, 35.29, 48.61, 22.87, 100),
        _row("CNN14 + SBERT, InfoNCE + VICReg", "", "single", 10.58, 30.62, 43.29, 19.30, 100),
        _row("ResNet38 + SBERT, triplet-weighted", "", "single", 13.21, 34.11, 47.14, 22.33, 100),
        _row("ResNet38 + SBERT, NT-Xent", "", "single", 12.38, 33.88, 46.49, 21.56, 100),
        _row("WLCNN14 + SBERT, triplet-weighted", "", "single", 11.87, 33.42, 46.35, 21.31, 100),
        _row("Ensemble", "ensemble of 2-5 of the systems above (which one is not said)", "ensemble",
             14.74, 37.59, 50.68, 24.46, 100),
    ),
    single="CNN14 + SBERT, triplet-weighted", ensemble="Ensemble", ensemble_rule="top-5",
    base={"model": "cau2023-cnn14", "epochs": 20, "batch_size": 96, "lr": 0.0001, "dataset": "clotho"},
    tiny_base={"model": "cau2023-cnn14-tiny", "epochs": 2, "batch_size": 16, "dataset": "synth"},
    variants=tuple(
        Variant(name, {"loss": loss, **_CAU_FIELDS, **({"model": f"cau2023-{arch}"} if arch != "cnn14" else {})},
                {"model": f"cau2023-{arch}-tiny"} if arch != "cnn14" else {}, stands_for=label)
        for name, arch, loss, label in (
            ("cnn14-triplet-weighted", "cnn14", "triplet_weighted", "CNN14 + SBERT, triplet-weighted"),
            ("cnn14-triplet-max", "cnn14", "triplet_max", "CNN14 + SBERT, triplet-max"),
            ("cnn14-ntxent", "cnn14", "ntxent_mei", "CNN14 + SBERT, NT-Xent"),
            ("cnn14-infonce-vicreg", "cnn14", "infonce+vicreg", "CNN14 + SBERT, InfoNCE + VICReg"),
            ("resnet38-triplet-weighted", "resnet38", "triplet_weighted", "ResNet38 + SBERT, triplet-weighted"),
            ("resnet38-ntxent", "resnet38", "ntxent_mei", "ResNet38 + SBERT, NT-Xent"),
            ("wavegram-triplet-weighted", "wavegram", "triplet_weighted", "WLCNN14 + SBERT, triplet-weighted"),
        )),
    kfold=0,
    settings=(
        Note("towers", "PANNs CNN14, ResNet38 or Wavegram-Logmel-CNN14 (32 kHz, window 1024, 64 mel bins) x "
                       "Sentence-BERT; most layers frozen, the projectors trained"),
        Note("losses", "triplet-sum, triplet-max, triplet-weighted, NT-Xent (Mei et al.'s: atrlib ntxent_mei), "
                       "InfoNCE, VICReg; Table 1 reports seven tower/loss pairs"),
        Note("optimiser", "Adam, lr 1e-4, ReduceLROnPlateau, 20 epochs, batch 96, several seeds, SpecAugment"),
        Note("ensembles", "of 2, 3, 4 and 5 systems (same or different towers and losses)"),
    ),
    left_out=(
        Note("SpecAugment", "the towers are frozen, so their outputs are computed once and cached: masks on the "
                            "log-mels would need the tower re-run every step"),
        Note("triplet-sum and plain InfoNCE / VICReg runs", "trained by the authors but not in Table 1; "
                                                             "04_loss_ablation runs them"),
    ),
    choices=(
        Note("which layers train", "the abstract says the encoders were fine-tuned, the conclusion that 'most "
                                   "layers except the projector' were frozen: frozen towers, trained projectors"),
        Note("Sentence-BERT checkpoint", "not named: all-mpnet-base-v2 (the mpnet text tower)"),
        Note("projector", "not described: 2-layer MLP (512 hidden) into 1024 dimensions"),
        Note("ReduceLROnPlateau settings", "not given: halve the lr after 2 epochs without a better validation "
                                           "mAP@10 (TrainConfig scheduler='plateau')"),
        Note("ensemble", "which of the four submitted ensembles the 0.2446 row is, and how members were chosen, "
                         "is not said: equal weights on the 5 best systems by validation mAP@10"),
        Note("early stopping", "not mentioned: none, the best validation epoch is kept"),
    ),
    order=2,
)

RECIPES.register(CAU.name, CAU)
