"""The challenge's files, `atrlib caption` (one captioner, an ensemble, references -> metrics.json,
bad input -> exit 2 naming the file), the caption-bridge retriever and notebook 07's helpers."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from atrlib.__main__ import main


def test_prediction_and_reference_files_round_trip_and_refuse_bad_input(tmp_path):
    from atrlib.captioning import files as F
    from atrlib.errors import InputFileError

    F.write_predictions(tmp_path / "p.csv", ["a.wav", "b.wav"], ["a dog, barking", 'rain "hard"'])
    F.write_references(tmp_path / "r.csv", {"a.wav": ["a dog barks", "dog"], "b.wav": ["rain", "rain falls", "x"]})
    assert (tmp_path / "p.csv").read_text().splitlines()[0] == "file_name,caption_predicted"
    assert (tmp_path / "r.csv").read_text().splitlines()[0] == "file_name,caption_1,caption_2,caption_3"
    assert F.read_predictions(tmp_path / "p.csv") == {"a.wav": "a dog, barking", "b.wav": 'rain "hard"'}
    assert F.read_references(tmp_path / "r.csv")["a.wav"] == ["a dog barks", "dog"]
    s = F.score_files(tmp_path / "p.csv", tmp_path / "r.csv", metrics=["bleu_1", "cider_d"], java=False)
    assert list(s.per_clip.index) == ["a.wav", "b.wav"] and s.corpus["bleu_1"] > 0
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(InputFileError, match="empty.csv: the references file is empty"):
        F.read_references(tmp_path / "empty.csv")
    (tmp_path / "noref.csv").write_text("file_name,caption_1\na.wav,\n")
    with pytest.raises(InputFileError, match="noref.csv, line 2: a.wav has no reference"):
        F.read_references(tmp_path / "noref.csv")
    F.write_predictions(tmp_path / "p1.csv", ["a.wav"], ["x"])
    with pytest.raises(InputFileError, match="have no prediction"):
        F.score_files(tmp_path / "p1.csv", tmp_path / "r.csv")


def _clips(tiny_splits, folder: Path):
    import shutil

    folder.mkdir()
    ds = tiny_splits["test"]
    for p in ds.audio_paths[:4]:
        shutil.copy(p, folder / Path(p).name)
    refs = {Path(p).name: [] for p in ds.audio_paths[:4]}
    for c, i in zip(ds.captions_flat(), ds.caption_clip_index()):
        name = Path(ds.audio_paths[i]).name
        if name in refs:
            refs[name].append(c)
    return refs


def test_caption_command_single_ensemble_references_and_errors(trained, tiny_splits, tmp_path, capsys):
    from atrlib.captioning.files import read_predictions, write_references

    refs = _clips(tiny_splits, tmp_path / "clips")
    write_references(tmp_path / "refs.csv", refs)
    out = tmp_path / "o" / "predictions.csv"
    (tmp_path / "o").mkdir()
    cap = str(trained["folder"])
    assert main(["caption", "--system", cap, "--audio", str(tmp_path / "clips"), "--out", str(out)]) == 0
    preds = read_predictions(out)
    assert sorted(preds) == sorted(refs) and all(isinstance(v, str) for v in preds.values())
    # an existing predictions file is kept unless --overwrite
    assert main(["caption", "--system", cap, "--audio", str(tmp_path / "clips"), "--out", str(out)]) == 2
    assert "already holds predictions" in capsys.readouterr().err
    assert main(["caption", "--system", cap, "--system", cap, "--audio", str(tmp_path / "clips"), "--out", str(out),
                 "--overwrite", "--beam-size", "2", "--length-penalty", "0.5", "--references",
                 str(tmp_path / "refs.csv"), "--no-java"]) == 0
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert m["n_clips"] == 4 and "cider_d" in m and "reason" in m["missing"]["meteor"]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "metrics.json").write_text('{"my": 1}')          # a file of the user's own is never replaced
    assert main(["caption", "--system", cap, "--audio", str(tmp_path / "clips"), "--out",
                 str(tmp_path / "mine" / "p.csv"), "--references", str(tmp_path / "refs.csv"), "--overwrite"]) == 2
    assert "is not a caption scoring" in capsys.readouterr().err
    # bad input: a run without an audio tower, a corrupt clip, an empty references file -> exit 2, named
    (tmp_path / "norun").mkdir()
    assert main(["caption", "--system", str(tmp_path / "norun"), "--audio", str(tmp_path / "clips"),
                 "--out", str(tmp_path / "x.csv")]) == 2
    assert "norun: no audio tower here" in capsys.readouterr().err
    (tmp_path / "clips" / "zz_corrupt.wav").write_bytes(b"RIFF0000WAVEjunkjunk")
    assert main(["caption", "--system", cap, "--audio", str(tmp_path / "clips"), "--out", str(tmp_path / "y.csv")]) == 2
    assert "zz_corrupt.wav" in capsys.readouterr().err
    (tmp_path / "empty.csv").write_text("")
    assert main(["caption", "--system", cap, "--audio", str(tmp_path / "clips"), "--out", str(tmp_path / "z.csv"),
                 "--references", str(tmp_path / "empty.csv")]) == 2
    assert "empty.csv: the references file is empty" in capsys.readouterr().err


def test_caption_bridge_is_a_registered_retriever(trained, tiny_splits):
    from atrlib.captioning.bridge import bridge_matrix
    from atrlib.retrieval.retrievers import RETRIEVERS, get_retriever

    assert "captionbridge" in RETRIEVERS
    r = get_retriever("captionbridge", captioner=str(trained["folder"]))
    paths = tiny_splits["test"].audio_paths[:3]
    sim = r.similarity(["a high beep", "rain"], paths, progress=False)
    assert sim.shape == (2, 3) and np.isfinite(sim).all() and np.abs(sim).max() <= 1 + 1e-5
    caps = r.captions(paths)
    sm = bridge_matrix(tiny_splits["test"].subset(3), caps)
    np.testing.assert_allclose(sm.sim[:1], r.similarity(tiny_splits["test"].captions_flat()[:1], paths), atol=1e-5)


def test_search_command_ranks_through_the_caption_bridge(trained, tiny_splits, tmp_path, monkeypatch, capsys):
    refs = _clips(tiny_splits, tmp_path / "clips")
    monkeypatch.setenv("ATRLIB_CAPTIONER", str(tmp_path / "nothing"))
    assert main(["search", "--system", "captionbridge", "--audio", str(tmp_path / "clips"), "--query", "a beep"]) == 2
    assert "ATRLIB_CAPTIONER" in capsys.readouterr().err
    monkeypatch.setenv("ATRLIB_CAPTIONER", str(trained["folder"]))
    out = tmp_path / "ranking.csv"
    assert main(["search", "--system", "captionbridge", "--audio", str(tmp_path / "clips"), "--query", "a beep",
                 "--out", str(out)]) == 0
    ranking = pd.read_csv(out)
    assert sorted(ranking["file"]) == sorted(refs) and ranking["score"].is_monotonic_decreasing


def test_study_helpers_on_known_captions():
    from atrlib.captioning import study as S

    conf = S.word_confusions(["a dog barks loudly", "rain on a roof"],
                             [["a cat barks", "a cat meows loudly"], ["rain on a tin roof", "rain falls on a roof"]])
    assert conf["substituted"].iloc[0].tolist() == ["cat", "dog", 1]
    assert "dog" in conf["invented"]["word"].tolist() and "cat" in conf["missed"]["word"].tolist()
    train = [["a dog barks", "dog barking", "a loud dog"], ["rain falls", "rain", "rain falls"]]
    assert S.most_common_caption(train) == "rain falls"
    nn = S.nearest_neighbour_captions(np.array([[1.0, 0], [0, 1.0]]), np.array([[0.1, 0.9], [2, 0]]), train)
    assert nn == ["rain falls", "a dog barks"]  # the consensus caption: most words shared (ties: first)
    pc = pd.DataFrame({"cider_d": [0.2, 0.9, 0.1, 0.5]})
    assert S.best_and_worst(pc, k=2) == {"best": [1, 3], "worst": [2, 0]}


def test_join_study_adds_a_system_only_through_validation():
    from atrlib.experiments.ensembles import join_study
    from atrlib.retrieval.metrics import t2a_relevance
    from atrlib.retrieval.simfile import SimilarityMatrix

    rel = t2a_relevance(list(range(30)))
    truth = np.eye(30)
    mk = lambda noise, seed, split: SimilarityMatrix(  # noqa: E731
        sim=(truth + noise * np.random.default_rng(seed).normal(size=(30, 30))).astype(np.float32),
        query_ids=[f"{split}{i}" for i in range(30)], item_ids=[f"{split}{i}" for i in range(30)], relevant=rel)
    val = {"a": mk(0.8, 1, "v"), "b": mk(0.9, 2, "v"), "bridge": mk(0.7, 3, "v")}
    test = {"a": mk(0.8, 4, "t"), "b": mk(0.9, 5, "t"), "bridge": mk(0.7, 6, "t")}
    t = join_study(val, test, "bridge", n=500)
    assert list(t.index) == ["without bridge", "with bridge", "bridge alone"]
    assert np.isnan(t.loc["without bridge", "p_value"]) and 0 < t.loc["with bridge", "p_value"] <= 1
    assert 0 <= t.attrs["newcomer_weight"] <= 1


def test_caption_command_on_the_shared_gcompris_sounds(trained, tmp_path):
    from atrlib.paths import shared_dir

    d = shared_dir()
    folder = d / "data" / "gcompris_sounds" if d is not None else None
    if folder is None or not (folder / "captions.csv").is_file():
        pytest.skip("../shared/data/gcompris_sounds is absent on this machine (68 GCompris .ogg clips)")
    out = tmp_path / "gcompris_predictions.csv"
    assert main(["caption", "--system", str(trained["folder"]), "--audio", str(folder / "captions.csv"),
                 "--out", str(out), "--beam-size", "2"]) == 0
    rows = out.read_text().splitlines()
    assert rows[0] == "file_name,caption_predicted" and len(rows) == 1 + 68
    assert rows[1].startswith("audio/explore_farm_animals__cat.ogg,")
