"""A frozen-tower retrieval run (mel statistics + MiniLM) and the tiny synth splits, shared by
the captioning tests of one module."""
import pytest


@pytest.fixture(scope="session")
def stats_run(tmp_path_factory):
    """A saved dual encoder whose audio tower (log-mel statistics) is E_A: ``run/best/``."""
    from atrlib.models.dual import create_model, save_model

    run = tmp_path_factory.mktemp("ea") / "run"
    save_model(create_model("synth-stats-minilm"), run / "best")
    return run


@pytest.fixture(scope="session")
def tiny_splits():
    from atrlib.data import load_dataset

    return {s: load_dataset("synth", split=s, size="tiny") for s in ("train", "validation", "test")}


@pytest.fixture(scope="session")
def tiny_cfg():
    from atrlib.captioning.config import CaptionerConfig

    return CaptionerConfig(features="pooled", hidden=16, ff_dim=32, attention_heads=2, gru_layers=3, decoder_layers=2,
                           pretrain_epochs=1, finetune_epochs=3, caption_lr=0.003, max_tokens=12, device="cpu")


@pytest.fixture(scope="session")
def trained(stats_run, tiny_splits, tiny_cfg, tmp_path_factory):
    """A captioner trained on the tiny splits (synth train as both corpora), saved."""
    from atrlib.captioning.features import encoder_features, load_encoder
    from atrlib.captioning.train import CaptionData, train_captioner

    enc = load_encoder(stats_run)
    data = {s: CaptionData.from_dataset(encoder_features(enc, d, "pooled", run=str(stats_run)), d)
            for s, d in tiny_splits.items()}
    folder = tmp_path_factory.mktemp("cap") / "captioner"
    model, history = train_captioner(tiny_cfg, data["train"], data["validation"], pretrain=data["train"],
                                     out_dir=folder)
    return {"model": model, "history": history, "folder": folder, "data": data, "encoder": enc}
