import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from atrlib.retrieval.retrievers import Retriever
from atrlib.retrieval.search import list_audio, rank, resolve_retriever


class _Fixed(Retriever):
    """Embeds each file by a number in its name and texts by a number in the text."""

    name = "fixed"

    def audio_settings(self):
        return {"fixed": 1}

    def compute_audio(self, path):
        k = int(path.stem[-1])
        return np.eye(4, dtype=np.float32)[k]

    def embed_text(self, texts):
        return np.stack([np.eye(4, dtype=np.float32)[int(t[-1])] + 0.1 for t in texts])


def test_rank_orders_by_score(tmp_path):
    import soundfile as sf

    paths = []
    for k in range(4):
        p = tmp_path / f"clip{k}.wav"
        sf.write(p, np.full(100, 0.1 * k, np.float32), 8000)  # distinct content: the cache is content-addressed
        paths.append(p)
    t = rank(_Fixed(), ["find 2", "find 0"], paths, top=2, progress=False)
    assert list(t.columns[:4]) == ["query", "rank", "file", "score"]
    assert t[t["query"] == "find 2"].iloc[0]["file"] == "clip2.wav"
    assert t[t["query"] == "find 0"].iloc[0]["file"] == "clip0.wav"
    assert len(t) == 4 and list(t["rank"]) == [1, 2, 1, 2]
    assert list_audio(tmp_path) == paths


def test_resolve_unknown_system_lists_names(tmp_path):
    with pytest.raises(ValueError, match="tagbridge"):
        resolve_retriever("nope", run_dir=tmp_path)


def test_search_cli_puts_dog_first(shared, tmp_path):
    out = tmp_path / "rank.csv"
    r = subprocess.run([sys.executable, "-m", "atrlib", "search", "--model", "tagbridge", "--audio",
                        str(shared / "data/animals"), "--query", "a dog barking", "--top", "3", "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    t = pd.read_csv(out)
    assert list(t.columns) == ["query", "rank", "file", "score"]
    assert t.iloc[0]["file"] == "dog.mp3" and t.iloc[0]["rank"] == 1
    assert t["score"].is_monotonic_decreasing


def test_evaluate_cli_on_clotho_mini(shared, tmp_path):
    from atrlib.retrieval.simfile import load_similarity

    r = subprocess.run([sys.executable, "-m", "atrlib", "evaluate", "--model", "tagbridge", "--dataset", "clotho",
                        "--root", str(shared / "data/clotho_mini"), "--split", "evaluation", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    sm = load_similarity(tmp_path / "sim_evaluation.npz")
    assert sm.sim.shape == (35, 7) and sm.relevant[5] == [1]
    import json

    m = json.loads((tmp_path / "metrics.json").read_text())
    # chance mAP@10 for 7 clips is mean(1/r, r=1..7) = 0.370; tag-bridge is far above it
    assert m["t2a"]["mAP@10"] > 0.6
