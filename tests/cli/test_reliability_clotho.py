"""Issue 10 §6: the real-data ``clotho`` profile runs end to end.

The test builds a folder in Clotho's official layout (``clotho_audio_{development,validation,
evaluation}/`` + ``clotho_captions_<split>.csv``, five captions per clip) from the embedded synth
dataset at size ``tiny``, and runs the shipped ``clotho`` profile on it with frozen offline towers
(mel-stats + MiniLM) and a few epochs. The test split is named ``evaluation`` there, so every stage
must take split names from the dataset: the ablation reads ``sim_evaluation.npz``, and the
ensemble stage runs.
"""
import atrlib  # noqa: F401  (thread settings before torch)

import csv
import shutil
from pathlib import Path

import pytest

from atrlib.data import load_dataset
from atrlib.files import read_json
from atrlib.runs.batch import run_profile

REPO = Path(atrlib.__file__).resolve().parents[1]
CLOTHO_SPLITS = {"train": "development", "validation": "validation", "test": "evaluation"}


def clotho_folder(root: Path) -> Path:
    """The tiny synth splits copied into Clotho's layout (file names and captions kept)."""
    for synth_split, clotho_split in CLOTHO_SPLITS.items():
        ds = load_dataset("synth", split=synth_split, size="tiny")
        audio = root / f"clotho_audio_{clotho_split}"
        audio.mkdir(parents=True)
        with open(root / f"clotho_captions_{clotho_split}.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["file_name"] + [f"caption_{k}" for k in range(1, 6)])
            for it in ds:
                name = f"{synth_split}_{Path(it['audio_path']).name}"
                shutil.copy(it["audio_path"], audio / name)
                w.writerow([name] + (it["captions"] * 5)[:5])
    return root


def test_clotho_profile_end_to_end_on_a_clotho_layout_folder(tmp_path):
    root = clotho_folder(tmp_path / "clotho")
    assert load_dataset("clotho", root=root, split="test").split == "evaluation"
    out = tmp_path / "run"
    result = run_profile("clotho", out=out, progress=False, overrides=[
        f"root={root}", "model=synth-stats-minilm", "epochs=2", "batch_size=16", "device=cpu",
        "seeds=[0]", "losses=[infonce, triplet_max]", "kfold=2", "include_tagbridge=false",
        "02_train.lr=0.003", "n_examples=1", "n_worst=1"])
    failed = {s.name: (s.error or {}).get("evalue") for s in result.stages if s.status != "ok"}
    assert result.ok, failed
    # split names flowed from the dataset: every similarity file is named after Clotho's splits
    assert (out / "02_train" / "sim_evaluation.npz").exists() and not (out / "02_train" / "sim_test.npz").exists()
    m02 = read_json(out / "02_train" / "metrics.json")
    assert m02["splits"] == {"train": "development", "val": "validation", "test": "evaluation"}
    assert not m02.get("split_overlap")
    runs = sorted((out / "04_loss_ablation" / "runs").iterdir())
    assert [r.name for r in runs] == ["infonce-s0", "triplet_max-s0"]
    assert all((r / "sim_evaluation.npz").exists() for r in runs)
    m05 = read_json(out / "05_ensemble" / "metrics.json")
    assert set(m05["systems"]) >= {"infonce-s0", "triplet_max-s0"}
    assert 0.0 <= read_json(out / "03_evaluate" / "metrics.json")["t2a"]["mAP@10"] <= 1.0
