"""Ensemble distillation: the teacher's targets and the term against a per-row reference, the
teacher assembled from stored matrices in any order, and the student vs teacher vs undistilled
study end to end on the embedded dataset."""
import numpy as np
import pytest
import torch

from atrlib.losses.crossmodal import CrossBatch
from atrlib.losses.distill import Distill, correspondence_targets, teacher_matrix
from atrlib.losses.objective import build_objective
from atrlib.retrieval.simfile import SimilarityMatrix, save_similarity


class _DS:
    """The two things a teacher is aligned to: caption ids and clip ids (plus the split)."""
    split = "train"

    def __init__(self, n_clips=4, per_clip=2):
        self.clip_ids = [f"c{i}.wav" for i in range(n_clips)]
        self._caps = [f"c{i}.wav#{k}" for i in range(n_clips) for k in range(per_clip)]

    def caption_ids(self):
        return list(self._caps)


def _softmax(z):
    z = z - z.max()
    return np.exp(z) / np.exp(z).sum()


def test_targets_are_row_softmaxes_per_direction():
    block = torch.tensor([[0.9, 0.1, 0.3], [0.2, 0.8, 0.8]])
    t = correspondence_targets(block, 0.1)
    assert t["t2a"].shape == (2, 3) and t["a2t"].shape == (3, 2)
    assert np.allclose(t["t2a"][0].numpy(), _softmax(np.array([9.0, 1.0, 3.0])), atol=1e-6)
    assert np.allclose(t["a2t"][2].numpy(), _softmax(np.array([3.0, 8.0])), atol=1e-6)


def test_distill_term_equals_soft_cross_entropy_reference():
    g = torch.Generator().manual_seed(1)
    scores = torch.rand(8, 4, generator=g)                     # (train captions, train clips)
    term = Distill(teacher=["unused"], temperature=0.07)
    term.scores = scores
    b = 5
    a = torch.nn.functional.normalize(torch.randn(b, 6, generator=g), dim=-1)
    t = torch.nn.functional.normalize(torch.randn(b, 6, generator=g), dim=-1)
    clips, caps = torch.tensor([0, 2, 2, 3, 1]), torch.tensor([1, 4, 5, 7, 2])  # clip 2 twice
    cb = CrossBatch(a, t, clips, torch.tensor(12.0), captions=["x"] * b, caption_idx=caps)
    got = float(term.term(cb, None)["distill"])
    T = scores[caps][:, clips].numpy().astype(np.float64) / 0.07       # (captions, clips) in the batch
    S = 12.0 * t.numpy().astype(np.float64) @ a.numpy().T.astype(np.float64)
    ce = []
    for M, L in ((T, S), (T.T, S.T)):
        rows = []
        for j in range(b):
            p, z = _softmax(M[j]), L[j] - L[j].max()
            rows.append(-(p * (z - np.log(np.exp(z).sum()))).sum())
        ce.append(np.mean(rows))
    assert got == pytest.approx(0.5 * (ce[0] + ce[1]), rel=1e-5)
    # both captions of clip 2 get equal teacher scores in every row: equal target shares
    tt = correspondence_targets(scores[caps][:, clips], 0.07)["t2a"]
    assert torch.allclose(tt[:, 1], tt[:, 2])


def test_teacher_matrix_aligns_and_weighs_stored_matrices(tmp_path):
    ds = _DS()
    rng = np.random.default_rng(0)
    base = [rng.normal(size=(8, 4)).astype(np.float32) for _ in range(2)]
    paths = []
    for k, m in enumerate(base):                                  # stored with rows and columns shuffled
        r, c = rng.permutation(8), rng.permutation(4)
        sm = SimilarityMatrix(m[r][:, c], [ds.caption_ids()[i] for i in r], [ds.clip_ids[i] for i in c],
                              [[0]] * 8, {"split": "train"})
        paths.append(save_similarity(tmp_path / f"t{k}.npz", sm))
    got = teacher_matrix(paths, ds, weights=[0.25, 0.75])
    assert np.allclose(got, 0.25 * base[0] + 0.75 * base[1], atol=1e-6)
    assert np.allclose(teacher_matrix(paths, ds, weights={"t1": 1.0}), base[1], atol=1e-6)
    assert np.allclose(teacher_matrix(paths[0], ds), base[0], atol=1e-6)
    with pytest.raises(KeyError, match="unknown teachers"):
        teacher_matrix(paths, ds, weights={"t9": 1.0})
    other = _DS(n_clips=5)
    with pytest.raises(ValueError, match=r"t0.npz.*lacks caption 'c4.wav#0'.*training split 'train'"):
        teacher_matrix(paths, other)


