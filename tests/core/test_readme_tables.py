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
    _write(run / "run.json", {"profile": "demo", "duration_s": 274.4, "stages": [
        {"name": n, "status": "ok", "duration_s": d} for n, d in (("02_train", 26.2), ("03_evaluate", 9.0),
                                                                    ("04_loss_ablation", 100.0), ("05_ensemble", 90.0))]})
    _write(run / "02_train" / "params.json", {"loss": "infonce"})
    _write(run / "02_train" / "history.json", [{"epoch": 1, "val_mAP@10": 0.2}, {"epoch": 2, "val_mAP@10": 0.31},
                                               {"epoch": 3, "val_mAP@10": 0.31}])
    _write(run / "02_train" / "metrics.json", {"epochs_run": 3, "test": {
        "t2a": {"mAP@10": 0.3012, "R@1": 0.148, "R@10": 0.678}, "a2t": {"mAP@10": 0.108},
        "t2a_ci": {"mAP@10": {"value": 0.3012, "low": 0.27, "high": 0.33}}}})
    _write(run / "03_evaluate" / "metrics.json", {"n_items": 80, "t2a": {"mAP@10_chance": 0.0366}})
    _write(run / "04_loss_ablation" / "params.json", {"seeds": [0, 1], "epochs": 20})
    _write(run / "04_loss_ablation" / "metrics.json", {"baseline": "infonce", "best_loss": "ntxent", "losses": {
        "ntxent": {"val_mAP@10": 0.33, "mAP@10": 0.284, "low": 0.25, "high": 0.31, "diff_vs_baseline": -0.007, "p_value": 0.54},
        "infonce": {"val_mAP@10": 0.32, "mAP@10": 0.291, "low": 0.26, "high": 0.32, "diff_vs_baseline": None, "p_value": None}}})
    _write(run / "05_ensemble" / "metrics.json", {
        "systems": {"a": {}, "b": {}}, "best_method": "greedy", "best_method_val_mAP@10": 0.4,
        "best_method_test_mAP@10": 0.329, "best_method_test_low": 0.3, "best_method_test_high": 0.36,
        "best_single": "a", "best_single_test_mAP@10": 0.324, "best_method_vs_single": 0.0056,
        "best_method_p_value": 0.0004})
    return run


def test_extract_and_render_from_a_run(fake_run):
    n = R.extract(fake_run)
    assert n["train"]["chosen_epoch"] == 2 and n["train"]["mAP@10"] == 0.301 and n["train"]["chance"] == 0.037
    assert n["ablation"]["chosen"] == "ntxent" and n["ensemble"]["p"] == 0.0
    text = R.render(n)
    assert "| 02 train (infonce, 3 epochs, 26 s) | epoch 2 (val 0.310) | **0.301** (0.270–0.330), chance 0.037" in text
    assert "| 04 loss ablation (2 losses × 2 seeds, 20 epochs) | ntxent (val 0.330) | **0.284** (0.250–0.310) | infonce 0.291 | 0.540 |" in text
    assert "| greedy (val 0.400) | **0.329** (0.300–0.360) | best single by validation, a: 0.324 (+0.006) | < 0.001 |" in text
    assert "| **ntxent** (chosen) | 0.330 | 0.284 (0.250–0.310) | -0.007 | 0.540 |" in text
    assert "4 min 34 s end to end" in text
    assert R.render(json.loads(json.dumps(n))) == text  # the recorded JSON renders the same text


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
