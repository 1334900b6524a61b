"""06_reproduce's captioning table: Xiaomi's Table 2 beside a run's 07_captioning numbers, with
missing metrics and unformed systems saying why; the recipe's profile runs its captioners."""
import json

import pytest

from atrlib.recipes import get_recipe


def test_table_2_beside_this_runs_captioning_numbers(tmp_path):
    from atrlib.recipes.reproduce import captioning_table, run_cost

    r = get_recipe("xiaomi2023")
    assert captioning_table(r, tmp_path) is None                       # no 07 stage in this run
    row = {"cider_d": {"value": 0.31, "low": 0.25, "high": 0.37},
           "missing": {"meteor": {"reason": "no Java on this machine", "fix": "apt-get install ..."}}}
    (tmp_path / "07_captioning").mkdir()
    (tmp_path / "07_captioning" / "metrics.json").write_text(json.dumps({"systems": {"captioner": row, "System1": row}}))
    t = captioning_table(r, tmp_path).set_index(["paper system", "metric"])
    assert t.loc[("System2", "CIDEr-D"), "paper"] == 0.460 and t.loc[("System2", "CIDEr-D"), "run"] == 0.31
    assert t.loc[("System2", "CIDEr-D"), "diff"] == pytest.approx(0.31 - 0.46)
    assert t.loc[("System1", "METEOR"), "missing because"] == "no Java on this machine"
    assert "not formed" in t.loc[("System4", "SPIDEr"), "missing because"]      # CLA-IP: left out
    assert "not trained here" in t.loc[("Baseline", "CIDEr-D"), "missing because"]
    assert "not formed" in t.loc[("System3", "CIDEr-D"), "missing because"]      # no System3 row in this run
    assert captioning_table("huawei2022", tmp_path) is None            # a recipe without a captioning part
    (tmp_path / "run.json").write_text(json.dumps({"stages": [{"name": "05_ensemble", "duration_s": 10.0},
                                                              {"name": "07_captioning", "duration_s": 4.0}]}))
    c = run_cost(tmp_path)
    assert c["cpu_seconds"] == 10.0 and c["captioning_s"] == 4.0 and c["total_s"] == 14.0


def test_the_xiaomi_profile_runs_its_captioners_after_the_retrieval_systems(tmp_path):
    from atrlib.recipes.xiaomi2023 import CAPTIONING
    from atrlib.runs.profiles import load_profile, parse_overrides, resolve_parameters

    prof = load_profile("xiaomi2023")
    assert [s.name for s in prof.stages] == ["05_ensemble", "07_captioning", "06_reproduce"]
    tiny = resolve_parameters(prof, parse_overrides(["size=tiny"]), tmp_path)["07_captioning"]
    full = resolve_parameters(prof, parse_overrides(["root=/data/clotho"]), tmp_path)["07_captioning"]
    assert full["system"].endswith("clap-tag-msle-seed0") and full["pretrain_epochs"] == 10
    from atrlib.captioning.config import CaptionerConfig

    assert full["finetune_epochs"] == 15 and "beam_size" not in full and "caption_lr" not in full
    assert CaptionerConfig().beam_size == 3 and CaptionerConfig().caption_lr == 0.0005   # Xiaomi's: the defaults
    assert tiny["dataset"] == "synth-resplit" and tiny["caption_ensembles"]["System1"] == ["main", "clap-seed0"]
    assert set(CAPTIONING["systems"]) == set(CAPTIONING["reported"]) - {"Baseline"}
