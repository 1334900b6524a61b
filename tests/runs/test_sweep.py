"""atrlib.runs.sweep: trial expansion and spec checks (no Ray), and a real sweep on a local Ray
(2 CPUs) over the smoke profile's training stage: 4 trials, one made to fail, then a resume
after a simulated kill. The Ray part takes about a minute on 2 cores."""
from pathlib import Path

import numpy as np
import pytest

from atrlib.errors import SweepError
from atrlib.files import read_json, write_json
from atrlib.retrieval.simfile import SimilarityMatrix, load_similarity, save_similarity
from atrlib.runs.sweep import run_sweep
from atrlib.runs.sweep_report import choose_trial, sweep_systems, sweep_table, trial_status
from atrlib.runs.sweep_spec import expand_trials, load_spec


# ---- the spec, without running anything ------------------------------------------------
def test_expand_is_trials_times_grid_times_seeds():
    trials = expand_trials({"epochs": 2}, [{"loss": "infonce"}, {"loss": "ntxent", "lr": 3e-4}],
                           grid={"batch_size": [16, 32]}, seeds=[0, 1])
    assert len(trials) == 2 * 2 * 2
    assert trials[0].overrides == {"epochs": 2, "loss": "infonce", "batch_size": 16, "seed": 0}
    assert trials[-1].overrides == {"epochs": 2, "loss": "ntxent", "lr": 3e-4, "batch_size": 32, "seed": 1}
    assert trials[-1].label == "loss=ntxent,lr=0.0003,batch_size=32,seed=1"
    assert len({t.id for t in trials}) == 8
    # folds: a grid over "fold" = 0..k-1
    folds = expand_trials({}, folds=3)
    assert [t.overrides for t in folds] == [{"folds": 3, "fold": k} for k in range(3)]


def test_trial_ids_survive_adding_seeds():
    """A trial's id depends on its overrides only, so a grown spec resumes the old trials."""
    before = {t.label: t.id for t in expand_trials({"epochs": 1}, seeds=[0, 1])}
    after = {t.label: t.id for t in expand_trials({"epochs": 1}, seeds=[0, 1, 2])}
    assert before.items() <= after.items() and len(after) == 3
    # any change of a shared parameter is a different trial
    assert expand_trials({"epochs": 2}, seeds=[0])[0].id != before["seed=0"]


def test_spec_errors(tmp_path):
    with pytest.raises(SweepError, match="same parameters"):
        expand_trials({}, [{"seed": 1}, {"seed": 1}])
    with pytest.raises(SweepError, match="unknown keys"):
        load_spec({"profile": "smoke", "gird": {"seed": [1]}})
    with pytest.raises(SweepError, match="validation metrics only"):
        load_spec({"profile": "smoke", "select": {"metric": "02_train/test/t2a/mAP@10"}})
    with pytest.raises(SweepError, match="unknown resources"):
        load_spec({"profile": "smoke", "resources": {"gpus": 1}})
    # a parameter no stage declares is an error before anything runs
    with pytest.raises(SweepError, match="no_such_param"):
        run_sweep({"profile": "smoke", "stages": ["02_train"], "grid": {"no_such_param": [1, 2]}},
                  tmp_path / "sw", executor="serial", progress=False)
    assert not (tmp_path / "sw").exists()


def test_choose_trial_uses_validation_only():
    rows = [{"status": "ok", "metrics": {"s/val_mAP@10": 0.3, "s/test_mAP@10": 0.9}},
            {"status": "ok", "metrics": {"s/val_mAP@10": 0.5, "s/test_mAP@10": 0.1}},
            {"status": "failed", "metrics": {"s/val_mAP@10": 0.8}}]
    assert choose_trial(rows, "s/val_mAP@10") == 1  # the failed trial is never chosen
    assert choose_trial(rows, "s/val_mAP@10", mode="min") == 0
    with pytest.raises(SweepError):
        choose_trial(rows, "s/test_mAP@10")


def _fake_sweep(root: Path, statuses: dict) -> None:
    """A sweep folder written by hand: trials with sim files at different depths."""
    trials = [{"id": f"t{i}", "label": f"seed={i}", "overrides": {"seed": i}} for i in statuses]
    write_json(root / "sweep.json", {"profile": "x", "stages": None, "select": {}, "trials": trials})
    rng = np.random.default_rng(0)
    for i, status in statuses.items():
        write_json(root / "status" / f"t{i}.json", {"id": f"t{i}", "status": status, "attempt": 1})
        for split in ("validation", "test" if i != 1 else "evaluation"):  # Clotho names its test split so
            sm = SimilarityMatrix(rng.normal(size=(4, 2)).astype(np.float32), [f"q{j}" for j in range(4)],
                                  ["a", "b"], [[j % 2] for j in range(4)], {"split": split})
            save_similarity(root / "trials" / f"t{i}" / "02_train" / f"sim_{split}.npz", sm)
    # a second scored folder inside trial 0 (e.g. a stage's sub-run), and a lone validation file
    for split in ("validation", "test"):
        save_similarity(root / "trials" / "t0" / "03_evaluate" / f"sim_{split}.npz", sm)
    save_similarity(root / "trials" / "t1" / "other" / "sim_validation.npz", sm)


