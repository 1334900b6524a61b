"""Training on the shipped configs and the embedded ``synth`` data: epoch order, learning,
the frozen-embedding cache, checkpoints, resume after a hard kill through the CLI, two-stage
training, early stopping, schedules, the train CLI.

The real :class:`TrainConfig` shrunk to the ``tiny`` synth split (24 / 8 / 8 clips of 3 s, five
captions each) and, where learning must show on held-out clips, the ``smoke`` split (64 / 24
/ 24 clips). References: chance-level mAP@10 by its exact expectation, mAP@10 recomputed by
brute force from the stored similarity matrix, an uninterrupted run for the resumed one.
"""
import atrlib  # noqa: F401  (thread settings before torch)

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import atrlib.train.checkpoints as checkpoints
from atrlib.cli.train import build_config
from atrlib.data.splits import load_splits
from atrlib.losses.distributed import gather_with_grad
from atrlib.models.dual import create_model, load_into, model_state, save_model
from atrlib.models.inputs import SplitInputs, epoch_order
from atrlib.retrieval.scoring import similarity
from atrlib.retrieval.simfile import load_similarity
from atrlib.train.checkpoints import find_checkpoint, save_checkpoint
from atrlib.train.config import TrainConfig
from atrlib.train.loop import fit, run_training

REPO = Path(atrlib.__file__).resolve().parents[1]


class Killed(BaseException):
    """A simulated hard kill (not an Exception: nothing may catch it on the way out)."""


def tiny_cfg(tmp_path, **kw) -> TrainConfig:
    """The real config, shrunk: tiny synth, frozen mel-stats + MiniLM towers, CPU, quiet."""
    base = dict(dataset="synth", size="tiny", model="synth-stats-minilm", epochs=2, batch_size=16, lr=3e-3,
                device="cpu", progress=False, out_dir=str(tmp_path / "run"))
    base.update(kw)
    return TrainConfig(**base)


def chance_map_at_10(n_clips: int) -> float:
    """Expected AP@10 of one relevant clip at a uniformly random rank among ``n_clips``."""
    return sum(1.0 / r for r in range(1, min(10, n_clips) + 1)) / n_clips


def brute_map_at_10(sim: np.ndarray, caption_clip) -> float:
    """mAP@10 with one relevant clip per caption: 1 / rank when the rank is at most 10."""
    aps = []
    for q, c in enumerate(caption_clip):
        rank = 1 + int(np.sum(sim[q] > sim[q, c]))
        aps.append(1.0 / rank if rank <= 10 else 0.0)
    return float(np.mean(aps))


# ---------------------------------------------------------------------------------------------
# epoch order
# ---------------------------------------------------------------------------------------------
# clips with 1 to 5 captions, captions not grouped by clip
CLIP_OF = torch.tensor([3, 0, 1, 1, 2, 0, 3, 3, 1, 4, 4, 4, 4, 4, 2])
PAIRS = SimpleNamespace(caption_clip=CLIP_OF)


def test_epoch_order_is_seeded_by_seed_and_epoch():
    for mode in ("captions", "clips"):
        assert epoch_order(PAIRS, mode, seed=0, epoch=3) == epoch_order(PAIRS, mode, seed=0, epoch=3)
        assert epoch_order(PAIRS, mode, 0, 3) != epoch_order(PAIRS, mode, 0, 4)
        assert epoch_order(PAIRS, mode, 0, 3) != epoch_order(PAIRS, mode, 1, 3)


def test_epoch_order_captions_mode_covers_every_pair_once():
    for epoch in range(5):
        assert sorted(epoch_order(PAIRS, "captions", 0, epoch)) == list(range(len(CLIP_OF)))


def test_epoch_order_clips_mode_takes_one_caption_per_clip():
    seen = set()
    for epoch in range(60):
        order = epoch_order(PAIRS, "clips", 0, epoch)
        assert sorted(CLIP_OF[order].tolist()) == [0, 1, 2, 3, 4]   # every clip exactly once
        seen.update(order)
    assert seen == set(range(len(CLIP_OF)))                         # every caption gets its turn
    with pytest.raises(ValueError, match="captions.*clips"):
        epoch_order(PAIRS, "all", 0, 0)


