"""No silent wrong results in batch runs: ``run --resume --stages X`` keeps the earlier finished
stages in run.json, the index and the summary; a profile's ``when`` block never drops a
``-p root`` silently."""
import atrlib  # noqa: F401  (thread settings before torch)

from pathlib import Path

import pytest

from atrlib.__main__ import main as cli
from atrlib.errors import ProfileError
from atrlib.files import read_json
from atrlib.runs.profiles import load_profile, parse_overrides, resolve_parameters
from stage_notebooks import stage_notebook as _notebook




@pytest.fixture()
def profile(tmp_path):
    nbs = tmp_path / "nbs"
    (nbs / "params").mkdir(parents=True)
    body = "from atrlib.files import write_metrics\nimport time\nwrite_metrics(out_dir, {'t': time.time(), 'v': v})"
    for name in ("s01_data", "s02_train", "s04_ablation", "s05_ensemble"):
        _notebook(nbs / f"{name}.ipynb", 'out_dir = ""\nv = 1', body)
    (nbs / "params" / "p.yaml").write_text(
        "stages:\n  - s01_data.ipynb\n  - notebook: s02_train.ipynb\n    needs: [s01_data]\n"
        "  - s04_ablation.ipynb\n  - notebook: s05_ensemble.ipynb\n    needs: [s04_ablation, s01_data]\n")
    return nbs / "params" / "p.yaml"


def test_resume_with_some_stages_keeps_the_earlier_records(profile, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli(["run", "--profile", str(profile), "--out", str(out), "--no-progress"]) == 0
    first = read_json(out / "run.json")
    assert [s["name"] for s in first["stages"]] == ["s01_data", "s02_train", "s04_ablation", "s05_ensemble"]
    t01 = read_json(out / "s01_data" / "metrics.json")["t"]
    t05 = read_json(out / "s05_ensemble" / "metrics.json")["t"]
    # the ablation stage failed later and is run again alone (its need s01_data finished ok earlier)
    rec = read_json(out / "run.json")
    rec["stages"][2]["status"] = "failed"
    (out / "run.json").write_text(__import__("json").dumps(rec))
    capsys.readouterr()
    assert cli(["run", "--profile", str(profile), "--out", str(out), "--resume", "--stages", "s04_ablation,s05_ensemble",
                "--no-progress"]) == 0
    after = read_json(out / "run.json")
    assert [(s["name"], s["status"]) for s in after["stages"]] == [
        ("s01_data", "ok"), ("s02_train", "ok"), ("s04_ablation", "ok"), ("s05_ensemble", "ok")]
    assert after["stages"][0]["metrics"]["t"] == t01  # kept as recorded, not re-run
    assert read_json(out / "s05_ensemble" / "metrics.json")["t"] == t05  # ok earlier: kept too
    index = (out / "index.html").read_text()
    summary = (out / "summary.md").read_text()
    for name in ("s01_data", "s02_train", "s04_ablation", "s05_ensemble"):
        assert name in index and name in summary
    assert "4 ok" in capsys.readouterr().out


def test_a_when_block_never_drops_a_users_root(tmp_path):
    prof = load_profile(Path(atrlib.__file__).resolve().parents[1] / "notebooks" / "params" / "huawei2022.yaml")
    with pytest.raises(ProfileError, match=r"-p root=/nonexistent: `when size=tiny`.*'synth'.*/nonexistent") as e:
        resolve_parameters(prof, parse_overrides(["root=/nonexistent", "size=tiny"]), tmp_path)
    assert "Drop -p root" in str(e.value)
    tiny = resolve_parameters(prof, parse_overrides(["size=tiny"]), tmp_path)  # tiny alone: fine
    full = resolve_parameters(prof, parse_overrides(["root=/data/clotho"]), tmp_path)  # root alone: fine
    assert tiny["05_ensemble"]["dataset"] == "synth" and full["05_ensemble"]["root"] == "/data/clotho"
    mine = resolve_parameters(prof, parse_overrides(["root=/tmp/my-synth", "size=tiny", "dataset=synth"]), tmp_path)
    assert mine["05_ensemble"]["root"] == "/tmp/my-synth"  # the user chose synth and its folder: as asked


def test_the_run_command_refuses_the_dropped_root_before_anything_runs(tmp_path, capsys):
    out = tmp_path / "run"
    rc = cli(["run", "--profile", "huawei2022", "-p", "root=/nonexistent", "-p", "size=tiny", "--out", str(out),
              "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "/nonexistent" in err and "size=tiny" in err and "Traceback" not in err
    assert not out.exists()