def test_sweep_systems_collects_ok_trials(tmp_path):
    _fake_sweep(tmp_path, {0: "ok", 1: "ok", 2: "failed"})
    found = sweep_systems(tmp_path)
    assert found == {"seed=0/02_train": tmp_path / "trials/t0/02_train",
                     "seed=0/03_evaluate": tmp_path / "trials/t0/03_evaluate",
                     "seed=1": tmp_path / "trials/t1/02_train"}
    assert "seed=2" in sweep_systems(tmp_path, only_ok=False)
    # the ensemble notebook's system list takes a sweep with the sweep: scheme
    from atrlib.experiments.systems import find_systems, load_systems

    assert find_systems([f"sweep:{tmp_path}"]) == found == find_systems(["sweep:."], base=tmp_path)
    test = load_systems(found, "test")  # the "evaluation" file of seed=1 is its test split
    assert test["seed=1"].meta["split"] == "evaluation"
    with pytest.raises(FileNotFoundError, match="no sweep.json"):
        sweep_systems(tmp_path / "trials")


# ---- a real sweep on a local Ray --------------------------------------------------------
SPEC = {
    "profile": "smoke",
    "stages": ["02_train"],
    "parameters": {"epochs": 1, "extra_seeds": []},  # the sweep varies the seed itself
    "trials": [{"seed": 0}, {"seed": 1}, {"seed": 2}, {"seed": 0, "dataset": "no_such_dataset"}],
    "select": {"metric": "02_train/best_val_mAP@10"},
    "resources": {"num_cpus": 1},
}


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="the sweep executor needs the optional 'ray' extra")
    from atrlib.runs.environment import init_ray

    started = init_ray(num_cpus=2)  # one Ray for both sweeps below: its start costs ~10 s here
    yield ray
    if started:
        ray.shutdown()


def test_sweep_on_ray_isolates_a_failure_then_resumes(local_ray, tmp_path):
    out = tmp_path / "sweep"
    spec = load_spec(SPEC)
    ids = {t.label: t.id for t in spec.trials}
    bad = ids["seed=0,dataset=no_such_dataset"]

    # 1. four trials, one fails; the others go on
    res = run_sweep(spec, out, executor="ray", progress=False)
    assert res.counts() == {"ok": 3, "failed": 1, "running": 0, "pending": 0}
    assert not res.ok and sorted(res.ran) == sorted(ids.values()) and res.skipped == []
    assert "no_such_dataset" in res.records[bad]["error"]
    # each trial is a run folder with its own report; the status holds what the notebook wrote
    val = {}
    for label, tid in ids.items():
        assert (out / "trials" / tid / "index.html").is_file()
        if tid != bad:
            written = read_json(out / "trials" / tid / "02_train" / "metrics.json")
            assert res.records[tid]["stages"]["02_train"]["metrics"] == written
            assert read_json(out / "trials" / tid / "params.json")["parameters"]["02_train"]["seed"] == int(label[-1])
            val[tid] = written["best_val_mAP@10"]
    # the chosen trial: the best validation mAP@10, computed here from the files
    assert res.chosen == max(val, key=val.get) and res.select_metric == "02_train/best_val_mAP@10"
    html = (out / "index.html").read_text()
    assert all(label in html for label in ids) and "★ chosen" in html and "no_such_dataset" in html
    md = (out / "summary.md").read_text()
    assert md.count("| ok |") == 3 and "| failed: " in md
    # the ensemble stage can read the sweep's similarity files directly
    systems = sweep_systems(out)
    assert sorted(systems) == ["seed=0", "seed=1", "seed=2"]
    sm = load_similarity(systems["seed=1"] / "sim_validation.npz")
    assert sm.sim.shape[0] == len(sm.query_ids) > 0

    # 2. a kill while seed=2 was running leaves its status "running" and a partial folder
    killed = ids["seed=2"]
    rec = trial_status(out, killed)
    write_json(out / "status" / f"{killed}.json", dict(rec, status="running", finished=None, stages={}))
    (out / "trials" / killed / "02_train" / "metrics.json").unlink()
    before = {tid: trial_status(out, tid) for tid in (ids["seed=0"], ids["seed=1"])}

    res2 = run_sweep(SPEC, out, executor="ray", retry_failed=True, progress=False)
    assert sorted(res2.ran) == sorted([killed, bad]) and sorted(res2.skipped) == sorted(before)
    for tid, rec in before.items():  # finished trials were not touched
        assert trial_status(out, tid) == rec
    assert res2.records[killed]["status"] == "ok" and res2.records[killed]["attempt"] == 2
    assert (out / "trials" / killed / "02_train" / "metrics.json").is_file()
    assert (out / "attempts" / f"{killed}-1" / "02_train").is_dir()  # the interrupted attempt, moved aside
    assert res2.records[bad]["status"] == "failed" and res2.records[bad]["attempt"] == 2

    # 3. nothing left to run: no trial starts, the index stays complete
    res3 = run_sweep(SPEC, out, executor="ray", progress=False)
    assert res3.ran == [] and len(res3.skipped) == 4
    assert len(sweep_table(out)["rows"]) == 4
    assert not (out / "sweep.lock").exists()  # each run released its lock


