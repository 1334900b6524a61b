"""The stage notebooks: one default per setting (checked without running anything), then every
stage through papermill with the tiny `smoke` profile, pinning the numbers each one recorded
(recommenders-style notebook smoke test) and checking what its HTML report shows."""
import ast
import json
import re
import subprocess
import sys
import time
from dataclasses import MISSING, fields
from pathlib import Path

import numpy as np
import pytest
import yaml

from atrlib.retrieval.simfile import load_similarity
from atrlib.runs.profiles import load_profile


ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
STAGES = tuple(s.name for s in load_profile("smoke").stages)  # the smoke run's stages, from the profile
RUNNER_SET = {"out_dir", "run_dir"}   # always given by the batch runner
# the same name, a different meaning per notebook (01 describes the train split, 03 scores test)
PER_NOTEBOOK = {"split"}
TOL = 5e-3  # recorded numbers: bit-identical on one machine; other BLAS / thread counts move them a little


def parameters(nb_path: Path) -> dict:
    """name -> literal default of the notebook's ``parameters`` cell (parsed, not executed)."""
    nb = json.loads(nb_path.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    tree = ast.parse("".join(cell["source"]))
    return {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)}


def _default(f):
    return f.default if f.default is not MISSING else f.default_factory()


# ----------------------------------------------------------------------------- one default per setting
def test_notebook_defaults_are_the_library_defaults():
    from atrlib.train.config import TrainConfig

    lib = {f.name: _default(f) for f in fields(TrainConfig)}
    checked = 0
    for nb in NOTEBOOKS:
        for name, value in parameters(nb).items():
            if name in lib and name not in RUNNER_SET:
                assert value == lib[name], (f"{nb.name}: parameter {name} = {value!r} but TrainConfig.{name} "
                                            f"defaults to {lib[name]!r}; one default per setting")
                checked += 1
    assert checked >= 30  # 02 alone shares 18 names with TrainConfig


def test_notebooks_agree_on_shared_parameters():
    seen = {}
    for nb in NOTEBOOKS:
        for name, value in parameters(nb).items():
            if name in RUNNER_SET | PER_NOTEBOOK:
                continue
            if name in seen:
                assert value == seen[name][1], f"{name}: {nb.name} says {value!r}, {seen[name][0]} says {seen[name][1]!r}"
            else:
                seen[name] = (nb.name, value)


def test_profiles_keep_only_what_differs_from_the_notebooks():
    declared = {nb.stem: parameters(nb) for nb in NOTEBOOKS}
    for prof_path in sorted((ROOT / "notebooks" / "params").glob("*.yaml")):
        prof = yaml.safe_load(prof_path.read_text())
        stages = [s if isinstance(s, dict) else {"notebook": s} for s in prof["stages"]]
        names = [Path(s["notebook"]).stem for s in stages]
        for key, value in (prof.get("defaults") or {}).items():
            same = [n for n in names if key in declared[n] and declared[n][key] == value]
            users = [n for n in names if key in declared[n]]
            assert same != users, f"{prof_path.name}: default {key}: {value!r} is every notebook's own default"
        for s, name in zip(stages, names):
            for key, value in (s.get("parameters") or {}).items():
                assert declared[name].get(key, object()) != value, \
                    f"{prof_path.name}: {name}.{key}: {value!r} repeats the notebook's default"


