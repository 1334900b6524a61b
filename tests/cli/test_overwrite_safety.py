"""--overwrite moves only what the command itself wrote before (atrlib.files.check_output):
never an input of the same command, a user's own file or folder, or a run of another kind.

Each refusal is driven through the real command line and checks that the user's files are
untouched and that nothing was moved aside (no ``*.prev-*`` beside them)."""
import atrlib  # noqa: F401  (thread settings before torch)

import json
from pathlib import Path

import pytest

from atrlib.__main__ import main as cli
from atrlib.errors import OutputExistsError
from atrlib.files import OUTPUT_MARKER, check_output, claim_output, output_kind
from sounds import tones as _tones


def _user_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "thesis.tex").write_text("precious")
    return path


def _training_run(path: Path) -> Path:
    (path / "best").mkdir(parents=True)
    (path / "best" / "model.safetensors").write_bytes(b"weights")
    (path / "params.json").write_text('{"epochs": 1}')
    (path / "metrics.json").write_text('{"test": {}}')
    return path


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _nothing_moved(parent: Path) -> bool:
    return not [p for p in parent.iterdir() if ".prev-" in p.name]


@pytest.fixture(scope="module")
def model_run(tmp_path_factory):
    from atrlib.models.dual import create_model, save_model

    run = tmp_path_factory.mktemp("model") / "run"
    save_model(create_model("synth-tiny"), run)
    return run


# ---- what is recognised --------------------------------------------------------------------
def test_output_kind_recognises_each_writer_by_its_own_files(tmp_path):
    ranking = tmp_path / "ranking.csv"
    ranking.write_text("query,rank,file,score\na dog,1,c0.wav,0.5\n")
    other_csv = tmp_path / "mine.csv"
    other_csv.write_text("name,value\nx,1\n")
    ev = tmp_path / "eval"
    ev.mkdir()
    (ev / "metrics.json").write_text(json.dumps({OUTPUT_MARKER: "evaluation", "t2a": {}}))
    (ev / "notes.txt").write_text("mine")  # the marker decides, not the listing
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "metrics.json").write_text("{}")
    (legacy / "sim_test.npz").write_bytes(b"x")
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text("{}")
    assert output_kind(ranking) == "search" and output_kind(other_csv) is None
    assert output_kind(ev) == "evaluation" and output_kind(legacy) == "evaluation"
    assert output_kind(_training_run(tmp_path / "train")) == "training" and output_kind(run) == "run"
    assert output_kind(_user_folder(tmp_path / "mine")) is None and output_kind(tmp_path / "missing") is None


def test_check_output_refuses_inputs_other_kinds_and_user_folders(tmp_path):
    user = _user_folder(tmp_path / "mine")
    before = _snapshot(user)
    with pytest.raises(OutputExistsError, match="not something atrlib wrote"):
        claim_output(user, "evaluation", overwrite=True)
    with pytest.raises(OutputExistsError, match="is an input of this command"):
        claim_output(user, "evaluation", overwrite=True, inputs=[user])
    with pytest.raises(OutputExistsError, match=r"holds .*audio.*which is an input"):
        check_output(tmp_path, "evaluation", overwrite=True, inputs=[_tones(tmp_path / "audio")])
    with pytest.raises(OutputExistsError, match="a training run"):
        claim_output(_training_run(tmp_path / "train"), "evaluation", overwrite=True)
    assert _snapshot(user) == before and _nothing_moved(tmp_path)
    ev = tmp_path / "ev"
    ev.mkdir()
    (ev / "metrics.json").write_text(json.dumps({OUTPUT_MARKER: "evaluation"}))
    with pytest.raises(OutputExistsError, match="already holds an evaluation"):
        claim_output(ev, "evaluation", overwrite=False)
    moved = claim_output(ev, "evaluation", overwrite=True)
    assert moved is not None and json.loads((moved / "metrics.json").read_text()) == {OUTPUT_MARKER: "evaluation"}
    assert claim_output(tmp_path / "new", "evaluation") is None  # a new path: nothing to move


# ---- search ----------------------------------------------------------------------------------
def test_search_overwrite_never_moves_a_users_folder(model_run, tmp_path, capsys):
    audio = _tones(tmp_path / "audio")
    user = _user_folder(tmp_path / "results")
    before = _snapshot(user)
    rc = cli(["search", "--system", str(model_run), "--audio", str(audio), "--query", "a beep",
              "--out", str(user), "--overwrite"])
    err = capsys.readouterr().err
    assert rc == 2 and str(user) in err and "is a folder" in err and "Traceback" not in err
    assert _snapshot(user) == before and _nothing_moved(tmp_path)


