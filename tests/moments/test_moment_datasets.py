"""Loaders of the Clotho-Moment and CASTELLA layouts and of the generator's folders, on files
the tests write: annotations by split, audio found by vid, and errors that say how to get it."""
import json

import numpy as np
import pytest
import soundfile as sf

from atrlib.errors import ConfigError, DatasetError, MomentsFileError
from atrlib.moments.datasets import load_castella, load_clotho_moment, load_generated, load_moment_dataset


def _jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _wav(path, seconds=1.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(int(8000 * seconds), dtype=np.float32), 8000)


CLOTHO_MOMENT = [  # two queries of one recording, one of another (vids as in the release)
    {"qid": "37612", "query": "water splashes", "duration": 60, "vid": "Wildlife_0.0_60.0",
     "relevant_windows": [[2.5, 27.5]], "fg_dB": -2.09},
    {"qid": "37613", "query": "a man speaks", "duration": 60, "vid": "Wildlife_0.0_60.0", "relevant_windows": [[37.1, 54.1]]},
    {"qid": "37614", "query": "a woman announces", "duration": 60, "vid": "Wildlife_1.0_61.0", "relevant_windows": [[8.1, 30.1]]},
]
CASTELLA = [  # as the release: whole-second duration, a window ending 1 s after it
    {"qid": "--0w1YA1Hm4_1", "query": "A car horn blares", "duration": 299, "vid": "--0w1YA1Hm4",
     "relevant_windows": [[27, 28], [289, 290], [298, 300]]},
    {"qid": "-FW109cbv0g_2", "query": "A dog barks", "duration": 96, "vid": "-FW109cbv0g", "relevant_windows": [[96, 97]]},
]


def test_clotho_moment_layout(tmp_path):
    _jsonl(tmp_path / "clotho_moment_test_release.jsonl", CLOTHO_MOMENT)
    for vid in ("Wildlife_0.0_60.0", "Wildlife_1.0_61.0"):
        _wav(tmp_path / "audio" / "test" / f"{vid}.wav")
    ds = load_clotho_moment(tmp_path, "evaluation")  # any alias of the split
    assert ds.split == "test" and len(ds) == 3 and ds.recordings == ["Wildlife_0.0_60.0", "Wildlife_1.0_61.0"]
    assert ds.audio["Wildlife_1.0_61.0"] == tmp_path / "audio" / "test" / "Wildlife_1.0_61.0.wav"
    assert ds.queries[0].windows == ((2.5, 27.5),) and ds.queries[0].extra == {"fg_dB": -2.09}


def test_audio_is_found_in_the_other_folders_and_formats(tmp_path):
    _jsonl(tmp_path / "val.jsonl", CLOTHO_MOMENT)
    _wav(tmp_path / "audio" / "Wildlife_0.0_60.0.flac")
    _wav(tmp_path / "Wildlife_1.0_61.0.wav")
    ds = load_moment_dataset("clotho-moment", tmp_path, "validation")
    assert ds.annotations.name == "val.jsonl"
    assert ds.audio == {"Wildlife_0.0_60.0": tmp_path / "audio" / "Wildlife_0.0_60.0.flac",
                        "Wildlife_1.0_61.0": tmp_path / "Wildlife_1.0_61.0.wav"}


def test_missing_clotho_moment_audio_says_where_it_looked_and_where_to_get_it(tmp_path):
    _jsonl(tmp_path / "clotho_moment_test_release.jsonl", CLOTHO_MOMENT)
    _wav(tmp_path / "audio" / "test" / "Wildlife_0.0_60.0.wav")
    with pytest.raises(DatasetError) as e:
        load_clotho_moment(tmp_path, "test")
    msg = str(e.value)
    assert "no audio for 1 of 2 recordings (first: 'Wildlife_1.0_61.0')" in msg
    assert str(tmp_path / "audio" / "test") in msg and "lighthouse-emnlp2024/Clotho-Moment" in msg
    assert "require_audio=False" in msg
    assert len(load_clotho_moment(tmp_path, "test", require_audio=False)) == 3


def test_castella_ships_no_audio_and_the_error_says_how_to_get_it(tmp_path):
    _jsonl(tmp_path / "castella_test_release.jsonl", CASTELLA)
    with pytest.raises(DatasetError) as e:
        load_castella(tmp_path, "test")
    msg = str(e.value)
    assert "CASTELLA ships no audio" in msg and "YouTube" in msg and "github.com/h-munakata/CASTELLA-audio" in msg
    assert "no audio for 2 of 2 recordings (first: '--0w1YA1Hm4')" in msg
    ds = load_castella(tmp_path, "test", require_audio=False)  # windows 1 s past the duration are allowed, kept
    assert ds.queries[0].windows[-1] == (298.0, 300.0) and ds.audio == {}
    with pytest.raises(MomentsFileError, match=r"castella_test_release.jsonl, line 1: window 3 \[298, 300\] ends after"):
        load_castella(tmp_path, "test", require_audio=False, duration_slack=0.0)
    for vid in ("--0w1YA1Hm4", "-FW109cbv0g"):
        _wav(tmp_path / "audio" / "test" / f"{vid}.wav")
    assert set(load_castella(tmp_path, "test").audio) == {"--0w1YA1Hm4", "-FW109cbv0g"}


def test_the_generators_folders_load(tmp_path):
    from atrlib.data import load_dataset
    from atrlib.moments.generate import generate_moments

    clips = load_dataset("synth", split="train", size="tiny")
    queries = generate_moments(clips, tmp_path / "gen", n=2, duration=6.0, sample_rate=8000)
    ds = load_generated(tmp_path / "gen")
    assert [q.qid for q in ds.queries] == [q.qid for q in queries] and set(ds.audio) == {"rec00000", "rec00001"}


def test_wrong_splits_names_and_folders(tmp_path):
    _jsonl(tmp_path / "castella_train_release.jsonl", CASTELLA)
    with pytest.raises(DatasetError, match="unknown CASTELLA split 'dev2'"):
        load_castella(tmp_path, "dev2")
    with pytest.raises(DatasetError, match=r"no castella annotation file; looked for castella_test_release.jsonl, "
                                           r"test.jsonl; JSONL files here: castella_train_release.jsonl"):
        load_castella(tmp_path, "test")
    with pytest.raises(DatasetError, match="is not a folder"):
        load_clotho_moment(tmp_path / "nope")
    with pytest.raises(ConfigError, match="unknown moment dataset 'qvhighlights'"):
        load_moment_dataset("qvhighlights", tmp_path)
