"""One rule at the command line's edge, and readers whose errors name the file.

A user's mistake — any AtrlibError, or a well-known OS-level one (missing file, folder for a
file, permission, existing file, full disk or quota, read-only file system, a text file in
another encoding) — is one message naming the path and the fix, exit 2, no traceback
(``--debug`` shows it); anything else keeps its traceback. Then each reader the issue lists is
driven through the real command line with a broken file: the message names that file."""
import atrlib  # noqa: F401  (thread settings before torch)

import errno
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from atrlib.__main__ import main as cli
from atrlib.errors import (AtrlibError, AudioError, DatasetError, OutputExistsError, ParaphraseFileError, StoreError,
                           TeacherFileError, WeightsFileError)
from sounds import tones as _tones


def _run(capsys, argv):
    rc = cli(argv)
    err = capsys.readouterr().err
    return rc, err


def _one_message(rc, err, *names):
    assert rc == 2, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def model_run(tmp_path_factory):
    from atrlib.models.dual import create_model, save_model

    run = tmp_path_factory.mktemp("model") / "run"
    save_model(create_model("synth-tiny"), run)
    return run


# ---- the edge ------------------------------------------------------------------------------
def test_the_library_errors_are_one_family():
    for cls in (AudioError, ParaphraseFileError, DatasetError, StoreError, TeacherFileError, WeightsFileError,
                OutputExistsError):
        assert issubclass(cls, AtrlibError), cls


@pytest.mark.parametrize("exc, words", [
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "/data/clotho/x.csv"), "does not exist"),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "/data/clotho"), "give a file"),
    (NotADirectoryError(errno.ENOTDIR, "Not a directory", "/data/a.wav/b"), "not a folder"),
    (PermissionError(errno.EACCES, "Permission denied", "/data/locked.csv"), "permissions"),
    (FileExistsError(errno.EEXIST, "File exists", "/data/out"), "another path"),
    (OSError(errno.ENOSPC, "No space left on device", "/data/out/sim.npz"), "disk is full"),
    (OSError(errno.EDQUOT, "Disk quota exceeded", "/data/out/sim.npz"), "quota"),
    (OSError(errno.EROFS, "Read-only file system", "/data/out/sim.npz"), "read-only"),
])
def test_os_level_user_errors_are_one_message_naming_the_path(monkeypatch, capsys, exc, words):
    import atrlib.cli.bench as bench

    def fail(args):
        raise exc

    monkeypatch.setattr(bench, "main", fail)
    rc, err = _run(capsys, ["bench"])
    line = _one_message(rc, err, exc.filename)
    assert words in line
    rc, err = _run(capsys, ["--debug", "bench"])  # --debug shows the traceback too
    assert rc == 2 and "Traceback" in err and exc.filename in err


def test_a_text_file_in_another_encoding_names_the_file(tmp_path, capsys):
    cfg = tmp_path / "train.yaml"
    cfg.write_bytes("epochs: 1  # caf\xe9\n".encode("latin-1"))
    _one_message(*_run(capsys, ["train", "--config", str(cfg)]), cfg, "utf-8")


def test_a_bug_keeps_its_traceback(monkeypatch):
    import atrlib.cli.bench as bench

    for bug in (ZeroDivisionError("a bug"), ConnectionError(errno.ECONNRESET, "reset"), KeyError("x")):
        monkeypatch.setattr(bench, "main", lambda args, bug=bug: (_ for _ in ()).throw(bug))
        with pytest.raises(type(bug)):
            cli(["bench"])


# ---- readers: stores -----------------------------------------------------------------------
@pytest.fixture()
def store(model_run, tmp_path, capsys):
    audio = _tones(tmp_path / "audio", 4)
    s = tmp_path / "store"
    assert cli(["index", "build", "--model", str(model_run), "--audio", str(audio), "--index", str(s)]) == 0
    capsys.readouterr()
    return s


def test_a_store_naming_a_path_outside_it_is_refused(store, capsys):
    meta = json.loads((store / "store.json").read_text())
    for key in ("clips", "embeddings"):
        bad = dict(meta, **{key: "../../../../etc/passwd"})
        (store / "store.json").write_text(json.dumps(bad))
        _one_message(*_run(capsys, ["search", "--index", str(store), "--query", "a beep"]), "store.json",
                     "../../../../etc/passwd")
    link = store / "clips-link.csv"
    link.symlink_to("/etc/passwd")
    (store / "store.json").write_text(json.dumps(dict(meta, clips=link.name)))
    _one_message(*_run(capsys, ["search", "--index", str(store), "--query", "a beep"]), "outside the store")


