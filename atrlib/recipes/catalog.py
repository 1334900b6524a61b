"""The five seed systems as named recipes: the paper, its reported numbers, the settings, what
the workbench leaves out and why — pure data, plus the helpers of the reproduction report.

    r = get_recipe("samsung2024")
    r.reported_system("System 6").map10.value     # 0.37, as the technical report prints it
    cfg = train_config(r)                           # the paper's settings as a TrainConfig
    table = reproduction_table(r, "reports/samsung2024")   # paper vs this run, with CIs

Each recipe has a batch profile ``notebooks/params/<name>.yaml`` (GPU on Clotho:
``python -m atrlib run --profile <name> -p root=/data/clotho``; CPU smoke at tiny size:
``-p size=tiny``). Every system a recipe trains is a *variant* of the ``05_ensemble`` stage —
that stage takes every :class:`~atrlib.train.config.TrainConfig` field per variant, so optimiser,
warm-up, schedule, weight decay, clipping and accumulation are the paper's — stored in
``<run>/05_ensemble/variants/<name>/``; ``06_reproduce`` reads them back. Where a paper had
one system, two seeds are trained: the second is the seed spread the paper does not report.

Numbers are the reports' own (``../shared/seeds/``), text-to-audio on the Clotho evaluation
split ("development-testing"), as fractions (CAU and Lingban print percentages). Confidence
intervals are given only where a report prints them (Huawei/UPF: jackknife 95 %).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

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


# ----------------------------------------------------------------------------- the five recipes
_ADAM = {"weight_decay": 0.0}  # Adam without weight decay = AdamW with weight_decay 0
_NO_CLIP = {"max_grad_norm": 0.0}

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
)

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
)

_XIAOMI_FIELDS = {"warmup": 0.05, "scheduler": "cosine", **_ADAM, **_NO_CLIP}  # 1 epoch of 20
_TEACHER = {"tag_msle": {"teacher": "copy"}, "tag_mae": {"teacher": "copy"}}  # the tower as training starts
XIAOMI = Recipe(
    name="xiaomi2023",
    paper=Paper("Leveraging multi-task training and image retrieval with CLAP for audio captioning",
                "Xiaomi Corporation", "Haoran Sun, Zhiyong Yan, Yongqing Wang, Heinrich Dinkel, Junbo Zhang, "
                "Yujun Wang", 2023, "DCASE 2023 task 6 (b: retrieval)", "xiaomi2023_clap_claip_tag.txt"),
    reported=(
        _row("Baseline", "the DCASE 2023 baseline", "baseline", 0.130, 0.343, 0.480, 0.222),
        _row("System1", "ensemble of the 4 best models by mAP@10", "ensemble", 0.213, 0.465, 0.603, 0.321),
        _row("System2", "ensemble of the 4 best models by R@10", "ensemble", 0.196, 0.453, 0.585, 0.305),
        _row("System3", "ensemble of the 10 best models by mAP@10", "ensemble", 0.206, 0.461, 0.600, 0.316),
        _row("System4", "best single model (CLA-IP pre-trained, fine-tuned)", "single", 0.185, 0.433, 0.567, 0.293),
    ),
    single="System4", ensemble="System1", ensemble_rule="top-4",
    base={"model": "xiaomi2023", "epochs": 20, "batch_size": 128, "lr": 0.0001, "dataset": "clotho-resplit"},
    tiny_base={"model": "xiaomi2023-tiny", "epochs": 2, "batch_size": 16, "dataset": "synth-resplit"},
    variants=tuple(
        [Variant(f"clap-seed{s}", {"loss": "infonce", "seed": s, **_XIAOMI_FIELDS},
                 stands_for="System4" if s == 0 else "", in_tiny=s < 3) for s in range(4)]
        + [Variant(f"clap-tag-msle-seed{s}", {"loss": "infonce+tag_msle", "seed": s, **_XIAOMI_FIELDS,
                                               "loss_kwargs": {"tag_msle": _TEACHER["tag_msle"]}}, in_tiny=s == 0)
           for s in range(3)]
        + [Variant(f"clap-tag-mae-seed{s}", {"loss": "infonce+tag_mae", "seed": s, **_XIAOMI_FIELDS,
                                              "loss_kwargs": {"tag_mae": _TEACHER["tag_mae"]}}, in_tiny=s == 0)
           for s in range(3)]),
    kfold=0,
    settings=(
        Note("towers", "CNN14 (PANNs) + BERT, trained end to end (the SJTU 2022 architecture), cosine similarity"),
        Note("loss", "symmetric InfoNCE (CLAP); CLAP-TAG adds lambda x MSLE or MAE between the trained tower's "
                     "AudioSet tag scores and the frozen pre-trained tower's; CLA-IP adds an image-text InfoNCE "
                     "over stable-diffusion images of the captions"),
        Note("optimiser", "Adam, 20 epochs, batch 128, linear warm-up for one epoch, then cosine; max lr 1e-4 "
                          "in pre-training, 2e-5 in fine-tuning"),
        Note("data", "Clotho development + validation re-split 9:1 (4,395 / 489 clips); pre-training on Clotho, "
                     "AudioCaps, MACS and WavCaps' FreeSound part"),
        Note("ensembles", "the 4 (System1) or 10 (System3) best models by mAP@10"),
    ),
    left_out=(
        Note("pre-training on AudioCaps, MACS, WavCaps", "the loaders exist (atrlib.data: audiocaps, macs, wavcaps, "
             "mixture) but the corpora are not bundled; the recipe trains on Clotho only, once, at the "
             "pre-training lr 1e-4 (from PANNs and BERT weights, as the pre-training stage started)"),
        Note("CLA-IP", "needs CLIP embeddings of stable-diffusion images of every caption "
                       "(loss 'infonce+claip' with loss_kwargs={'claip': {'path': ...}}); none are available"),
        Note("the captioning sub-system", "task 6a, not retrieval"),
    ),
    choices=(
        Note("lambda of CLAP-TAG", "not given: 1 (an equal weight with InfoNCE)"),
        Note("CLAP-TAG teacher", "'the pre-trained encoder': a frozen copy of the audio tower as training starts "
                                 "(the PANNs weights; teacher='copy')"),
        Note("tiny run", "5 of the 10 models (3 CLAP, 1 MSLE, 1 MAE) to keep the smoke test short"),
        Note("selection set", "section 3.2 says the ensembles were chosen on the evaluation set, section 4.1 on "
                              "the development set: chosen on our validation split (489 clips), never on test"),
        Note("number and mix of models", "not given: 4 CLAP seeds, 3 CLAP-TAG (MSLE) and 3 CLAP-TAG (MAE), so "
                                         "top-4 and top-10 can both be formed"),
        Note("single system", "System4 is a CLA-IP model with pre-training; ours is a plain CLAP run on Clotho"),
    ),
)

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
)

_SAMSUNG_FIELDS = {"loss": "infonce+acml+mlml", "weight_decay": 2e-5, "warmup": 1 / 18, "scheduler": "cosine",
                   **_NO_CLIP}
SAMSUNG = Recipe(
    name="samsung2024",
    paper=Paper("DCASE 2024 challenge task 8 technical report", "Samsung Research China-Nanjing",
                "Minjun Chen, Yangyang Liu, Bo Peng, Jie Chen", 2024, "DCASE 2024 task 8",
                "samsung2024_beats_bert_acml_mlml.txt"),
    reported=(
        _row("System 1", "PaSST + BERT, no caption pre-training", "single", 0.165, 0.41, 0.557, 0.27),
        _row("System 2", "PaSST + BERT, pre-trained", "single", 0.22, 0.497, 0.644, 0.332),
        _row("System 3", "PaSST-L + RoBERTa-L, pre-trained", "single", 0.207, 0.499, 0.638, 0.329),
        _row("System 4", "PaSST-S + RoBERTa-L, pre-trained", "single", 0.221, 0.505, 0.653, 0.344),
        _row("System 5", "BEATs + BERT (VAST weights), no caption pre-training", "single", 0.24, 0.505, 0.645, 0.355),
        _row("System 6", "BEATs + BERT (VAST weights), pre-trained: the submitted single model", "single",
             0.244, 0.534, 0.662, 0.37),
        _row("System 7", "ensemble of 42 models of the six configurations", "ensemble", 0.278, 0.576, 0.705, 0.406),
    ),
    single="System 5", ensemble="System 7", ensemble_rule="all",
    base={"model": "samsung2024", "epochs": 18, "batch_size": 64, "lr": 1e-5, "dataset": "clotho"},
    tiny_base={"model": "samsung2024-tiny", "epochs": 2, "batch_size": 16, "dataset": "synth"},
    variants=(
        Variant("beats-bert", dict(_SAMSUNG_FIELDS), stands_for="System 5"),
        Variant("beats-bert-seed1", {**_SAMSUNG_FIELDS, "seed": 1}),
        Variant("passt-roberta", {**_SAMSUNG_FIELDS, "model": "samsung2024-passt"},
                {"model": "samsung2024-passt-tiny"}, stands_for="System 1"),
    ),
    kfold=5,
    settings=(
        Note("towers", "BEATs + BERT taken from VAST (pre-trained on VAST-27M); PaSST + (Ro)BERTa variants as "
                       "extra ensemble members"),
        Note("losses", "A-CCL (contrastive) + A-CML (matching with hard negatives) + MLML (60 % masked, audio-"
                       "conditioned), equal weights"),
        Note("front end", "16 kHz, 64-bin log-mel, 25 / 10 ms; zero-padded to 30 s, cut into 10-s segments"),
        Note("text", "lower-cased, punctuation removed, WordPiece, at most 40 tokens"),
        Note("optimiser", "AdamW, 18 epochs, one warm-up epoch, cosine 1e-5 -> 1e-7, weight decay 2e-5 on linear "
                          "layers, checkpoint by validation mAP@10; fine-tuning on Clotho from 2e-6 for 15 epochs"),
        Note("data", "pre-training on Clotho, AudioCaps, WavCaps, FSD50K (GPT-4 captions), a LAION-630K subset, "
                     "DCASE 2024 task 9 validation, Clotho test ids excluded; mix-up in pre-training only; "
                     "5-fold models over development + validation; a 42-model ensemble"),
    ),
    left_out=(
        Note("VAST-27M encoder weights", "not public in a loadable form here: BEATs AS2M + bert-base-uncased "
                                         "start instead"),
        Note("caption pre-training (AudioCaps, WavCaps, FSD50K, LAION-630K, task 9)", "loaders and the Freesound-id "
             "exclusion exist (atrlib.data), the corpora are not bundled: one Clotho stage, compared with "
             "System 5 (no caption pre-training)"),
        Note("mix-up", "pre-training only in the paper; there is no pre-training stage here"),
        Note("the 42-model ensemble", "our ensemble: equal weights on every trained member (two BEATs seeds, one "
                                      "PaSST + RoBERTa, the 5 folds)"),
        Note("k-fold members' loss", "05_ensemble trains its k-fold models from its base settings, which do not "
                                     "include the loss or weight decay: the folds train InfoNCE alone, AdamW 1e-4"),
    ),
    choices=(
        Note("learning rate", "one stage on Clotho from AudioSet / BERT weights: the pre-training peak 1e-5 and "
                              "18 epochs (fine-tuning at 2e-6 assumes caption-pre-trained encoders); cosine to 0, "
                              "not 1e-7"),
        Note("batch size", "not given: 64"),
        Note("mel bins", "the report says 64 bins; the published BEATs checkpoints were trained on 128 — the "
                         "recipe follows the report (audio_cfg mel_bins 64)"),
        Note("A-CML / MLML text encoder", "VAST re-reads the caption with the same text encoder; here a second "
                                          "bert-base with cross-attention (the crossattn head)"),
        Note("weight decay", "2e-5 on every weight matrix (biases and norms excluded), not only linear layers"),
    ),
)

RECIPES: Dict[str, Recipe] = {r.name: r for r in (HUAWEI, CAU, XIAOMI, LINGBAN, SAMSUNG)}


def recipe_names() -> List[str]:
    return list(RECIPES)


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise KeyError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}") from None


def train_config(recipe: Recipe | str, variant: Optional[str] = None, tiny: bool = False, **overrides):
    """A variant's complete :class:`~atrlib.train.config.TrainConfig` (the first variant by default):
    the recipe's base, the variant's fields, then ``overrides``."""
    from atrlib.train.config import TrainConfig

    r = get_recipe(recipe) if isinstance(recipe, str) else recipe
    v = r.variants[0] if variant is None else next((x for x in r.variants if x.name == variant), None)
    if v is None:
        raise KeyError(f"{r.name}: no variant {variant!r}; known: {', '.join(x.name for x in r.variants)}")
    base = {**r.base, **(r.tiny_base if tiny else {})}
    if tiny:
        base["size"] = "tiny"
    fields_ = {**base, **v.as_dict(tiny)}
    fields_.pop("name")
    return TrainConfig(**{**fields_, **overrides})


# ----------------------------------------------------------------------------- reading a run
def _read(path: Path) -> Optional[dict]:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def variant_dir(run_dir, name: str) -> Path:
    return Path(run_dir) / "05_ensemble" / "variants" / name


def _run_scores(folder: Path, split: str = "test") -> Dict[str, Score]:
    """R@k / mAP@10 with jackknife 95 % CIs of a run folder's ``sim_<split>.npz`` (text-to-audio)."""
    from atrlib.retrieval.simfile import sim_path
    from atrlib.retrieval.metrics import scores_with_ci
    from atrlib.retrieval.simfile import load_similarity

    sm = load_similarity(sim_path(folder, split))
    ci = scores_with_ci(sm.sim, sm.relevant)
    return {m: Score(float(ci[m]["value"]), float(ci[m]["low"]), float(ci[m]["high"])) for m in METRICS}