# ---------------------------------------------------------------------------------------------
# learning (frozen towers, heads only)
# ---------------------------------------------------------------------------------------------
def test_heads_learn_beyond_chance_on_held_out_clips(tmp_path):
    # smoke, not tiny: on tiny's 8 validation clips (chance 0.34) these heads reach only
    # 0.35-0.46 (measured over seeds), too close to chance to tell learning from luck.
    cfg = tiny_cfg(tmp_path, size="smoke", epochs=6, batch_size=32, test_split="")
    data = load_splits(cfg)
    assert (len(data["train"]), len(data["val"])) == (64, 24)
    torch.manual_seed(0)
    model = create_model(cfg.model)
    chance = chance_map_at_10(24)                                   # 0.122
    val_in = SplitInputs(model, data["val"], progress=False)
    untrained = similarity(model, val_in)
    assert brute_map_at_10(untrained.sim, data["val"].caption_clip_index()) == pytest.approx(chance, abs=0.04)

    history = fit(cfg, model, data)

    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5, 6]
    losses = [h["train_loss"] for h in history]
    assert losses[-1] < 0.75 * losses[0]                            # measured 3.47 -> 2.12
    assert all(h["train_infonce"] == h["train_loss"] for h in history)
    maps = [h["val_mAP@10"] for h in history]
    assert maps[-1] > 2 * chance                                    # measured 0.31-0.37 (seeds 0-3)
    # fit leaves the best epoch's weights loaded: re-scoring them gives the best logged value
    best_sim = similarity(model, val_in)
    assert brute_map_at_10(best_sim.sim, data["val"].caption_clip_index()) == pytest.approx(max(maps), abs=1e-9)
    out = Path(cfg.out_dir)
    assert json.loads((out / "history.json").read_text()) == history
    assert json.loads((out / "last" / "state.json").read_text())["epoch"] == 6
    for d in ("best", "last"):
        assert (out / d / "model.safetensors").is_file() and (out / d / "config.json").is_file()


