"""k-fold training from one config (TrainConfig.fold / folds, notebook 02's parameters) and a
sweep's ``folds:`` over it: each fold trial validates on its own clips of train+val."""
import pytest

from atrlib.data import load_dataset
from atrlib.files import read_json
from atrlib.retrieval.simfile import load_similarity
from atrlib.runs.sweep import run_sweep
from atrlib.runs.sweep_spec import load_spec
from atrlib.data.splits import load_splits
from atrlib.train.config import TrainConfig


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