def test_notebook_02_builds_its_config_from_its_parameters():
    nb = json.loads((ROOT / "notebooks" / "02_train.ipynb").read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert "config_from(TrainConfig, globals()" in code and "TrainConfig(dataset=" not in code


def test_notebooks_write_to_reports_lab_when_run_by_hand(tmp_path, monkeypatch):
    from atrlib.runs.notebook import stage_dirs
    from atrlib.runs.profiles import default_reports_dir

    for nb in NOTEBOOKS:
        p = parameters(nb)
        assert p["out_dir"] == "" and p["run_dir"] == "", nb.name
    monkeypatch.chdir(ROOT / "notebooks")
    out, run = stage_dirs("", "", "99_probe")
    try:
        assert out == default_reports_dir() / "lab" / "99_probe" and run == default_reports_dir() / "lab"
        assert ROOT / "notebooks" not in out.parents
    finally:
        out.rmdir()
    out2, run2 = stage_dirs(str(tmp_path / "s"), str(tmp_path), "x")
    assert (out2, run2) == (tmp_path / "s", tmp_path)


# ----------------------------------------------------------------------------- the smoke run
@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke") / "run"
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "atrlib", "run", "--profile", "smoke", "--out", str(out)],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1].endswith("index.html")
    print(f"smoke run: {time.perf_counter() - t0:.1f} s")
    return out


def _metrics(run, stage):
    return json.loads((run / stage / "metrics.json").read_text())


def _html(run, stage):
    return (run / stage / f"{stage}.html").read_text()


def test_index_links_every_stage(smoke_run):
    html = (smoke_run / "index.html").read_text()
    for stage in STAGES:
        assert f"{stage}/{stage}.html" in html
        assert (smoke_run / stage / f"{stage}.html").stat().st_size > 10_000
    run = json.loads((smoke_run / "run.json").read_text())
    assert [s["status"] for s in run["stages"]] == ["ok"] * len(STAGES)


def test_every_page_links_its_neighbours_the_index_and_a_glossary_inside_the_run(smoke_run):
    import re

    glossary = (smoke_run / "glossary.html").read_text()
    ids = set(re.findall(r'id="([^"]+)"', glossary))
    assert {"term-map10", "term-rk", "term-chancelevel", "term-a2t", "term-seedspread"} <= ids
    assert 'href="glossary.html"' in (smoke_run / "index.html").read_text()
    for i, stage in enumerate(STAGES):
        page = _html(smoke_run, stage)
        nav = page.split("<!-- atrlib-nav -->", 1)[1].split("<!-- /atrlib-nav -->", 1)[0]
        links = re.findall(r'href="([^"]+)"', nav)
        assert "../index.html" in links and "../glossary.html" in links
        assert (f"../{STAGES[i - 1]}/{STAGES[i - 1]}.html" in links) == (i > 0)
        nxt = STAGES[i + 1] if i + 1 < len(STAGES) else None
        assert (f"../{nxt}/{nxt}.html" in links) == (nxt is not None)
        for href in links:
            assert (smoke_run / stage / href).resolve().is_file(), (stage, href)
        # every in-page link (a term's glossary entry at the page end) has its target on the page
        targets = set(re.findall(r'\bid="([^"]+)"', page)) | set(re.findall(r'\bname="([^"]+)"', page))
        missing = {h for h in re.findall(r'href="#([^"]+)"', page) if h not in targets}
        assert not missing, (stage, missing)
        # every term a page links to is in the glossary
        assert {h for h in re.findall(r'href="#(term-[^"]+)"', page)} <= ids, stage


def test_reports_are_readable_and_offline(smoke_run):
    for stage in STAGES:
        page = _html(smoke_run, stage)
        assert "<script" not in page, f"{stage}: scripts (CDN fetches) in an offline report"
        assert "widget-view+json" not in page and "widget-state" not in page
        for bad in ("PosixPath(", "DeprecationWarning", "Traceback", "FutureWarning"):
            assert bad not in page, f"{stage}: {bad} in the report"
        assert "What we learned" in page and "Terms used here" in page, stage
        # every glossary link in the text has its entry on the same page
        for target in set(re.findall(r'href="#(term-[a-z0-9]+)"', page)):
            assert f'id="{target}"' in page, f"{stage}: link to #{target} without its glossary entry"


def _visible_text(page):
    """The page's words: no style blocks, tags or base64 data (images, audio)."""
    page = re.sub(r"<style.*?</style>", " ", page, flags=re.S)
    page = re.sub(r'(src|href)="data:[^"]*"', " ", page)
    return re.sub(r"<[^>]+>", " ", page)


