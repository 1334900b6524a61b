"""The towers bench's pure helpers (benchmarks/bench_towers.py): the same-process matmul peak,
alternating timings, reference-ratio rows and the Markdown table. No timed assertions."""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_towers as bt  # noqa: E402


def test_matmul_peak_is_a_positive_rate_of_the_best_shape():
    rate = bt.matmul_peak("cpu", shapes=((32, 48, 16), (64, 64, 64)), reps=2)
    assert rate > 0 and rate < 1e14                                    # FLOP/s: positive, below 100 TFLOP/s on a CPU


def test_alternate_interleaves_after_the_warm_up():
    calls = []
    t = bt.alternate({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, reps=3, warmup=1)
    assert calls == ["a", "b"] * 4                                     # 1 warm-up round + 3 timed rounds, a b a b
    assert [len(v) for v in t.values()] == [3, 3] and all(x >= 0 for v in t.values() for x in v)


def test_ratio_rows_on_two_tiny_modules():
    torch.manual_seed(0)
    small, big = torch.nn.Linear(8, 8), torch.nn.Sequential(*[torch.nn.Linear(8, 8) for _ in range(4)])
    x = torch.randn(2, 8)
    t = bt.alternate({"ours": lambda: small(x), "ref": lambda: big(x)}, reps=2)
    row = bt.ratio_row("tiny", t["ours"], t["ref"], "four layers")
    assert row["ours_ms"] == 1000 * min(t["ours"]) and row["ref_ms"] == 1000 * min(t["ref"])
    assert row["ratio"] == min(t["ours"]) / min(t["ref"])
    assert bt.ratio_row("x", [0.2, 0.1, 0.3], [0.4, 0.5]) == {"tower": "x", "reference": "", "ours_ms": 100.0,
                                                              "ref_ms": 400.0, "ratio": 0.25}


def test_markdown_shows_a_note_in_place_of_missing_numbers():
    cols = [("tower", "tower", ""), ("ours ms", "ours_ms", ".0f"), ("ratio", "ratio", ".2f")]
    table = bt.markdown([{"tower": "cnn14", "ours_ms": 1234.4, "ratio": 0.987},
                         {"tower": "beats", "note": "reference not installed"}], cols)
    assert table.splitlines() == ["| tower | ours ms | ratio |", "|---|---|---|", "| cnn14 | 1234 | 0.99 |",
                                  "| beats | reference not installed |  |"]


def test_missing_reference_names_the_pip_line(monkeypatch):
    monkeypatch.setattr(bt.importlib.util, "find_spec", lambda name: None)
    assert bt.missing_reference("beats") == "reference not installed (pip install --no-deps openbeats==0.1.1)"
    assert bt.missing_reference("cnn14").endswith("panns-inference==0.1.1 torchlibrosa==0.1.0)")


def test_recipe_steps_cover_every_recipe_model():
    import bench_recipe_steps as rs

    models = rs.recipe_models()
    assert {"cau2023", "huawei2022", "lingban2023", "samsung2024", "xiaomi2023", "dcase2025_baseline"} <= set(models)
    assert models["dcase2025_baseline"] == "dcase2025-baseline" and models["cau2023"] == "cau2023-cnn14"


def test_recipe_steps_say_what_is_missing_before_offline_builds_exist(monkeypatch, capsys, tmp_path):
    import json

    import bench_recipe_steps as rs

    monkeypatch.setattr(rs, "offline_build_available", lambda: False)
    monkeypatch.setattr(sys, "argv", ["bench_recipe_steps.py", "xiaomi2023", "--json", str(tmp_path / "rows.json")])
    assert rs.main() == 0
    assert "| xiaomi2023 | xiaomi2023 | needs pretrained=False (not yet available) |" in capsys.readouterr().out
    rows = json.loads((tmp_path / "rows.json").read_text())["rows"]
    assert rows == [{"recipe": "xiaomi2023", "model": "xiaomi2023", "note": rs.NOT_YET}]
