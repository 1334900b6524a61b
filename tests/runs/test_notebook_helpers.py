"""The library calls behind the notebooks: the search box's rankings, 01's dataset numbers,
the settings a report shows, the tour's worked example."""
import base64
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from atrlib.data.base import AudioCaptionDataset


@pytest.fixture
def tiny_ds(tmp_path):
    items = []
    for i, caps in enumerate((["a dog barks", "A dog  barks"], ["rain falls"], ["a dog barks"])):
        p = tmp_path / f"c{i}.wav"
        sf.write(p, np.sin(np.arange(8000) * (0.05 + 0.02 * i)).astype(np.float32) * 0.1, 16000)
        items.append({"clip_id": f"c{i}", "audio_path": str(p), "captions": caps, "duration": 0.5 + i,
                      "sample_rate": 16000, "split": "test"})
    return AudioCaptionDataset("toy", "test", tmp_path, items)


def test_describe_counts_repeated_captions(tiny_ds):
    from atrlib.experiments.describe import describe, overview_table

    m = describe(tiny_ds)
    assert (m["clips"], m["captions"], m["captions_per_clip"]) == (3, 4, 4 / 3)
    assert m["duplicate_captions"] == 1 and m["distinct_captions"] == 2   # "a dog barks" in c0 and c2
    assert m["hours"] == pytest.approx((0.5 + 1.5 + 2.5) / 3600) and m["sample_rates"] == [16000]
    assert overview_table(m, "toy", "test").loc["captions shared by several clips", "value"] == "1"


def test_ranking_html_marks_the_correct_clip_and_embeds_players(tiny_ds):
    from atrlib.retrieval.summaries import ranking_table
    from atrlib.runs.searchbox import audio_html, dataset_lookup, ranking_html

    caps, paths = dataset_lookup(tiny_ds)
    t = ranking_table(tiny_ds.clip_ids, [0.2, 0.9, 0.5], caps, true=["c0"], top=3)
    page = ranking_html(t, paths, "a dog <barks>", note="top 3 of 3 clips")
    assert "“a dog &lt;barks&gt;”" in page and page.count("<audio") == 3 and page.count("✓ correct") == 1
    assert page.index("rain falls") < page.index("✓ correct")  # c1 ranked first, c0 last
    data = audio_html(paths["c0"]).split("base64,", 1)[1].split('"', 1)[0]
    encoded = base64.b64decode(data)
    assert encoded[:3] == b"ID3" or encoded[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xe3") or encoded[:4] == b"fLaC"
    # at the file's true level (not normalised): the decoded player audio has the file's loudness
    import io

    import soundfile as sf

    from atrlib.audio.io import load_audio

    played, sr = sf.read(io.BytesIO(encoded), dtype="float32")
    wave, _ = load_audio(paths["c0"], sample_rate=sr, duration=10.0)
    db = lambda x: 10 * np.log10(np.mean(np.square(x)) + 1e-12)  # noqa: E731
    assert sr == 16000 and abs(db(played) - db(wave)) < 0.5 and np.abs(played).max() < 0.2  # peak 0.1, not 1


def test_each_clip_is_embedded_once_per_page(tiny_ds):
    from atrlib.retrieval.summaries import ranking_table
    from atrlib.runs.searchbox import dataset_lookup, ranking_html

    caps, paths = dataset_lookup(tiny_ds)
    seen = set()
    t = ranking_table(tiny_ds.clip_ids, [0.2, 0.9, 0.5], caps, true=["c0"], top=3)
    first = ranking_html(t, paths, "a dog barks", seen=seen)
    second = ranking_html(t, paths, "rain falls", seen=seen)
    assert first.count("<audio") == 3 and second.count("<audio") == 0 and seen == {"c0", "c1", "c2"}
    assert second.count('href="#play-c0"') == 1 and 'id="play-c0"' in first


def test_changed_settings_and_config_from():
    from atrlib.runs.notebook import changed_settings, config_from, data_options
    from atrlib.train.config import TrainConfig

    ns = {"epochs": 3, "lr": 0.001, "losses": ["x"], "model": "synth-stats-minilm", "_private": 1}
    cfg = config_from(TrainConfig, ns, out_dir="/tmp/x")
    assert cfg.epochs == 3 and cfg.out_dir == "/tmp/x"
    assert changed_settings(cfg) == {"epochs": 3}
    assert changed_settings(cfg, keep=["model"]) == {"model": "synth-stats-minilm", "epochs": 3}
    assert data_options() == {} and data_options("skip", "latin-1") == {"on_error": "skip", "encoding": "latin-1"}


def test_resolve_system_prefers_this_runs_training(tmp_path):
    from atrlib.runs.notebook import resolve_system

    assert resolve_system("tagbridge", tmp_path) == ("tagbridge", "")
    (tmp_path / "02_train" / "best").mkdir(parents=True)
    (tmp_path / "02_train" / "best" / "model.safetensors").write_bytes(b"")
    system, note = resolve_system("auto", tmp_path)
    assert system == str(tmp_path / "02_train") and "trained run" in note


def test_tour_worked_example_matches_hand_computation():
    from atrlib.runs.tour import worked_example

    sim, per, m = worked_example()
    assert list(per["rank of correct clip"]) == [1, 2, 3]
    assert m == pytest.approx({"R@1": 1 / 3, "R@2": 2 / 3, "mAP@10": (1 + 1 / 2 + 1 / 3) / 3})


def test_one_rule_for_numbers_in_tables():
    import numpy as np
    import pandas as pd

    from atrlib.runs.notebook import format_number, is_p_column, numbers_table

    assert [format_number(v) for v in (0.29345, float("nan"), None, 3, "infonce")] == ["0.293", "—", "—", "3", "infonce"]
    assert format_number(0.0004, p_value=True) == "< 0.001" and format_number(0.0004) == "0.000"
    assert format_number(0.514, p_value=True) == "0.514"
    assert [is_p_column(c) for c in ("p", "p_value", "p_vs_infonce", "p16_vs_x", "pairs", "mAP@10")] == \
        [True, True, True, True, False, False]
    df = pd.DataFrame({"mAP@10": [0.2934, np.nan], "p_value": [0.0002, 0.51], "seeds": [2, 3]}, index=["a", "b"])
    html = numbers_table(df).to_html()
    assert "NaN" not in html and "nan" not in html and "0.000" not in html
    assert "&lt; 0.001" in html and "—" in html and "0.293" in html and "0.510" in html
    assert df.loc["a", "mAP@10"] == 0.2934  # the data keep their full values
