import numpy as np

from atrlib.data import load_dataset
from atrlib.experiments.kfold import kfold_train
from atrlib.data.splits import make_folds
from atrlib.retrieval.simfile import load_similarity
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