def test_cli_lists_trials_and_refuses_a_bad_spec(tmp_path, capsys):
    from atrlib.__main__ import main as cli

    spec = tmp_path / "s.yaml"
    spec.write_text("profile: smoke\nstages: [02_train]\nparameters: {epochs: 1}\ngrid: {lr: [1e-3, 3e-4]}\nseeds: [0, 1]\n")
    assert cli(["sweep", str(spec), "--list"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("4 trials of profile smoke, stages 02_train")
    assert "{'epochs': 1, 'lr': 0.0003, 'seed': 1}" in out  # 3e-4 read as a float, as in profiles
    spec.write_text("profile: smoke\nselect: {metric: 02_train/test/t2a/mAP@10}\n")
    assert cli(["sweep", str(spec), "--out", str(tmp_path / "sw")]) == 2
    assert "validation metrics only" in capsys.readouterr().err and not (tmp_path / "sw").exists()


def test_run_hands_independent_stages_to_ray(local_ray, tmp_path):
    """``run_profile(executor="ray")`` records the same outcome as the serial runner on the
    fixture profile (ok, failing, two skipped after it, one needing the first)."""
    from atrlib.runs.batch import run_profile
    from atrlib.runs.records import RunResult

    fixtures = Path(__file__).parents[1] / "fixtures" / "notebooks" / "params" / "mixed.yaml"
    res = run_profile(fixtures, out=tmp_path / "run", overrides={"scale": 3}, progress=False, executor="ray")
    assert [(s.name, s.status) for s in res.stages] == [
        ("ok_metrics", "ok"), ("boom", "failed"), ("after_boom", "skipped"), ("chained", "skipped"), ("independent", "ok")]
    assert read_json(tmp_path / "run" / "ok_metrics" / "metrics.json")["score"] == 4.5  # scale 3 * 1.5
    assert read_json(tmp_path / "run" / "independent" / "metrics.json")["double"] == 9.0  # read ok_metrics' file
    assert res.stage("boom").error["ename"] and (tmp_path / "run" / "boom" / "boom.html").is_file()
    assert RunResult.load(tmp_path / "run").stage("independent").metrics["double"] == 9.0  # run.json complete


# ---- one sweep per folder ----------------------------------------------------------------
def _dead_pid() -> int:
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_second_sweep_into_a_folder_is_refused(tmp_path, capsys):
    import os
    import socket

    from atrlib.__main__ import main as cli
    from atrlib.runs.sweep import SweepLock

    out = tmp_path / "sw"
    out.mkdir()
    lock = out / "sweep.lock"
    with SweepLock(out):
        held = read_json(lock)
        assert held["pid"] == os.getpid() and held["host"] == socket.gethostname()
        # a live holder: refused before anything is written, the message names the folder and the way out
        with pytest.raises(SweepError, match="another sweep is writing into") as e:
            run_sweep({"profile": "smoke", "stages": ["02_train"], "seeds": [0]}, out, executor="serial", progress=False)
        assert str(out) in str(e.value) and f"process {os.getpid()}" in str(e.value) and "--force" in str(e.value)
        assert not (out / "sweep.json").exists() and read_json(lock)["token"] == held["token"]
        spec = tmp_path / "s.yaml"
        spec.write_text("profile: smoke\nstages: [02_train]\nseeds: [0]\n")
        assert cli(["sweep", str(spec), "--out", str(out), "--executor", "serial"]) == 2
        assert "another sweep is writing into" in capsys.readouterr().err
    assert not lock.exists()  # released on exit

    # a lock left by a dead process on this host is stale: taken over, then released
    write_json(lock, {"pid": _dead_pid(), "host": socket.gethostname(), "started": "earlier", "token": "old"})
    with SweepLock(out) as taken:
        assert taken.took_over["token"] == "old" and read_json(lock)["token"] == taken.token
    assert not lock.exists()
    # another host's lock cannot be checked from here: refused unless forced
    write_json(lock, {"pid": 1, "host": "elsewhere", "started": "earlier", "token": "remote"})
    with pytest.raises(SweepError, match="host elsewhere"):
        SweepLock(out).__enter__()
    with SweepLock(out, force=True) as forced:
        assert forced.took_over["host"] == "elsewhere"
    assert not lock.exists()
