"""report_to: a run's epochs, config, final test metrics (with intervals) and folder reach
TensorBoard event files and an MLflow store, read back here with their own readers (offline)."""
import atrlib  # noqa: F401

import glob
import json
import subprocess
import sys
from pathlib import Path

import pytest

from atrlib.errors import ConfigError
from atrlib.train.tracking import metric_name, parse_report_to

ROOT = Path(__file__).resolve().parents[2]


def test_report_to_names():
    assert parse_report_to("") == [] and parse_report_to("none") == []
    assert parse_report_to("TensorBoard, mlflow") == ["tensorboard", "mlflow"]
    with pytest.raises(ConfigError, match="unknown tracker.*neptune"):
        parse_report_to("neptune")
    assert metric_name("val_mAP@10") == "val_mAP_at_10"


def _tensorboard_scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = {}
    for f in glob.glob(str(Path(folder) / "**" / "events.*"), recursive=True):
        ea = EventAccumulator(f)
        ea.Reload()
        for tag in ea.Tags()["scalars"]:
            out[tag] = {s.step: s.value for s in ea.Scalars(tag)}
    return out


def _mlflow_run(db):
    import mlflow

    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{db}")
    exps = client.search_experiments()
    runs = client.search_runs([e.experiment_id for e in exps])
    assert len(runs) == 1
    return client, runs[0], {e.experiment_id: e.name for e in exps}


def test_a_training_run_reads_back_from_tensorboard_and_mlflow(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard", reason="report_to=tensorboard needs the optional 'track' extra")
    pytest.importorskip("mlflow", reason="report_to=mlflow needs the optional 'track' extra")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    from atrlib.train.config import TrainConfig
    from atrlib.train.loop import run_training

    cfg = TrainConfig(dataset="synth", size="tiny", model="synth-tiny", epochs=2, device="cpu", progress=False,
                      out_dir=str(tmp_path / "run"), report_to="tensorboard,mlflow", tracking_group="my-ablation")
    r = run_training(cfg)
    hist, m = r["history"], r["metrics"]
    tb = _tensorboard_scalars(tmp_path / "run" / "tracking" / "my-ablation" / "run")
    assert {k: round(v, 6) for k, v in tb["val_mAP_at_10"].items()} == {h["epoch"]: round(h["val_mAP@10"], 6) for h in hist}
    assert tb["final/test/t2a/mAP_at_10"] and list(tb["final/test/t2a_ci/mAP_at_10/low"].values())[0] == \
        pytest.approx(m["test"]["t2a_ci"]["mAP@10"]["low"], abs=1e-6)
    client, run, exps = _mlflow_run(tmp_path / "run" / "tracking" / "mlflow.db")
    assert exps[run.info.experiment_id] == "my-ablation" and run.info.run_name == "run"
    history = client.get_metric_history(run.info.run_id, "val_mAP_at_10")
    assert [(x.step, round(x.value, 6)) for x in history] == [(h["epoch"], round(h["val_mAP@10"], 6)) for h in hist]
    assert run.data.metrics["final/test/t2a/mAP_at_10"] == pytest.approx(m["test"]["t2a"]["mAP@10"], abs=1e-6)
    assert run.data.params["run_dir"] == str((tmp_path / "run").resolve()) and run.data.params["loss"] == "infonce"


def test_the_smoke_profile_with_report_to(tmp_path):
    """`-p report_to=tensorboard,mlflow` on the smoke profile: 02's run and its extra seed's run
    each leave their own event files and MLflow store holding validation mAP@10."""
    pytest.importorskip("tensorboard", reason="optional 'track' extra")
    pytest.importorskip("mlflow", reason="optional 'track' extra")
    out = tmp_path / "smoke"
    p = subprocess.run([sys.executable, "-m", "atrlib", "run", "--profile", "smoke", "--stages", "02_train", "-p",
                        "report_to=tensorboard,mlflow", "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                       timeout=600, env={**__import__("os").environ, "MLFLOW_TRACKING_URI": ""})
    assert p.returncode == 0, p.stderr[-2000:]
    for run in (out / "02_train", out / "02_train" / "seeds" / "s1"):
        hist = json.loads((run / "history.json").read_text())
        tb = _tensorboard_scalars(run / "tracking")
        assert sorted(tb["val_mAP_at_10"]) == [h["epoch"] for h in hist]
        client, mrun, _ = _mlflow_run(run / "tracking" / "mlflow.db")  # exactly one run per store
        assert len(client.get_metric_history(mrun.info.run_id, "val_mAP_at_10")) == len(hist)


def test_a_sweeps_trials_are_runs_of_one_group_in_one_place(tmp_path):
    from atrlib.runs.sweep import tracked_overrides

    task = {"label": "seed=1", "overrides": {"epochs": 1, "02_train.report_to": "mlflow", "seed": 1}}
    ov = tracked_overrides(task, tmp_path / "my-sweep")
    assert ov["02_train.tracking_group"] == "my-sweep" and ov["02_train.tracking_run"] == "seed=1"
    assert ov["02_train.tracking_dir"] == str((tmp_path / "my-sweep" / "tracking").resolve())
    assert task["overrides"] == {"epochs": 1, "02_train.report_to": "mlflow", "seed": 1}  # the identity is untouched
    assert tracked_overrides({"label": "x", "overrides": {"epochs": 1}}, tmp_path / "s") == {"epochs": 1}
    assert tracked_overrides({"label": "x", "overrides": {"report_to": "tensorboard", "tracking_group": "mine"}},
                             tmp_path / "s")["tracking_group"] == "mine"
