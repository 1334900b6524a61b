"""The captioner: E_A from a run, two-stage training, save / load, greedy = beam of 1 = a plain
loop, beam search and its length penalty on a hand-made model, ensembles, the Q-Former's ATG
head decoding autoregressively, and errors that name the file."""
import math

import numpy as np
import pytest
import torch

from atrlib.captioning.decode import (CaptionerSource, EnsembleSource, QFormerSource, beam_search, generate,
                                      greedy_reference)


class Table:
    """A hand-made next-piece model over 5 pieces (0 = start, 1 = end, 2..4 words): the
    log-probabilities of the next piece depend on the last piece only."""

    def __init__(self, rows):
        self.lp = torch.log(torch.tensor(rows, dtype=torch.float))                   # (5, 5)

    def logprobs(self, rows, prefix):
        return self.lp[prefix[:, -1]]


def test_beam_search_finds_the_better_sequence_greedy_misses():
    # greedy: 2 (0.5) then end (0.1 -> total .05); beam: 3 (0.4) then end (0.9 -> .36)
    t = Table([[0, 0.1, 0.5, 0.4, 0], [0, 1, 0, 0, 0], [0, 0.1, 0.45, 0.45, 0], [0, 0.9, 0.05, 0.05, 0],
               [0, 1, 0, 0, 0]])
    assert beam_search(t, 1, 0, 1, beam_size=1, max_tokens=1) == [[2]]
    assert beam_search(t, 1, 0, 1, beam_size=2, length_penalty=0.0, max_tokens=5) == [[3]]
    assert greedy_reference(t, 1, 0, 1, max_tokens=1) == [[2]]


def test_length_penalty_trades_a_short_caption_for_a_more_probable_word_each():
    # "end now" has p .3; "4 then end" .7 * .4 = .28 (total lower, mean log-probability higher)
    t = Table([[0, 0.3, 0, 0, 0.7], [0, 1, 0, 0, 0], [0, 0.2, 0.4, 0.4, 0], [0, 0.2, 0.4, 0.4, 0],
               [0, 0.4, 0.3, 0.3, 0]])
    assert beam_search(t, 1, 0, 1, beam_size=3, length_penalty=0.0, max_tokens=4) == [[]]
    assert beam_search(t, 1, 0, 1, beam_size=3, length_penalty=1.0, max_tokens=4) == [[4]]
    assert math.log(0.3) < (math.log(0.7) + math.log(0.4)) / 2


def test_two_stage_training_save_load_and_decoding(trained, tiny_cfg):
    from atrlib.captioning.model import load_captioner
    from atrlib.captioning.train import chosen_epoch

    h = trained["history"]
    assert [x["stage"] for x in h] == ["pretrain"] + ["finetune"] * 3
    assert h[-1]["train_loss"] < h[0]["train_loss"] and all(np.isfinite(x["val_loss"]) for x in h)
    assert chosen_epoch(h) == min((x for x in h if x["stage"] == "finetune"), key=lambda x: x["val_loss"])["epoch"]
    model, test = trained["model"], trained["data"]["test"]
    again = load_captioner(trained["folder"])
    feats, mask = test.features.get([0, 1])
    toks = model.vocab.encode(["a beep", "a soft tone"], 12)
    with torch.no_grad():
        np.testing.assert_allclose(model(feats, mask, toks, torch.tensor([0, 1])),
                                   again(feats, mask, toks, torch.tensor([0, 1])), atol=1e-6)
    src = CaptionerSource(again, test.features)
    ids = generate(src, beam_size=1, as_ids=True, max_tokens=tiny_cfg.max_tokens)
    assert ids == greedy_reference(src.steps(range(len(test.features))), len(test.features), src.bos_id, src.eos_id,
                                   tiny_cfg.max_tokens)
    caps = generate(src, beam_size=3, max_tokens=tiny_cfg.max_tokens)
    assert len(caps) == 8 and all(isinstance(c, str) and "[" not in c for c in caps)
    # an ensemble of one model with itself averages equal log-probabilities: the same captions
    assert generate(EnsembleSource([src, CaptionerSource(model, test.features)]), 3,
                    max_tokens=tiny_cfg.max_tokens) == caps