def test_search_output_may_not_be_its_input(model_run, tmp_path, capsys):
    audio = _tones(tmp_path / "audio")
    before = _snapshot(audio)
    rc = cli(["search", "--system", str(model_run), "--audio", str(audio), "--query", "a beep",
              "--out", str(audio), "--overwrite"])
    err = capsys.readouterr().err
    assert rc == 2 and "is an input of this command" in err and "Traceback" not in err
    assert _snapshot(audio) == before and _nothing_moved(tmp_path)
    clip = audio / "c0.wav"  # --out naming one of the clips it ranks
    rc = cli(["search", "--system", str(model_run), "--audio", str(audio), "--like", str(clip), "--out", str(clip),
              "--overwrite"])
    assert rc == 2 and "input" in capsys.readouterr().err and _snapshot(audio) == before


def test_search_overwrite_refuses_a_users_csv_and_moves_its_own_ranking(model_run, tmp_path, capsys):
    audio = _tones(tmp_path / "audio")
    mine = tmp_path / "budget.csv"
    mine.write_text("item,cost\nrent,900\n")
    base = ["search", "--system", str(model_run), "--audio", str(audio), "--query", "a beep"]
    assert cli(base + ["--out", str(mine), "--overwrite"]) == 2
    assert "not something atrlib wrote" in capsys.readouterr().err and mine.read_text() == "item,cost\nrent,900\n"
    ranking = tmp_path / "ranking.csv"
    assert cli(base + ["--out", str(ranking)]) == 0
    first = ranking.read_text()
    assert output_kind(ranking) == "search"
    assert cli(base + ["--out", str(ranking)]) == 2  # without --overwrite: refused
    assert "already holds a ranking CSV" in capsys.readouterr().err
    assert cli(base + ["--out", str(ranking), "--overwrite"]) == 0
    prev = list(tmp_path.glob("ranking.csv.prev-*"))
    assert len(prev) == 1 and prev[0].read_text() == first and mine.exists()


# ---- evaluate --------------------------------------------------------------------------------
def test_evaluate_out_may_not_be_the_system_run(tmp_path, capsys):
    run = _training_run(tmp_path / "run")
    before = _snapshot(run)
    for extra in ([], ["--overwrite"]):
        rc = cli(["evaluate", "--system", str(run), "--dataset", "synth", "--size", "tiny", "--out", str(run)] + extra)
        err = capsys.readouterr().err
        assert rc == 2 and str(run) in err and "input of this command" in err and "Traceback" not in err
    assert _snapshot(run) == before and _nothing_moved(tmp_path)


def test_evaluate_overwrite_refuses_a_training_run_and_a_users_folder(tmp_path, capsys):
    other = _training_run(tmp_path / "other-run")
    user = _user_folder(tmp_path / "mine")
    snaps = {p: _snapshot(p) for p in (other, user)}
    for out, why in ((other, "a training run"), (user, "not something atrlib wrote")):
        rc = cli(["evaluate", "--system", "tagbridge", "--dataset", "synth", "--size", "tiny", "--out", str(out),
                  "--overwrite"])
        err = capsys.readouterr().err
        assert rc == 2 and why in err and str(out) in err
    assert all(_snapshot(p) == s for p, s in snaps.items()) and _nothing_moved(tmp_path)


def test_evaluate_out_naming_a_file_is_refused_before_the_work(tmp_path, capsys):
    f = tmp_path / "report.txt"
    f.write_text("mine")
    rc = cli(["evaluate", "--system", "no-such-system", "--dataset", "synth", "--size", "tiny", "--out", str(f)])
    err = capsys.readouterr().err
    assert rc == 2 and "is a file" in err and str(f) in err and f.read_text() == "mine"


# ---- train -----------------------------------------------------------------------------------
def test_train_overwrite_moves_only_a_training_run(tmp_path, capsys):
    ev = tmp_path / "eval"
    ev.mkdir()
    (ev / "metrics.json").write_text(json.dumps({OUTPUT_MARKER: "evaluation"}))
    (ev / "sim_test.npz").write_bytes(b"x")
    user = _user_folder(tmp_path / "mine")
    snaps = {p: _snapshot(p) for p in (ev, user)}
    for out, why in ((ev, "an evaluation"), (user, "not something atrlib wrote")):
        rc = cli(["train", "--overwrite", "dataset=synth", "size=tiny", "epochs=1", f"out_dir={out}"])
        err = capsys.readouterr().err
        assert rc == 2 and why in err and str(out) in err and "Traceback" not in err
    assert all(_snapshot(p) == s for p, s in snaps.items()) and _nothing_moved(tmp_path)
