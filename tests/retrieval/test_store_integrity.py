"""Stores that cannot lie (atrlib.retrieval.store): NaN vectors refused at build, naming the clip;
each returned clip checked against the size and mtime recorded at build (deleted: skipped,
changed: a note); an empty store says so; a store is never built into a run or a user's folder;
``search --index --rerank`` is refused in words."""
import atrlib  # noqa: F401  (thread settings before torch)

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from atrlib.__main__ import main as cli
from atrlib.errors import StoreError
from atrlib.retrieval.store import EmbeddingStore, build_store, search_index


class Model:
    """Vectors from the file's bytes (a hash seeds them); text 'clip X' embeds like clip X's bytes."""

    name = "bytes"
    dim = 8

    def __init__(self, nan_for=()):
        self.nan_for = set(nan_for)

    def vector(self, data: bytes) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(data).digest()[:4], "little")
        return np.random.default_rng(seed).normal(size=self.dim).astype(np.float32)

    def embed_audio(self, paths, progress=False):
        out = np.stack([self.vector(Path(p).read_bytes()) for p in paths])
        for i, p in enumerate(paths):
            if Path(p).name in self.nan_for:
                out[i, 0] = np.nan
        return out

    def embed_text(self, texts):
        return np.stack([self.vector(t.encode()) for t in texts])


def _clips(folder: Path, names) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / f"{n}.wav").write_bytes(f"clip {n}".encode())
    return sorted(folder.glob("*.wav"))


def _build(store, paths, model=None):
    model = model or Model()
    return build_store(store, paths, model.embed_audio, {"name": model.name}, progress=False)


def test_nan_vectors_are_refused_at_build_naming_the_clip(tmp_path):
    paths = _clips(tmp_path / "audio", ["a", "b", "c"])
    with pytest.raises(StoreError, match=r"b\.wav: the model gives a NaN or infinite vector"):
        _build(tmp_path / "store", paths, Model(nan_for={"b.wav"}))
    assert not (tmp_path / "store").exists() or not list((tmp_path / "store").iterdir())  # nothing written
    _build(tmp_path / "store", paths)
    before = (tmp_path / "store" / "store.json").read_text()
    (tmp_path / "audio" / "d.wav").write_bytes(b"clip d")
    with pytest.raises(StoreError, match=r"d\.wav"):
        _build(tmp_path / "store", [*paths, tmp_path / "audio" / "d.wav"], Model(nan_for={"d.wav"}))
    assert (tmp_path / "store" / "store.json").read_text() == before  # the previous store is intact
    assert len(EmbeddingStore(tmp_path / "store")) == 3


def test_deleted_clips_are_skipped_and_changed_clips_carry_a_note(tmp_path):
    paths = _clips(tmp_path / "audio", ["a", "b", "c", "d"])
    store = tmp_path / "store"
    _build(store, paths)
    model = Model()
    first = search_index(store, ["clip a"], top=2, retriever=model)
    assert first["file"].iloc[0] == "a.wav" and set(first["note"]) == {""}
    second = first["file"].iloc[1]
    (tmp_path / "audio" / "a.wav").unlink()  # deleted: skipped, the next clips move up
    (tmp_path / "audio" / second).write_bytes(b"edited content")  # changed: kept, with a note
    table = search_index(store, ["clip a"], top=2, retriever=model)
    assert "a.wav" not in set(table["file"]) and len(table) == 2 and list(table["rank"]) == [1, 2]
    assert table.attrs["deleted"] == [str((tmp_path / "audio" / "a.wav").resolve())]
    noted = table[table["note"] != ""]
    assert list(noted["file"]) == [second] and "changed since the store was built" in noted["note"].iloc[0]


