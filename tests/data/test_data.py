import logging

import numpy as np
import pytest
import soundfile as sf

from atrlib.data import DATASETS, load_dataset
from atrlib.data.audit import leakage_audit
from atrlib.errors import DatasetError


def test_registry_lists_builtins():
    assert {"clotho", "folder"} <= set(DATASETS.names())
    with pytest.raises(KeyError, match="registered: .*clotho"):
        load_dataset("nope")


def test_clotho_mini(shared):
    ds = load_dataset("clotho", root=shared / "data/clotho_mini", split="evaluation")
    assert len(ds) == 7 and all(len(it["captions"]) == 5 for it in ds)
    assert all(it["sample_rate"] == 44100 and 15 <= it["duration"] <= 30.1 for it in ds)
    assert "Flipping Pages.wav" in ds.clip_ids
    assert len(ds.captions_flat()) == 35 and ds.caption_clip_index()[5] == 1
    # aliases
    assert len(load_dataset("clotho", root=shared / "data/clotho_mini", split="test")) == 7


def test_clotho_missing_split_says_where_to_download(shared):
    with pytest.raises(DatasetError, match="zenodo"):
        load_dataset("clotho", root=shared / "data/clotho_mini", split="development")


def test_folder_animals(shared):
    ds = load_dataset("folder", root=shared / "data/animals")
    assert len(ds) == 10
    dog = next(it for it in ds if it["clip_id"] == "dog.mp3")
    assert dog["captions"] == ["2 dogs barking"] and dog["sample_rate"] == 48000


# ---- bad input -------------------------------------------------------------------------------
def _make_folder(tmp_path, rows, header="file_name,caption_1,caption_2", n_audio=3, encoding="utf-8"):
    for i in range(n_audio):
        sf.write(tmp_path / f"c{i}.wav", np.sin(np.arange(8000) * 0.1 * (i + 1)).astype(np.float32), 16000)
    (tmp_path / "captions.csv").write_bytes((header + "\n" + "\n".join(rows) + "\n").encode(encoding))
    return tmp_path


def test_folder_good(tmp_path):
    _make_folder(tmp_path, ["c0.wav,a tone,a beep", "c1.wav,another tone,", "c2.wav,\"quoted, with comma\",x"])
    ds = load_dataset("folder", root=tmp_path)
    assert [len(it["captions"]) for it in ds] == [2, 1, 2]
    assert ds[2]["captions"][0] == "quoted, with comma" and abs(ds[0]["duration"] - 0.5) < 1e-6


def test_missing_file_names_row_and_can_skip(tmp_path, caplog):
    _make_folder(tmp_path, ["c0.wav,a", "gone.wav,b", "c1.wav,c"])
    with pytest.raises(DatasetError, match=r"captions.csv, line 3: audio file .*gone.wav.* missing"):
        load_dataset("folder", root=tmp_path)
    with caplog.at_level(logging.WARNING):
        ds = load_dataset("folder", root=tmp_path, on_error="skip")
    assert ds.clip_ids == ["c0.wav", "c1.wav"] and len(ds.skipped) == 1 and "gone.wav" in ds.skipped[0]
    assert "skipped 1 bad clip" in caplog.text


@pytest.mark.parametrize("content", [b"", b"RIFF1234WAVEjunkjunkjunk"])
def test_corrupt_or_empty_audio(tmp_path, content):
    _make_folder(tmp_path, ["c0.wav,a", "c1.wav,b"])
    (tmp_path / "c1.wav").write_bytes(content)
    with pytest.raises(DatasetError, match=r"line 3: .*c1.wav"):
        load_dataset("folder", root=tmp_path)
    assert load_dataset("folder", root=tmp_path, on_error="skip").clip_ids == ["c0.wav"]


def test_non_utf8_csv(tmp_path):
    _make_folder(tmp_path, ["c0.wav,a café", "c1.wav,naïve"], encoding="latin-1")
    with pytest.raises(DatasetError, match=r"captions.csv, line 2: not valid utf-8.*iconv"):
        load_dataset("folder", root=tmp_path)
    ds = load_dataset("folder", root=tmp_path, encoding="latin-1")
    assert ds[0]["captions"] == ["a café"]