def member_folders(recipe: Recipe, run_dir) -> Dict[str, Path]:
    """Every trained system of the run that has test similarities: the variants, then the k-fold members."""
    from atrlib.experiments.systems import find_systems

    run = Path(run_dir)
    found = find_systems([f"05_ensemble/variants/{v.name}" for v in recipe.variants], base=run,
                         val_split="validation", test_split="test")
    kf = sorted((run / "05_ensemble" / "kfold").glob("fold*"))
    found.update({f"kfold/{d.name}": d for d in kf if (d / "metrics.json").exists()})
    return found


def ensemble_scores(recipe: Recipe, run_dir) -> Tuple[Optional[Dict[str, Score]], List[str]]:
    """Our ensemble by ``recipe.ensemble_rule`` on the test split (z-scored per query, equal
    weights): ``top-k`` = the k variants with the best *validation* mAP@10; ``all`` = every
    member (variants and folds). Returns (scores with CIs, member names) or (None, [])."""
    from atrlib.retrieval import ensemble as E
    from atrlib.experiments.systems import load_systems
    from atrlib.retrieval.metrics import retrieval_scores, scores_with_ci

    if not recipe.ensemble_rule:
        return None, []
    folders = member_folders(recipe, run_dir)
    variants = {n: d for n, d in folders.items() if not n.startswith("kfold/")}
    if recipe.ensemble_rule == "all":
        chosen = list(folders)
    else:
        k = int(recipe.ensemble_rule.split("-")[1])
        val = E.align(load_systems(variants, "validation"))
        score = {n: float(retrieval_scores(sm.sim, sm.relevant)["mAP@10"]) for n, sm in val.items()}
        chosen = sorted(score, key=lambda n: -score[n])[:k]
    if len(chosen) < 2:
        return None, chosen
    test = E.align(load_systems({n: folders[n] for n in chosen}, "test"))
    sm = E.apply({n: 1.0 for n in chosen}, test, norm="zscore")
    ci = scores_with_ci(sm.sim, sm.relevant)
    return {m: Score(float(ci[m]["value"]), float(ci[m]["low"]), float(ci[m]["high"])) for m in METRICS}, chosen