def test_search_command_prints_the_notes_and_writes_them(tmp_path, capsys, monkeypatch):
    import pandas as pd

    import atrlib.retrieval.search as search_mod

    paths = _clips(tmp_path / "audio", ["a", "b", "c"])
    store = tmp_path / "store"
    _build(store, paths)
    monkeypatch.setattr(search_mod, "resolve_retriever", lambda name, **kw: Model())
    (tmp_path / "audio" / "a.wav").unlink()
    os.utime(tmp_path / "audio" / "b.wav", ns=(1, 1))  # same bytes, another mtime: reported as changed
    out = tmp_path / "ranking.csv"
    assert cli(["search", "--index", str(store), "--query", "clip b", "--top", "3", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"skipped: {(tmp_path / 'audio' / 'a.wav').resolve()}: deleted since the store was built" in err
    assert "note:" in err and "b.wav: changed since the store was built" in err
    table = pd.read_csv(out, keep_default_na=False)
    assert list(table.columns) == ["query", "rank", "file", "score", "note"] and len(table) == 2
    assert table.set_index("file").loc["b.wav", "note"].startswith("changed") and \
        table.set_index("file").loc["c.wav", "note"] == ""


def test_an_empty_store_says_so(tmp_path, capsys, monkeypatch):
    import atrlib.retrieval.search as search_mod

    paths = _clips(tmp_path / "audio", ["a", "b"])
    store = tmp_path / "store"
    _build(store, paths)
    monkeypatch.setattr(search_mod, "resolve_retriever", lambda name, **kw: Model())
    for p in paths:
        p.unlink()
    assert cli(["search", "--index", str(store), "--query", "clip a"]) == 2  # every returned clip deleted
    err = capsys.readouterr().err
    assert "every clip the store returned has been deleted" in err and str(store) in err
    _build(store, [])  # a rebuild drops them all: a store of 0 clips
    assert len(EmbeddingStore(store)) == 0
    assert cli(["search", "--index", str(store), "--query", "clip a"]) == 2
    err = capsys.readouterr().err
    assert "holds no clips" in err and "Traceback" not in err


def _training_run(path: Path) -> Path:
    (path / "best").mkdir(parents=True)
    (path / "params.json").write_text("{}")
    return path


@pytest.mark.parametrize("kind", ["training", "batch run", "user folder"])
def test_a_store_is_never_built_into_a_run_or_a_users_folder(tmp_path, kind):
    paths = _clips(tmp_path / "audio", ["a", "b"])
    target = tmp_path / "target"
    if kind == "training":
        _training_run(target)
        words = "a training run"
    elif kind == "batch run":
        target.mkdir()
        (target / "run.json").write_text("{}")
        words = "run.json"
    else:
        target.mkdir()
        (target / "clips-notes.csv").write_text("mine")
        words = "not something atrlib wrote"
    before = sorted(p.name for p in target.iterdir())
    with pytest.raises(StoreError, match=words):
        _build(target, paths)
    assert sorted(p.name for p in target.iterdir()) == before
    with pytest.raises(StoreError, match="audio.*not something atrlib wrote"):  # the audio folder itself
        _build(tmp_path / "audio", paths)


def test_an_update_removes_only_its_own_earlier_generations(tmp_path):
    paths = _clips(tmp_path / "audio", ["a", "b"])
    store = tmp_path / "store"
    _build(store, paths)
    (store / "clips-my-notes.csv").write_text("mine")  # named like a store file, but not by a build
    _build(store, _clips(tmp_path / "audio", ["c"]))
    assert (store / "clips-my-notes.csv").read_text() == "mine"
    assert len(list(store.glob("embeddings-*.npy"))) == 1 and len(EmbeddingStore(store)) == 3


def test_index_build_refuses_a_training_run_at_the_command_line(tmp_path, capsys):
    run = _training_run(tmp_path / "run")
    audio = tmp_path / "audio"
    _clips(audio, ["a"])
    assert cli(["index", "build", "--model", "tagbridge", "--audio", str(audio), "--index", str(run)]) == 2
    err = capsys.readouterr().err
    assert "a training run" in err and str(run) in err and "Traceback" not in err
    assert sorted(p.name for p in run.iterdir()) == ["best", "params.json"]


def test_search_index_with_rerank_is_refused_in_words(tmp_path, capsys):
    paths = _clips(tmp_path / "audio", ["a"])
    _build(tmp_path / "store", paths)
    assert cli(["search", "--index", str(tmp_path / "store"), "--query", "clip a", "--rerank", "16"]) == 2
    err = capsys.readouterr().err
    assert "--rerank 16 with --index" in err and "pooled vector" in err and "Traceback" not in err
    info = json.loads((tmp_path / "store" / "store.json").read_text())
    assert info["count"] == 1
