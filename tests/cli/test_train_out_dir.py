"""``train out_dir=`` (empty) is refused — it would train into the current folder and print a
blank path — before anything is read or written; leaving it out means the documented default."""
import atrlib  # noqa: F401  (thread settings before torch)

import pytest

from atrlib.__main__ import main as cli
from atrlib.cli.train import build_config
from atrlib.errors import PreflightError


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_out_dir_is_refused_at_the_command_line(tmp_path, monkeypatch, capsys, value):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    rc = cli(["train", "dataset=synth", "size=tiny", "epochs=1", f"out_dir={value}"])
    err = capsys.readouterr().err
    assert rc == 2 and "out_dir is empty" in err and "runs/train" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # nothing written here


def test_an_empty_out_dir_in_a_config_file_is_refused_naming_it(tmp_path, capsys):
    for text in ('out_dir: ""\n', "out_dir: null\n"):
        cfg = tmp_path / "c.yaml"
        cfg.write_text("epochs: 1\n" + text)
        with pytest.raises(PreflightError, match=f"out_dir is empty in {cfg}"):
            build_config(str(cfg), [])
        assert cli(["train", "--config", str(cfg)]) == 2
        assert str(cfg) in capsys.readouterr().err


def test_no_out_dir_means_the_documented_default():
    assert build_config(None, ["epochs=1"]).out_dir == "runs/train"