def test_frozen_tower_outputs_are_cached(tmp_path, monkeypatch):
    from atrlib.audio.io import load_audio
    from atrlib.data import load_dataset

    ds = load_dataset("synth", size="tiny", split="validation")
    model = create_model("synth-stats-minilm")
    first = SplitInputs(model, ds, progress=False)
    assert first.audio.shape == (8, 576) and first.text.shape == (40, 384)
    # the cached values are the towers' outputs: each 3 s clip alone, unpadded; the captions
    with torch.no_grad():
        for i, it in enumerate(ds.items):
            x, _ = load_audio(it["audio_path"], sample_rate=16000)
            assert len(x) == 3 * 16000
            torch.testing.assert_close(first.audio[i], model.audio_tower(torch.from_numpy(x)[None])[0],
                                       atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(first.text, model.text_tower(ds.captions_flat()), atol=1e-5, rtol=1e-5)

    def boom(*a, **k):
        raise AssertionError("tower ran although its outputs are cached")

    monkeypatch.setattr(model.audio_tower, "forward", boom)
    monkeypatch.setattr(model.text_tower, "forward", boom)
    second = SplitInputs(model, ds, progress=False)                 # would raise on a cache miss
    assert torch.equal(second.audio, first.audio) and torch.equal(second.text, first.text)
    # a different tower setting is a different cache entry, never a stale one
    other = create_model("synth-stats-minilm", audio={"kwargs": {"segments": 2}})
    monkeypatch.setattr(other.text_tower, "forward", boom)          # same MiniLM: still cached
    assert SplitInputs(other, ds, progress=False).audio.shape == (8, 64 * 5)


def test_end_to_end_with_a_trainable_cnn(tmp_path):
    cfg = tiny_cfg(tmp_path, model="synth-tiny", epochs=1)
    torch.manual_seed(cfg.seed)
    init = create_model(cfg.model)                                  # run_training seeds the same way
    result = run_training(cfg)
    out = Path(cfg.out_dir)
    for f in ("last/model.safetensors", "last/trainer.pt", "last/state.json", "best/model.safetensors",
              "history.json", "metrics.json", "sim_validation.npz", "sim_test.npz"):
        assert (out / f).is_file(), f
    assert len(result["history"]) == 1 and math.isfinite(result["history"][0]["train_loss"])
    trained = load_file(str(out / "best" / "model.safetensors"))
    assert not torch.equal(trained["audio_tower.fc.weight"], init.audio_tower.fc.weight)   # the CNN trained
    assert torch.equal(trained["audio_tower.fc.weight"], result["model"].audio_tower.fc.weight)
    sm = load_similarity(out / "sim_test.npz")
    assert sm.sim.shape == (40, 8)
    test = result["data"]["test"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["t2a"]["mAP@10"] == pytest.approx(brute_map_at_10(sm.sim, test.caption_clip_index()))


# ---------------------------------------------------------------------------------------------
# resume after a hard kill
# ---------------------------------------------------------------------------------------------
def _train_cli(config: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "atrlib", "train", "--config", str(config), *overrides],
                          cwd=REPO, capture_output=True, text=True, timeout=300, env=os.environ.copy())


@pytest.mark.parametrize("model,extra", [("synth-stats-minilm", ""), ("synth-tiny", "train_crop_seconds: 2.0\n")])
def test_resume_after_kill_reproduces_the_uninterrupted_run(tmp_path, model, extra):
    """Killed (os._exit(137)) in the middle of epoch 2, resumed with ``resume=true``: the
    history and test metrics equal those of an uninterrupted run. synth-tiny trains a CNN
    with dropout, BatchNorm and random crops, so this also checks that the RNG state is restored."""
    config = tmp_path / "cfg.yaml"
    config.write_text(f"dataset: synth\nsize: tiny\nmodel: {model}\nepochs: 3\nbatch_size: 16\nlr: 0.003\n"
                      f"device: cpu\nprogress: false\nseed: 0\n{extra}")
    steps_per_epoch = 120 // 16                                     # 24 clips x 5 captions, drop_last
    killed, whole = tmp_path / "killed", tmp_path / "whole"

    p = _train_cli(config, f"out_dir={killed}", f"_debug_exit_at_step={steps_per_epoch + 4}")
    assert p.returncode == 137, p.stderr[-2000:]
    state = json.loads((killed / "last" / "state.json").read_text())
    assert state["epoch"] == 1 and len(state["history"]) == 1
    assert not (killed / "metrics.json").exists()

    p = _train_cli(config, f"out_dir={killed}", "resume=true")
    assert p.returncode == 0, p.stderr[-2000:]
    reference = run_training(build_config(str(config), [f"out_dir={whole}"]))   # uninterrupted

    resumed = json.loads((killed / "history.json").read_text())
    assert resumed[0] == state["history"][0]    # epoch 1 came from the checkpoint, not re-run (same seconds)
    assert len(resumed) == len(reference["history"]) == 3
    for got, want in zip(resumed, reference["history"]):
        assert got.keys() == want.keys()
        for k in want:
            if k != "seconds":
                assert got[k] == pytest.approx(want[k], rel=1e-6, abs=1e-6), (got["epoch"], k)
    m_resumed = json.loads((killed / "metrics.json").read_text())
    assert m_resumed["test"]["t2a"]["mAP@10"] == pytest.approx(reference["metrics"]["test"]["t2a"]["mAP@10"], abs=1e-9)
    np.testing.assert_allclose(load_similarity(killed / "sim_test.npz").sim,
                               load_similarity(whole / "sim_test.npz").sim, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------------------------
def test_kill_during_checkpoint_swap_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    cfg = tiny_cfg(tmp_path, epochs=2)
    out = Path(cfg.out_dir)
    real_swap = checkpoints._swap_in

    def swap_killed_after_first_rename(tmp, final):
        if final.name == "last" and final.exists():                  # the checkpoint after epoch 1
            os.replace(final, final.with_name("last.old"))
            raise Killed("between the two renames")
        real_swap(tmp, final)

    monkeypatch.setattr(checkpoints, "_swap_in", swap_killed_after_first_rename)
    data = load_splits(cfg)
    with pytest.raises(Killed):
        fit(cfg, create_model(cfg.model), data)
    assert not (out / "last").exists()
    ckpt = find_checkpoint(out)
    assert ckpt == out / "last.old"
    state = json.loads((ckpt / "state.json").read_text())
    assert state["epoch"] == 1
    load_into(create_model(cfg.model), load_file(str(ckpt / "model.safetensors")))   # complete and loadable

    # resuming from last.old finishes the run
    monkeypatch.setattr(checkpoints, "_swap_in", real_swap)
    history = fit(TrainConfig(**{**cfg.to_dict(), "resume": True}), create_model(cfg.model), data)
    assert [h["epoch"] for h in history] == [1, 2] and history[0] == state["history"][0]
    assert json.loads((out / "last" / "state.json").read_text())["epoch"] == 2
    assert not (out / "last.old").exists()


def test_swap_after_a_kill_never_deletes_the_only_copy(tmp_path, monkeypatch):
    """last.old is the only checkpoint (a kill fell between the renames); the next save is
    killed too, right at its rename into last/: last.old must survive."""
    torch.manual_seed(0)
    model = create_model("synth-stats-minilm")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    save_checkpoint(tmp_path, model, opt, sched, {"epoch": 1})
    os.replace(tmp_path / "last", tmp_path / "last.old")
    real_replace = os.replace

    def killed_replace(src, dst):
        if Path(dst).name == "last":                                  # the swap's rename, not other writes
            raise Killed("at the rename into last/")
        real_replace(src, dst)

    monkeypatch.setattr(checkpoints.os, "replace", killed_replace)
    with pytest.raises(Killed):
        save_checkpoint(tmp_path, model, opt, sched, {"epoch": 2})
    monkeypatch.setattr(checkpoints.os, "replace", real_replace)
    ckpt = find_checkpoint(tmp_path)
    assert ckpt is not None and json.loads((ckpt / "state.json").read_text())["epoch"] == 1
    save_checkpoint(tmp_path, model, opt, sched, {"epoch": 3})        # unhindered: last/ back, last.old gone
    assert find_checkpoint(tmp_path) == tmp_path / "last" and not (tmp_path / "last.old").exists()
    assert json.loads((tmp_path / "last" / "state.json").read_text())["epoch"] == 3


def test_checkpoint_files_load_without_pickle(tmp_path):
    cfg = tiny_cfg(tmp_path, epochs=1, scheduler="plateau")
    model = create_model(cfg.model)
    fit(cfg, model, load_splits(cfg))
    last = Path(cfg.out_dir) / "last"
    trainer = torch.load(last / "trainer.pt", map_location="cpu", weights_only=True)
    assert set(trainer) == {"optimizer", "scheduler", "torch_rng", "cuda_rng"}
    assert trainer["torch_rng"].dtype == torch.uint8 and trainer["scheduler"]["mode"] == "max"
    assert len(trainer["optimizer"]["state"]) == sum(p.requires_grad for p in model.parameters())
    stored = load_file(str(last / "model.safetensors"))
    assert set(stored) == set(model_state(model))
    assert not any(k.startswith("text_tower.") for k in stored)


# ---------------------------------------------------------------------------------------------
# two-stage training, early stopping, schedules
# ---------------------------------------------------------------------------------------------
def test_init_from_starts_from_the_source_weights(tmp_path):
    first_cfg = tiny_cfg(tmp_path, out_dir=str(tmp_path / "stage1"))
    data = load_splits(first_cfg)
    first = fit(first_cfg, create_model(first_cfg.model), data)
    src = load_file(str(tmp_path / "stage1" / "best" / "model.safetensors"))

    model = create_model(first_cfg.model)
    assert not torch.equal(model.audio_head[0].weight, src["audio_head.0.weight"])   # a fresh init differs
    fit(tiny_cfg(tmp_path, epochs=0, init_from=str(tmp_path / "stage1"), out_dir=str(tmp_path / "s2a")), model, data)
    for k, v in model_state(model).items():
        assert torch.equal(v, src[k]), k

    # lr 0: the second stage's first epoch scores exactly what the first stage's best did
    second = fit(tiny_cfg(tmp_path, epochs=1, lr=0.0, init_from=str(tmp_path / "stage1"),
                          out_dir=str(tmp_path / "s2b")), create_model(first_cfg.model), data)
    assert second[0]["val_mAP@10"] == max(h["val_mAP@10"] for h in first)

    # a plain saved-model folder works too
    save_model(model, tmp_path / "plain")
    other = create_model(first_cfg.model)
    fit(tiny_cfg(tmp_path, epochs=0, init_from=str(tmp_path / "plain"), out_dir=str(tmp_path / "s2c")), other, data)
    assert torch.equal(other.text_head[3].weight, src["text_head.3.weight"])


def test_patience_stops_training_early(tmp_path):
    cfg = tiny_cfg(tmp_path, epochs=5, lr=0.0, patience=1)           # nothing can improve after epoch 1
    history = fit(cfg, create_model(cfg.model), load_splits(cfg))
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[0]["val_mAP@10"] == history[1]["val_mAP@10"]
    state = json.loads((Path(cfg.out_dir) / "last" / "state.json").read_text())
    assert state["bad_epochs"] == 1 and state["best"] == history[0]["val_mAP@10"]


def test_plateau_scheduler_halves_lr_after_three_flat_epochs(tmp_path):
    # lr 1e-7 moves the weights too little to change a ranking, so val mAP@10 stays flat:
    # ReduceLROnPlateau (patience 2, factor 0.5) halves the rate once the third epoch in a row
    # brings no improvement (a rate below ~1e-8 would not do: the scheduler ignores steps < eps)
    cfg = tiny_cfg(tmp_path, epochs=5, lr=1e-7, scheduler="plateau")
    history = fit(cfg, create_model(cfg.model), load_splits(cfg))
    assert len({h["val_mAP@10"] for h in history}) == 1
    assert [h["lr"] for h in history] == pytest.approx([1e-7, 1e-7, 1e-7, 5e-8, 5e-8], rel=1e-9)


def test_cosine_schedule_warms_up_then_decays_to_zero(tmp_path):
    cfg = tiny_cfg(tmp_path, epochs=4, warmup=0.25)                  # 7 steps per epoch, 28 in all, 7 warm-up

    def lr_after(steps, total=28, warm=7):                           # LambdaLR after `steps` scheduler steps
        p = (steps - warm) / (total - warm)
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, p)))

    history = fit(cfg, create_model(cfg.model), load_splits(cfg))
    assert [h["lr"] for h in history] == pytest.approx([lr_after(7 * e) for e in (1, 2, 3, 4)], abs=1e-12)
    assert history[0]["lr"] == pytest.approx(cfg.lr) and history[-1]["lr"] == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------------------------------------