def test_frames_features_pool_in_time_and_cache(stats_run, tiny_splits):
    from atrlib.captioning.features import encoder_features, load_encoder

    enc = load_encoder(stats_run)
    fs = encoder_features(enc, tiny_splits["test"], "frames")
    x, m = fs.get([0, 1], stride=4)
    assert x.shape[0] == 2 and x.shape[2] == enc.audio_tower.frame_dim == fs.dim
    assert x.shape[1] == math.ceil(len(fs.arrays[0]) / 4) and m.all()
    emb = encoder_features(enc, tiny_splits["test"], "embedding")
    assert emb.dim == enc.config.embed_dim and len(emb.arrays[0]) == 1


def test_qformer_atg_head_decodes_autoregressively():
    """The ATG head's logits for a prefix equal those at the same position of the whole
    caption (the multimodal causal mask), so decoding piece by piece is what ATG trained."""
    from types import SimpleNamespace

    from atrlib.captioning.features import FeatureSet
    from atrlib.models.qformer import AudioQFormer

    torch.manual_seed(0)
    q = AudioQFormer(frame_dim=6, text_model="tiny", pretrained=False, num_queries=4, embed_dim=8).eval()
    frames = FeatureSet([np.random.default_rng(i).normal(size=(5 + i, 6)).astype(np.float32) for i in range(3)],
                        "frames", {})
    enc = SimpleNamespace(extra_heads={"qformer": q})
    src = QFormerSource(enc, frames)
    steps = src.steps([0, 1, 2])
    ids = torch.tensor([[src.bos_id, 2000, 2001, 2002]] * 3)
    fr, fm = frames.get([0, 1, 2])
    with torch.no_grad():
        full = torch.log_softmax(q.lm_logits(ids, torch.ones_like(ids), fr, fm), -1)       # (3, 4, V)
    for k in range(1, 4):
        lp = steps.logprobs(torch.arange(3), ids[:, :k])
        keep = torch.isfinite(lp)
        assert not keep[:, src.bos_id].any()                                             # never [CLS] again
        np.testing.assert_allclose(lp[keep].exp().sum() / 3, 1.0, atol=1e-5)
        order = full[:, k - 1].argsort(-1, descending=True)[:, :5]
        assert torch.equal(lp.argsort(-1, descending=True)[:, :5], order)
    caps = generate(src, beam_size=2, max_tokens=5)
    assert len(caps) == 3


def test_errors_name_the_folder_or_file(tmp_path, stats_run):
    from atrlib.captioning.features import ClipList, encoder_features, load_encoder
    from atrlib.captioning.model import load_captioner
    from atrlib.errors import AudioError, RunError, WeightsFileError

    with pytest.raises(RunError, match="no audio tower here"):
        load_encoder(tmp_path)
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.json").write_text('{"text": {"name": "minilm"}}')
    (tmp_path / "cfg" / "model.safetensors").write_bytes(b"x")
    with pytest.raises(RunError, match="no audio tower"):
        load_encoder(tmp_path / "cfg")
    with pytest.raises(WeightsFileError, match="captioner.json: missing"):
        load_captioner(tmp_path)
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF0000WAVEjunk")
    with pytest.raises(AudioError, match="broken.wav"):
        encoder_features(load_encoder(stats_run), ClipList([bad]), "pooled")


