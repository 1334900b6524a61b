"""The held-out moment study (atrlib.moments.heldout, `scripts/studies.py moments`), run small on
recordings made of ../shared's real GCompris sounds: no test sound is in a train or validation
recording, every choice is the validation argmax, the trained systems beat chance on test, and a
second run reuses every trained part and gives the same numbers. Skipped, with the reason, when
../shared or the EfficientAT weights are absent."""
import json

import pytest

from atrlib.moments.metrics import METRICS


@pytest.fixture(scope="module")
def study(shared, tmp_path_factory):
    from atrlib.moments.heldout import HeldoutConfig, run_study
    from atrlib.moments.study import zero_shot

    root = shared / "data" / "gcompris_sounds"
    if not (root / "captions.csv").is_file():
        pytest.skip(f"{root} is absent: the real GCompris sounds are not on this machine")
    if zero_shot()[0] is None:
        pytest.skip(zero_shot()[1])
    cfg = HeldoutConfig(root=str(root), counts=(10, 6, 8), windows=(2.0, 3.0), smooth=(3.0,), max_seconds=(10.0, 20.0),
                        dual_epochs=3, head_frames=("mel-stats", "dual"), head_epochs=10,
                        out_dir=str(tmp_path_factory.mktemp("heldout")))
    return cfg, run_study(cfg)


@pytest.mark.shared
@pytest.mark.slow  # ~2 min on 2 cores: a 3-epoch dual encoder, two 10-epoch heads, EfficientAT over 24 recordings
def test_no_test_sound_is_heard_before_the_test(study):
    from pathlib import Path

    from atrlib.moments.formats import read_ground_truth

    cfg, record = study
    files = {p.parent.name: p for p in Path(cfg.out_dir, "recordings").glob("*/*/annotations.jsonl")}
    assert sorted(files) == ["test", "train", "validation"]
    sources = {s: {q.extra["source"] for q in read_ground_truth(f)} for s, f in files.items()}
    assert not sources["test"] & (sources["train"] | sources["validation"])
    assert not sources["train"] & sources["validation"]
    assert {s: record["data"][s]["clips"] for s in files} == {s: len(v) for s, v in sources.items()}
    # the dual encoder trained on the train clips only, validated on the validation clips
    params = json.loads(Path(cfg.out_dir, "dual", "params.json").read_text())
    assert params["dataset"] == "folder" and params["train_split"] == "train" and params["test_split"] == ""
    assert params["dataset_kwargs"] == {"split_ratios": list(cfg.split_ratios), "split_seed": cfg.split_seed}


@pytest.mark.shared
@pytest.mark.slow
def test_every_choice_is_the_validation_best(study):
    cfg, record = study
    c = record["choices"]
    for name in ("tag-bridge (zero-shot)", "dual encoder (frames)"):
        trials = c[name]["trials"]
        assert len(trials) == len(cfg.windows) * len(cfg.span_grid())
        best = max(trials, key=lambda t: (t["val_mAP"], t["val_R1@0.5"]))
        assert (c[name]["window"], c[name]["spans"]["max_seconds"]) == (best["window"], best["max_seconds"])
        assert c[name]["val"]["mAP"] == best["val_mAP"]
    head = c["moment head"]
    assert [t["frames"] for t in head["trials"]] == list(cfg.head_frames)
    assert head["frames"] == max(head["trials"], key=lambda t: (t["val_mAP"], t["val_R1@0.5"]))["frames"]
    val_base = c["best baseline"]["val"]
    assert record["best_baseline"] == max(val_base, key=lambda n: (val_base[n]["mAP"], val_base[n]["R1@0.5"]))


@pytest.mark.shared
@pytest.mark.slow
def test_trained_and_zero_shot_systems_beat_chance_on_the_test_recordings(study):
    from pathlib import Path

    cfg, record = study
    t = record["test"]
    assert set(t) == {"random windows", "whole recording", "tag-bridge (zero-shot)", "dual encoder (frames)",
                      "moment head"}
    assert record["data"]["test"]["queries"] >= 16
    assert t["whole recording"]["R1@0.5"] == 0.0  # the events are far shorter than half a recording
    rand = t["random windows"]
    # the head and the tag-bridge find the events: their intervals' lower ends clear random windows'
    # point values (small run: 8 test recordings; measured head R1@0.5 ~45, random ~0)
    for name in ("moment head", "tag-bridge (zero-shot)"):
        assert t[name]["R1@0.5_low"] > rand["R1@0.5"], name
        assert t[name]["mAP_low"] > rand["mAP"], name
    for row in t.values():
        assert all(0.0 <= row[k] <= 100.0 for k in METRICS)
        assert all(row[f"{k}_low"] <= row[k] <= row[f"{k}_high"] for k in METRICS)
    n = record["data"]["test"]["queries"]
    for name, f in record["first_answers"].items():  # a hit is exactly what R1@0.5 counts
        assert sum(f.values()) == n and f["hit"] == pytest.approx(t[name]["R1@0.5"] * n / 100), name
    assert record["first_answers"]["whole recording"]["partial"] == n
    paired = {(r["system"], r["metric"]) for r in record["paired_vs_best_baseline"]}
    assert paired == {(s, m) for s in t if s != record["best_baseline"] for m in METRICS}
    md = Path(cfg.out_dir, "results.md").read_text()
    assert all(f"| {name}" in md for name in t) and "jackknife" in md and "Chosen on validation" in md
    for f in Path(cfg.out_dir, "predictions").glob("*.jsonl"):  # what was scored is on disk, in the format
        for line in f.read_text().splitlines():
            w = json.loads(line)["pred_relevant_windows"]
            assert 1 <= len(w) <= 10 and all(0.0 <= s < e <= cfg.duration for s, e, _ in w)


def _reuse(choices) -> list:
    """What a run took from an earlier one: "dual" (the dual encoder), then each resumed head's frames."""
    return ((["dual"] if choices["dual encoder (frames)"]["reused"] else [])
            + [t["frames"] for t in choices["moment head"]["trials"] if t["resumed"]])


def _without_reuse(choices) -> dict:
    c = json.loads(json.dumps(choices))
    c["dual encoder (frames)"].pop("reused")
    for t in c["moment head"]["trials"]:
        t.pop("resumed")
    return c


@pytest.mark.shared
@pytest.mark.slow
def test_a_second_run_reuses_what_was_trained_and_gives_the_same_numbers(study):
    import time
    from pathlib import Path

    from atrlib.moments.heldout import run_study

    cfg, record = study
    stamp = Path(cfg.out_dir, "dual", "best", "model.safetensors").stat().st_mtime
    t0 = time.perf_counter()
    again = run_study(cfg)
    assert Path(cfg.out_dir, "dual", "best", "model.safetensors").stat().st_mtime == stamp  # not trained again
    assert again["test"] == record["test"] and _without_reuse(again["choices"]) == _without_reuse(record["choices"])
    assert not _reuse(record["choices"]) and _reuse(again["choices"]) == ["dual", "mel-stats", "dual"]
    assert "reusing the dual encoder, the mel-stats head, the dual head" in Path(cfg.out_dir, "results.md").read_text()
    assert time.perf_counter() - t0 < record["total_seconds"]
