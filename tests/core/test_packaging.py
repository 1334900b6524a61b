"""The project's own files: environment.yml agrees with pyproject.toml, notebooks are
committed clean with one literal-only parameters cell, profiles name real notebooks."""
import ast
import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    import tomllib

    py = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["name"] == "atrlib" and "pip" in env["dependencies"]
    assert any(str(d).startswith("python=") for d in env["dependencies"] if isinstance(d, str))
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pip_names = {_name(r) for r in pip if not r.startswith("-")}
    wanted = {_name(r) for r in py["dependencies"]} | {_name(r) for r in py["optional-dependencies"]["dev"]}
    assert wanted <= pip_names, f"missing from environment.yml: {sorted(wanted - pip_names)}"
    assert "torch==2.13.0" in pip  # the same pin the Makefile installs first
    assert "-e ." in pip


def test_makefile_pins_torch_first():
    mk = (ROOT / "Makefile").read_text()
    assert "TORCH_SPEC ?= torch==2.13.0" in mk
    assert mk.index('"$(TORCH_SPEC)"') < mk.index('-e ".[dev,notebook,search,sweep,track]"')
    # the reference implementations are test-only and never pull their own torch
    assert "--no-deps $(REFERENCE_SPECS)" in mk and "hear21passt==0.0.26" in mk and "openbeats==0.1.1" in mk


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_clean_and_parameterised(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert not any(c.get("outputs") for c in code), f"{path.name} has outputs committed"
    assert all(c.get("execution_count") is None for c in code)
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: {len(tagged)} cells tagged 'parameters'"
    src = "".join(tagged[0]["source"])
    # literals only, one comment each, and no '=' inside comments (papermill's parser splits on it)
    for node in ast.parse(src).body:
        assert isinstance(node, ast.Assign), f"{path.name}: parameters cell has a non-assignment"
        ast.literal_eval(node.value)
    for line in src.splitlines():
        if line.strip():
            assert line.count("=") == 1 and "#" in line, f"{path.name}: {line!r}"
    assert nb["cells"][0]["cell_type"] == "markdown" and nb["cells"][0]["source"][0].startswith("# ")
    assert nb["cells"][1] is tagged[0]


def test_profiles_name_existing_notebooks_and_declared_parameters(tmp_path):
    from atrlib.runs.profiles import load_profile, resolve_parameters

    profiles = sorted((ROOT / "notebooks/params").glob("*.yaml"))
    assert {p.stem for p in profiles} >= {"smoke", "demo", "clotho"}
    for p in profiles:
        prof = yaml.safe_load(p.read_text())
        for st in prof["stages"]:
            assert (ROOT / "notebooks" / st["notebook"]).exists(), f"{p.name}: {st['notebook']}"
        # every stage parameter must be one its notebook declares
        resolved = resolve_parameters(load_profile(p), {}, tmp_path)
        assert set(resolved) == {Path(st["notebook"]).stem for st in prof["stages"]}


def test_one_rule_for_names_and_paths(tmp_path, monkeypatch):
    """A registered name, a path-looking string, or an existing folder: one resolver decides."""
    from atrlib.registry import name_or_path

    monkeypatch.chdir(tmp_path)
    assert name_or_path("InfoNCE", ["infonce", "ntxent"], "loss") == ("name", "infonce")
    (tmp_path / "infonce").mkdir()                     # a folder named like a registered name: the name wins
    assert name_or_path("infonce", ["infonce"], "loss") == ("name", "infonce")
    assert name_or_path("./infonce", ["infonce"], "loss")[0] == "path"   # a path-looking string is a path
    (tmp_path / "myrun").mkdir()
    assert name_or_path("myrun", ["infonce"], "run")[0] == "path"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        name_or_path("cfgs/missing.json", ["x"], "model config", suffixes=(".json",))
    with pytest.raises(KeyError, match=r"neither a registered name \(infonce, ntxent\)"):
        name_or_path("nope", ["infonce", "ntxent"], "loss")


def test_search_and_evaluate_name_what_ranks_a_system():
    """'model' is a model config in train; what search / evaluate rank is a *system*."""
    from atrlib.__main__ import build_parser

    for cmd in ("search", "evaluate"):
        p = build_parser(cmd)
        extra = ["--audio", "x", "--query", "q"] if cmd == "search" else ["--out", "o"]
        new = p.parse_args([cmd, "--system", "runs/a", *extra])
        old = p.parse_args([cmd, "--model", "runs/a", *extra])
        assert new.model == old.model == "runs/a"
        assert "--system SYSTEM" in p._subparsers._group_actions[0].choices[cmd].format_help()


def test_files_read_at_run_time_ship_in_the_package():
    """Every non-Python file under atrlib/ is covered by package-data, so a wheel works as a
    checkout does; the glossary is read through importlib.resources, not from the repository."""
    import fnmatch
    import importlib.resources
    import subprocess
    import tomllib

    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["atrlib"]
    tracked = subprocess.run(["git", "ls-files", "atrlib"], capture_output=True, text=True, cwd=ROOT).stdout.split()
    data = [f[len("atrlib/"):] for f in tracked if not f.endswith(".py")] or [
        str(p.relative_to(ROOT / "atrlib")) for p in (ROOT / "atrlib").rglob("*") if p.is_file() and p.suffix in (".json", ".md")]
    assert data and all(any(fnmatch.fnmatch(f, pat) for pat in patterns) for f in data), data
    glossary = importlib.resources.files("atrlib") / "resources" / "glossary.md"
    assert glossary.is_file() and "## mAP@10" in glossary.read_text(encoding="utf-8")
    from atrlib.paths import GLOSSARY_PATH
    from atrlib.runs.report_text import glossary as entries

    assert GLOSSARY_PATH.is_relative_to(ROOT / "atrlib") and len(entries()) > 20


def test_at_most_twelve_loose_modules_and_none_over_500_lines():
    loose = sorted(p.name for p in (ROOT / "atrlib").glob("*.py"))
    assert len(loose) <= 12, loose
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "atrlib").rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 500}
    assert not long, long


def test_the_readme_map_is_the_folder_listing():
    block = (ROOT / "README.md").read_text(encoding="utf-8").split("## The map", 1)[1].split("```", 2)[1]
    named = set(re.findall(r"^  (\w+)/", block, re.M))
    assert named == {p.parent.name for p in (ROOT / "atrlib").glob("*/__init__.py")}
    core = next(line for line in block.splitlines() if line.strip().startswith("__init__"))
    assert set(core.split("   ")[0].split()) == {p.stem for p in (ROOT / "atrlib").glob("*.py")}


def test_a_short_write_is_named_as_a_full_disk(tmp_path):
    """torch.save and numpy report a disk that filled mid-file without an errno ("unexpected
    pos", "N requested and M written"): the message says so and names the file."""
    import numpy as np
    import pytest

    from atrlib.files import DiskWriteError, atomic_path

    for text in ("[enforce fail at inline_container.cc:603] . unexpected pos 1024 vs 900",
                 "202368 requested and 25568 written"):
        with pytest.raises(DiskWriteError, match=r"the write stopped short \(the disk holding .* is probably full") as e:
            with atomic_path(tmp_path / "x.npy"):
                raise (RuntimeError if "enforce" in text else OSError)(text)
        assert "x.npy" in str(e.value)
    assert not list(tmp_path.iterdir())  # no partial file left
    with pytest.raises(ValueError):  # anything else passes through unchanged
        with atomic_path(tmp_path / "y.npy"):
            raise ValueError("not a write error")
    assert np is not None