def test_pages_put_the_result_first_and_fold_the_code(smoke_run):
    """Each page opens with its result box (what the stage did, the key table, "What we
    learned") before any code; every code cell sits behind a "show code" toggle that works
    without scripts (<details>); no NaN, no 0.000 p-value, no page over 3 MB."""
    for stage in STAGES:
        page = _html(smoke_run, stage)
        box = page.index('<section class="atrlib-result">')
        learned = page.index("What we learned")
        first_code = page.index('<details class="atrlib-code">')
        assert box < learned < first_code, stage
        assert "What this stage did" in page[box:first_code], stage
        assert 'class="highlight hl-ipython3"' not in page and 'class="jp-InputPrompt' not in page, \
            f"{stage}: unfolded code"
        params = re.findall(r"<summary>([^<]+)</summary>", page)
        assert "show the parameters this run was given" in params and "show code" in params, stage
        text = _visible_text(page)
        assert not re.search(r"\bNaN\b|\bnan\b", text), stage
        assert not re.search(r"\bp\s*=\s*0\.000\b", text), stage  # tiny p-values read "< 0.001"
        assert (smoke_run / stage / f"{stage}.html").stat().st_size < 3_000_000, stage
    # the key tables are in the box: 02's test metrics with chance, 04's losses with their seed spread
    page = _html(smoke_run, "02_train")
    box = page[page.index('<section class="atrlib-result">'):page.index("</section>")]
    assert "chance" in box and "mAP@10" in box and "Over 2 seeds test mAP@10" in box


def test_index_shows_plain_labels_with_intervals_and_chance(smoke_run):
    index = (smoke_run / "index.html").read_text()
    assert "Test mAP@10, text → audio" in index and "95 % CI" in index and "chance" in index
    assert "seed sd" in index and "Clips in the train split" in index
    assert "test/t2a/mAP@10" not in index  # raw keys only for stages without a headline
    run = json.loads((smoke_run / "run.json").read_text())
    assert run["environment"]["cpu"] and "machine:" in (smoke_run / "summary.md").read_text()


def test_tour_stage(smoke_run):
    m = _metrics(smoke_run, "00_tour")
    assert m["worked_example"]["mAP@10"] == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)
    assert m["worked_example"]["R@1"] == pytest.approx(1 / 3)
    assert len(m["family_pair"]) == 2 and "<audio" in _html(smoke_run, "00_tour")


def test_data_stage(smoke_run):
    m = _metrics(smoke_run, "01_data")
    assert (m["clips"], m["captions"], m["captions_per_clip"]) == (24, 120, 5.0)
    assert m["leaked_groups"] == 0 and m["audited_splits"] == ["train", "validation", "test"]
    assert abs(m["hours"] - 24 * 3 / 3600) < 1e-9
    assert m["vocabulary"] == 113 and m["duplicate_captions"] == 0
    page = _html(smoke_run, "01_data")
    assert "mel-stats tower of synth-stats-minilm: 64 mel bands 20–8000 Hz at 16000 Hz" in page


