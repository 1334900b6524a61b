"""scripts/readme_tables.py: README results tables generated from a run, and a check that
README.md shows exactly what the recorded demo numbers render to."""
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RECORD = ROOT / "tests" / "fixtures" / "readme_expected.json"


def _module():
    spec = importlib.util.spec_from_file_location("readme_tables", ROOT / "scripts" / "readme_tables.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


R = _module()


def _write(p: Path, obj):
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(obj))


@pytest.fixture
def fake_run(tmp_path):
    run = tmp_path / "demo"
    _write(run / "run.json", {"profile": "demo", "duration_s": 274.4, "environment": {
        "cpu": "Test CPU", "vector_unit": "AVX2", "cpu_count": "2", "torch": "2.13.0+cpu"}, "stages": [
        {"name": n, "status": "ok", "duration_s": d} for n, d in (("02_train", 26.2), ("03_evaluate", 9.0),
                                                                    ("04_loss_ablation", 100.0), ("05_ensemble", 90.0))]})
    _write(run / "02_train" / "params.json", {"loss": "infonce"})
    _write(run / "02_train" / "history.json", [{"epoch": 1, "val_mAP@10": 0.2}, {"epoch": 2, "val_mAP@10": 0.31},
                                               {"epoch": 3, "val_mAP@10": 0.31}])
    _write(run / "02_train" / "metrics.json", {"epochs_run": 3, "test": {
        "t2a": {"mAP@10": 0.3012, "R@1": 0.148, "R@10": 0.678}, "a2t": {"mAP@10": 0.108},
        "t2a_ci": {"mAP@10": {"value": 0.3012, "low": 0.27, "high": 0.33}}},
        "seeds": {"0": {"test mAP@10": 0.3012, "low": 0.27, "high": 0.33}, "1": {"test mAP@10": 0.32, "low": 0.29, "high": 0.35},
                  "2": {"test mAP@10": 0.31, "low": 0.28, "high": 0.34}},
        "seed_mean": {"value": 0.3104, "low": 0.281, "high": 0.339}})
    _write(run / "03_evaluate" / "metrics.json", {"n_items": 80, "t2a": {"mAP@10_chance": 0.0366}})
    _write(run / "04_loss_ablation" / "params.json", {"seeds": [0, 1, 2], "epochs": 14})
    _write(run / "04_loss_ablation" / "metrics.json", {"baseline": "infonce", "best_loss": "ntxent", "losses": {
        "ntxent": {"val_mAP@10": 0.33, "mAP@10": 0.284, "low": 0.25, "high": 0.31, "seed_sd": 0.011,
                   "diff_vs_baseline": -0.007, "p_value": 0.54},
        "infonce": {"val_mAP@10": 0.32, "mAP@10": 0.291, "low": 0.26, "high": 0.32, "seed_sd": 0.012,
                    "diff_vs_baseline": None, "p_value": None}},
        "best_loss_seed_check": {"n": 3, "mean": -0.007, "sd": 0.009, "low": -0.016, "high": 0.004, "same_sign": 2,
                                 "p_value": 0.54, "distinguishable": False}})
    _write(run / "05_ensemble" / "metrics.json", {
        "systems": {"a": {}, "b": {}}, "best_method": "greedy", "best_method_val_mAP@10": 0.4,
        "best_method_test_mAP@10": 0.329, "best_method_test_low": 0.3, "best_method_test_high": 0.36,
        "best_single": "a", "best_single_test_mAP@10": 0.324, "best_method_vs_single": 0.0056,
        "best_method_p_value": 0.0004, "ensembles": {"best single system: a": {"low": 0.29, "high": 0.355}},
        "per_seed": {"0": {}, "1": {}, "2": {}},
        "seed_check": {"n": 3, "mean": 0.02, "sd": 0.004, "low": 0.016, "high": 0.025, "same_sign": 3,
                       "p_value": 0.0004, "distinguishable": True}})
    return run


