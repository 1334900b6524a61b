"""Profiles' conditional overrides (``when``): which block applies, precedence against the
profile's own values and ``-p`` overrides, typing of the condition, and the errors raised
before anything runs. Pure resolution: no notebook is executed (papermill only reads the
parameters cell of two small notebooks written here)."""
from pathlib import Path

import nbformat
import pytest

from atrlib.errors import ProfileError
from atrlib.runs.profiles import load_profile, parse_overrides, resolve_parameters

TRAIN_PARAMS = '''dataset = "clotho"       # dataset
size = "demo"            # synth size
epochs = 30              # passes
lr = 0.001               # learning rate
model = "big"            # model config
out_dir = ""             # output
run_dir = ""             # run root
'''
REPORT_PARAMS = '''recipe = ""              # recipe name
out_dir = ""             # output
run_dir = ""             # run root
'''


def _notebook(path: Path, params: str) -> None:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# probe"), cell, nbformat.v4.new_code_cell("x = 1")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))


@pytest.fixture
def folder(tmp_path):
    _notebook(tmp_path / "02_train.ipynb", TRAIN_PARAMS)
    _notebook(tmp_path / "06_reproduce.ipynb", REPORT_PARAMS)
    (tmp_path / "params").mkdir()
    return tmp_path


def _profile(folder: Path, text: str):
    p = folder / "params" / "p.yaml"
    p.write_text(text)
    return load_profile(p)


BASE = """
defaults: {dataset: clotho, epochs: 40}
stages:
  - notebook: 02_train.ipynb
    parameters: {lr: 0.0001}
  - notebook: 06_reproduce.ipynb
    parameters: {recipe: huawei2022}
when:
  size=tiny:
    dataset: synth
    02_train.model: small
    epochs: 2
    06_reproduce.recipe: huawei2022-tiny
"""


def test_block_applies_only_when_the_condition_holds(folder, tmp_path):
    prof = _profile(folder, BASE)
    full = resolve_parameters(prof, {}, tmp_path / "r")
    assert full["02_train"] == {"dataset": "clotho", "epochs": 40, "lr": 0.0001,
                                "out_dir": str((tmp_path / "r" / "02_train").resolve()),
                                "run_dir": str((tmp_path / "r").resolve())}
    assert full["06_reproduce"]["recipe"] == "huawei2022"
    tiny = resolve_parameters(prof, parse_overrides(["size=tiny"]), tmp_path / "r")
    assert {k: tiny["02_train"][k] for k in ("dataset", "size", "epochs", "lr", "model")} == \
        {"dataset": "synth", "size": "tiny", "epochs": 2, "lr": 0.0001, "model": "small"}
    # the condition is met by the run-wide value even in a stage that does not declare it
    assert tiny["06_reproduce"]["recipe"] == "huawei2022-tiny"
    other = resolve_parameters(prof, parse_overrides(["size=smoke"]), tmp_path / "r")
    assert other["02_train"]["dataset"] == "clotho" and other["02_train"]["epochs"] == 40


def test_p_overrides_win_over_the_block(folder, tmp_path):
    prof = _profile(folder, BASE)
    r = resolve_parameters(prof, parse_overrides(["size=tiny", "epochs=5", "02_train.dataset=folder"]), tmp_path)
    assert (r["02_train"]["epochs"], r["02_train"]["dataset"], r["02_train"]["model"]) == (5, "folder", "small")
    # a global -p beats a stage-specific key of the block too
    r = resolve_parameters(prof, parse_overrides(["size=tiny", "model=mine"]), tmp_path)
    assert r["02_train"]["model"] == "mine"


def test_condition_from_the_profile_and_typed_like_the_parameter(folder, tmp_path):
    prof = _profile(folder, BASE.replace("defaults: {dataset: clotho, epochs: 40}",
                                         "defaults: {dataset: clotho, epochs: 40, size: tiny}"))
    assert resolve_parameters(prof, {}, tmp_path)["02_train"]["dataset"] == "synth"
    # an int condition: "epochs=40" is the int 40 the profile sets; a later block wins a shared key
    prof = _profile(folder, BASE + "  epochs=40:\n    lr: 0.5\n  02_train.lr=1e-4:\n    lr: 0.25\n")
    r = resolve_parameters(prof, {}, tmp_path)
    assert r["02_train"]["lr"] == 0.25
    # conditions see values without when blocks: size=tiny sets epochs 2, the epochs=40 block still applies
    r = resolve_parameters(prof, parse_overrides(["size=tiny"]), tmp_path)
    assert (r["02_train"]["epochs"], r["02_train"]["lr"]) == (2, 0.25)
    # ... but not after -p changed it
    r = resolve_parameters(prof, parse_overrides(["epochs=3", "lr=0.001"]), tmp_path)
    assert r["02_train"]["lr"] == 0.001  # -p beats every block


@pytest.mark.parametrize("block, message", [
    ("  size=tiny:\n    nothing: 1\n", "when size=tiny: nothing: no stage declares 'nothing'"),
    ("  size=tiny:\n    99_x.epochs: 1\n", "no stage '99_x'"),
    ("  size=tiny:\n    06_reproduce.epochs: 1\n", "stage 06_reproduce does not declare 'epochs'"),
    ("  size=tiny:\n    out_dir: /tmp\n", "set by the runner"),
    ("  colour=red:\n    epochs: 1\n", "when colour=red: no stage declares 'colour'"),
    ("  06_reproduce.size=tiny:\n    epochs: 1\n", "stage 06_reproduce does not declare 'size'"),
    ("  epochs=abc:\n    lr: 1\n", "epochs"),
])
def test_every_block_is_checked_even_when_it_does_not_apply(folder, tmp_path, block, message):
    prof = _profile(folder, BASE.split("when:")[0] + "when:\n" + block)
    with pytest.raises(ProfileError, match=message):
        resolve_parameters(prof, {}, tmp_path)


@pytest.mark.parametrize("text, message", [
    ("when: [size=tiny]\n", "'when' must map conditions"),
    ("when:\n  tiny: {epochs: 1}\n", "must read key=value"),
    ("when:\n  size=tiny: {}\n", "non-empty mapping"),
])
def test_malformed_when_blocks(folder, text, message):
    with pytest.raises(ProfileError, match=message):
        _profile(folder, BASE.split("when:")[0] + text)


def test_checked_values_apply_after_the_block(folder, tmp_path):
    prof = _profile(folder, BASE.replace("epochs: 2", "epochs: 0"))
    with pytest.raises(ProfileError, match="epochs"):
        resolve_parameters(prof, parse_overrides(["size=tiny"]), tmp_path)