def test_train_stage(smoke_run):
    m = _metrics(smoke_run, "02_train")
    assert m["epochs_run"] == 3
    sm = load_similarity(smoke_run / "02_train" / "sim_test.npz")
    assert sm.sim.shape == (40, 8)
    from atrlib.retrieval.metrics import retrieval_scores

    # the recorded number is the metric of the stored matrix, and the recorded value is pinned
    assert abs(retrieval_scores(sm.sim, sm.relevant)["mAP@10"] - m["test"]["t2a"]["mAP@10"]) < 1e-9
    assert m["test"]["t2a"]["mAP@10"] == pytest.approx(0.39408, abs=TOL)
    assert m["test"]["t2a"]["R@1"] == pytest.approx(0.125, abs=TOL)
    assert m["best_val_mAP@10"] == pytest.approx(0.34789, abs=TOL)
    hist = json.loads((smoke_run / "02_train" / "history.json").read_text())
    assert len(hist) == 3 and hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert (smoke_run / "02_train" / "best" / "model.safetensors").exists()
    # the same run with seed 1 (smoke: extra_seeds [1]) and the spread beside the CI
    assert set(m["seeds"]) == {"0", "1"} and m["seeds"]["0"]["test mAP@10"] == pytest.approx(m["test"]["t2a"]["mAP@10"])
    assert (smoke_run / "02_train" / "seeds" / "s1" / "sim_test.npz").exists()
    first = m["headline"][0]
    assert first["n_seeds"] == 2 and first["sd"] == pytest.approx(np.std([r["test mAP@10"] for r in m["seeds"].values()], ddof=1))
    page = _html(smoke_run, "02_train")
    assert "epoch 1:" not in page  # the per-epoch log goes to train_log.txt, the curves show it
    assert (smoke_run / "02_train" / "train_log.txt").read_text().count("epoch ") >= 3


def test_evaluate_stage_scores_the_trained_run(smoke_run):
    m = _metrics(smoke_run, "03_evaluate")
    assert m["n_queries"] == 40 and m["n_items"] == 8 and m["ci_method"] == "jackknife"
    assert m["t2a"]["mAP@10"] == pytest.approx(0.39408, abs=TOL)   # the same run, scored by 03
    for d in ("t2a", "a2t"):
        for k in ("R@1", "R@5", "R@10", "mAP@10"):
            assert 0 <= m[d][f"{k}_low"] <= m[d][k] <= m[d][f"{k}_high"] <= 1  # clipped to the range
    # chance mAP@10 for 8 clips, one relevant each: mean of 1/r over r = 1..8
    assert abs(m["t2a"]["mAP@10_chance"] - np.mean(1 / np.arange(1, 9))) < 0.03
    assert (smoke_run / "03_evaluate" / "sim_validation.npz").exists()
    assert m["search"]["query"] == "a high beep" and m["search"]["top1_file"].endswith(".wav")
    page = _html(smoke_run, "03_evaluate")
    assert "✓ correct" in page and "“a high beep”" in page
    # every clip's audio is embedded once: later rows link to the first player instead
    clips = re.findall(r'<audio[^>]*\bid="(play-[^"]+)"', page)
    sources = re.findall(r'src="(data:audio/[a-z]+;base64,[^"]+)"', page)
    assert len(clips) == len(set(clips)) == len(sources) == len(set(sources)) >= 5
    links = re.findall(r'<a href="#(play-[^"]+)">▶ player above</a>', page)
    assert links and set(links) <= set(clips)
    worst = re.findall(r'<h4[^>]*>“([^”]*)”</h4><p[^>]*>correct clip ranked', page)
    assert len(worst) == 2 and len(set(worst)) == 2  # n_worst distinct captions


