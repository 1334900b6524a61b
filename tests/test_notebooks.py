"""Every stage notebook through papermill with the tiny `smoke` profile, checking the numbers
each one recorded (recommenders-style notebook smoke test)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from atrlib.simfile import load_similarity

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke") / "run"
    r = subprocess.run([sys.executable, "-m", "atrlib", "run", "--profile", "smoke", "--out", str(out)],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1].endswith("index.html")
    return out


def _metrics(run, stage):
    return json.loads((run / stage / "metrics.json").read_text())


def test_index_links_every_stage(smoke_run):
    html = (smoke_run / "index.html").read_text()
    for stage in ("01_data", "02_train", "03_evaluate", "04_loss_ablation", "05_ensemble"):
        assert f"{stage}/{stage}.html" in html
        assert (smoke_run / stage / f"{stage}.html").stat().st_size > 10_000
    run = json.loads((smoke_run / "run.json").read_text())
    assert [s["status"] for s in run["stages"]] == ["ok"] * 5


def test_data_stage(smoke_run):
    m = _metrics(smoke_run, "01_data")
    assert (m["clips"], m["captions"], m["captions_per_clip"]) == (24, 120, 5.0)
    assert m["leaked_groups"] == 0 and m["audited_splits"] == ["train", "validation", "test"]
    assert abs(m["hours"] - 24 * 3 / 3600) < 1e-9


def test_train_stage(smoke_run):
    m = _metrics(smoke_run, "02_train")
    assert m["epochs_run"] == 3
    sm = load_similarity(smoke_run / "02_train" / "sim_test.npz")
    assert sm.sim.shape == (40, 8)
    # the recorded number is the metric of the stored matrix
    from atrlib.metrics import retrieval_scores

    assert abs(retrieval_scores(sm.sim, sm.relevant)["mAP@10"] - m["test"]["t2a"]["mAP@10"]) < 1e-9
    hist = json.loads((smoke_run / "02_train" / "history.json").read_text())
    assert len(hist) == 3 and hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert (smoke_run / "02_train" / "best" / "model.safetensors").exists()


def test_evaluate_stage_scores_the_trained_run(smoke_run):
    m = _metrics(smoke_run, "03_evaluate")
    assert m["n_queries"] == 40 and m["n_items"] == 8
    assert m["t2a"]["mAP@10_low"] <= m["t2a"]["mAP@10"] <= m["t2a"]["mAP@10_high"]
    # chance mAP@10 for 8 clips, one relevant each: mean of 1/r over r = 1..8
    assert abs(m["t2a"]["mAP@10_chance"] - np.mean(1 / np.arange(1, 9))) < 0.03
    assert (smoke_run / "03_evaluate" / "sim_validation.npz").exists()
    assert m["search"]["query"] == "a high beep" and m["search"]["top1"].endswith(".wav")


def test_ablation_stage(smoke_run):
    m = _metrics(smoke_run, "04_loss_ablation")
    assert set(m["losses"]) == {"infonce", "triplet_max", "pair_loss"}
    for loss, r in m["losses"].items():
        assert r["low"] <= r["mAP@10"] <= r["high"] and r["seeds"] == 1
        assert (r["p_value"] is None) == (loss == "infonce")


def test_ensemble_stage(smoke_run):
    m = _metrics(smoke_run, "05_ensemble")
    assert {"infonce-s0", "triplet_max-s0", "pair_loss-s0", "stats2-infonce"} <= set(m["systems"])
    for method, w in m["weights"].items():
        assert abs(sum(w.values()) - 1) < 1e-9 and min(w.values()) >= 0
    assert m["kfold"]["folds"] == 2
    assert 0 <= m["best_test_mAP@10"] <= 1 and len(m["size_curve"]) == len(m["systems"])
