"""Caption augmentation from files: every file form, clear errors, the probability of a
replacement, frozen-tower features of the paraphrases, and the ablation row through fit()."""
import json

import pytest
import torch

from atrlib.errors import ParaphraseFileError
from atrlib.train.augment import CaptionAugmenter, attach_paraphrases, load_paraphrases


def test_every_file_form_reads_the_same_table(tmp_path):
    want = {"a dog barks": ["a dog is barking", "barking dog"], "rain falls": ["it rains"]}
    (tmp_path / "d.json").write_text(json.dumps(want))
    (tmp_path / "l.json").write_text(json.dumps([{"caption": k, "paraphrases": v} for k, v in want.items()]))
    (tmp_path / "long.csv").write_text("caption,paraphrase\na dog barks,a dog is barking\n"
                                       "a dog barks,barking dog\nrain falls,it rains\n")
    (tmp_path / "wide.csv").write_text("caption,paraphrase_1,paraphrase_2\na dog barks,a dog is barking,barking dog\n"
                                       "rain falls,it rains,\n")
    for f in ("d.json", "l.json", "long.csv", "wide.csv"):
        assert load_paraphrases(tmp_path / f) == want, f


def test_paraphrase_file_errors_name_the_place(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("text,paraphrase\nx,y\n")
    with pytest.raises(ParaphraseFileError, match=r"bad.csv, line 1: header \['text', 'paraphrase'\]"):
        load_paraphrases(bad)
    bad.write_text("caption,paraphrase\nx,y\n,z\n")
    with pytest.raises(ParaphraseFileError, match="bad.csv, line 3: empty or non-text caption"):
        load_paraphrases(bad)
    j = tmp_path / "bad.json"
    j.write_text(json.dumps({"x": "not a list"}))
    with pytest.raises(ParaphraseFileError, match="key 'x': the value must be a list"):
        load_paraphrases(j)
    j.write_text(json.dumps({"x": ["x"]}))
    with pytest.raises(ParaphraseFileError, match="no paraphrase found"):
        load_paraphrases(j)
    with pytest.raises(FileNotFoundError, match="no paraphrase file"):
        load_paraphrases(tmp_path / "missing.json")


class _Inputs:
    """What the augmenter reads from SplitInputs: captions, raw text (trainable tower)."""
    text_frozen = False

    def __init__(self, captions):
        self.captions = captions
        self.text = captions

    def text_batch(self, idx):
        return [self.captions[i] for i in idx]


def test_replacement_probability_and_choice():
    inp = _Inputs(["A dog barks.", "rain falls", "silence"])
    table = {"a dog barks": ["p1", "p2"], "rain falls": ["r1"]}   # matched ignoring case and punctuation
    torch.manual_seed(0)
    never = CaptionAugmenter(inp, table, 0.0)
    assert {never(0) for _ in range(50)} == {"A dog barks."}
    always = CaptionAugmenter(inp, table, 1.0)
    draws = [always(0) for _ in range(400)]
    assert set(draws) == {"p1", "p2"} and 150 < draws.count("p1") < 250
    assert {always(2) for _ in range(20)} == {"silence"}  # no paraphrase: the caption
    half = CaptionAugmenter(inp, table, 0.3)
    n = sum(half(1) == "r1" for _ in range(2000))
    assert abs(n / 2000 - 0.3) < 0.04  # binomial sd ~0.01
    assert always.covered == 2
    with pytest.raises(ValueError, match=r"paraphrase_prob must be in \[0, 1\]"):
        CaptionAugmenter(inp, table, 1.5)


def test_frozen_text_tower_gets_the_paraphrase_features(tmp_path):
    from atrlib.data import load_dataset
    from atrlib.audio.embeddings import text_tower_embeddings
    from atrlib.experiments.distillation import same_clip_paraphrases
    from atrlib.models.dual import create_model
    from atrlib.models.inputs import PairSet, SplitInputs, tower_id

    ds = load_dataset("synth", split="train", size="tiny")
    model = create_model("synth-stats-minilm")
    inputs = SplitInputs(model, ds, progress=False)
    path = same_clip_paraphrases(ds, tmp_path / "p.json")
    aug = attach_paraphrases(inputs, model, path, 1.0)
    assert aug.covered == len(ds.captions_flat())
    feats = torch.from_numpy(text_tower_embeddings(model.text_tower, tower_id(model, "text"), aug.texts, progress=False))
    own = inputs.text[0]
    torch.manual_seed(0)
    _, text, clip = PairSet(inputs)[0]                        # the hook where a pair's caption is formed
    assert clip == int(inputs.caption_clip[0]) and not torch.equal(text, own)
    assert any(torch.allclose(text, feats[k]) for k in aug.options[0])
    other = [inputs.text[j] for j in range(len(inputs.captions)) if int(inputs.caption_clip[j]) == clip and j != 0]
    assert any(torch.allclose(text, o, atol=1e-5) for o in other)   # same-clip captions as paraphrases
    none = tmp_path / "none.json"
    none.write_text(json.dumps({"a caption not in the data": ["x"]}))
    with pytest.raises(ParaphraseFileError, match="none of the .* training captions"):
        attach_paraphrases(inputs, model, none, 0.5)


def test_augmentation_ablation_row(tmp_path):
    from atrlib.experiments.distillation import augmentation_ablation, same_clip_paraphrases
    from atrlib.data.splits import load_splits
    from atrlib.train.config import TrainConfig

    base = TrainConfig(size="tiny", epochs=2, batch_size=16, progress=False, out_dir=str(tmp_path / "x"))
    path = same_clip_paraphrases(load_splits(base)["train"], tmp_path / "p.json")
    table = augmentation_ablation(base, str(path), prob=0.5, out_dir=tmp_path / "a", n=999)
    assert list(table.index) == ["without paraphrases", "with paraphrases (p=0.5)"]
    r = table.loc["with paraphrases (p=0.5)"]
    assert 0 <= r["low"] <= r["mAP@10"] <= r["high"] <= 1 and 0 < r["p_vs_without paraphrases"] <= 1
    params = json.loads((tmp_path / "a" / "with_paraphrases_p=0.5-s0" / "params.json").read_text())
    assert params["paraphrases"] == str(path) and params["paraphrase_prob"] == 0.5