def test_ablation_stage(smoke_run):
    m = _metrics(smoke_run, "04_loss_ablation")
    assert set(m["losses"]) == {"infonce", "triplet_max", "pair_loss"}
    for loss, r in m["losses"].items():
        assert 0 <= r["low"] <= r["mAP@10"] <= r["high"] <= 1 and r["seeds"] == 1
        assert (r["p_value"] is None) == (loss == "infonce")
    recorded = {"infonce": (0.33872, 0.42256), "triplet_max": (0.33973, 0.41176), "pair_loss": (0.43262, 0.39640)}
    for loss, (val, test) in recorded.items():
        assert m["losses"][loss]["val_mAP@10"] == pytest.approx(val, abs=TOL)
        assert m["losses"][loss]["mAP@10"] == pytest.approx(test, abs=TOL)
    # chosen on validation (pair_loss), although infonce has the best test score
    assert m["best_loss"] == max(m["losses"], key=lambda k: m["losses"][k]["val_mAP@10"]) == "pair_loss"
    assert m["best_loss_p_value"] == m["losses"]["pair_loss"]["p_value"]
    index = (smoke_run / "index.html").read_text()
    assert "Loss chosen on validation" in index and "pair_loss − infonce, test mAP@10" in index  # plain labels
    assert m["best_loss_seed_check"]["n"] == 1 and not m["best_loss_seed_check"]["distinguishable"]
    # section 4 (smoke: acml+mlml on a tiny cross-attention head, staged, top-4 re-ranked two ways)
    obj = m["objectives"]
    assert list(obj) == ["infonce | rerank 0", "infonce continued | rerank 0", "infonce+acml+mlml | rerank 0",
                         "infonce+acml+mlml | rerank 4 head", "infonce+acml+mlml | rerank 4 tuned"]
    plain, head, tuned = (obj[f"infonce+acml+mlml | rerank {s}"] for s in ("0", "4 head", "4 tuned"))
    assert tuned["val_mAP@10"] >= max(plain["val_mAP@10"], head["val_mAP@10"]) - 1e-12   # chosen on validation
    for r in (head, tuned):
        assert 0 < r["p_vs_no_rerank"] <= 1 and r["seconds_per_query"] > 0
        assert 0 <= r["low"] <= r["mAP@10"] <= r["high"] <= 1
    page = _html(smoke_run, "04_loss_ablation")
    assert "Cross-modal objectives and re-ranking" in page and "Re-ranking the top 4" in page
    _tables_say_missing_and_tiny_p_in_words(page)


def _tables_say_missing_and_tiny_p_in_words(page):
    """One rule for numbers in the pages' tables (atrlib.runs.notebook.numbers_table): a missing
    value (the baseline's own p-value, the best single system's difference) shows as '—', not NaN."""
    import re

    tables = "".join(re.findall(r"<table.*?</table>", page, flags=re.S))
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", tables)
    assert cells and not {"NaN", "nan"} & {c.strip() for c in cells}
    assert "—" in {c.strip() for c in cells}


def test_ensemble_stage(smoke_run):
    m = _metrics(smoke_run, "05_ensemble")
    # per_seed [0]: seed 0's systems (04's runs, the variant trained with seed 0)
    assert {"infonce-s0", "triplet_max-s0", "pair_loss-s0", "stats2-infonce-s0"} <= set(m["systems"])
    assert list(m["per_seed"]) == ["0"] and m["seed_check"]["n"] == 1
    for method, w in m["weights"].items():
        assert abs(sum(w.values()) - 1) < 1e-9 and min(w.values()) >= 0
    assert m["kfold"]["folds"] == 2 and m["chosen_on"] == "validation"
    rows = m["ensembles"]
    assert m["best_method"] == max(rows, key=lambda k: rows[k]["val mAP@10"])  # chosen on validation
    assert m["best_method_test_mAP@10"] == rows[m["best_method"]]["test mAP@10"]
    assert m["best_single"] == max(m["systems"], key=lambda k: m["systems"][k]["val_mAP@10"])
    n = m["size_curve"]
    assert len(n["val"]) == len(m["systems"]) and n["chosen_n"] == 1 + int(np.argmax(n["val"]))
    assert m["systems"]["stats2-infonce-s0"]["test_mAP@10"] == pytest.approx(0.51545, abs=TOL)
    # which ensemble method wins on validation depends on near-ties between fitted weights (and on whether
    # the tag-bridge weights are on the machine), so the rule is checked above, not the name
    assert m["best_single"] == "pair_loss-s0"
    _tables_say_missing_and_tiny_p_in_words(_html(smoke_run, "05_ensemble"))


