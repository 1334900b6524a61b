"""Mix-up inside training (Samsung 2024 pre-training): mixed pairs are appended to each batch as
extra positives, so the loss sees batch + mixup_pairs pairs; frozen towers are refused."""
import pytest
import torch

import atrlib  # noqa: F401  (thread settings before torch)
from atrlib.data.splits import load_splits
from atrlib.models.dual import create_model
from atrlib.train import loop as training
from atrlib.train.config import TrainConfig
from atrlib.train.loop import fit

TRAINABLE = {"text": {"frozen": False}}


def _cfg(tmp_path, **kw):
    return TrainConfig(dataset="synth", size="tiny", model="synth-tiny", model_overrides=TRAINABLE, epochs=1,
                       batch_size=8, device="cpu", progress=False, out_dir=str(tmp_path / "run"), **kw)


def test_mixup_appends_positives_to_every_batch(tmp_path, monkeypatch):
    seen = []
    real = training.gather_with_grad

    def spy(x):
        seen.append(tuple(x.shape))
        return real(x)

    monkeypatch.setattr(training, "gather_with_grad", spy)
    cfg = _cfg(tmp_path, mixup_pairs=3)
    data = load_splits(cfg)
    torch.manual_seed(0)
    model = create_model(cfg.model, **cfg.model_overrides)
    history = fit(cfg, model, data)
    # per step: audio (8 + 3, E), text (8 + 3, E), ids (8 + 3,) with the mixed pairs' ids negative
    assert seen[:3] == [(11, 32), (11, 32), (11,)]
    assert history[0]["train_loss"] > 0 and torch.isfinite(torch.tensor(history[0]["train_loss"]))


def test_mixup_needs_trainable_towers(tmp_path):
    cfg = TrainConfig(dataset="synth", size="tiny", model="synth-tiny", epochs=1, batch_size=8, device="cpu",
                      progress=False, out_dir=str(tmp_path / "run"), mixup_pairs=2)   # MiniLM frozen here
    data = load_splits(cfg)
    with pytest.raises(ValueError, match="mixup_pairs needs trainable audio and text towers"):
        fit(cfg, create_model(cfg.model), data)
