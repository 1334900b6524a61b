"""k-fold, from one config to many runs: make_folds cuts a pool by clip, TrainConfig.fold / folds
(notebook 02's parameters) train one fold, kfold_train trains them all and scores each on the same
test split, and a sweep's ``folds:`` runs each fold as a trial validated on its own clips."""
import numpy as np
import pytest

from atrlib.data import load_dataset
from atrlib.data.splits import load_splits, make_folds
from atrlib.experiments.kfold import kfold_train
from atrlib.files import read_json
from atrlib.retrieval.simfile import load_similarity
from atrlib.runs.sweep import run_sweep
from atrlib.runs.sweep_spec import load_spec
from atrlib.train.config import TrainConfig


def test_folds_partition_clips():
    pool = load_dataset("synth", size="tiny", split="train")
    folds = make_folds(pool, 4, seed=0)
    vals = [set(f["val"].clip_ids) for f in folds]
    assert set().union(*vals) == set(pool.clip_ids) and sum(map(len, vals)) == len(pool)
    for f in folds:
        assert not set(f["train"].clip_ids) & set(f["val"].clip_ids)
        assert len(f["train"]) + len(f["val"]) == len(pool)
    assert [sorted(v) for v in vals] == [sorted(set(f["val"].clip_ids)) for f in make_folds(pool, 4, seed=0)]
    assert vals != [set(f["val"].clip_ids) for f in make_folds(pool, 4, seed=1)]


def test_kfold_train_scores_every_fold_on_the_same_test(tmp_path):
    cfg = TrainConfig(dataset="synth", size="tiny", model="synth-stats-minilm", epochs=2, batch_size=16,
                      out_dir=str(tmp_path), progress=False)
    runs = kfold_train(cfg, k=2)
    tests = [load_similarity(r / "sim_test.npz") for r in runs]
    assert tests[0].query_ids == tests[1].query_ids and tests[0].item_ids == tests[1].item_ids
    assert not np.allclose(tests[0].sim, tests[1].sim)  # different training data -> different models
    vals = [load_similarity(runs[0] / "sim_fold0-val.npz"), load_similarity(runs[1] / "sim_fold1-val.npz")]
    assert not set(vals[0].item_ids) & set(vals[1].item_ids)
    assert len(vals[0].item_ids) + len(vals[1].item_ids) == 24 + 8


def _pool_ids(size="tiny"):
    return [c for s in ("train", "validation") for c in load_dataset("synth", size=size, split=s).clip_ids]


def test_load_splits_cuts_train_plus_val_into_folds():
    base = dict(dataset="synth", size="tiny", progress=False)
    plain = load_splits(TrainConfig(**base))
    folds = [load_splits(TrainConfig(**base, fold=k, folds=3)) for k in range(3)]
    pool = _pool_ids()
    vals = [set(f["val"].clip_ids) for f in folds]
    assert set().union(*vals) == set(pool) and sum(map(len, vals)) == len(pool)  # a partition of train+val
    for k, f in enumerate(folds):
        assert f["val"].split == f"fold{k}-val"
        assert set(f["train"].clip_ids) == set(pool) - vals[k]  # train: the other folds
        assert f["test"].clip_ids == plain["test"].clip_ids  # test unchanged
    # seeded: the same seed gives the same folds, another seed others
    assert set(load_splits(TrainConfig(**base, fold=1, folds=3))["val"].clip_ids) == vals[1]
    assert set(load_splits(TrainConfig(**base, fold=1, folds=3, seed=1))["val"].clip_ids) != vals[1]
    with pytest.raises(ValueError, match="fold=3 needs"):
        load_splits(TrainConfig(**base, fold=3, folds=3))


def test_sweep_folds_train_each_fold(tmp_path):
    """``folds: 2`` over the smoke profile's 02_train: 2 trials whose validation sets are
    disjoint by clip and together cover train+val (serial executor: no Ray needed)."""
    spec = {"profile": "smoke", "stages": ["02_train"], "parameters": {"epochs": 1}, "folds": 2,
            "select": {"metric": "02_train/best_val_mAP@10"}}
    trials = load_spec(spec).trials
    assert [t.overrides for t in trials] == [{"epochs": 1, "folds": 2, "fold": k} for k in (0, 1)]
    res = run_sweep(spec, tmp_path / "sw", executor="serial", progress=False)
    assert res.counts()["ok"] == 2
    vals = []
    for k, t in enumerate(trials):
        run = tmp_path / "sw" / "trials" / t.id / "02_train"
        params = read_json(tmp_path / "sw" / "trials" / t.id / "params.json")["parameters"]["02_train"]
        assert (params["fold"], params["folds"]) == (k, 2)
        splits = read_json(run / "metrics.json")["splits"]
        assert splits["val"] == f"fold{k}-val" and splits["test"] == "test"
        vals.append(set(load_similarity(run / f"sim_{splits['val']}.npz").item_ids))
    assert vals[0] and vals[1] and not vals[0] & vals[1]
    assert vals[0] | vals[1] == set(_pool_ids())
    assert res.chosen in {t.id for t in trials}
