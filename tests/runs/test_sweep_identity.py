"""Sweeps that cannot mix: a trial's identity includes the profile and the stages (another
profile's finished trials never count), and --force never takes the lock of a sweep still
running on this host — only a stale one."""
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import atrlib.runs.batch as batch
from atrlib.errors import SweepError
from atrlib.files import read_json, write_json
from atrlib.runs.sweep import SweepLock, run_sweep
from atrlib.runs.sweep_report import _status_path
from atrlib.runs.sweep_spec import load_spec, trial_identity

FIXTURES = Path(__file__).parents[1] / "fixtures" / "notebooks" / "params"
SINGLE, MIXED = str(FIXTURES / "single.yaml"), str(FIXTURES / "mixed.yaml")


@pytest.fixture()
def fake_runs(monkeypatch):
    """run_profile stand-in: records (profile, stages, overrides) and reports every stage ok."""
    calls = []

    def run_profile(profile, out=None, overrides=(), stages=None, progress=False, **kw):
        calls.append((str(profile), stages, dict(overrides)))
        Path(out).mkdir(parents=True, exist_ok=True)
        st = SimpleNamespace(name="ok_metrics", status="ok", metrics={"x": 1}, error=None, skipped_reason=None)
        return SimpleNamespace(stages=[st])

    monkeypatch.setattr(batch, "run_profile", run_profile)
    return calls


def test_trial_ids_depend_on_the_profile_and_the_stages():
    a = load_spec({"profile": SINGLE, "grid": {"scale": [1, 2]}})
    b = load_spec({"profile": MIXED, "stages": ["ok_metrics"], "grid": {"scale": [1, 2]}})
    c = load_spec({"profile": SINGLE, "stages": ["ok_metrics"], "grid": {"scale": [1, 2]}})
    ids = [{t.label: t.id for t in s.trials} for s in (a, b, c)]
    assert ids[0].keys() == ids[1].keys() == ids[2].keys() == {"scale=1", "scale=2"}
    for label in ids[0]:
        assert len({i[label] for i in ids}) == 3  # same overrides, three identities
    grown = load_spec({"profile": SINGLE, "grid": {"scale": [1, 2, 3]}})  # a growing spec keeps its ids
    assert {t.label: t.id for t in grown.trials if t.label in ids[0]} == ids[0]


def test_another_profiles_finished_trials_never_count(tmp_path, fake_runs):
    out = tmp_path / "sweep"
    first = run_sweep({"profile": SINGLE, "grid": {"scale": [1, 2]}}, out, executor="serial", progress=False)
    assert first.ok and len(first.ran) == 2
    again = run_sweep({"profile": SINGLE, "grid": {"scale": [1, 2]}}, out, executor="serial", progress=False)
    assert again.ran == [] and len(again.skipped) == 2  # the same sweep resumes: nothing re-run
    other = run_sweep({"profile": MIXED, "stages": ["ok_metrics"], "grid": {"scale": [1, 2]}}, out,
                      executor="serial", progress=False)
    assert len(other.ran) == 2 and other.skipped == []
    assert [c[0] for c in fake_runs] == [SINGLE, SINGLE, MIXED, MIXED]
    assert all(c[1] == ["ok_metrics"] for c in fake_runs[2:])


def test_a_finished_record_of_another_identity_does_not_count(tmp_path, fake_runs):
    """Even under the same id (an old sweep folder, an edited status), a record counts only with
    this profile and these stages."""
    spec = load_spec({"profile": SINGLE, "grid": {"scale": [1]}})
    out = tmp_path / "sweep"
    tid = spec.trials[0].id
    write_json(_status_path(out, tid), {"id": tid, "status": "ok", "attempt": 1,
                                        "identity": trial_identity(MIXED, ["ok_metrics"])})
    res = run_sweep(spec, out, executor="serial", progress=False)
    assert res.ran == [tid] and read_json(_status_path(out, tid))["identity"] == trial_identity(SINGLE, None)
    assert run_sweep(spec, out, executor="serial", progress=False).ran == []


def _sleeper():
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_force_never_takes_the_lock_of_a_sweep_still_running_here(tmp_path):
    out = tmp_path / "sweep"
    out.mkdir()
    lock = out / "sweep.lock"
    proc = _sleeper()
    try:
        held = {"pid": proc.pid, "host": socket.gethostname(), "started": "now", "token": "live",
                "taken_ns": time.time_ns()}
        write_json(lock, held)
        for force in (False, True):
            with pytest.raises(SweepError, match=f"still running on this host.*kill {proc.pid}") as e:
                SweepLock(out, force=force).__enter__()
            assert str(out) in str(e.value)
            assert read_json(lock)["token"] == "live"  # untouched
        with pytest.raises(SweepError, match="still running"):
            run_sweep({"profile": SINGLE}, out, executor="serial", progress=False, force=True)
        assert read_json(lock)["token"] == "live" and not (out / "sweep.json").exists()
    finally:
        proc.kill()
        proc.wait()
    with SweepLock(out, force=False) as taken:  # its process is gone: stale, taken without --force
        assert taken.took_over["token"] == "live"
    assert not lock.exists()


def test_a_reused_pid_does_not_keep_a_stale_lock(tmp_path):
    if not Path("/proc/self/stat").exists():
        pytest.skip("process start times are read from /proc (Linux)")
    out = tmp_path / "sweep"
    out.mkdir()
    proc = _sleeper()
    try:  # a lock taken an hour ago by a process that has the sleeper's pid now: not the sleeper
        write_json(out / "sweep.lock", {"pid": proc.pid, "host": socket.gethostname(), "started": "earlier",
                                        "token": "old", "taken_ns": time.time_ns() - 3600 * 10 ** 9})
        with SweepLock(out) as taken:
            assert taken.took_over["token"] == "old"
    finally:
        proc.kill()
        proc.wait()


def test_the_command_line_says_force_cannot_take_a_live_lock(tmp_path, capsys):
    from atrlib.__main__ import main as cli

    out = tmp_path / "sweep"
    spec = tmp_path / "s.yaml"
    spec.write_text(f"profile: {SINGLE}\n")
    with SweepLock(out if out.mkdir() is None else out):  # this very process holds it
        assert cli(["sweep", str(spec), "--out", str(out), "--executor", "serial", "--force"]) == 2
        err = capsys.readouterr().err
        assert f"process {os.getpid()}" in err and "still running on this host" in err and "Traceback" not in err
