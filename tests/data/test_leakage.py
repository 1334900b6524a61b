"""Leakage across corpora: Freesound ids from Clotho's metadata, exclusion, and the audit by
id, file hash and decoded-audio hash."""
from pathlib import Path

import atrlib  # noqa: F401  (thread settings before torch)
import numpy as np
import pytest
import soundfile as sf

from atrlib.data import load_dataset
from atrlib.data.audit import leakage_audit, overlap_summary
from atrlib.data.freesound import (attach_clotho_ids, clotho_freesound_ids, exclude_by_freesound_id, exclusion_ids,
                                   freesound_id, read_id_table)
from atrlib.errors import DatasetError

SR = 16000


def noise(seed, n=8000):
    return np.random.default_rng(seed).standard_normal(n).astype(np.float32) * 0.1


def make_clotho(root: Path) -> Path:
    """Clotho evaluation (2 clips) + validation (1 clip) with metadata CSVs as published:
    v2 metadata is ISO-8859-1 (here: an 'é' in a keyword), the DCASE test file is ';'-separated."""
    for split, clips in (("evaluation", [("Radio Garble.wav", 0, 80399), ("Rain.wav", 1, 333)]),
                         ("validation", [("Birds.wav", 2, 444)])):
        (root / f"clotho_audio_{split}").mkdir(parents=True)
        caps = ["file_name,caption_1"]
        meta = ["file_name,keywords,sound_id,sound_link,start_end_samples,manufacturer,license"]
        for name, seed, sid in clips:
            sf.write(root / f"clotho_audio_{split}" / name, noise(seed), SR)
            caps.append(f"{name},a caption")
            meta.append(f'{name},café;radio,{sid},https://freesound.org/people/x/sounds/{sid},"[0, 8000]",x,'
                        "http://creativecommons.org/licenses/by/3.0/")
        (root / f"clotho_captions_{split}.csv").write_text("\n".join(caps) + "\n", encoding="utf-8")
        (root / f"clotho_metadata_{split}.csv").write_bytes(("\n".join(meta) + "\n").encode("iso-8859-1"))
    (root / "clotho_metadata_test.csv").write_text("file_name;sound_id;sound_link\ntest_0001.wav;555;x\n")
    return root


def make_wavcaps(root: Path, clotho: Path) -> Path:
    """FreeSound part: 333 holds Clotho's Rain.wav bytes (a byte copy), 444 is an excerpt (other
    audio, same Freesound id), 900 is the evaluation clip 'Radio Garble' decoded and re-encoded
    as FLAC (other bytes, same samples: only the decoded-audio hash finds it), 901 is unrelated."""
    import json

    data = [{"id": i, "caption": "c", "duration": 0.5} for i in ("333", "444", "900", "901")]
    (root / "json_files/FreeSound").mkdir(parents=True)
    (root / "json_files/FreeSound/fsd_final.json").write_text(json.dumps({"data": data}))
    (root / "Audio/FreeSound").mkdir(parents=True)
    (root / "Audio/FreeSound/333.wav").write_bytes((clotho / "clotho_audio_evaluation/Rain.wav").read_bytes())
    sf.write(root / "Audio/FreeSound/444.wav", noise(2)[:4000], SR)     # an excerpt of Birds.wav
    x, sr = sf.read(clotho / "clotho_audio_evaluation/Radio Garble.wav", dtype="int16")
    sf.write(root / "Audio/FreeSound/900.flac", x, sr, format="FLAC")
    sf.write(root / "Audio/FreeSound/901.wav", noise(9), SR)
    return root


def test_freesound_id_forms():
    assert freesound_id(80399) == "80399"
    assert freesound_id("080399.wav") == "80399"
    assert freesound_id("https://freesound.org/people/Benboncan/sounds/80399/") == "80399"
    assert freesound_id("https://freesound.org/people/T/sounds/180913/download/180913__t__uk-mello.wav") == "180913"
    assert freesound_id("Radio Garble.wav") is None and freesound_id(None) is None


