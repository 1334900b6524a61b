"""atrlib.runs.reporting: atomic JSON, metrics.json, flattening, and the run's index.html / summary.md."""
import json
import os

import numpy as np
import pytest

from atrlib import files
from atrlib.files import read_json, read_metrics, write_json, write_metrics
from atrlib.runs import reporting
from atrlib.runs.reporting import flatten_metrics, format_duration, key_numbers, write_index


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# --------------------------------------------------------------------------------------
# write_json
# --------------------------------------------------------------------------------------
def test_write_json_numpy_and_strict_json(tmp_path):
    obj = {
        "f32": np.float32(0.25),
        "i64": np.int64(7),
        "b": np.bool_(True),
        "arr": np.arange(6).reshape(2, 3),
        "nan": float("nan"),
        "inf": np.float64("inf"),
        "path": tmp_path / "x",
        "nested": {"t2a": {"mAP@10": np.float64(0.5)}},
        3: "int key",
    }
    p = write_json(tmp_path / "sub" / "a.json", obj)
    text = p.read_text()
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert data == {
        "f32": 0.25,
        "i64": 7,
        "b": True,
        "arr": [[0, 1, 2], [3, 4, 5]],
        "nan": None,
        "inf": None,
        "path": str(tmp_path / "x"),
        "nested": {"t2a": {"mAP@10": 0.5}},
        "3": "int key",
    }
    assert read_json(p) == data
    assert _leftovers(p.parent) == []