def reproduction_table(recipe: Recipe | str, run_dir):
    """The paper's numbers next to this run's: one row per (system, metric) with ``paper``,
    ``paper_low``/``paper_high`` (where reported), ``run``, ``run_low``/``run_high`` (jackknife
    95 %), ``diff`` (run - paper) and ``paper_in_run_ci``. Systems: the single run (the recipe's
    first variant) against ``recipe.single``, our ensemble against ``recipe.ensemble``."""
    import pandas as pd

    r = get_recipe(recipe) if isinstance(recipe, str) else recipe
    rows = []
    pairs = [("single", r.single, _run_scores(variant_dir(run_dir, r.single_variant.name)), r.single_variant.name)]
    if r.ensemble:
        ens, members = ensemble_scores(r, run_dir)
        if ens is not None:
            pairs.append(("ensemble", r.ensemble, ens, f"{r.ensemble_rule} of {len(members)}: " + ", ".join(members)))
    for kind, paper_name, ours, what in pairs:
        paper = r.reported_system(paper_name).scores()
        for m in METRICS:
            p, o = paper[m], ours[m]
            inside = None if o.low is None else bool(o.low <= p.value <= o.high)
            rows.append({"system": kind, "paper system": paper_name, "metric": m, "paper": p.value,
                         "paper_low": p.low, "paper_high": p.high, "run": o.value, "run_low": o.low,
                         "run_high": o.high, "diff": o.value - p.value, "paper_in_run_ci": inside, "run system": what})
    return pd.DataFrame(rows)


