"""A recipe's dry run: ``python -m atrlib run --profile <recipe> -p fast_dev_run=N`` trains every
system for N optimiser steps, scores N batches of clips, and runs everything after (ensembles,
06_reproduce with its cost tables). The fast suite runs one tiny recipe; the slow one runs a
full-size recipe with random weights (``-p pretrained=false``) on a Clotho folder of real clips
(``../shared/data/clotho_mini``)."""
import atrlib  # noqa: F401

import json
import subprocess
import sys
from pathlib import Path

import pytest

from atrlib.recipes import get_recipe

ROOT = Path(__file__).resolve().parents[2]


def dry_run(name, out, *params, timeout=900):
    cmd = [sys.executable, "-m", "atrlib", "run", "--profile", name, "--out", str(out), "--no-progress"]
    for p in params:
        cmd += ["-p", p]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out


def check_dry_run(name, out, n, pretrained=True):
    r = get_recipe(name)
    variants = sorted((out / "05_ensemble" / "variants").iterdir())
    assert variants, "no trained systems"
    for run in variants:
        history = json.loads((run / "history.json").read_text())
        assert [(h["epoch"], h["step"]) for h in history] == [(1, n)], run.name           # N optimiser steps
        params = json.loads((run / "params.json").read_text())
        assert params["fast_dev_run"] == n and params["pretrained"] is pretrained
        assert "dry run" in json.loads((run / "metrics.json").read_text())["fast_dev_run"]
        cost = json.loads((run / "cost.json").read_text())
        assert cost["paper_batch"] == params["batch_size"] and cost["flops_per_step"] > 0
    m = json.loads((out / "06_reproduce" / "metrics.json").read_text())
    assert m["recipe"] == name and m["learned"].startswith(f"A dry run (fast_dev_run={n}")
    gaps = {g["setting"]: g["run"] for g in m["settings_gap"]}
    assert gaps["fast_dev_run"] == n
    proj = {row["system"]: row for row in m["projected_cost"]}
    assert proj["recipe"]["GPU-hours"] > 0 and r.single_variant.name in proj
    return m


def test_tiny_recipe_dry_run(tmp_path):
    """The fast suite's dry run: huawei2022's tiny twin, one optimiser step per system."""
    out = dry_run("huawei2022", tmp_path / "hw", "size=tiny", "fast_dev_run=1")
    check_dry_run("huawei2022", out, 1)


@pytest.fixture(scope="module")
def clotho_of_real_clips(shared, tmp_path_factory):
    from atrlib.data.base import load_dataset
    from atrlib.data.clotho import sample_layout

    src = shared / "data" / "clotho_mini"
    if not (src / "clotho_captions_evaluation.csv").exists():
        pytest.skip(f"no Clotho clips in {src} (../shared is not on this machine)")
    return sample_layout(load_dataset("clotho", root=str(src), split="evaluation"),
                         tmp_path_factory.mktemp("clotho7"), counts=(3, 2, 2))


def test_clotho_sample_layout(clotho_of_real_clips):
    from atrlib.data.base import load_dataset

    sizes = {s: len(load_dataset("clotho", root=str(clotho_of_real_clips), split=s))
             for s in ("development", "validation", "evaluation")}
    assert sizes == {"development": 3, "validation": 2, "evaluation": 2}
    dev = load_dataset("clotho", root=str(clotho_of_real_clips), split="development")
    assert all(len(it["captions"]) == 5 for it in dev.items)


@pytest.mark.slow
def test_full_size_recipe_dry_run_on_real_clips(clotho_of_real_clips, tmp_path):
    """huawei2022 at full size (CNN14 + DistilRoBERTa, random weights) on real Clotho clips: ~1.5 min."""
    out = dry_run("huawei2022", tmp_path / "hw", f"root={clotho_of_real_clips}", "fast_dev_run=2",
                  "pretrained=false")
    m = check_dry_run("huawei2022", out, 2, pretrained=False)
    cost = json.loads((out / "05_ensemble" / "variants" / get_recipe("huawei2022").single_variant.name
                       / "cost.json").read_text())
    parts = cost["parameters"]["parts"]
    assert parts["audio_tower"]["frozen"] > 80e6 and parts["text_tower"]["frozen"] == 82_118_400   # CNN14, DistilRoBERTa
    assert {g["setting"]: g["run"] for g in m["settings_gap"]}["pretrained"] is False
