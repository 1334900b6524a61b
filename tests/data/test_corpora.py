"""Corpus loaders (AudioCaps, WavCaps, MACS, FSD50K), the mixture and the download helpers,
on small files in the published layouts that the tests write."""
import hashlib
import json
from pathlib import Path

import atrlib  # noqa: F401  (thread settings before torch)
import numpy as np
import pytest
import soundfile as sf

from atrlib.data import load_dataset
from atrlib.data.fsd50k import clean_description, tags_to_caption
from atrlib.data.mixture import sample_indices, source_shares
from atrlib.errors import DatasetError

SR = 16000


def wav(path: Path, seconds: float = 0.5, seed: int = 0, fmt: str = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.random.default_rng(seed).standard_normal(int(SR * seconds)).astype(np.float32) * 0.1
    sf.write(path, x, SR, format=fmt)
    return path


# ------------------------------------------------------------------------------- AudioCaps


def make_audiocaps(root: Path) -> Path:
    (root / "dataset").mkdir(parents=True)
    (root / "dataset/val.csv").write_text(
        "audiocap_id,youtube_id,start_time,caption\n"
        "10,abc,30,A dog barks\n"
        "11,abc,30,\"A dog barks, then a car passes\"\n"
        "12,def,0,Rain falls\n"
        "13,ghi,5,Wind blows\n", encoding="utf-8")
    wav(root / "audio/val/abc_30.wav", 0.5, 1)            # aac-datasets naming
    wav(root / "audio/val/Ydef.flac", 0.25, 2, "FLAC")     # AudioSet-style naming
    return root                                           # ghi_5 is missing (a deleted video)


def test_audiocaps_groups_captions_finds_files_and_names_the_missing_row(tmp_path):
    root = make_audiocaps(tmp_path)
    with pytest.raises(DatasetError, match=r"val\.csv, line 5: audio for clip 'ghi_5' not found.*on_error='skip'"):
        load_dataset("audiocaps", root=root, split="validation")
    ds = load_dataset("audiocaps", root=root, split="val", on_error="skip")
    assert ds.split == "val" and ds.clip_ids == ["abc_30", "def_0"]
    assert ds[0]["captions"] == ["A dog barks", "A dog barks, then a car passes"]
    assert ds[0]["duration"] == pytest.approx(0.5) and ds[1]["duration"] == pytest.approx(0.25)
    assert ds[1]["audio_path"].endswith("Ydef.flac")
    assert {it["source"] for it in ds} == {"audiocaps"} and all(it["freesound_id"] is None for it in ds)
    assert len(ds.skipped) == 1 and "ghi_5" in ds.skipped[0]
    assert ds.caption_clip_index() == [0, 0, 1]


def test_audiocaps_bad_rows_name_the_line(tmp_path):
    root = make_audiocaps(tmp_path)
    (root / "dataset/val.csv").write_text("audiocap_id,youtube_id,start_time,caption\n1,abc,soon,A dog\n")
    with pytest.raises(DatasetError, match=r"line 2: start_time 'soon' is not a number"):
        load_dataset("audiocaps", root=root, split="val")
    (root / "dataset/val.csv").write_text("id,youtube_id,caption\n1,abc,A dog\n")
    with pytest.raises(DatasetError, match=r"line 1: missing column\(s\) audiocap_id, start_time"):
        load_dataset("audiocaps", root=root, split="val")
    with pytest.raises(DatasetError, match=r"no AudioCaps train\.csv.*cdjkim/audiocaps"):
        load_dataset("audiocaps", root=root, split="train")


def test_audiocaps_audio_name_template(tmp_path):
    root = make_audiocaps(tmp_path)
    wav(root / "audio/val/13.wav", 0.1, 3)
    ds = load_dataset("audiocaps", root=root, split="val", audio_name="{audiocap_id}", on_error="skip")
    assert ds.clip_ids == ["ghi_5"]  # only ghi has a file named by its audiocap_id


# ------------------------------------------------------------------------------- WavCaps


def make_wavcaps(root: Path) -> Path:
    fs = [{"id": "111", "file_name": "a.wav", "href": "/people/u/sounds/111/", "tags": ["dog"], "description": "d",
           "author": "u", "duration": 0.5, "download_link": "x", "caption": "A dog barks.", "audio": "wav_path"},
          {"id": "222", "file_name": "b.wav", "caption": "Rain falls.", "duration": 0.5},
          {"id": "333", "file_name": "c.wav", "caption": "Birds sing.", "duration": 0.5}]
    sb = [{"title": "Airplane", "description": "x", "author": "y", "href": "2219-Airplane.html",
           "caption": "An airplane is landing.", "id": "2219", "duration": 0.5}]
    for src, name, data in (("FreeSound", "fsd_final.json", fs), ("SoundBible", "sb_final.json", sb)):
        p = root / "json_files" / src / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({"num_captions_per_audio": 1, "data": data}))
    for i, fid in enumerate(("111", "222", "333")):
        wav(root / f"Audio/FreeSound/{fid}.flac", 0.5, 10 + i, "FLAC")
    wav(root / "Audio/SoundBible/2219.flac", 0.5, 20, "FLAC")
    return root