def test_clotho_metadata_ids_and_exclusion_specs(tmp_path):
    root = make_clotho(tmp_path / "clotho")
    ev = read_id_table(root / "clotho_metadata_evaluation.csv")  # ISO-8859-1 read without a complaint
    assert ev == {"Radio Garble.wav": "80399", "Rain.wav": "333"}
    assert read_id_table(root / "clotho_metadata_test.csv") == {"test_0001.wav": "555"}  # ';'-separated
    assert clotho_freesound_ids(root) == {"80399", "333", "444", "555"}
    assert clotho_freesound_ids(root, splits=["evaluation"]) == {"80399", "333"}
    assert exclusion_ids(root) == {"80399", "333", "444", "555"}
    assert exclusion_ids([1, "2", "https://freesound.org/people/a/sounds/3"]) == {"1", "2", "3"}
    (tmp_path / "blacklist.csv").write_text("index,id\n0,117790\n1,204046\n")  # aac-datasets' WavCaps blacklist
    assert exclusion_ids(tmp_path / "blacklist.csv") == {"117790", "204046"}
    (tmp_path / "ids.txt").write_text("# Clotho test\n12\n13  # another\n")
    assert exclusion_ids(tmp_path / "ids.txt") == {"12", "13"}
    (tmp_path / "bad.txt").write_text("12\nabc\n")
    with pytest.raises(DatasetError, match=r"bad\.txt, line 2: 'abc' is not a Freesound id"):
        exclusion_ids(tmp_path / "bad.txt")
    with pytest.raises(DatasetError, match=r"no clotho_metadata_.*zenodo"):
        clotho_freesound_ids(tmp_path)
    (tmp_path / "nocol.csv").write_text("file_name,keywords\na.wav,x\n")
    with pytest.raises(DatasetError, match=r"nocol\.csv, line 1: no id column"):
        read_id_table(tmp_path / "nocol.csv")


def test_exclusion_keeps_clotho_eval_and_val_out_of_a_corpus(tmp_path):
    clotho = make_clotho(tmp_path / "clotho")
    wc = make_wavcaps(tmp_path / "wavcaps", clotho)
    full = load_dataset("wavcaps", root=wc, sources=["FreeSound"])
    assert len(full) == 4
    clean = load_dataset("wavcaps", root=wc, sources=["FreeSound"], exclude_freesound_ids=clotho)
    assert clean.clip_ids == ["FreeSound/900", "FreeSound/901"]  # 333 (evaluation) and 444 (validation) gone
    assert "excluded 2 clip(s)" in clean.skipped[-1]
    after = exclude_by_freesound_id(full, clotho_freesound_ids(clotho, splits=["evaluation"]))
    assert after.clip_ids == ["FreeSound/444", "FreeSound/900", "FreeSound/901"]


def test_audit_across_corpora_by_id_file_hash_and_decoded_audio(tmp_path):
    clotho = make_clotho(tmp_path / "clotho")
    wc = make_wavcaps(tmp_path / "wavcaps", clotho)
    sets = {"clotho/evaluation": attach_clotho_ids(load_dataset("clotho", root=clotho, split="evaluation")),
            "clotho/validation": attach_clotho_ids(load_dataset("clotho", root=clotho, split="validation")),
            "wavcaps": load_dataset("wavcaps", root=wc, sources=["FreeSound"])}
    assert [it["freesound_id"] for it in sets["clotho/evaluation"]] == ["80399", "333"]
    table = leakage_audit(sets, decode=True)
    got = sorted(zip(table.kind, table.key.astype(str), table.splits))
    content_key = table[table.kind == "content"].key.iloc[0]
    audio_rows = table[table.kind == "audio"]
    assert ("freesound_id", "333", "clotho/evaluation,wavcaps") in got      # byte copy: also found by id
    assert ("freesound_id", "444", "clotho/validation,wavcaps") in got      # excerpt: only the id finds it
    assert ("content", content_key, "clotho/evaluation,wavcaps") in got     # the byte copy
    assert set(audio_rows.clips) == {"clotho/evaluation:Rain.wav; wavcaps:FreeSound/333",
                                     "clotho/evaluation:Radio Garble.wav; wavcaps:FreeSound/900"}  # re-encoded too
    assert not any(table.kind == "file_name")  # ids of different corpora are not compared by name
    summary = overlap_summary(table)
    pairs = {(k, a, b): n for k, a, b, n in summary.itertuples(index=False)}
    assert pairs == {("audio", "clotho/evaluation", "wavcaps"): 2, ("content", "clotho/evaluation", "wavcaps"): 1,
                     ("freesound_id", "clotho/evaluation", "wavcaps"): 1,
                     ("freesound_id", "clotho/validation", "wavcaps"): 1}
    only_ids = leakage_audit(sets, kinds=["freesound_id"])
    assert set(only_ids.kind) == {"freesound_id"} and len(only_ids) == 2
    with pytest.raises(ValueError, match="unknown audit kind"):
        leakage_audit(sets, kinds=["names"])