def test_write_json_is_atomic(tmp_path, monkeypatch):
    p = tmp_path / "m.json"
    write_json(p, {"v": 1})
    write_json(p, {"v": 2})  # replaces
    assert read_json(p) == {"v": 2}

    # an unserialisable object: nothing written, old file intact, no temp file
    with pytest.raises(TypeError):
        write_json(p, {"v": object()})
    assert read_json(p) == {"v": 2}
    assert _leftovers(tmp_path) == []

    # a failure at the final rename (e.g. disk trouble): old file intact, temp file removed
    def broken_replace(src, dst):
        assert os.path.exists(src) and src != str(dst)  # the new text went to a temp file first
        raise OSError("disk on fire")

    monkeypatch.setattr(files.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        write_json(p, {"v": 3})
    assert read_json(p) == {"v": 2}
    assert _leftovers(tmp_path) == []


def test_write_metrics_and_read_metrics(tmp_path):
    path = write_metrics(tmp_path, {"t2a": {"mAP@10": 0.31}, "loss": 1.5}, params={"epochs": 2}, key_metrics=["t2a/mAP@10"])
    assert path == tmp_path / "metrics.json"
    assert read_json(path) == {"t2a": {"mAP@10": 0.31}, "loss": 1.5, "key_metrics": ["t2a/mAP@10"]}
    assert read_json(tmp_path / "params.json") == {"epochs": 2}
    assert read_metrics(tmp_path)["loss"] == 1.5
    assert read_metrics(tmp_path / "nowhere") is None


def test_flatten_metrics():
    d = {"t2a": {"mAP@10": 0.3, "R@1": 0.1}, "a2t": {"deep": {"x": 1}}, "loss": 2.0, "curve": [1, 2]}
    assert flatten_metrics(d) == {"t2a/mAP@10": 0.3, "t2a/R@1": 0.1, "a2t/deep/x": 1, "loss": 2.0, "curve": [1, 2]}
    assert list(flatten_metrics(d)) == ["t2a/mAP@10", "t2a/R@1", "a2t/deep/x", "loss", "curve"]
    assert flatten_metrics({"a": {"b": 1}}, sep=".") == {"a.b": 1}


def test_key_numbers_nominated_or_top_level_scalars():
    m = {"t2a": {"mAP@10": 0.3}, "loss": 2.0, "curve": [1, 2], "key_metrics": ["t2a/mAP@10", "missing"]}
    assert key_numbers(m) == [("t2a/mAP@10", 0.3), ("missing", None)]
    m2 = {f"m{i}": i for i in range(12)} | {"t2a": {"mAP@10": 0.3}, "curve": [1]}
    assert key_numbers(m2) == [(f"m{i}", i) for i in range(reporting.MAX_KEY_NUMBERS)]
    assert key_numbers(None) == []


def test_format_helpers():
    assert format_duration(None) == "—"
    assert format_duration(3.21) == "3.2 s"
    assert format_duration(125) == "2 min 05 s"
    assert format_duration(3720) == "1 h 02 min"
    assert reporting.format_value(0.123456) == "0.1235"
    assert reporting.format_value(None) == "—"
    assert reporting.format_value(True) == "true"


# --------------------------------------------------------------------------------------
# index.html / summary.md
# --------------------------------------------------------------------------------------
EVIL = '<script>alert("x")</script> | & done'


@pytest.fixture
def fake_run(tmp_path):
    """A run folder as the batch runner leaves it: one ok, one failed, one skipped stage."""
    run = tmp_path / "run"
    (run / "02_train").mkdir(parents=True)
    (run / "02_train" / "02_train.html").write_text("<html>train</html>")
    (run / "02_train" / "02_train.ipynb").write_text("{}")
    write_metrics(run / "02_train", {"t2a": {"mAP@10": 0.123456}, "epochs": 3, "key_metrics": ["t2a/mAP@10", "epochs"]})
    (run / "03_evaluate").mkdir()
    (run / "03_evaluate" / "03_evaluate.html").write_text("<html>partial</html>")
    result = {
        "profile": "smoke <b>",
        "description": "a <i>test</i> run",
        "run_dir": str(run),
        "started": "2025-01-01T00:00:00",
        "finished": "2025-01-01T00:01:00",
        "duration_s": 61.0,
        "overrides": {"epochs": 3},
        "environment": {"atrlib": "0.1.0", "git_commit": "abc123"},
        "stages": [
            {"name": "02_train", "notebook": "02_train.ipynb", "status": "ok", "duration_s": 12.5,
             "output_notebook": str(run / "02_train" / "02_train.ipynb"), "html": str(run / "02_train" / "02_train.html"),
             "metrics": read_metrics(run / "02_train"), "error": None},
            {"name": "03_evaluate", "notebook": "03_evaluate.ipynb", "status": "failed", "duration_s": 2.0,
             "output_notebook": None, "html": "03_evaluate/03_evaluate.html", "metrics": None,
             "error": {"ename": "ValueError", "evalue": EVIL, "cell_index": 4, "exec_count": 3}},
            {"name": "04_loss_ablation", "notebook": "04_loss_ablation.ipynb", "status": "skipped",
             "skipped_reason": "needs 03_evaluate (failed)"},
        ],
    }
    return run, result


def test_index_html_links_numbers_and_escaping(fake_run):
    run, result = fake_run
    index = write_index(run, result)
    assert index == run / "index.html"
    page = index.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page  # self-contained, no scripts
    # links relative to the run dir, only to files that exist
    assert 'href="02_train/02_train.html"' in page
    assert 'href="02_train/02_train.ipynb"' in page
    assert 'href="02_train/metrics.json"' in page
    assert 'href="03_evaluate/03_evaluate.html#papermill-error-cell"' in page
    assert "03_evaluate/03_evaluate.ipynb" not in page  # none was written
    # status badges and durations
    for status in ("ok", "failed", "skipped"):
        assert f'<span class="badge {status}">{status}</span>' in page
    assert "12.5 s" in page and "1 min 01 s" in page
    # the nominated key numbers, formatted
    assert "<dt>t2a/mAP@10</dt><dd>0.1235</dd>" in page
    assert "<dt>epochs</dt><dd>3</dd>" in page
    # the error message is escaped, never live markup
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; | &amp; done" in page
    assert "ValueError" in page and "In [3]" in page
    assert "smoke &lt;b&gt;" in page and "a &lt;i&gt;test&lt;/i&gt; run" in page
    assert "needs 03_evaluate (failed)" in page
    assert "abc123" in page


def test_summary_md(fake_run):
    run, result = fake_run
    write_index(run, result)
    md = (run / "summary.md").read_text()
    lines = md.splitlines()
    assert lines[0] == "# atrlib run: smoke &lt;b&gt;"
    rows = [ln for ln in lines if ln.startswith("| ")]
    assert rows[0] == "| # | stage | status | duration | outputs | key numbers |"
    assert len(rows) == 4
    assert "[report](02_train/02_train.html)" in rows[1] and "t2a/mAP@10 = 0.1235; epochs = 3" in rows[1]
    # the failed row: escaped, and the "|" in the message does not break the table
    assert "&lt;script&gt;" in rows[2] and "<script" not in md
    assert rows[2].count(" | ") == rows[0].count(" | ")
    assert "\\|" in rows[2]
    assert "needs 03_evaluate (failed)" in rows[3]


def test_write_index_accepts_a_result_object(fake_run):
    from atrlib.runs.records import RunResult

    run, result = fake_run
    obj = RunResult.from_dict(result)
    assert [s.status for s in obj.stages] == ["ok", "failed", "skipped"] and not obj.ok
    write_index(run, obj)
    assert "0.1235" in (run / "index.html").read_text()


# --------------------------------------------------------------------------------------
# offline HTML of a stage
# --------------------------------------------------------------------------------------
def test_export_html_drops_widgets_and_scripts(tmp_path):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    nb = new_notebook()
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    cell = new_code_cell("x")
    cell.outputs = [
        new_output("display_data", data={"application/vnd.jupyter.widget-view+json": {"model_id": "m"},
                                         "text/plain": "epoch 1/3: 100%|####|"}),
        new_output("execute_result", data={"text/plain": "42"}, execution_count=1),
    ]
    nb.cells = [cell]
    clean = reporting.offline_notebook(nb)
    assert [o.get("data", {}).get("text/plain") for o in clean.cells[0].outputs] == ["42"]
    assert "widgets" not in clean.metadata and "widgets" in nb.metadata  # a copy; the input is untouched
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, str(path))
    out = reporting.export_html(path, tmp_path / "x.html")
    page = out.read_text()
    assert "42" in page and "epoch 1/3" not in page
    assert "<script" not in page.lower() and "cdnjs" not in page and "unpkg" not in page
    assert reporting.offline_html('a<script src="https://x/y.js"></script>b<SCRIPT>\nvar z;\n</SCRIPT>c') == "abc"