def run_cost(run_dir) -> Dict[str, Any]:
    """Wall time per finished stage from ``run.json``, their sum, and the device this process
    sees (the reproduction stage runs on the run's machine): GPU-hours on a GPU, CPU seconds otherwise."""
    import torch

    rec = _read(Path(run_dir) / "run.json") or {}
    stages = {s["name"]: float(s["duration_s"]) for s in rec.get("stages", []) if s.get("duration_s") is not None}
    total = float(sum(stages.values()))
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    out = {"stages_s": stages, "total_s": total, "device": gpu or "cpu", "profile": rec.get("profile")}
    out["gpu_hours" if gpu else "cpu_seconds"] = total / 3600 if gpu else total
    return out


GAP_FIELDS = ("model", "dataset", "loss", "epochs", "batch_size", "grad_accum", "lr", "weight_decay", "warmup",
              "scheduler", "max_grad_norm", "patience")


def settings_gap(recipe: Recipe | str, run_dir) -> List[Dict[str, Any]]:
    """Fields of the single system's saved ``params.json`` that differ from the recipe's full-size
    settings (a tiny run differs in model, data and epochs; a full run should differ in nothing)."""
    r = get_recipe(recipe) if isinstance(recipe, str) else recipe
    params = _read(variant_dir(run_dir, r.single_variant.name) / "params.json") or {}
    want = train_config(r).to_dict()
    return [{"setting": k, "recipe": want[k], "run": params.get(k)} for k in GAP_FIELDS
            if k in params and params[k] != want[k]]


