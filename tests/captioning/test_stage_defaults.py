"""One default per setting: notebook 07's parameters that name a CaptionerConfig field carry its
default; bad settings are refused before any work; a GPU asked for without one is an error."""
import ast
import json
from dataclasses import fields
from pathlib import Path

import pytest

from atrlib.captioning.config import CaptionerConfig, resolve_device

ROOT = Path(__file__).resolve().parents[2]


def test_notebook_07_defaults_are_the_config_defaults():
    nb = json.loads((ROOT / "notebooks" / "07_captioning.ipynb").read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    params = {n.targets[0].id: ast.literal_eval(n.value) for n in ast.parse("".join(cell["source"])).body}
    lib = {f.name: f.default for f in fields(CaptionerConfig)}
    assert set(lib) <= set(params), sorted(set(lib) - set(params))          # every setting reaches the config
    for name, value in lib.items():
        assert params[name] == value, name
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert "config_from(CaptionerConfig, globals())" in code


def test_bad_settings_are_refused_and_cuda_without_a_gpu_is_an_error():
    import torch

    from atrlib.errors import ConfigError

    for bad in ({"features": "spectrogram"}, {"beam_size": 0}, {"hidden": 30, "attention_heads": 7},
                {"pretrain_epochs": 0, "finetune_epochs": 0}, {"caption_pairs": "both"}):
        with pytest.raises(ValueError):
            CaptionerConfig(**bad)
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            resolve_device("cuda")