@pytest.mark.parametrize("damage", ["truncated", "empty", "not json"])
def test_damaged_store_files_name_the_file(store, capsys, damage):
    emb = next(store.glob("embeddings-*.npy"))
    if damage == "truncated":
        emb.write_bytes(emb.read_bytes()[:150])
        target = emb
    elif damage == "empty":
        emb.write_bytes(b"")
        target = emb
    else:
        (store / "store.json").write_text("{broken")
        target = store / "store.json"
    _one_message(*_run(capsys, ["search", "--index", str(store), "--query", "a beep"]), target, "rebuild")


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
def test_a_damaged_faiss_index_names_the_file(model_run, tmp_path, capsys, damage):
    pytest.importorskip("faiss")
    from atrlib.retrieval.index import IndexConfig
    from atrlib.retrieval.retrievers import TrainedRetriever
    from atrlib.retrieval.store import build_store, model_identity

    retriever = TrainedRetriever(model_run)
    dim = retriever.embed_text(["x"]).shape[1]
    clips = []
    for i in range(400):  # stand-in clips: the store holds their vectors, search reads only the files' sizes
        p = tmp_path / "clips" / f"{i}.bin"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(str(i).encode())
        clips.append(p)
    vecs = np.random.default_rng(0).normal(size=(len(clips), dim)).astype(np.float32)
    lookup = {str(p.resolve()): v for p, v in zip(clips, vecs)}
    s = tmp_path / "store"
    build_store(s, clips, lambda ps: np.stack([lookup[p] for p in ps]), model_identity(retriever),
                IndexConfig(kind="ivf", nlist=8, sample=40, train_size=400), progress=False)
    index = next(s.glob("index-*.faiss"))
    data = index.read_bytes()
    index.write_bytes({"truncated": data[:len(data) // 2], "empty": b"", "garbage": bytes(len(data))}[damage])
    _one_message(*_run(capsys, ["search", "--index", str(s), "--system", str(model_run), "--query", "a beep"]),
                 index.name)


# ---- readers: weights and models ----------------------------------------------------------
@pytest.mark.parametrize("content, words", [(b"", "empty"), (b"\x00garbage" * 50, "corrupt")])
def test_a_broken_weights_file_names_the_file(tmp_path, content, words):
    from atrlib.models.towers import AUDIO_TOWERS

    path = tmp_path / "weights.pt"
    path.write_bytes(content)
    with pytest.raises(WeightsFileError, match=words) as e:
        AUDIO_TOWERS.get("cnn14-tiny")(weights=path)
    assert str(path) in str(e.value)
    with pytest.raises(FileNotFoundError, match="no such weights file"):
        AUDIO_TOWERS.get("cnn14-tiny")(weights=tmp_path / "missing.pt")


def test_a_broken_weights_file_at_the_command_line(tmp_path, capsys):
    path = tmp_path / "cnn14.pt"
    path.write_bytes(b"\x00garbage" * 50)
    rc, err = _run(capsys, ["train", "dataset=synth", "size=tiny", "epochs=1", "device=cpu", "progress=false",
                            "model=cau2023-cnn14-tiny",
                            f"model_overrides={{audio: {{name: cnn14-tiny, frozen: true, pretrained: {path}}}}}",
                            f"out_dir={tmp_path / 'run'}"])
    _one_message(rc, err, path)


def test_a_corrupt_trained_model_names_the_run(model_run, tmp_path, capsys):
    import shutil

    bad = tmp_path / "bad-run"
    shutil.copytree(model_run, bad)
    (bad / "model.safetensors").write_bytes((model_run / "model.safetensors").read_bytes()[:100])
    audio = _tones(tmp_path / "audio")
    _one_message(*_run(capsys, ["search", "--system", str(bad), "--audio", str(audio), "--query", "a beep"]), bad)


# ---- readers: distillation teachers -------------------------------------------------------
def _teacher(path, ds, sim=None, transpose=False):
    from atrlib.retrieval.simfile import SimilarityMatrix, save_similarity

    caps, clips = ds.caption_ids(), ds.clip_ids
    sim = np.random.default_rng(0).normal(size=(len(caps), len(clips))).astype(np.float32) if sim is None else sim
    if transpose:
        sm = SimilarityMatrix(sim.T.copy(), clips, caps, [[0]] * len(clips), {"split": ds.split})
    else:
        sm = SimilarityMatrix(sim, caps, clips, [[0]] * len(caps), {"split": ds.split})
    save_similarity(path, sm)
    return path


def test_teacher_files_are_checked_where_they_enter(tmp_path):
    from atrlib.data import load_dataset
    from atrlib.losses.distill import teacher_matrix

    ds = load_dataset("synth", size="tiny", split="train")
    sim = np.random.default_rng(1).normal(size=(len(ds.caption_ids()), len(ds.clip_ids))).astype(np.float32)
    sim[3, 2] = np.nan
    cases = {
        "nan.npz": (_teacher(tmp_path / "nan.npz", ds, sim), "NaN"),
        "transposed.npz": (_teacher(tmp_path / "transposed.npz", ds, transpose=True), "transposed"),
        "garbage.npz": (tmp_path / "garbage.npz", "not a readable similarity file"),
        "shape.npz": (tmp_path / "shape.npz", "not a readable similarity file"),
    }
    (tmp_path / "garbage.npz").write_bytes(b"PK\x03\x04 not a zip")
    np.savez(tmp_path / "shape.npz", sim=np.zeros((3, 4), np.float32), query_ids=np.array(["a", "b"]),
             item_ids=np.array(["x"]), rel_indptr=np.zeros(3, np.int64), rel_indices=np.zeros(0, np.int64),
             meta=np.array("{}"))
    for name, (path, words) in cases.items():
        with pytest.raises(TeacherFileError, match=words) as e:
            teacher_matrix([path], ds)
        assert str(path) in str(e.value), name
    assert teacher_matrix([_teacher(tmp_path / "ok.npz", ds)], ds).shape == (len(ds.caption_ids()), len(ds.clip_ids))


def test_a_nan_teacher_at_the_command_line(tmp_path, capsys):
    from atrlib.data import load_dataset

    ds = load_dataset("synth", size="tiny", split="train")
    sim = np.zeros((len(ds.caption_ids()), len(ds.clip_ids)), np.float32)
    sim[0, 0] = np.inf
    t = _teacher(tmp_path / "teacher.npz", ds, sim)
    rc, err = _run(capsys, ["train", "dataset=synth", "size=tiny", "epochs=1", "device=cpu", "progress=false",
                            "model=synth-tiny", "loss=distill", f"loss_kwargs={{distill: {{teacher: [{t}]}}}}",
                            f"out_dir={tmp_path / 'run'}"])
    _one_message(rc, err, t, "NaN or infinite")


# ---- search's inputs ---------------------------------------------------------------------
def test_like_needs_a_clean_audio_file(model_run, tmp_path, capsys):
    audio = _tones(tmp_path / "audio")
    table = tmp_path / "clips.csv"
    table.write_text("file_name\nc0.wav\n")
    nan = tmp_path / "nan.wav"
    x = np.zeros(8000, np.float32)
    x[10] = np.nan
    sf.write(nan, x, 16000, subtype="FLOAT")
    for example, words in ((table, "not an audio file"), (nan, "NaN"), (tmp_path / "missing.wav", "no such")):
        _one_message(*_run(capsys, ["search", "--system", str(model_run), "--audio", str(audio),
                                    "--like", str(example)]), example, words)


def test_rerank_must_be_a_nonnegative_count_and_needs_a_matching_head(model_run, tmp_path, capsys):
    audio = _tones(tmp_path / "audio")
    base = ["search", "--system", str(model_run), "--audio", str(audio), "--query", "a beep"]
    rc, err = _run(capsys, base + ["--rerank", "-1"])
    assert rc == 2 and "--rerank" in err and ">= 0" in err and "Traceback" not in err
    _one_message(*_run(capsys, base + ["--rerank", "4"]), "--rerank 4", "no matching head")


def test_search_audio_must_be_a_folder_or_a_list(model_run, tmp_path, capsys):
    junk = tmp_path / "bad.wav"
    junk.write_text("not audio")
    folder = _tones(tmp_path / "audio")
    (folder / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    base = ["search", "--system", str(model_run), "--query", "a beep"]
    _one_message(*_run(capsys, base + ["--audio", str(junk)]), junk, "a folder of audio files")
    _one_message(*_run(capsys, base + ["--audio", str(folder)]), folder / "broken.wav")