# --------------------------------------------------------------------------------------
# evaluation tables and report sentences
# --------------------------------------------------------------------------------------
def _toy_sm():
    from atrlib.retrieval.simfile import SimilarityMatrix

    # 6 captions (2 per clip, the second caption of clip 0 repeats its first) × 3 clips
    sim = np.array([[0.1, 0.9, 0.2], [0.1, 0.9, 0.2], [0.3, 0.8, 0.1],
                    [0.2, 0.9, 0.1], [0.2, 0.1, 0.9], [0.9, 0.1, 0.3]], dtype=np.float32)
    return SimilarityMatrix(sim, [f"q{i}" for i in range(6)], ["a", "b", "c"], [[0], [0], [1], [1], [2], [2]], {})


def test_clip_interval_and_one_named_interval():
    from atrlib.retrieval.summaries import ci_table, clip_interval, table_to_metrics

    assert clip_interval({"value": 0.02, "low": -0.019, "high": 0.06}) == {"value": 0.02, "low": 0.0, "high": 0.06}
    assert clip_interval({"value": 1.0, "low": 0.97, "high": 1.03})["high"] == 1.0
    t = ci_table(_toy_sm())
    assert list(t.columns) == ["value", "low", "high", "chance"] and t.attrs["ci_method"] == "jackknife"
    assert (t["low"] >= 0).all() and (t["high"] <= 1).all()
    # R@1 t2a against a brute-force count of higher-scored clips
    ranks = [int((_toy_sm().sim[q] > _toy_sm().sim[q, r[0]]).sum()) + 1 for q, r in enumerate(_toy_sm().relevant)]
    assert t.loc[("t2a", "R@1"), "value"] == pytest.approx(np.mean([r == 1 for r in ranks]))
    both = ci_table(_toy_sm(), also="bootstrap")
    assert {"bootstrap_low", "bootstrap_high"} <= set(both.columns)
    m = table_to_metrics(t)
    assert m["ci_method"] == "jackknife" and m["t2a"]["R@1_low"] >= 0.0
    with pytest.raises(ValueError):
        ci_table(_toy_sm(), method="wald")