def test_wavcaps_sources_ids_and_exclusion(tmp_path):
    root = make_wavcaps(tmp_path)
    ds = load_dataset("wavcaps", root=root, sources=["freesound", "sb"])
    assert ds.clip_ids == ["FreeSound/111", "FreeSound/222", "FreeSound/333", "SoundBible/2219"]
    assert [it["freesound_id"] for it in ds] == ["111", "222", "333", None]
    assert [it["source"] for it in ds] == ["wavcaps/FreeSound"] * 3 + ["wavcaps/SoundBible"]
    assert ds[3]["captions"] == ["An airplane is landing."]
    ex = load_dataset("wavcaps", root=root, sources=["FreeSound"], exclude_freesound_ids=[222, "https://freesound.org/people/u/sounds/333"])
    assert ex.clip_ids == ["FreeSound/111"]
    assert ex.skipped == ["wavcaps/train: excluded 2 clip(s) whose Freesound id is in the exclusion set (e.g. 222, 333)"]
    fast = load_dataset("wavcaps", root=root, sources=["FreeSound"], verify_audio=False)
    assert fast[0]["duration"] == 0.5 and fast[0]["sample_rate"] == 0  # from the JSON, not decoded


def test_wavcaps_errors_name_file_and_entry(tmp_path):
    root = make_wavcaps(tmp_path)
    with pytest.raises(DatasetError, match=r"no BBC_Sound_Effects/bbc_final\.json.*cvssp/WavCaps"):
        load_dataset("wavcaps", root=root)
    (root / "Audio/FreeSound/222.flac").unlink()
    with pytest.raises(DatasetError, match=r"fsd_final\.json, entry 1 \(id '222'\): audio for clip 'FreeSound/222' not found"):
        load_dataset("wavcaps", root=root, sources=["FreeSound"])
    (root / "json_files/FreeSound/fsd_final.json").write_text('{"data": [{"id": "1"}]}')
    with pytest.raises(DatasetError, match=r"entry 0: needs 'id' and 'caption'"):
        load_dataset("wavcaps", root=root, sources=["FreeSound"])
    with pytest.raises(DatasetError, match="unknown WavCaps source 'bbcx'"):
        load_dataset("wavcaps", root=root, sources=["bbcx"])


# ------------------------------------------------------------------------------- MACS


MACS_YAML = """files:
- filename: airport-a.wav
  annotations:
  - annotator_id: 1
    sentence: people talking in a large hall
    tags: [adults talking, footsteps]
  - annotator_id: 2
    sentence: announcements and footsteps
    tags: [announcement]
- filename: park-b.wav
  annotations:
  - annotator_id: 2
    sentence: birds singing
    tags: [birds singing]
"""


def test_macs_captions_tags_and_competence(tmp_path):
    (tmp_path / "MACS.yaml").write_text(MACS_YAML)
    (tmp_path / "MACS_competence.csv").write_text("annotator_id\tcompetence\n1\t0.9\n2\t0.3\n")
    wav(tmp_path / "audio/airport-a.wav", 0.5, 1)
    wav(tmp_path / "audio/park-b.wav", 0.5, 2)
    ds = load_dataset("macs", root=tmp_path)
    assert ds.clip_ids == ["airport-a.wav", "park-b.wav"]
    assert ds[0]["captions"] == ["people talking in a large hall", "announcements and footsteps"]
    assert ds[0]["tags"] == [["adults talking", "footsteps"], ["announcement"]] and ds[0]["annotator_ids"] == [1, 2]
    good = load_dataset("macs", root=tmp_path, min_competence=0.5)
    assert good.clip_ids == ["airport-a.wav"] and good[0]["captions"] == ["people talking in a large hall"]
    (tmp_path / "MACS.yaml").write_text("files:\n- filename: x.wav\n  annotations:\n  - tags: [a]\n")
    with pytest.raises(DatasetError, match=r"files\[0\] \(x\.wav\), annotations\[0\]: no 'sentence'"):
        load_dataset("macs", root=tmp_path)


# ------------------------------------------------------------------------------- FSD50K


