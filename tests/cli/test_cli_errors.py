"""One rule at the command line's edge: a user's mistake (an AtrlibError) is one message and
exit 2, no traceback; --debug shows it; anything else keeps its traceback."""
import subprocess
import sys

import pytest

from atrlib import __main__ as cli
from atrlib.errors import (AtrlibError, AudioError, ChecksumError, ConfigError, DatasetError, DiskWriteError,
                           ParaphraseFileError, PreflightError, ProfileError, RelevanceFileError, RunExistsError,
                           SweepError, WeightsNotFoundError)


def test_every_library_error_is_one_family_and_keeps_its_builtin_base():
    for cls, base in [(DatasetError, ValueError), (AudioError, RuntimeError), (WeightsNotFoundError, FileNotFoundError),
                      (ChecksumError, ValueError), (PreflightError, ValueError), (ProfileError, ValueError),
                      (SweepError, ValueError), (ParaphraseFileError, ValueError), (RelevanceFileError, ValueError),
                      (RunExistsError, FileExistsError), (DiskWriteError, OSError)]:
        assert issubclass(cls, AtrlibError) and issubclass(cls, base), cls
    assert issubclass(PreflightError, ConfigError) and issubclass(ProfileError, ConfigError)


def test_the_modules_that_raise_them_use_the_one_family():
    from atrlib.audio import io
    from atrlib.data import captions_csv
    from atrlib.runs import profiles

    assert io.AudioError is AudioError and captions_csv.DatasetError is DatasetError
    assert profiles.ProfileError is ProfileError


def test_a_user_error_is_one_message_and_exit_2(capsys):
    assert cli.main(["train", "--config", "/no/such/config.yaml"]) == 2
    err = capsys.readouterr().err
    assert "/no/such/config.yaml" in err and "Traceback" not in err


def test_debug_shows_the_traceback_and_a_bug_keeps_it(monkeypatch, capsys):
    import atrlib.cli.train as train_cli

    def raise_user_error(args):
        raise DatasetError("captions.csv, row 3: an empty caption; fill it in or delete the row")

    monkeypatch.setattr(train_cli, "main", raise_user_error)
    assert cli.main(["--debug", "train", "--config", "x.yaml"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "captions.csv, row 3" in err

    def bug(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(train_cli, "main", bug)
    with pytest.raises(ZeroDivisionError):
        cli.main(["train", "--config", "x.yaml"])


def test_the_installed_command_exits_2_without_a_traceback(tmp_path):
    out = subprocess.run([sys.executable, "-m", "atrlib", "search", "--system", "tagbridge", "--audio",
                          str(tmp_path / "missing"), "--query", "a dog"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr and "missing" in out.stderr


def test_an_unknown_name_is_a_user_error_listing_the_names(tmp_path):
    from atrlib.errors import UnknownNameError
    from atrlib.losses import get_loss

    with pytest.raises(UnknownNameError, match="unknown loss 'infonse'; registered: .*infonce") as e:
        get_loss("infonse")
    assert isinstance(e.value, KeyError) and not str(e.value).startswith("'")  # no KeyError quotes
    cfg = tmp_path / "c.yaml"
    cfg.write_text("epochs: 1\nmodel: no_such_model\n")
    out = subprocess.run([sys.executable, "-m", "atrlib", "train", "--config", str(cfg), f"out_dir={tmp_path / 'run'}"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr + out.stdout
    assert "no_such_model" in out.stderr + out.stdout and "synth-stats-minilm" in out.stderr + out.stdout


def test_overrides_after_an_option_are_still_overrides(tmp_path, capsys):
    """`train a=1 --overwrite b=2`: b=2 reaches the config (here the bad synth size is named)."""
    from atrlib.__main__ import main

    rc = main(["train", "dataset=synth", "--overwrite", "size=huge", f"out_dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown synth size 'huge'" in err and "Traceback" not in err
    assert main(["search", "--query", "x", "--audio", str(tmp_path), "stray"]) == 2
    assert "unrecognized arguments: stray" in capsys.readouterr().err


def test_an_output_in_a_place_nobody_can_write_names_it():
    import pytest

    from atrlib.errors import DiskWriteError
    from atrlib.files import check_writable

    if not __import__("os").path.isdir("/proc"):
        pytest.skip("no /proc on this system")
    with pytest.raises(DiskWriteError, match=r"output /proc/x\.csv: cannot write into /proc"):
        check_writable("/proc/x.csv")


def test_relevance_lines_outside_the_split_stop_or_are_left_out_from_the_command_line(tmp_path, capsys):
    """The message's suggestion exists as an option: --relevance-missing skip leaves the line out
    (and says so); with too few lines left the file is named, not a bare interval error."""
    from pathlib import Path

    from atrlib.__main__ import main
    from atrlib.data import load_dataset
    from atrlib.models.dual import create_model, save_model

    save_model(create_model("synth-tiny"), tmp_path / "run")
    ds = load_dataset("synth", size="tiny", split="test")
    clip = Path(ds.audio_paths[0]).name
    caps = ds.captions_flat()[:3]
    rel = tmp_path / "rel.csv"
    rel.write_text("query,audio_filenames\n" + "".join(f'"{c}",{clip}\n' for c in caps) + f'"nobody wrote this",{clip}\n')
    base = ["evaluate", "--system", str(tmp_path / "run"), "--dataset", "synth", "--size", "tiny", "--split", "test",
            "--relevance", str(rel)]
    assert main(base + ["--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "rel.csv, line 5" in err and "--relevance-missing skip" in err and "Traceback" not in err
    assert main(base + ["--relevance-missing", "skip", "--out", str(tmp_path / "b")]) == 0
    assert "note: " in capsys.readouterr().err and (tmp_path / "b" / "metrics.json").exists()
    rel.write_text("query,audio_filenames\n" + f'"{caps[0]}",{clip}\n"nobody wrote this",{clip}\n')
    assert main(base + ["--relevance-missing", "skip", "--out", str(tmp_path / "c")]) == 2
    assert "rel.csv: only 1 of its queries match" in capsys.readouterr().err


def test_an_unusable_cache_folder_is_named_as_the_cache(monkeypatch, capsys):
    import os

    from atrlib.__main__ import main

    if not os.path.isdir("/proc"):
        import pytest

        pytest.skip("no /proc on this system")
    monkeypatch.setenv("ATRLIB_CACHE", "/proc/atrlib-cache")
    assert main(["train", "dataset=synth", "size=tiny", "epochs=1", "model=synth-tiny", "out_dir=/tmp/never"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: atrlib's cache folder /proc/atrlib-cache (ATRLIB_CACHE) cannot be used") and "[Errno" not in err