def test_extract_and_render_from_a_run(fake_run):
    n = R.extract(fake_run)
    assert n["train"]["chosen_epoch"] == 2 and n["train"]["mAP@10"] == 0.301 and n["train"]["chance"] == 0.037
    assert n["train"]["seeds"] == 3 and n["train"]["seed_sd"] == 0.009 and n["train"]["above_chance_every_seed"]
    assert n["ablation"]["chosen"] == "ntxent" and n["ensemble"]["p"] == 0.0
    text = R.render(n)
    assert text.startswith("`make demo` on Test CPU (AVX2, 2 cores), torch 2.13.0+cpu (4 of 4 stages ok, 4 min 34 s")
    assert ("| 02 train (infonce, 3 epochs, 3 seeds, 26 s) | epoch 2 (seed 0; val 0.310) | **0.310** (0.281–0.339), "
            "mean of 3 seeds, seed sd 0.009; seed 0: 0.301 (0.270–0.330); chance 0.037;") in text
    assert "| chance | above chance in every seed |" in text
    assert ("| 04 loss ablation (2 losses × 3 seeds, 14 epochs) | ntxent (val 0.330) | **0.284** (0.250–0.310), "
            "seed sd 0.011 | infonce 0.291 | -0.007 (sd 0.009, 3 seeds): ntxent is not distinguishable from infonce; "
            "p 0.540 |") in text
    assert ("best single by validation, a: 0.324 (+0.006) | +0.020 (sd 0.004, 3 seeds): the chosen ensemble beats "
            "the best single system; p < 0.001 |") in text
    assert "| **ntxent** (chosen) | 0.330 | 0.284 (0.250–0.310) | 0.011 | -0.007 | 0.540 |" in text
    assert R.render(json.loads(json.dumps(n))) == text  # the recorded JSON renders the same text


def test_the_check_uses_the_recorded_intervals_as_bands(fake_run, tmp_path, capsys):
    rec = R.extract(fake_run)
    other = json.loads(json.dumps(rec))
    other["train"]["seed_mean"]["value"] = 0.336           # inside 0.281–0.339
    other["ablation"]["rows"][1]["test"] = 0.262            # infonce: inside 0.260–0.320
    rows = R.check(rec, other)
    assert all(r["ok"] for r in rows) and {r["what"] for r in rows} >= {
        "02 test mAP@10, mean of seeds", "04 test mAP@10 of infonce", "05 test mAP@10 of greedy",
        "05 chosen ensemble vs best single: distinguishable"}
    other["ablation"]["rows"][1]["test"] = 0.259            # just outside
    other["ensemble"]["check"]["distinguishable"] = False   # a verdict that flips
    bad = {r["what"] for r in R.check(rec, other) if not r["ok"]}
    assert bad == {"04 test mAP@10 of infonce", "05 chosen ensemble vs best single: distinguishable"}
    record = tmp_path / "rec.json"
    record.write_text(json.dumps(other))
    assert R.main([str(fake_run), "--check", str(record)]) == 1   # the recorded verdict differs from the run's
    out = capsys.readouterr().out
    assert "| 05 chosen ensemble vs best single: distinguishable | False | — | True | **no** |" in out
    record.write_text(json.dumps(rec))
    assert R.main([str(fake_run), "--check", str(record)]) == 0


def test_replace_between_markers(fake_run, tmp_path):
    doc = f"# X\n\nintro\n\n{R.BEGIN}\nold table\n{R.END}\n\nafter\n"
    block = R.render(R.extract(fake_run))
    new = R.replace_between_markers(doc, block)
    assert new.startswith("# X\n\nintro\n\n" + R.BEGIN + "\n") and new.endswith(R.END + "\n\nafter\n")
    assert R.between_markers(new) == block.strip()
    assert R.replace_between_markers(new, block) == new  # idempotent
    with pytest.raises(ValueError, match="demo-results:end"):
        R.replace_between_markers(f"{R.BEGIN}\n", block)
    readme = tmp_path / "README.md"
    readme.write_text(doc)
    record = tmp_path / "rec.json"
    assert R.main([str(fake_run), "--record", str(record), "--write", str(readme)]) == 0
    assert R.between_markers(readme.read_text()) == block.strip()
    assert R.render(json.loads(record.read_text())) == block


def test_readme_matches_the_recorded_demo_numbers():
    if not RECORD.exists():
        pytest.skip(f"no recorded demo numbers ({RECORD.relative_to(ROOT)}); "
                    "run `python scripts/readme_tables.py reports/demo --record tests/fixtures/readme_expected.json`")
    shown = R.between_markers((ROOT / "README.md").read_text(encoding="utf-8"))
    if shown is None:
        pytest.skip(f"README.md has no {R.BEGIN} / {R.END} markers yet")
    expected = R.render(json.loads(RECORD.read_text(encoding="utf-8"))).strip()
    assert shown == expected, ("README.md's results tables differ from the recorded demo numbers; run "
                               "`python scripts/readme_tables.py --from-record tests/fixtures/readme_expected.json "
                               "--write README.md`")