def make_fsd50k(root: Path) -> Path:
    gt = root / "FSD50K.ground_truth"
    gt.mkdir(parents=True)
    (gt / "dev.csv").write_text(
        "fname,labels,mids,split\n"
        "64760,\"Electric_guitar,Guitar,Plucked_string_instrument\",\"/m/a,/m/b,/m/c\",train\n"
        "5312,\"Bark,Dog,Domestic_animals_and_pets\",\"/m/d,/m/e,/m/f\",val\n"
        "777,\"Rain\",\"/m/g\",train\n")
    (gt / "eval.csv").write_text("fname,labels,mids\n100,\"Speech,Human_voice\",\"/m/h,/m/i\"\n")
    md = root / "FSD50K.metadata"
    md.mkdir()
    (md / "dev_clips_info_FSD50K.json").write_text(json.dumps({
        "64760": {"title": "g.wav", "description": "<b>Electric</b> guitar &amp; amp<br/>riff", "tags": ["electric", "guitar"],
                  "license": "cc0", "uploader": "u"},
        "5312": {"title": "d.wav", "description": "", "tags": ["dog", "bark"], "license": "cc0", "uploader": "v"},
        "777": {"title": "r.wav", "description": "rain on a roof", "tags": [], "license": "cc0", "uploader": "w"}}))
    for i, f in enumerate(("64760", "5312", "777")):
        wav(root / f"FSD50K.dev_audio/{f}.wav", 0.5, 30 + i)
    wav(root / "FSD50K.eval_audio/100.wav", 0.5, 40)
    (root / "captions.csv").write_text("file_name,caption_1\n64760.wav,An electric guitar riff\n5312,A dog barks twice\n100,Someone talks\n")
    return root


def test_tags_to_caption_and_description_cleaning():
    assert tags_to_caption(["Dog"]) == "the sound of dog"
    assert tags_to_caption(["Electric_guitar", "Guitar", "Plucked_string_instrument"]) == "the sound of electric guitar and guitar"
    assert tags_to_caption(["A", "B", "C", "a"], max_labels=None) == "the sound of a, b and c"
    assert tags_to_caption(["Rain"], template="{} can be heard") == "rain can be heard"
    assert clean_description("<p>Typing on a <i>mechanical</i>  keyboard</p>") == "Typing on a mechanical keyboard"
    assert len(clean_description("x" * 900)) == 500


def test_fsd50k_caption_sources_splits_and_ids(tmp_path):
    root = make_fsd50k(tmp_path)
    tr = load_dataset("fsd50k", root=root, split="train")  # captions.csv: 777 has no caption row -> left out
    assert tr.clip_ids == ["64760"] and tr[0]["captions"] == ["An electric guitar riff"]
    assert tr[0]["freesound_id"] == "64760" and tr[0]["source"] == "fsd50k" and tr[0]["split"] == "train"
    assert tr[0]["labels"] == ["Electric_guitar", "Guitar", "Plucked_string_instrument"]
    lab = load_dataset("fsd50k", root=root, split="train+validation", captions="labels")
    assert [(it["clip_id"], it["split"], it["captions"]) for it in lab] == [
        ("64760", "train", ["the sound of electric guitar and guitar"]),
        ("5312", "val", ["the sound of bark and dog"]),
        ("777", "train", ["the sound of rain"])]
    hw = load_dataset("fsd50k", root=root, split="train+validation", captions="freesound")
    assert hw[0]["captions"] == ["Electric guitar & amp riff", "electric guitar"]
    assert hw[1]["captions"] == ["dog bark"] and hw[2]["captions"] == ["rain on a roof"]
    every = load_dataset("fsd50k", root=root, split="all", captions="labels", exclude_freesound_ids=[5312])
    assert every.clip_ids == ["64760", "777", "100"] and every[2]["split"] == "eval"
    with pytest.raises(DatasetError, match="no captions CSV. FSD50K has labels"):
        load_dataset("fsd50k", root=root, split="test", captions_csv=str(tmp_path / "none.csv"))
    (root / "FSD50K.ground_truth/eval.csv").write_text("fname,labels,mids\nabc,Speech,/m/h\n")
    with pytest.raises(DatasetError, match=r"eval\.csv, line 2: fname 'abc' is not a Freesound id"):
        load_dataset("fsd50k", root=root, split="test", captions="labels")


# ------------------------------------------------------------------------------- mixture


