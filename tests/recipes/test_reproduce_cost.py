"""06_reproduce's cost tables and mAP@16 row on hand-made run folders: each system's projection,
the recipe's sum over systems and k-fold members, the published training times beside their
projection (the 2025 baseline's 34 h 44 min on one A40), arithmetic redone here by hand."""
import json

import pytest

from atrlib.recipes import get_recipe
from atrlib.recipes.reproduce import (CORPUS_PAIRS, cost_table, map16_row, published_time_table, reproduce,
                                      variant_dir)

F_PAIR, F_FIXED, VAL = 2e11, 5e8, 3e14        # FLOPs per pair and fixed per step; validation FLOPs per epoch
A40_HALF = 149.7e12                            # A40 dense FP16 tensor-core peak (datasheet)


def _cost(model="m", pairs=19_195, precision="fp16"):
    parts = {"total": {"trainable": 1000, "frozen": 50}}
    return {"model": model, "device": "cpu", "precision": precision, "parameters": {"parts": parts},
            "paper_batch": 16, "epochs": 2, "grad_accum": 1, "flops_fit": {"per_pair": F_PAIR, "fixed": F_FIXED},
            "activation_fit": {"per_pair": 1e6, "fixed": 0.0}, "val_flops_per_epoch": VAL,
            "memory_bytes": {"params_grads_adamw": 1e9}, "data": {"train_pairs_full": pairs}}


def _write(folder, cost):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cost.json").write_text(json.dumps(cost))


def _hours(pairs, batch, epochs, peak=A40_HALF, u=0.35):
    steps = pairs // batch if pairs > batch else 1
    return epochs * (steps * (F_PAIR * batch + F_FIXED) + VAL) / (peak * u) / 3600


def test_cost_table_per_system_and_recipe(tmp_path):
    r = get_recipe("dcase2025_baseline")
    _write(variant_dir(tmp_path, "passt-roberta"), _cost())
    _write(variant_dir(tmp_path, "passt-roberta-seed21208"), _cost())
    t = cost_table(r, tmp_path).set_index("system")
    one = _hours(19_195, 64, 16)                                  # the recipe's batch 64 and 16 epochs
    assert t.loc["passt-roberta", "GPU-hours"] == pytest.approx(one)
    assert t.loc["passt-roberta", "GFLOP/step"] == pytest.approx((F_PAIR * 64 + F_FIXED) / 1e9)
    assert t.loc["passt-roberta", "GPU-hours low"] == pytest.approx(one * 0.35 / 0.5)
    assert t.loc["passt-roberta", "GPU-hours high"] == pytest.approx(one * 0.35 / 0.2)
    four = _hours(19_195, 4, 16)                                  # not trained: the single's fit at batch 4
    assert t.loc["passt-roberta-batch4", "GPU-hours"] == pytest.approx(four)
    assert t.loc["passt-roberta-batch4", "how"].startswith("projected from passt-roberta")
    assert t.loc["recipe", "GPU-hours"] == pytest.approx(2 * one + four) and t.loc["recipe", "members"] == 3


def test_kfold_members_multiply(tmp_path):
    r = get_recipe("samsung2024")
    assert r.kfold
    for v in r.variants:
        _write(variant_dir(tmp_path, v.name), _cost(precision="no"))
    _write(tmp_path / "05_ensemble" / "kfold" / "fold0", _cost(precision="no"))
    t = cost_table(r, tmp_path, gpu="H100").set_index("system")
    row = t.loc[f"kfold ({r.kfold} members)"]
    from atrlib.recipes.reproduce import train_config

    rc = train_config(r)
    assert row["members"] == r.kfold
    fold_pairs = (3_839 + 1_045) * (r.kfold - 1) // r.kfold * 5       # a member trains on (k-1)/k of dev + val
    assert row["train pairs"] == fold_pairs
    assert row["GPU-hours"] == pytest.approx(r.kfold * _hours(fold_pairs, rc.batch_size, rc.epochs, peak=67e12))


def test_a_dry_run_is_projected_on_the_recipes_data(tmp_path):
    """A run on a few clips (pairs=15) is projected on Clotho's 19,195 pairs and 1,045 validation
    clips with its measured forward FLOPs."""
    r = get_recipe("dcase2025_baseline")
    cost = dict(_cost(pairs=15), forward_flops={"per_clip": 6e11, "per_caption": 1e10})
    _write(variant_dir(tmp_path, "passt-roberta"), cost)
    t = cost_table(r, tmp_path).set_index("system")
    val = 6e11 * 1_045 + 1e10 * 1_045 * 5
    steps = 19_195 // 64
    want = 16 * (steps * (F_PAIR * 64 + F_FIXED) + val) / (A40_HALF * 0.35) / 3600
    assert t.loc["passt-roberta", "train pairs"] == 19_195
    assert t.loc["passt-roberta", "GPU-hours"] == pytest.approx(want)


def test_published_times_beside_their_projection(tmp_path):
    r = get_recipe("dcase2025_baseline")
    _write(variant_dir(tmp_path, "passt-roberta"), _cost())
    t = published_time_table(r, tmp_path).set_index("paper system")
    assert list(t.index) == [s.name for s in r.reported]          # every row prints its GPU and time
    big = t.loc["Clotho, AudioCaps, WavCaps"]
    pairs = 3_839 * 5 + 49_838 + 403_050
    assert big["train pairs"] == pairs == sum(CORPUS_PAIRS.values())
    assert big["published hours"] == pytest.approx(34 + 44 / 60) and big["GPU"] == "A40" and big["epochs"] == 20
    assert big["projected hours"] == pytest.approx(_hours(pairs, 64, 20))
    assert big["ratio"] == pytest.approx(_hours(pairs, 64, 20) / (34 + 44 / 60))
    rtx = t.loc["ClothoV2 (RTX 2080 Ti)"]                          # its own batch and GPU (FP16 tensor 53.8)
    assert (rtx["batch"], rtx["GPU"]) == (4, "RTX 2080 Ti")
    assert rtx["projected hours"] == pytest.approx(_hours(19_195, 4, 20, peak=53.8e12))
    assert published_time_table(get_recipe("samsung2024"), tmp_path) is None     # no cost.json, no times


def test_map16_row_without_a_relevance_file(tmp_path):
    row = map16_row("dcase2025_baseline", tmp_path)
    assert row["paper"] == pytest.approx(0.3282) and row["run"] is None
    assert row["missing because"].startswith("not scored: no relevance file")
    assert map16_row("samsung2024", tmp_path) is None             # a 2024 paper: no mAP@16