def test_moments_stage(smoke_run):
    m = _metrics(smoke_run, "08_moments")
    assert m["recordings"] == {"train": 6, "validation": 3, "test": 3} and m["n_queries"] == m["queries"]["test"]
    systems = m["systems"]
    assert {"random windows", "whole recording", "dual encoder (02_train)", "moment head"} <= set(systems)
    # the tag-bridge is scored exactly when its weights are on the machine, else the page says why
    assert ("tag-bridge (zero-shot)" in systems) != any("tag-bridge" in s for s in m["skipped"])
    for row in systems.values():
        for k in ("R1@0.5", "R1@0.7", "mAP", "mAP@0.5", "mAP@0.75"):
            assert 0 <= row[f"{k}_low"] <= row[k] <= row[f"{k}_high"] <= 100
    # the baseline is chosen on validation; the head's epoch too (a multiple of eval_every)
    assert m["best_baseline"] in ("random windows", "whole recording") and m["head_epoch"] in (5, 10, 15, 20)
    assert systems["moment head"]["R1@0.5"] == pytest.approx(60.0, abs=0.5)   # recorded: 3 of 5 test queries
    assert systems["moment head"]["mAP"] == pytest.approx(40.0, abs=0.5)
    assert (smoke_run / "08_moments" / "head" / "best" / "head.json").is_file()
    page = _html(smoke_run, "08_moments")
    assert page.count("<audio") == 6 and "true window" in page  # 3 failures: the truth and the answer, by ear
    assert "Test mAP (moments, %), moment head" in (smoke_run / "index.html").read_text()
    _tables_say_missing_and_tiny_p_in_words(page)


# The field's words a stage page may use; each one a page uses must have a glossary entry (or be
# an entry's "Also:" alias), so a reader can look it up in the run's glossary page.
FIELD_TERMS = ["mAP@10", "mAP@16", "R@1", "R@5", "R@10", "R@k", "CR@k", "AP@10", "chance", "chance level",
               "jackknife", "bootstrap", "permutation test", "paired bootstrap test", "p-value",
               "confidence interval", "InfoNCE", "NT-Xent", "VICReg", "triplet loss", "pair loss", "z-score norm",
               "RRF", "Caruana selection", "coordinate ascent", "grid search", "top-k", "k-fold ensemble",
               "seed spread", "embedding", "cosine similarity", "log-mel spectrogram", "mel band", "epoch",
               "best checkpoint", "validation split", "test split", "train split", "leakage", "dual encoder",
               "tower", "frozen", "head", "contrastive loss", "temperature", "cross-attention", "re-ranking",
               "matching head", "Pearson r", "stats2", "stats8", "ensemble", "t2a", "a2t", "hit rate", "tag-bridge",
               "zero-shot", "dB", "2025 protocol", "simplex", "baseline", "similarity matrix", "early stopping",
               "average precision", "recall"]


def _page_words(html_text):
    t = re.sub(r"<style.*?</style>", " ", html_text, flags=re.S)
    t = re.sub(r'(src|href)="data:[^"]*"', " ", t)
    t = re.sub(r"<details.*?</details>", " ", t, flags=re.S)   # folded code is not prose
    return re.sub(r"<[^>]+>", " ", t)


def used_terms_without_entry(html_text):
    words = _page_words(html_text)
    used = [w for w in FIELD_TERMS if re.search(r"(?<![\w@-])" + re.escape(w) + r"(?![\w@])", words)]
    from atrlib.runs import report_text as T

    return [w for w in used if T._lookup(w) is None]


def test_a_used_term_without_a_glossary_entry_is_caught(monkeypatch):
    from atrlib.runs import report_text as T

    page = "<p>mAP@10 against chance, with a jackknife CI</p><details>cosine similarity</details>"
    assert used_terms_without_entry(page) == []
    monkeypatch.setattr(T, "_read_glossary", lambda: ({"mAP@10": "x"}, {}))  # a glossary lacking two of them
    assert used_terms_without_entry(page) == ["chance", "jackknife"]


def test_every_field_term_a_page_uses_is_in_the_glossary(smoke_run):
    missing = {s: m for s in STAGES if (m := used_terms_without_entry(_html(smoke_run, s)))}
    assert not missing, f"terms without a glossary entry: {missing}"