def test_worst_queries_are_deduplicated_by_caption_and_rankings_carry_captions():
    from atrlib.retrieval.summaries import ranking_table, worst_queries

    sm = _toy_sm()
    texts = ["a dog", "A  dog", "rain", "rain falls", "a hum", "a hum low"]
    w = worst_queries(sm, n=3, texts=texts)
    # ranks 3, 3, 1, 1, 1, 2: "A  dog" is the same caption as "a dog" and is listed once
    assert [x["text"] for x in w] == ["a dog", "a hum low", "rain"]
    assert w[0]["rank"] == 3 and w[0]["true"] == ["a"]
    t = ranking_table(sm.item_ids, sm.sim[0], {"a": ["a dog"], "b": ["rain", "rain falls"]}, true=["a"], top=3)
    assert list(t["clip"]) == ["b", "c", "a"] and list(t["correct"]) == [False, False, True]
    assert t.loc[0, "captions"] == ["rain", "rain falls"] and t.loc[1, "captions"] == []


def test_report_sentences_and_glossary_links():
    from atrlib.runs import report_text as T

    assert T.pct(0.135) == "13.5 %" and T.p_text(0.0004) == "p < 0.001, significant"
    assert T.p_text(0.63) == "p = 0.630, not significant" and T.p_text(None) == "no test"
    assert T.term("mAP@10") == "[mAP@10](#term-map10)" and T.term("no such term") == "no such term"
    section = T.terms_section(["mAP@10", "jackknife", "nonsense"])
    assert '<a id="term-map10"></a>**mAP@10**' in section and "term-jackknife" in section and "nonsense" not in section
    g = T.glossary()
    for word in ("tower", "head", "InfoNCE", "tag-bridge", "mel-stats", "jackknife", "paired bootstrap test",
                 "Caruana selection", "RRF", "z-score norm", "t2a", "a2t", "mAP@10"):
        assert word in g and len(g[word]) > 40, word
    metrics = {"t2a": {k: v for m in ("R@1", "R@10", "mAP@10") for k, v in
                       ((m, 0.135), (f"{m}_low", 0.1), (f"{m}_high", 0.17), (f"{m}_chance", 0.012))},
               "a2t": {"mAP@10": 0.1, "mAP@10_low": 0.05, "mAP@10_high": 0.15, "mAP@10_chance": 0.04}}
    text = " ".join(T.learned_evaluate(metrics, n_items=80, worst_rank=71))
    assert "ranked first for 13.5 % of captions (95 % CI 10.0 %–17.0 %, jackknife; chance 1.2 %)" in text
    assert "11.2× chance" in text and "rank 71 of 80" in text


def test_headline_reads_as_plain_labels_with_interval_chance_and_seed_spread():
    from atrlib.runs.notebook import headline_item
    from atrlib.runs.reporting import headline, stage_numbers

    m = {"headline": [headline_item("Test mAP@10, text → audio", 0.27351, 0.2403, 0.3071, 0.03661, sd=0.0104,
                                    n_seeds=3),
                      headline_item("Loss chosen on validation", "infonce+vicreg"),
                      headline_item("Clips in the train split", 320),
                      headline_item("a − b", -0.0042, n_seeds=1, note="not distinguishable")],
         "key_metrics": ["x"], "x": 1.0}
    assert headline(m) == [
        ("Test mAP@10, text → audio", "0.274 (95 % CI 0.240–0.307; chance 0.037; seed sd 0.010 over 3 seeds)"),
        ("Loss chosen on validation", "infonce+vicreg"),
        ("Clips in the train split", "320"),
        ("a − b", "-0.004 (1 seed; not distinguishable)")]
    assert stage_numbers(m) == headline(m)
    assert stage_numbers({"key_metrics": ["x"], "x": 1.0}) == [("x", "1")]


def test_the_machine_is_named_with_its_vector_unit():
    from atrlib.runs.environment import cpu_info, machine_text

    info = cpu_info()
    assert set(info) == {"cpu", "vector_unit", "cpu_count"}
    assert machine_text({"cpu": "Intel Xeon", "vector_unit": "AVX-512 + AVX2", "cpu_count": "2"}) == \
        "Intel Xeon (AVX-512 + AVX2, 2 cores)"
    assert machine_text({}) == "unknown CPU"