def learned_text(recipe: Recipe, table, gaps: Sequence[Mapping[str, Any]]) -> str:
    """One or two sentences from the numbers: how far this run is from the paper and whether the
    paper's value lies in this run's interval; a tiny run is said to be a smoke test."""
    single = table[(table["system"] == "single") & (table["metric"] == "mAP@10")].iloc[0]
    out = (f"This run's single system reaches mAP@10 {single['run']:.3f} (95 % CI {single['run_low']:.3f}–"
           f"{single['run_high']:.3f}) against the paper's {single['paper']:.3f} for {single['paper system']}: "
           f"{single['diff']:+.3f}, the paper's value {'inside' if single['paper_in_run_ci'] else 'outside'} our interval.")
    ens = table[(table["system"] == "ensemble") & (table["metric"] == "mAP@10")]
    if len(ens):
        e = ens.iloc[0]
        out += (f" Our ensemble: {e['run']:.3f} against {e['paper']:.3f} ({e['diff']:+.3f}), "
                f"{e['run'] - single['run']:+.3f} over our single system (the paper: "
                f"{e['paper'] - single['paper']:+.3f}).")
    changed = {g["setting"] for g in gaps}
    if changed & {"dataset", "model"}:
        out += (" This run changed " + ", ".join(sorted(changed)) + " from the paper's settings (a tiny smoke run "
                "on other data checks the code path, not the paper's numbers).")
    return out