def test_utf8_bom_is_fine(tmp_path):
    _make_folder(tmp_path, ["c0.wav,a"])
    p = tmp_path / "captions.csv"
    p.write_bytes(b"\xef\xbb\xbf" + p.read_bytes())
    assert len(load_dataset("folder", root=tmp_path)) == 1


def test_duplicate_file_names(tmp_path):
    _make_folder(tmp_path, ["c0.wav,a", "c1.wav,b", "c0.wav,c"])
    with pytest.raises(DatasetError, match=r"line 4: duplicate file_name 'c0.wav' \(first on line 2\)"):
        load_dataset("folder", root=tmp_path)


@pytest.mark.parametrize("name", ["../../x.wav", "/etc/passwd", "sub/../../c0.wav", "C:\\\\x.wav"])
def test_paths_escaping_root(tmp_path, name):
    _make_folder(tmp_path, ["c0.wav,a", f"{name},b"])
    with pytest.raises(DatasetError, match=r"line 3: .*outside the dataset"):
        load_dataset("folder", root=tmp_path)


def test_missing_columns(tmp_path):
    _make_folder(tmp_path, ["c0.wav"], header="file_name")
    with pytest.raises(DatasetError, match="no caption columns"):
        load_dataset("folder", root=tmp_path)
    _make_folder(tmp_path, ["c0.wav,a"], header="name,caption_1")
    with pytest.raises(DatasetError, match="no 'file_name' column"):
        load_dataset("folder", root=tmp_path)


def test_leakage_audit(tmp_path):
    for split in ("development", "evaluation"):
        d = tmp_path / f"clotho_audio_{split}"
        d.mkdir()
    rng = np.random.default_rng(0)
    a, b, c = (rng.standard_normal(4000).astype(np.float32) * 0.1 for _ in range(3))
    sf.write(tmp_path / "clotho_audio_development/x.wav", a, 16000)
    sf.write(tmp_path / "clotho_audio_development/y.wav", b, 16000)
    sf.write(tmp_path / "clotho_audio_evaluation/x.wav", c, 16000)         # same name, other audio
    sf.write(tmp_path / "clotho_audio_evaluation/y_copy.wav", b, 16000)    # same audio, other name
    sf.write(tmp_path / "clotho_audio_evaluation/z.wav", rng.standard_normal(4000).astype(np.float32) * 0.1, 16000)
    (tmp_path / "clotho_captions_development.csv").write_text("file_name,caption_1\nx.wav,a\ny.wav,b\n")
    (tmp_path / "clotho_captions_evaluation.csv").write_text("file_name,caption_1\nx.wav,a\ny_copy.wav,b\nz.wav,c\n")
    splits = {s: load_dataset("clotho", root=tmp_path, split=s) for s in ("development", "evaluation")}
    table = leakage_audit(splits)
    assert sorted(table["kind"]) == ["content", "file_name"]
    row = table[table.kind == "content"].iloc[0]
    assert row["clips"] == "development:y.wav; evaluation:y_copy.wav"
    assert table[table.kind == "file_name"].iloc[0]["key"] == "x.wav"
    # the same audio re-encoded (float vs PCM_16) is only found by the decoded-audio hash
    sf.write(tmp_path / "clotho_audio_evaluation/z.wav", a, 16000, subtype="FLOAT")
    t2 = leakage_audit(splits, decode=True)
    assert "audio" in set(t2["kind"]) and not any((t2.kind == "content") & t2.clips.str.contains("z.wav"))


def test_clotho_captions_v1_full_csvs_parse(shared):
    from atrlib.data.captions_csv import read_caption_rows

    dev = read_caption_rows(shared / "data/clotho_captions_v1/clotho_captions_development.csv")
    ev = read_caption_rows(shared / "data/clotho_captions_v1/clotho_captions_evaluation.csv")
    assert (len(dev), len(ev)) == (2893, 1045)
    assert all(len(c) == 5 for _, _, c in dev + ev)