def test_caption_command_decodes_a_qformer_runs_atg_head(tmp_path, tiny_splits):
    """A run trained with the Q-Former terms captions through its ATG head (here untrained:
    the code path, not the quality)."""
    import shutil

    from atrlib.__main__ import main
    from atrlib.captioning.sources import find_system
    from atrlib.models.dual import create_model, save_model

    torch.manual_seed(0)
    model = create_model("synth-stats-minilm", heads={"qformer": {"text_model": "tiny", "pretrained": False,
                                                                  "num_queries": 4, "embed_dim": 16}})
    save_model(model, tmp_path / "qrun" / "best")
    assert find_system(tmp_path / "qrun")[0] == "qformer"
    (tmp_path / "clips").mkdir()
    for p in tiny_splits["test"].audio_paths[:2]:
        shutil.copy(p, tmp_path / "clips")
    out = tmp_path / "p.csv"
    assert main(["caption", "--system", str(tmp_path / "qrun"), "--audio", str(tmp_path / "clips"), "--out", str(out),
                 "--max-tokens", "4", "--beam-size", "2"]) == 0
    assert len(out.read_text().splitlines()) == 3
    save_model(create_model("synth-stats-minilm"), tmp_path / "plain" / "best")
    assert main(["caption", "--system", str(tmp_path / "plain"), "--audio", str(tmp_path / "clips"),
                 "--out", str(tmp_path / "q.csv")]) == 2                # neither a captioner nor a Q-Former


@pytest.mark.slow
def test_a_trained_qformer_captions_through_its_atg_head(tmp_path, tiny_splits):
    """Train a dual encoder with the Q-Former terms (ATG included) on the tiny data, then caption
    its test clips with the ATG head through the same beam search."""
    from atrlib.captioning.decode import generate
    from atrlib.captioning.evaluate import evaluate_captions
    from atrlib.captioning.features import ClipList
    from atrlib.captioning.sources import caption_source
    from atrlib.train.config import TrainConfig
    from atrlib.train.loop import run_training

    cfg = TrainConfig(dataset="synth", size="tiny", model="synth-stats-minilm", loss="infonce+atc+atm+atg",
                      loss_kwargs={"qformer": {"text_model": "tiny", "pretrained": False, "num_queries": 4}},
                      epochs=4, batch_size=16, lr=0.003, out_dir=str(tmp_path / "run"), progress=False)
    out = run_training(cfg)
    hist = out["history"]
    assert hist[-1]["train_atg"] < hist[0]["train_atg"]                 # the ATG head learned something
    test = tiny_splits["test"]
    caps = generate(caption_source([tmp_path / "run"], ClipList(test.audio_paths)), beam_size=3, max_tokens=12)
    assert len(caps) == len(test) and all(isinstance(c, str) for c in caps)
    refs = [[c for c, i in zip(test.captions_flat(), test.caption_clip_index()) if i == k] for k in range(len(test))]
    s = evaluate_captions(caps, refs, metrics=["bleu_1", "cider_d"], java=False)
    assert 0 <= s.corpus["bleu_1"] <= 1 and s.corpus["cider_d"] >= 0


def test_fast_dev_run_takes_n_batches_per_stage(trained, tiny_cfg, monkeypatch):
    """fast_dev_run=2: one epoch per stage, each of 2 batches (counted at the loss), 2 of validation."""
    from dataclasses import replace

    from atrlib.captioning import train as T

    calls = []
    real = T.caption_loss
    monkeypatch.setattr(T, "caption_loss", lambda *a, **k: calls.append(1) or real(*a, **k))
    cfg = replace(tiny_cfg, fast_dev_run=2, caption_batch_size=4)
    d = trained["data"]
    _, history = T.train_captioner(cfg, d["train"], d["validation"], pretrain=d["train"])
    assert [(h["stage"], h["epoch"]) for h in history] == [("pretrain", 1), ("finetune", 1)]
    assert len(calls) == 2 * (2 + 2)                       # 2 stages x (2 training + 2 validation batches)
    with pytest.raises(ValueError, match="fast_dev_run"):
        replace(tiny_cfg, fast_dev_run=-1)