def reproduce(recipe: str, run_dir, out_dir) -> Dict[str, Any]:
    """What ``06_reproduce`` does: the table, cost, settings gap and what was left out; writes
    ``<out_dir>/metrics.json`` and returns everything (``table`` as a DataFrame)."""
    from atrlib.files import write_metrics

    if not recipe:  # the notebook's default: the run's profile is named after its recipe
        recipe = (_read(Path(run_dir) / "run.json") or {}).get("profile") or ""
    r = get_recipe(recipe)
    table = reproduction_table(r, run_dir)
    gaps = settings_gap(r, run_dir)
    cost = run_cost(run_dir)
    text = learned_text(r, table, gaps)

    def nums(kind):
        sub = table[table["system"] == kind]
        return {row["metric"]: {k: row[k] for k in ("paper", "run", "run_low", "run_high", "diff")}
                for _, row in sub.iterrows()}

    metrics = {"recipe": r.name, "paper": r.paper.title, "single_system": r.single, "single": nums("single"),
               "ensemble_system": r.ensemble, "ensemble": nums("ensemble") or None, "cost": cost,
               "settings_gap": gaps, "left_out": [n.what for n in r.left_out], "learned": text}
    key = ["single/mAP@10/run", "single/mAP@10/paper", "single/mAP@10/diff"]
    if r.ensemble and metrics["ensemble"]:
        key += ["ensemble/mAP@10/run", "ensemble/mAP@10/paper"]
    write_metrics(out_dir, metrics, params={"recipe": r.name}, key_metrics=key)
    return {"recipe": r, "table": table, "gaps": gaps, "cost": cost, "learned": text, "metrics": metrics}


def readme_table() -> str:
    """Markdown: each recipe's GPU command and the paper's numbers beside it."""
    lines = ["| recipe | command (GPU, Clotho) | paper single: R@1 / R@10 / mAP@10 | paper ensemble mAP@10 |",
             "|---|---|---|---|"]
    for r in RECIPES.values():
        s = r.reported_system(r.single)
        e = r.reported_system(r.ensemble).map10.text() if r.ensemble else "—"
        lines.append(f"| `{r.name}` | `python -m atrlib run --profile {r.name} -p root=/data/clotho` | "
                     f"{r.single}: {s.r1.value:.3f} / {s.r10.value:.3f} / {s.map10.value:.3f} | {e} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the batch profile
def profile_dict(recipe: Recipe | str, notebook_defaults: Optional[Mapping[str, Mapping[str, Any]]] = None) -> dict:
    """The recipe's batch profile (``notebooks/params/<name>.yaml``) as data: ``05_ensemble``
    trains the variants (full size), ``06_reproduce`` compares; ``when: size=tiny`` swaps in the
    tiny towers, the synth data and 2 epochs. Values equal to a notebook's own default are left
    out (profiles say only what differs); ``notebook_defaults`` maps stage -> its parameters."""
    r = get_recipe(recipe) if isinstance(recipe, str) else recipe
    nd = notebook_defaults or {}
    ens = {"systems": [], "include_tagbridge": False, **{k: v for k, v in r.base.items() if k != "dataset"},
           "variants": r.variant_dicts(), **({"kfold": r.kfold} if r.kfold else {})}
    ens = {k: v for k, v in ens.items() if nd.get("05_ensemble", {}).get(k, object()) != v}
    tiny: Dict[str, Any] = {"dataset": r.tiny_base["dataset"], "05_ensemble.model": r.tiny_base["model"],
                            "epochs": r.tiny_base["epochs"], "batch_size": r.tiny_base["batch_size"]}
    if any(v.tiny_fields or not v.in_tiny for v in r.variants):
        tiny["05_ensemble.variants"] = r.variant_dicts(tiny=True)
    if r.kfold:
        tiny["05_ensemble.kfold"] = 2
    return {
        "description": f"{r.paper.team} {r.paper.year} ({r.paper.task}) reproduced: every system of the recipe "
                       f"atrlib.recipes.catalog.{r.name} trained by 05_ensemble, compared with the report by 06_reproduce. "
                       f"GPU: -p root=/path/to/clotho; CPU smoke test: -p size=tiny",
        "defaults": {"dataset": r.base["dataset"]},
        "stages": [{"notebook": "05_ensemble.ipynb", "parameters": ens},
                   {"notebook": "06_reproduce.ipynb", "needs": ["05_ensemble"], "parameters": {"recipe": r.name}}],
        "when": {"size=tiny": tiny},
    }