# distributed helper, GPU
# ---------------------------------------------------------------------------------------------
def test_gather_with_grad_is_identity_without_distributed():
    x = torch.randn(4, 3, requires_grad=True)
    y = gather_with_grad(x)
    assert y is x
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones(4, 3))


@pytest.mark.gpu
def test_fp16_training_on_cuda(tmp_path):
    cfg = tiny_cfg(tmp_path, epochs=1, precision="fp16", device="cuda")
    model = create_model(cfg.model)
    history = fit(cfg, model, load_splits(cfg))
    assert math.isfinite(history[0]["train_loss"]) and 0.0 < history[0]["val_mAP@10"] <= 1.0
    assert next(model.audio_head.parameters()).is_cuda
    assert all(p.dtype == torch.float32 for p in model.parameters())  # mixed precision keeps fp32 masters


# ---------------------------------------------------------------------------------------------
# the train CLI
# ---------------------------------------------------------------------------------------------
def test_train_cli_rejects_unknown_keys_and_lists_the_known(capsys):
    from atrlib.__main__ import main

    assert main(["train", "epochz=3"]) == 2
    err = capsys.readouterr().err
    assert "epochz" in err and all(k in err for k in ("epochs", "batch_size", "lr", "resume", "init_from"))
    assert main(["train", "--config", "/no/such/file.yaml"]) == 2


def test_train_cli_parses_values_as_yaml_scalars(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("epochs: 7\nlr: 0.5\nmodel: synth-tiny\n")
    cfg = build_config(str(config), ["lr=1e-3", "weight_decay=2.5E+2", "batch_size=8", "resume=true", "size=tiny",
                                     "model_overrides={embed_dim: 16}"])
    assert isinstance(cfg.lr, float) and cfg.lr == 1e-3                  # PyYAML alone reads "1e-3" as a string
    assert cfg.weight_decay == 250.0
    assert cfg.batch_size == 8 and cfg.resume is True and cfg.size == "tiny"
    assert cfg.epochs == 7 and cfg.model == "synth-tiny"                # from the file, where not overridden
    assert cfg.model_overrides == {"embed_dim": 16}
