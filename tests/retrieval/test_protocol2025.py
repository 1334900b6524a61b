"""The DCASE 2025 relevance-file protocol: the official file form and the long form, errors that
name file / line / fix, matching to a split, mAP@16 against a brute-force computation, and
`atrlib evaluate --relevance FILE` end to end on a file the test builds."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from atrlib.errors import RelevanceFileError
from atrlib.retrieval.protocol2025 import PROTOCOL_2024, PROTOCOL_2025, align, both_protocols, load_relevance_file, protocol_metrics, write_relevance_file
from atrlib.retrieval.simfile import SimilarityMatrix

ROOT = Path(__file__).resolve().parents[2]


class _DS:
    name, split = "toy", "evaluation"

    def __init__(self):
        self.clip_ids = ["a.wav", "b.wav", "c.wav", "d.wav"]
        self.audio_paths = [f"/data/{c}" for c in self.clip_ids]
        self.items = [{"captions": [f"caption {i}", f"other {i}"]} for i in range(4)]

    def __len__(self):
        return 4

    def captions_flat(self):
        return [c for it in self.items for c in it["captions"]]


def test_official_form_reads_list_literals(tmp_path):
    f = tmp_path / "metadata_eval.csv"
    f.write_text('query,audio_filenames,extra\n"caption 0","[\'a.wav\', \'c.wav\']",x\n'
                 '"other 3","[""d.wav""]",y\n')  # a Python list, then a JSON list
    ann = load_relevance_file(f)
    assert ann.queries == ["caption 0", "other 3"] and ann.files == [["a.wav", "c.wav"], ["d.wav"]]
    assert ann.grades is None and ann.rows == [2, 3]
    # written back by the library in the same form, read back equal
    g = write_relevance_file(tmp_path / "w.csv", ann.queries, ann.files)
    assert load_relevance_file(g).files == ann.files
    assert "\"['a.wav', 'c.wav']\"" in g.read_text()


def test_long_form_collects_and_grades(tmp_path):
    f = tmp_path / "long.csv"
    f.write_text("query,file_name,relevance\ncaption 0,a.wav,4\ncaption 0,b.wav,0\ncaption 0,c.wav,2.5\n")
    ann = load_relevance_file(f)
    assert ann.files == [["a.wav", "c.wav"]] and ann.grades == [[4.0, 2.5]]  # a zero grade: not relevant


@pytest.mark.parametrize("text, match", [
    ("q,files\nx,y\n", r"line 1: header \['q', 'files'\] lacks the columns 'query' and 'audio_filenames'"),
    ("query,audio_filenames\ncaption 0,\"['a.wav'\"\n", r"line 2: audio_filenames .* is not a list"),
    ("query,audio_filenames\n,\"['a.wav']\"\n", r"line 2: empty query"),
    ("query,audio_filenames\nq,\"['a.wav']\"\nq,\"['b.wav']\"\n", r"line 3: query 'q' repeats line 2"),
    ("query,audio_filenames\nq,\"['a.wav', 'a.wav']\"\n", r"line 2: clip 'a.wav' is listed twice"),
    ("query,file_name,relevance\nq,a.wav,high\n", r"line 2: relevance 'high' is not a number"),
    ("query,audio_filenames\n", r"no rows after the header"),
])
def test_file_errors_name_line_and_fix(tmp_path, text, match):
    f = tmp_path / "r.csv"
    f.write_text(text)
    with pytest.raises(RelevanceFileError, match=match):
        load_relevance_file(f)


def test_align_to_the_split_and_its_errors(tmp_path):
    ds = _DS()
    f = write_relevance_file(tmp_path / "r.csv", ["Caption  2", "other 1", "not here"],
                             [["c.wav", "a"], ["b.wav"], ["a.wav"]])
    with pytest.raises(RelevanceFileError, match=r"r.csv, line 2: clip 'a' is not in toy/evaluation \(4 clips"):
        align(load_relevance_file(f), ds)
    q = write_relevance_file(tmp_path / "q.csv", ["caption 0", "not here"], [["a.wav"], ["a.wav"]])
    with pytest.raises(RelevanceFileError, match=r"q.csv, line 3: query 'not here' is not a caption of toy/evaluation"):
        align(load_relevance_file(q), ds)
    a = align(load_relevance_file(f), ds, on_missing="skip")
    # loose match of the query text; 'a' (no extension) is neither a clip id nor a file name: skipped
    assert a["query_rows"] == [4, 3] and a["relevant"] == [[2], [1]] and len(a["skipped"]) == 2
    g = write_relevance_file(tmp_path / "g.csv", ["caption 1"], [["zzz.wav"]])
    with pytest.raises(RelevanceFileError, match=r"clip 'zzz.wav' is not in toy/evaluation \(4 clips"):
        align(load_relevance_file(g), ds)


def _brute_ap(scores, relevant, k):
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    hits, ap = 0, 0.0
    for r, item in enumerate(order[:k], start=1):
        if item in relevant:
            hits += 1
            ap += hits / r
    return ap / len(relevant)


def test_both_protocols_against_brute_force(tmp_path):
    ds = _DS()
    rng = np.random.default_rng(3)
    sim = rng.normal(size=(8, 4)).astype(np.float32)
    sm = SimilarityMatrix(sim, [f"q{i}" for i in range(8)], ds.clip_ids, [[j // 2] for j in range(8)])
    queries, files = ["caption 0", "other 2", "caption 3"], [["a.wav", "b.wav"], ["d.wav"], ["a.wav", "c.wav", "d.wav"]]
    f = write_relevance_file(tmp_path / "r.csv", queries, files)
    table = both_protocols(sm, ds, f)
    assert list(table.index) == [PROTOCOL_2024, PROTOCOL_2025]
    rows, rel = [0, 5, 6], [[0, 1], [3], [0, 2, 3]]
    want16 = np.mean([_brute_ap(sim[q], set(r), 16) for q, r in zip(rows, rel)])
    want_old = np.mean([_brute_ap(sim[q], {q // 2}, 10) for q in range(8)])
    assert table.loc[PROTOCOL_2025, "mAP@16"] == pytest.approx(want16)
    assert table.loc[PROTOCOL_2025, "queries"] == 3 and table.loc[PROTOCOL_2025, "relevant_per_query"] == pytest.approx(2.0)
    assert table.loc[PROTOCOL_2024, "mAP@10"] == pytest.approx(want_old) and table.loc[PROTOCOL_2024, "queries"] == 8
    r1 = np.mean([len({int(np.argmax(sim[q]))} & set(r)) / len(r) for q, r in zip(rows, rel)])
    assert table.loc[PROTOCOL_2025, "R@1"] == pytest.approx(r1)
    m = protocol_metrics(table)
    assert m["protocol_2025"]["ranking_metric"] == "mAP@16" and m["protocol_2024"]["ranking_metric"] == "mAP@10"
    assert m["protocol_2025"]["mAP@16_low"] <= m["protocol_2025"]["mAP@16"] <= m["protocol_2025"]["mAP@16_high"]


def test_synth_relevance_file_has_several_relevant_clips(tmp_path):
    from atrlib.data import load_dataset
    from atrlib.data.synth import synth_metadata
    from atrlib.retrieval.protocol2025 import synth_relevance_file

    ds = load_dataset("synth", split="test", size="tiny")
    meta = {m["clip_id"]: m for m in synth_metadata(split="test", size="tiny")}
    ann = load_relevance_file(synth_relevance_file(tmp_path / "r.csv", ds, list(meta.values())))
    a = align(ann, ds)
    assert len(a["query_rows"]) == len(ann) >= len(ds) - 1
    assert max(len(r) for r in a["relevant"]) > 1  # some captions have several relevant clips
    cc = ds.caption_clip_index()
    for q, r in zip(a["query_rows"], a["relevant"]):
        own = meta[ds.clip_ids[cc[q]]]
        assert cc[q] in r  # the clip the caption was written for is relevant
        for c in r:  # every listed clip has the same background and event kinds
            m = meta[ds.clip_ids[c]]
            assert m["background"]["kind"] == own["background"]["kind"]
            assert sorted(e["kind"] for e in m["events"]) == sorted(e["kind"] for e in own["events"])


def test_evaluate_cli_scores_both_protocols(tmp_path):
    """`atrlib evaluate --relevance FILE` on a trained tiny run and a relevance file built here."""
    from atrlib.data import load_dataset
    from atrlib.data.synth import synth_metadata
    from atrlib.retrieval.protocol2025 import synth_relevance_file
    from atrlib.train.config import TrainConfig
    from atrlib.train.loop import run_training

    run = tmp_path / "run"
    run_training(TrainConfig(size="tiny", epochs=1, batch_size=16, progress=False, out_dir=str(run)))
    ds = load_dataset("synth", split="test", size="tiny")
    rel = synth_relevance_file(tmp_path / "rel.csv", ds, synth_metadata(split="test", size="tiny"))
    cmd = [sys.executable, "-m", "atrlib", "evaluate", "--model", str(run), "--dataset", "synth", "--size", "tiny",
           "--split", "test", "--out", str(tmp_path / "ev"), "--relevance", str(rel)]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    p25, p24 = m["protocol_2025"], m["protocol_2024"]
    assert p25["protocol"] == PROTOCOL_2025 and p24["protocol"] == PROTOCOL_2024
    assert p24["mAP@10"] == pytest.approx(m["t2a"]["mAP@10"])  # the 2024 row is the usual metric
    assert 0 <= p25["mAP@16_low"] <= p25["mAP@16"] <= p25["mAP@16_high"] <= 1 and p25["relevant_per_query"] > 1
    assert f"mAP@16 {p25['mAP@16']:.4f}" in r.stdout and "2025 protocol" in r.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("query,audio_filenames\nno such caption,\"['x.wav']\"\n")
    cmd[cmd.index(str(tmp_path / "ev"))] = str(tmp_path / "ev2")
    cmd[-1] = str(bad)
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 2 and "bad.csv, line 2: query 'no such caption' is not a caption of synth/test" in r.stderr