def test_mixture_weights_fraction_and_seeded_draws(tmp_path):
    make_audiocaps(tmp_path / "ac")
    make_wavcaps(tmp_path / "wc")
    sources = [
        {"name": "audiocaps", "root": str(tmp_path / "ac"), "split": "val", "on_error": "skip", "weight": 1.0},
        {"name": "wavcaps", "root": str(tmp_path / "wc"), "sources": ["FreeSound"], "weight": 3.0},
    ]
    mix = load_dataset("mixture", sources=sources)
    assert len(mix) == 5 and mix.clip_ids[0] == "audiocaps:abc_30" and mix.clip_ids[2] == "wavcaps:FreeSound/111"
    shares = source_shares(mix)
    assert shares["audiocaps"] == pytest.approx(0.25) and shares["wavcaps/FreeSound"] == pytest.approx(0.75)
    idx = sample_indices(mix, 8000, seed=3)
    assert np.array_equal(idx, sample_indices(mix, 8000, seed=3))  # deterministic
    drawn_wc = np.mean([mix[i]["source"] == "wavcaps/FreeSound" for i in idx])
    assert drawn_wc == pytest.approx(0.75, abs=0.02)
    assert any(m.startswith("audiocaps: ") for m in mix.skipped)  # the missing AudioCaps clip is reported
    # fraction: a seeded subset, the same on every call, independent of the other sources
    half = [dict(s, fraction=0.67) if s["name"] == "wavcaps" else s for s in sources]
    a = load_dataset("mixture", sources=half, seed=1).clip_ids
    assert a == load_dataset("mixture", sources=half, seed=1).clip_ids and len(a) == 4
    picks = {tuple(load_dataset("mixture", sources=half, seed=s).clip_ids) for s in range(6)}
    assert len(picks) > 1  # other seeds pick other clips
    # exclusion reaches every source
    ex = load_dataset("mixture", sources=sources, exclude_freesound_ids=[111])
    assert "wavcaps:FreeSound/111" not in ex.clip_ids and len(ex) == 4
    with pytest.raises(DatasetError, match="label\\(s\\) audiocaps used twice"):
        load_dataset("mixture", sources=[sources[0], sources[0]])


# ------------------------------------------------------------------------------- downloads


def test_fetch_verifies_md5_atomically_and_skips_good_copies(tmp_path):
    from atrlib.data.download import DataFile, fetch
    from atrlib.errors import ChecksumError

    src = tmp_path / "host"
    src.mkdir()
    (src / "meta.csv").write_text("file_name,sound_id\na.wav,80399\n")
    md5 = hashlib.md5((src / "meta.csv").read_bytes()).hexdigest()
    good = DataFile("meta", "meta.csv", (src / "meta.csv").as_uri(), md5=md5)
    out = fetch(good, tmp_path / "data", progress=False)
    assert out.read_bytes() == (src / "meta.csv").read_bytes()
    (src / "meta.csv").unlink()  # a verified copy is not fetched again
    assert fetch(good, tmp_path / "data", progress=False) == out
    (src / "other.csv").write_text("changed upstream\n")
    bad = DataFile("other", "other.csv", (src / "other.csv").as_uri(), md5=md5)
    with pytest.raises(ChecksumError, match=r"md5 .* expected " + md5):
        fetch(bad, tmp_path / "data", progress=False)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["meta.csv"]  # nothing half-written left


def test_download_helpers_through_a_mirror(tmp_path):
    from atrlib.data.download import download_audiocaps_csvs, download_macs_annotations
    from atrlib.errors import ChecksumError

    mirror = tmp_path / "mirror"
    make_audiocaps(tmp_path / "made")
    mirror.mkdir()
    for s in ("train", "val", "test"):
        (mirror / f"{s}.csv").write_bytes((tmp_path / "made/dataset/val.csv").read_bytes())
    got = download_audiocaps_csvs(tmp_path / "ac", mirror=mirror.as_uri(), progress=False)
    assert [p.name for p in got] == ["train.csv", "val.csv", "test.csv"]
    (tmp_path / "ac/audio").symlink_to(tmp_path / "made/audio")
    assert load_dataset("audiocaps", root=tmp_path / "ac", split="val", on_error="skip").clip_ids == ["abc_30", "def_0"]
    (mirror / "MACS.yaml").write_text(MACS_YAML)  # not the published file: its md5 differs
    with pytest.raises(ChecksumError, match="MACS.yaml.*expected 23fcb2ebd0b109094034ef9e87972256"):
        download_macs_annotations(tmp_path / "macs", mirror=mirror.as_uri(), progress=False)
    assert not (tmp_path / "macs/MACS.yaml").exists()


def test_safe_unzip_refuses_paths_outside(tmp_path):
    import zipfile

    from atrlib.data.download import safe_unzip

    z = tmp_path / "a.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("FSD50K.ground_truth/dev.csv", "fname,labels,mids,split\n")
    safe_unzip(z, tmp_path / "out")
    assert (tmp_path / "out/FSD50K.ground_truth/dev.csv").is_file()
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("../evil.txt", "x")
    with pytest.raises(ValueError, match="outside"):
        safe_unzip(z, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()
