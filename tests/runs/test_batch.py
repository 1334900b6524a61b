"""atrlib.runs.batch and ``python -m atrlib run`` on tiny fixture notebooks (tests/fixtures/notebooks/).

The fixture profile ``mixed.yaml``: ok_metrics (writes metrics.json from its parameters),
boom (raises in a cell), after_boom (needs boom), chained (needs after_boom), independent
(needs ok_metrics, reads its metrics.json through run_dir). One CLI run is shared by most
tests; each papermill stage costs a kernel start (~1 s).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import atrlib
from atrlib.__main__ import main as cli_main
from atrlib.errors import ProfileError, RunExistsError
from atrlib.files import read_json
from atrlib.runs import environment
from atrlib.runs.batch import run_profile
from atrlib.runs.profiles import load_profile, parse_overrides
from atrlib.runs.records import RunResult


FIXTURES = Path(__file__).parents[1] / "fixtures" / "notebooks"
MIXED = FIXTURES / "params" / "mixed.yaml"
SINGLE = FIXTURES / "params" / "single.yaml"
EVIL = "<img src=x onerror=alert(1)>"
REPO = Path(atrlib.__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory):
    """The mixed profile through the CLI, in a subprocess, with a global and a stage override."""
    out = tmp_path_factory.mktemp("runs") / "mixed"
    proc = subprocess.run(
        [sys.executable, "-m", "atrlib", "run", "--profile", str(MIXED), "--out", str(out),
         "-p", "scale=3", "-p", f"boom.message={EVIL}", "--no-progress"],
        capture_output=True, text=True, timeout=300, cwd=str(REPO),
    )
    return out, proc


def test_cli_exit_code_and_printed_index(mixed_run):
    out, proc = mixed_run
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == str(out / "index.html")
    assert "2 ok, 1 failed, 2 skipped" in proc.stdout


def test_statuses_and_dependencies(mixed_run):
    out, _ = mixed_run
    result = RunResult.load(out)
    assert [(s.name, s.status) for s in result.stages] == [
        ("ok_metrics", "ok"), ("boom", "failed"), ("after_boom", "skipped"), ("chained", "skipped"), ("independent", "ok"),
    ]
    assert not result.ok
    assert result.stage("after_boom").skipped_reason == "needs boom (failed)"
    assert result.stage("chained").skipped_reason == "needs after_boom (skipped)"
    # skipped stages never ran: no folder, no files
    assert not (out / "after_boom").exists() and not (out / "chained").exists()
    assert all(s.duration_s > 0 for s in result.stages if s.status != "skipped")
    assert result.finished and result.duration_s > 0


def test_parameters_reach_the_notebooks(mixed_run):
    out, _ = mixed_run
    m = read_json(out / "ok_metrics" / "metrics.json")
    assert m["score"] == 4.5  # -p scale=3 (an int, over defaults: scale=2) * 1.5
    assert m["label"] == "from-profile"  # the stage's own parameters over the notebook default
    # the kernel runs this interpreter and imports this atrlib, in the stage folder
    assert m["python"] == sys.executable
    assert Path(m["atrlib_path"]).resolve() == Path(atrlib.__file__).resolve()
    assert Path(m["cwd"]).resolve() == (out / "ok_metrics").resolve()
    # a later stage reads an earlier stage's files through run_dir
    assert read_json(out / "independent" / "metrics.json")["double"] == 9.0
    params = read_json(out / "params.json")
    assert params["overrides"] == {"scale": "3", "boom.message": EVIL}  # as typed; typed per stage below
    assert params["parameters"]["ok_metrics"] == {
        "scale": 3, "label": "from-profile", "out_dir": str(out / "ok_metrics"), "run_dir": str(out),
    }
    assert params["parameters"]["boom"] == {"message": EVIL, "out_dir": str(out / "boom")}  # stage override only there
    assert params["parameters"]["after_boom"] == {"out_dir": str(out / "after_boom")}  # only what it declares
    assert params["environment"]["atrlib"] == atrlib.__version__
    assert params["environment"]["python"] == ".".join(map(str, sys.version_info[:3]))


def test_failed_stage_error_and_partial_html(mixed_run):
    out, _ = mixed_run
    boom = RunResult.load(out).stage("boom")
    assert boom.error["ename"] == "ValueError"
    assert boom.error["evalue"] == EVIL
    assert boom.error["cell_index"] is not None and "ValueError" in boom.error["traceback"]
    page = (out / "boom" / "boom.html").read_text()
    assert "before the error" in page  # cells before the error ran and were exported
    assert "ValueError" in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "papermill-error-cell" in page
    assert not (out / "boom" / "never.txt").exists()  # nothing ran after the error
    assert (out / "boom" / "boom.ipynb").is_file()


def test_index_and_summary(mixed_run):
    out, _ = mixed_run
    page = (out / "index.html").read_text()
    for stage in ("ok_metrics", "boom", "independent"):
        assert f'href="{stage}/{stage}.html' in page
        assert f'href="{stage}/{stage}.ipynb"' in page
    assert 'href="boom/boom.html#papermill-error-cell"' in page
    assert "<dt>score</dt><dd>4.5</dd>" in page  # nominated by key_metrics
    assert "<dt>nested/a</dt><dd>1</dd>" in page
    assert "<dt>python</dt><dd>/" not in page and "<dt>cwd</dt>" not in page  # not nominated
    assert "<dt>double</dt><dd>9</dd>" in page and "<dt>count</dt><dd>3</dd>" in page  # top-level scalars
    assert "<dt>curve</dt>" not in page  # a list is not a key number
    assert EVIL not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    md = (out / "summary.md").read_text()
    assert "[report](ok_metrics/ok_metrics.html)" in md and "score = 4.5" in md
    assert "double = 9" in md and "needs boom (failed)" in md


def test_unknown_overrides_are_errors_before_anything_runs(tmp_path):
    out = tmp_path / "never"
    with pytest.raises(ProfileError, match=r"no stage declares 'epochs'.*ok_metrics declares: out_dir, run_dir, scale, label"):
        run_profile(MIXED, out=out, overrides=["epochs=3"], progress=False)
    with pytest.raises(ProfileError, match="no stage 'nostage'"):
        run_profile(MIXED, out=out, overrides={"nostage.scale": 1}, progress=False)
    with pytest.raises(ProfileError, match="stage boom does not declare 'scale'"):
        run_profile(MIXED, out=out, overrides=["boom.scale=1"], progress=False)
    with pytest.raises(ProfileError, match="set by the runner"):
        run_profile(MIXED, out=out, overrides=["out_dir=/tmp/x"], progress=False)
    with pytest.raises(ProfileError, match="independent needs ok_metrics"):
        run_profile(MIXED, out=out, stages=["independent"], progress=False)
    with pytest.raises(ProfileError, match="unknown nope"):
        run_profile(MIXED, out=out, stages=["nope"], progress=False)
    assert not out.exists()


def test_profile_validation(tmp_path):
    bad = tmp_path / "params" / "bad.yaml"
    bad.parent.mkdir()
    bad.write_text("stages:\n  - notebook: ok.ipynb\n    parameters: {typo: 1}\n")
    nb = tmp_path / "ok.ipynb"
    nb.write_text((FIXTURES / "ok_metrics.ipynb").read_text())
    prof = load_profile(bad)  # notebooks dir = the folder above params/
    assert prof.notebooks_dir == tmp_path and prof.stages[0].name == "ok"
    assert load_profile("bad", notebooks_dir=tmp_path).path == bad.resolve()  # by name
    with pytest.raises(ProfileError, match="sets 'typo', which its notebook does not declare"):
        run_profile(bad, out=tmp_path / "o", progress=False)
    bad.write_text("stages:\n  - notebook: ok.ipynb\n    needs: [later]\n")
    with pytest.raises(ProfileError, match="not an earlier stage"):
        load_profile(bad)
    bad.write_text("stage: []\n")
    with pytest.raises(ProfileError, match="unknown top-level keys"):
        load_profile(bad)
    with pytest.raises(ProfileError, match="no profile 'missing'"):
        load_profile("missing", notebooks_dir=tmp_path)


def test_parse_overrides_keep_text_until_typed_by_the_notebook():
    from atrlib.train.config import typed_value
    from atrlib.runs.profiles import RawValue

    ov = parse_overrides(["epochs=3", "lr=1e-3", "warm=0.5", "amp=true", "name=abc", "02_train.x=[1, 2]", "e=", "eq=a=b"])
    assert ov == {"epochs": "3", "lr": "1e-3", "warm": "0.5", "amp": "true", "name": "abc", "02_train.x": "[1, 2]",
                  "e": "", "eq": "a=b"}
    assert all(isinstance(v, RawValue) for v in ov.values())
    # typed by the declared default of the parameter they set
    assert typed_value("epochs", ov["epochs"], 30) == 3 and type(typed_value("epochs", "3", 30)) is int
    assert typed_value("lr", ov["lr"], 0.01) == 0.001
    assert typed_value("amp", ov["amp"], False) is True
    assert typed_value("x", ov["02_train.x"], [0]) == [1, 2]
    assert typed_value("name", "no", "yes") == "no"
    with pytest.raises(ProfileError, match="key=value"):
        parse_overrides(["epochs"])


def test_rerun_refuses_then_moves_old_run_aside(tmp_path, capsys):
    out = tmp_path / "single"
    out.mkdir()
    (out / "stale.txt").write_text("from an old run")
    (out / "run.json").write_text(json.dumps({"profile": "single", "run_dir": str(out), "stages": []}))
    with pytest.raises(RunExistsError, match="already exists"):
        run_profile(SINGLE, out=out, progress=False)
    assert (out / "stale.txt").read_text() == "from an old run"  # untouched

    result = run_profile(SINGLE, out=out, overrides={"scale": 4}, overwrite=True, progress=False)
    assert result.ok and [s.status for s in result.stages] == ["ok"]
    prev = [p for p in tmp_path.iterdir() if p.name.startswith("single.prev-")]
    assert len(prev) == 1 and (prev[0] / "stale.txt").read_text() == "from an old run"
    assert f"moved the previous run {out} -> {prev[0]}" in capsys.readouterr().out
    assert not (out / "stale.txt").exists()  # nothing mixed
    assert sorted(p.name for p in out.iterdir()) == ["glossary.html", "index.html", "ok_metrics", "params.json", "run.json",
                                                  "summary.md"]
    assert sorted(p.name for p in (out / "ok_metrics").iterdir() if p.name.startswith(".")) == []  # no partial notebook
    assert read_json(out / "ok_metrics" / "metrics.json")["score"] == 6.0
    assert read_json(out / "run.json")["stages"][0]["status"] == "ok"


def test_cli_list_and_errors(capsys, tmp_path):
    assert cli_main(["run", "--profile", str(MIXED), "--list", "-p", "scale=5", "--out", str(tmp_path / "x")]) == 0
    listing = capsys.readouterr().out
    assert "- boom: boom.ipynb" in listing and "(needs boom)" in listing and "scale = 5" in listing
    assert not (tmp_path / "x").exists()
    assert cli_main(["run", "--profile", str(MIXED), "-p", "epochs=3", "--out", str(tmp_path / "x")]) == 2
    assert "no stage declares 'epochs'" in capsys.readouterr().err
    assert cli_main(["run", "--list", "--notebooks", str(FIXTURES)]) == 0
    assert "profiles: mixed, single" in capsys.readouterr().out
    assert cli_main([]) == 2  # no command: help


def test_resolve_kernel_avoids_a_foreign_python3_spec(tmp_path, monkeypatch):
    """If the python3 kernelspec found first runs another Python, a private spec runs this one."""
    from jupyter_client.kernelspec import KernelSpecManager

    foreign = tmp_path / "jp" / "kernels" / "python3"
    foreign.mkdir(parents=True)
    (foreign / "kernel.json").write_text(json.dumps({
        "argv": ["/usr/bin/some-other-python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "system", "language": "python",
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jp"))
    assert KernelSpecManager().get_kernel_spec("python3").argv[0] == "/usr/bin/some-other-python3"
    name, env = environment.resolve_kernel()
    assert name.startswith("atrlib-")
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(REPO)
    with environment._environ(env):
        assert KernelSpecManager().get_kernel_spec(name).argv[0] == os.path.abspath(sys.executable)
    assert os.environ["JUPYTER_PATH"] == str(tmp_path / "jp")  # restored
    assert environment.resolve_kernel("python3")[0] == "python3"  # an explicit name is kept


def test_a_report_page_that_cannot_be_written_fails_the_stage(tmp_path, monkeypatch):
    """Disk full while writing the HTML: the stage is failed (its page does not exist), not ok."""
    import errno

    from atrlib.runs import batch

    def full_disk(exporter, ipynb, html_path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(batch, "_export_html", full_disk)
    run_profile(MIXED, out=tmp_path / "run", stages=["ok_metrics"], progress=False)
    st = next(s for s in json.loads((tmp_path / "run" / "run.json").read_text())["stages"] if s["name"] == "ok_metrics")
    assert st["status"] == "failed" and "could not be written" in st["error"]["evalue"] and st["html"] is None
