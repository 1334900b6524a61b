"""fast_dev_run (a dry run: N optimiser steps, N batches of evaluation, one k-fold member) and
pretrained=False (full-size towers with random weights, built offline)."""
import atrlib  # noqa: F401  (thread settings before torch)

import json
from dataclasses import replace

import pytest
import torch

from atrlib.data.base import load_dataset
from atrlib.data.splits import load_splits
from atrlib.models.dual import create_model, load_model, save_model
from atrlib.models.offline_hf import ARCHITECTURES, text_config, text_tokenizer
from atrlib.retrieval.simfile import load_similarity, sim_path
from atrlib.train.config import TrainConfig
from atrlib.train.dev_run import dev_run_config, dev_run_data, folds_to_train, pair_count
from atrlib.train.loop import run_training


def tiny_cfg(tmp_path, **kw) -> TrainConfig:
    base = dict(dataset="synth", size="tiny", model="synth-tiny", epochs=5, batch_size=8, lr=1e-3, device="cpu",
                out_dir=str(tmp_path / "run"), progress=False)
    return TrainConfig(**{**base, **kw})


# ----------------------------------------------------------------------------- fast_dev_run
def test_dev_run_settings_and_clips(tmp_path):
    cfg = tiny_cfg(tmp_path, fast_dev_run=3, batch_size=64, grad_accum=4, patience=2, fast_dev_batch=2)
    run = dev_run_config(cfg)
    assert (run.epochs, run.batch_size, run.grad_accum, run.patience, run.embed_batch_size) == (1, 2, 1, 0, 2)
    assert dev_run_config(replace(cfg, fast_dev_run=0)) == replace(cfg, fast_dev_run=0)   # off: unchanged
    data = load_splits(cfg)
    small = dev_run_data(data, cfg)
    assert len(small["train"]) == 3 * 2 + 1 and len(small["val"]) == 3 * 2 and len(small["test"]) == 3 * 2
    assert small["train"].clip_ids == data["train"].clip_ids[:7]                            # the first clips
    assert pair_count(data["train"]) == sum(len(it["captions"]) for it in data["train"].items)
    assert pair_count(data["train"], "clips") == len(data["train"])
    assert list(folds_to_train(5, cfg)) == [0] and list(folds_to_train(5, replace(cfg, fast_dev_run=0))) == [0, 1, 2, 3, 4]


def test_fast_dev_run_takes_n_steps_and_writes_everything(tmp_path):
    cfg = tiny_cfg(tmp_path, fast_dev_run=2, batch_size=32, fast_dev_batch=2)
    result = run_training(cfg)
    out = tmp_path / "run"
    history = json.loads((out / "history.json").read_text())
    assert [h["step"] for h in history] == [2] and result["history"] == history         # 2 optimiser steps, 1 epoch
    assert not (out / "last").exists()                                                    # written, then dropped
    params = json.loads((out / "params.json").read_text())
    assert params["fast_dev_run"] == 2 and params["epochs"] == 5
    metrics = json.loads((out / "metrics.json").read_text())
    assert "dry run" in metrics["fast_dev_run"] and metrics["epochs_run"] == 1
    for split in ("validation", "test"):                                                   # N batches of 2 clips
        assert load_similarity(sim_path(out, split)).sim.shape[1] == 4
    cost = json.loads((out / "cost.json").read_text())
    full = load_dataset("synth", size="tiny", split="train")
    assert cost["data"]["train_pairs_full"] == pair_count(full)                            # the projection's data
    assert cost["paper_batch"] == 32 and cost["epochs"] == 5
    assert (out / "best" / "model.safetensors").exists()


# ----------------------------------------------------------------------------- offline architectures
# parameter counts of the published checkpoints (their model cards / AutoModel.from_pretrained(...).num_parameters())
PUBLISHED = {"bert-base-uncased": 109_482_240, "roberta-large": 355_359_744, "distilroberta-base": 82_118_400,
             "roberta-base": 124_645_632}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_offline_architecture_has_the_published_size(name):
    from transformers import AutoModel

    with torch.device("meta"):                                 # shapes only: no memory, no time
        model = AutoModel.from_config(text_config(name, pretrained=False))
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED[name]


def test_bert_table_entry_is_transformers_own_default():
    from transformers import BertConfig

    cfg = text_config("bert-base-uncased", pretrained=False)
    default = BertConfig()   # transformers' defaults are bert-base-uncased's configuration
    for k in ARCHITECTURES["bert-base-uncased"]:
        if k != "model_type":
            assert getattr(cfg, k) == getattr(default, k), k


def test_stand_in_tokenizers_frame_like_the_real_ones():
    caption = "A dog barks twice while rain falls on a tin roof."
    bert = text_tokenizer("bert-base-uncased", pretrained=False)
    ids = bert(caption)["input_ids"]
    assert ids[0] == 101 and ids[-1] == 102 and bert.convert_ids_to_tokens(ids[1:3]) == ["a", "dog"]  # [CLS] a dog
    rob = text_tokenizer("roberta-large", pretrained=False)
    r = rob([caption, "rain"], padding=True)["input_ids"]
    assert r[0][0] == 0 and r[0][-1] == 2 and r[1][:3] == [0, r[1][1], 2] and r[1][-1] == 1   # <s> ... </s>, <pad> = 1
    assert max(max(x) for x in r) < ARCHITECTURES["roberta-large"]["vocab_size"]
    assert abs(len(r[0]) - len(ids)) <= 4                      # about as many tokens as WordPiece (15 here)
    assert rob.decode(r[0], skip_special_tokens=True).strip() == caption


def test_unknown_architecture_offline_is_a_clear_error():
    with pytest.raises(OSError, match="atrlib knows offline"):
        text_config("someone/unknown-model-xyz", pretrained=False)


def test_random_model_reloads_equal_and_frozen_random_towers_are_rebuilt_not_stored(tmp_path):
    cfg = {"name": "random-distilroberta", "pretrained": False,
           "audio": {"name": "mel-stats", "frozen": True},
           "text": {"name": "hf", "kwargs": {"name_or_path": "distilroberta-base", "max_length": 16}, "frozen": True},
           "head": "linear", "embed_dim": 16}
    torch.manual_seed(0)
    model = create_model(cfg).eval()
    assert model.summary()["text_tower"]["params"] == PUBLISHED["distilroberta-base"]
    save_model(model, tmp_path / "m")
    from safetensors.torch import load_file

    stored = load_file(str(tmp_path / "m" / "model.safetensors"))
    assert not any(k.startswith(("text_tower.", "audio_tower.")) for k in stored)     # 330 MB not written
    assert any(k.startswith("text_head.") for k in stored)
    torch.manual_seed(123)                                    # another global seed: the frozen towers are seeded
    again = load_model(tmp_path / "m")
    with torch.no_grad():
        a, b = model.encode_text(["a dog barks"]), again.encode_text(["a dog barks"])
    assert torch.equal(a, b)