def test_distill_needs_a_teacher_and_a_run_folder_needs_weights(tmp_path):
    with pytest.raises(ValueError, match="distill needs a teacher"):
        Distill()
    with pytest.raises(ValueError, match="temperature"):
        Distill(teacher=["x"], temperature=0)
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(FileNotFoundError, match="neither sim_train.npz nor a saved model"):
        teacher_matrix([tmp_path / "empty_run"], _DS())


def test_distill_combines_with_infonce_in_one_objective(tmp_path):
    """'0.5*infonce+distill': both terms, weights applied, built through the objective parser."""
    from atrlib.models.dual import create_model
    from atrlib.data import load_dataset
    from atrlib.models.inputs import SplitInputs

    ds = load_dataset("synth", split="train", size="tiny")
    model = create_model("synth-stats-minilm")
    inputs = SplitInputs(model, ds, progress=False)
    scores = np.random.default_rng(0).normal(size=(len(ds.captions_flat()), len(ds))).astype(np.float32)
    save_similarity(tmp_path / "teacher.npz", SimilarityMatrix(scores, ds.caption_ids(), ds.clip_ids,
                                                               [[i] for i in ds.caption_clip_index()]))
    obj = build_objective("0.5*infonce+distill", model, inputs, distill={"teacher": [str(tmp_path / "teacher.npz")]})
    assert obj.weights == {"infonce": 0.5, "distill": 1.0}
    assert torch.allclose(obj.losses["distill"].scores, torch.from_numpy(scores))
    idx = torch.tensor([0, 5, 9, 14])
    clips = inputs.caption_clip[idx]
    a, t = model(inputs.audio[clips], inputs.text[idx])
    terms = obj(a, t, clips, model.logit_scale, batch=obj.batch(model, None, clips, idx), model=model)
    assert set(terms) == {"infonce", "distill"} and all(torch.isfinite(v) for v in terms.values())


def test_distillation_study_student_teacher_undistilled(tmp_path):
    """The must-show at tiny size: 3 teachers -> one student; CIs, paired tests, cost, 2025 protocol."""
    from atrlib.data.synth import synth_metadata
    from atrlib.experiments.distillation import distillation_study
    from atrlib.retrieval.protocol2025 import synth_relevance_file
    from atrlib.data.splits import load_splits
    from atrlib.train.config import TrainConfig

    base = TrainConfig(size="tiny", epochs=2, batch_size=16, progress=False, out_dir=str(tmp_path / "x"))
    data = load_splits(base)
    rel = synth_relevance_file(tmp_path / "rel.csv", data["test"], synth_metadata(split="test", size="tiny"))
    table = distillation_study(base, out_dir=tmp_path / "d", relevance_file=str(rel), cost_clips=4, n=999)
    teacher = "teacher: ensemble of 3"
    assert list(table.index[:3]) == [teacher, "student (distilled)", "student without distillation"]
    assert len(table) == 6  # + the three members
    for name, r in table.iterrows():
        assert 0 <= r["low"] <= r["mAP@10"] <= r["high"] <= 1
        assert 0 <= r["mAP@16_low"] <= r["mAP@16 (2025)"] <= r["mAP@16_high"] <= 1
    s = table.loc["student (distilled)"]
    assert 0 < s["p_vs_student without distillation"] <= 1 and 0 < s[f"p_vs_{teacher}"] <= 1
    assert table.loc[teacher, "models"] == 3 and table.loc[teacher, "parameters"] == 3 * s["parameters"]
    # the teacher's test scores are the equal-weight sum of its members' matrices
    from atrlib.retrieval.simfile import load_similarity
    from atrlib.retrieval.metrics import per_query_metrics

    members = [load_similarity(tmp_path / "d" / "teachers" / f"teacher-s{k}" / "sim_test.npz").sim for k in (1, 2, 3)]
    sm = load_similarity(tmp_path / "d" / "teachers" / "teacher-s1" / "sim_test.npz")
    ens = per_query_metrics(sum(members) / 3, sm.relevant)["AP@10"].mean()
    assert table.loc[teacher, "mAP@10"] == pytest.approx(ens, abs=1e-6)
    assert (tmp_path / "d" / "teachers" / "teacher-s1" / "sim_train.npz").exists()  # scored on the training split
    assert (tmp_path / "d" / "distillation.json").exists()
