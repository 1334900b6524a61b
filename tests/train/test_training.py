"""fit(): learning on a toy problem, checkpoints, kill + resume replaying an uninterrupted run,
two-stage init, early stopping, schedule with accumulation, gather_with_grad, the train CLI.

The toy problem ("tones"): four sound classes (low hum, high beep, noise hiss, clicks), clips
of 1 s or 0.75 s at 16 kHz, two template captions per clip. Models are tiny and built from a
dict config: a raw-wave conv audio tower and a hashed bag-of-words text tower registered
here, so nothing downloads and an epoch takes well under a second.
"""
import atrlib  # noqa: F401  (thread settings before torch)

import argparse
import json
import os
import subprocess
import sys
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from atrlib.data.base import DATASETS, AudioCaptionDataset
from atrlib.losses.distributed import gather_with_grad
from atrlib.models.dual import create_model, load_model
from atrlib.models.inputs import SplitInputs, epoch_order, random_crops
from atrlib.models.towers import AUDIO_TOWERS, TEXT_TOWERS
from atrlib.retrieval import scoring
from atrlib.retrieval.metrics import retrieval_scores
from atrlib.retrieval.scoring import evaluate_model, save_run_outputs
from atrlib.train import checkpoints
from atrlib.train.checkpoints import find_checkpoint, save_checkpoint
from atrlib.train.config import TrainConfig
from atrlib.train.loop import fit

TESTS = Path(__file__).resolve().parent  # subprocess scripts import this module (test_training) from here
SR = 16000
CLASSES = {  # name -> captions (train and validation captions come from the same templates)
    "low": ["a low hum", "a deep low humming tone"],
    "high": ["a high beep", "a shrill high pitched beep"],
    "noise": ["noise hissing", "a loud hiss of static noise"],
    "clicks": ["fast clicking", "a series of sharp clicks"],
}


# ----------------------------------------------------------------------------- tiny towers
class WaveConv(nn.Module):
    """Audio tower: a strided conv on the raw wave, |.|, mean + max over time, dropout, linear."""

    sample_rate = SR

    def __init__(self, embed_dim: int = 16, channels: int = 8):
        super().__init__()
        self.embed_dim = embed_dim
        self.conv = nn.Conv1d(1, channels, kernel_size=64, stride=32)
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(2 * channels, embed_dim)

    def forward(self, wave):
        x = self.conv(wave[:, None]).abs()                                  # (batch, channels, frames)
        x = torch.cat([x.mean(dim=2), x.amax(dim=2)], dim=1)               # (batch, 2 * channels)
        return self.fc(self.drop(x))                                       # (batch, embed_dim)


class HashText(nn.Module):
    """Text tower: words hashed (crc32) into buckets, a mean EmbeddingBag."""

    def __init__(self, embed_dim: int = 16, buckets: int = 128):
        super().__init__()
        self.embed_dim, self.buckets = embed_dim, buckets
        self.bag = nn.EmbeddingBag(buckets, embed_dim, mode="mean")

    def forward(self, texts):
        ids, offsets = [], []
        for t in texts:
            offsets.append(len(ids))
            ids += [zlib.crc32(w.encode()) % self.buckets for w in t.lower().split()]
        dev = self.bag.weight.device
        return self.bag(torch.tensor(ids, device=dev), torch.tensor(offsets, device=dev))  # (batch, embed_dim)


if "test-wave-conv" not in AUDIO_TOWERS:
    AUDIO_TOWERS.register("test-wave-conv", lambda pretrained=None, **kw: WaveConv(**kw))
    TEXT_TOWERS.register("test-hash-text", lambda **kw: HashText(**kw))

# trainable towers + MLP heads with dropout: every RNG consumer a resume must replay
TRAINABLE = {"name": "toy-trainable", "audio": {"name": "test-wave-conv"}, "text": {"name": "test-hash-text"},
             "head": "mlp", "head_hidden": 32, "head_dropout": 0.2, "embed_dim": 16, "max_audio_seconds": 1.0}
# both towers frozen: the heads-only CPU mode (mel-stats has no parameters, hash text is random but fixed)
FROZEN = {"name": "toy-frozen", "audio": {"name": "mel-stats", "kwargs": {"segments": 2}, "frozen": True},
          "text": {"name": "test-hash-text", "kwargs": {"embed_dim": 32}, "frozen": True},
          "head": "mlp", "head_hidden": 64, "embed_dim": 32, "max_audio_seconds": 1.0}


# ----------------------------------------------------------------------------- toy data
def _render(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / SR
    if kind == "low":
        f = rng.uniform(150, 250)
        x = np.sin(2 * np.pi * f * t) + 0.5 * np.sin(4 * np.pi * f * t + rng.uniform(0, 6))
    elif kind == "high":
        x = np.sin(2 * np.pi * rng.uniform(2500, 3500) * t)
    elif kind == "noise":
        x = rng.standard_normal(n)
    else:  # clicks
        x = np.zeros(n)
        x[rng.integers(0, 400)::int(SR / rng.uniform(15, 25))] = 4.0
    x = x / (np.abs(x).max() + 1e-9) * rng.uniform(0.3, 0.9)
    return (x + 0.01 * rng.standard_normal(n)).astype(np.float32)


def tone_dataset(root, split: str = "train", per_class: int = 0) -> AudioCaptionDataset:
    """Write (once) and return the toy split: 6 clips per class for train, 3 otherwise."""
    import soundfile as sf

    per_class = per_class or (6 if split == "train" else 3)
    folder = Path(root) / split
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(zlib.crc32(split.encode()))
    items = []
    for k in range(per_class):
        for c, (kind, caps) in enumerate(CLASSES.items()):
            seconds = 1.0 if (k + c) % 2 == 0 else 0.75
            x = _render(kind, int(SR * seconds), rng)
            path = folder / f"{kind}_{k}.wav"
            if not path.exists():
                sf.write(path, x, SR)
            items.append({"clip_id": path.name, "audio_path": str(path), "captions": list(caps),
                          "duration": seconds, "sample_rate": SR, "split": split})
    return AudioCaptionDataset("tones", split, Path(root), items)


if "tones-test" not in DATASETS:
    DATASETS.register("tones-test", lambda root=None, split="train", **_: tone_dataset(root, split))


def tone_data(root):
    return {"train": tone_dataset(root, "train"), "val": tone_dataset(root, "validation")}


def train_once(cfg: TrainConfig, model_cfg: dict, root) -> list:
    """What every run here does: seed, build the model, fit, write sim_validation.npz."""
    data = tone_data(root)
    torch.manual_seed(cfg.seed)
    model = create_model(model_cfg)
    history = fit(cfg, model, data)
    save_run_outputs(cfg.out_dir, model, {"val": data["val"]})
    return history


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("tones")
    tone_data(root)
    return root


def cfg_for(out_dir, **kw) -> TrainConfig:
    base = dict(dataset="tones-test", epochs=3, batch_size=8, lr=3e-3, warmup=0.0, device="cpu", seed=0,
                out_dir=str(out_dir), progress=False, embed_batch_size=16)
    return TrainConfig(**{**base, **kw})


def chance_map10(n_items: int) -> float:
    """Expected AP@10 of a random ranking with one relevant item among n."""
    return sum(1 / r for r in range(1, min(10, n_items) + 1)) / n_items


def strip_time(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


# ----------------------------------------------------------------------------- learning
def test_frozen_heads_learn_the_toy_problem(toy_root, tmp_path):
    cfg = cfg_for(tmp_path, epochs=8, lr=3e-3)
    history = train_once(cfg, FROZEN, toy_root)
    maps = [h["val_mAP@10"] for h in history]
    chance = chance_map10(12)                                     # 0.244 for 12 validation clips
    assert len(history) == 8 and [h["epoch"] for h in history] == list(range(1, 9))
    assert history[-1]["train_loss"] < history[0]["train_loss"] - 0.3
    assert max(maps) > maps[0] and max(maps) > chance + 0.15, (maps, chance)
    assert {"train_infonce", "lr", "logit_scale", "val_R@1", "val_R@10", "val_mean_rank"} <= set(history[0])
    # files: history.json equals the return value; best/ reproduces the best validation score
    assert json.loads((tmp_path / "history.json").read_text()) == history
    best = load_model(tmp_path / "best")
    sm = evaluate_model(best, tone_dataset(toy_root, "validation"))
    assert retrieval_scores(sm.sim, sm.relevant)["mAP@10"] == pytest.approx(max(maps), abs=1e-6)
    assert (tmp_path / "sim_validation.npz").exists()


def test_trainable_towers_learn_with_random_crops(toy_root, tmp_path):
    cfg = cfg_for(tmp_path, epochs=6, lr=1e-2, train_crop_seconds=0.5)
    history = train_once(cfg, TRAINABLE, toy_root)
    maps = [h["val_mAP@10"] for h in history]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert max(maps) > chance_map10(12) + 0.1, maps


def test_streaming_audio_from_workers_matches_preloaded(toy_root, tmp_path):
    """preload_audio=False: DataLoader workers read the clips; same batches, same history."""
    kw = dict(epochs=2, train_crop_seconds=0.5, lr=1e-2)
    held = train_once(cfg_for(tmp_path / "held", **kw), TRAINABLE, toy_root)
    streamed = train_once(cfg_for(tmp_path / "streamed", preload_audio=False, num_workers=1, **kw), TRAINABLE,
                          toy_root)
    for a, b in zip(strip_time(held), strip_time(streamed)):
        assert a == pytest.approx(b, abs=1e-6)


# ----------------------------------------------------------------------------- resume
RESUME_SCRIPT = """
import sys, json
sys.path.insert(0, {tests!r})
import atrlib
import test_training as T
from atrlib.train.config import TrainConfig
cfg = TrainConfig(**json.loads(sys.argv[1]))
T.train_once(cfg, T.TRAINABLE, {root!r})
"""


def test_kill_and_resume_replays_the_uninterrupted_run(toy_root, tmp_path):
    kw = dict(epochs=3, train_crop_seconds=0.5, lr=1e-2)
    full = train_once(cfg_for(tmp_path / "full", **kw), TRAINABLE, toy_root)   # uninterrupted, in this process

    script = tmp_path / "run.py"
    script.write_text(RESUME_SCRIPT.format(tests=str(TESTS), root=str(toy_root)))
    steps_per_epoch = 48 // 8
    killed = cfg_for(tmp_path / "resumed", _debug_exit_at_step=steps_per_epoch + 3, **kw)  # mid-epoch 2
    p = subprocess.run([sys.executable, str(script), json.dumps(killed.to_dict())], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 137, p.stderr[-2000:]
    state = json.loads((tmp_path / "resumed" / "last" / "state.json").read_text())
    assert state["epoch"] == 1 and state["step"] == steps_per_epoch
    assert not (tmp_path / "resumed" / "metrics.json").exists()

    resumed = replace(killed, _debug_exit_at_step=None, resume=True)
    p = subprocess.run([sys.executable, str(script), json.dumps(resumed.to_dict())], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    again = json.loads((tmp_path / "resumed" / "history.json").read_text())
    assert [h["epoch"] for h in again] == [1, 2, 3]
    for a, b in zip(strip_time(full), strip_time(again)):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == pytest.approx(b[k], abs=1e-6), (k, a, b)
    from atrlib.retrieval.simfile import load_similarity

    s_full = load_similarity(tmp_path / "full" / "sim_validation.npz").sim
    s_res = load_similarity(tmp_path / "resumed" / "sim_validation.npz").sim
    np.testing.assert_allclose(s_full, s_res, atol=1e-6)


def test_checkpoint_files_and_weights_only_load(toy_root, tmp_path):
    train_once(cfg_for(tmp_path, epochs=2), FROZEN, toy_root)
    last = tmp_path / "last"
    assert sorted(p.name for p in last.iterdir()) == ["config.json", "model.safetensors", "state.json", "trainer.pt"]
    trainer = torch.load(last / "trainer.pt", map_location="cpu", weights_only=True)
    assert set(trainer) == {"optimizer", "scheduler", "torch_rng", "cuda_rng"}
    assert trainer["optimizer"]["state"]  # AdamW moments were saved
    state = json.loads((last / "state.json").read_text())
    assert state["epoch"] == 2 and state["step"] == 2 * 6 and len(state["history"]) == 2
    assert state["best"] == max(h["val_mAP@10"] for h in state["history"])
    from safetensors.torch import load_file

    keys = load_file(str(last / "model.safetensors"))
    # heads + temperature, and the frozen hash-text tower too: it is randomly initialised, so
    # its config alone could not rebuild it (a published text model would be left out)
    assert "text_tower.bag.weight" in keys and "log_scale" in keys
    assert any(k.startswith("audio_head.") for k in keys) and any(k.startswith("text_head.") for k in keys)
    # resuming a finished run trains nothing and returns the stored history
    again = fit(cfg_for(tmp_path, epochs=2, resume=True), create_model(FROZEN), tone_data(toy_root))
    assert again == state["history"]


def test_resuming_with_more_epochs_continues_only_a_schedule_that_does_not_depend_on_them(toy_root, tmp_path):
    """Raising epochs on resume under the cosine schedule would continue a schedule laid out over
    the old length: refused, naming both values. Under ``plateau`` the resumed run is the fresh
    run of the new length."""
    from atrlib.errors import PreflightError

    train_once(cfg_for(tmp_path / "cos", epochs=2, scheduler="cosine"), FROZEN, toy_root)
    with pytest.raises(PreflightError, match=r"epochs 2 -> 3.*cosine"):
        fit(cfg_for(tmp_path / "cos", epochs=3, scheduler="cosine", resume=True), create_model(FROZEN), tone_data(toy_root))
    train_once(cfg_for(tmp_path / "plat", epochs=2, scheduler="plateau"), FROZEN, toy_root)
    resumed = train_once(cfg_for(tmp_path / "plat", epochs=3, scheduler="plateau", resume=True), FROZEN, toy_root)
    fresh = train_once(cfg_for(tmp_path / "fresh", epochs=3, scheduler="plateau"), FROZEN, toy_root)
    assert len(resumed) == 3 and strip_time(resumed) == strip_time(fresh)


def test_kill_during_checkpoint_save_keeps_the_previous_one(toy_root, tmp_path, monkeypatch):
    cfg = cfg_for(tmp_path, epochs=1, scheduler="plateau")  # plateau: step 3 may resume with more epochs
    data = tone_data(toy_root)
    torch.manual_seed(0)
    model = create_model(FROZEN)
    fit(cfg, model, data)
    before = (tmp_path / "last" / "state.json").read_text()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])

    class Killed(BaseException):
        pass

    # 1. killed while writing trainer.pt into the temporary folder
    def dying_save(*a, **k):
        raise Killed()

    with monkeypatch.context() as m:
        m.setattr(checkpoints.torch, "save", dying_save)
        with pytest.raises(Killed):
            save_checkpoint(tmp_path, model, opt, None, {"epoch": 99})
    assert find_checkpoint(tmp_path) == tmp_path / "last"
    assert (tmp_path / "last" / "state.json").read_text() == before
    assert list(tmp_path.glob(".last.*"))  # the half-written temporary folder is left over ...
    load_model(tmp_path / "last")

    # 2. killed between the two renames of the swap: last/ moved to last.old/, new one not in place
    real_replace = os.replace

    def dying_replace(src, dst):
        if Path(src).name.startswith(".last."):
            raise Killed()
        real_replace(src, dst)

    with monkeypatch.context() as m:
        m.setattr(checkpoints.os, "replace", dying_replace)
        with pytest.raises(Killed):
            save_checkpoint(tmp_path, model, opt, None, {"epoch": 99})
    assert not (tmp_path / "last").exists()
    assert find_checkpoint(tmp_path) == tmp_path / "last.old"
    assert (tmp_path / "last.old" / "state.json").read_text() == before

    # 3. resume picks up last.old, finishes, and clears the leftovers
    history = fit(cfg_for(tmp_path, epochs=2, scheduler="plateau", resume=True), create_model(FROZEN), data)
    assert [h["epoch"] for h in history] == [1, 2]
    assert json.loads(before)["history"][0] == history[0]
    assert find_checkpoint(tmp_path) == tmp_path / "last" and not (tmp_path / "last.old").exists()
    assert not list(tmp_path.glob(".last.*"))


# ----------------------------------------------------------------------------- other fit options
def test_init_from_loads_weights_and_early_stopping(toy_root, tmp_path):
    data = tone_data(toy_root)
    train_once(cfg_for(tmp_path / "stage1", epochs=2), FROZEN, toy_root)
    stage1 = load_model(tmp_path / "stage1" / "best")
    torch.manual_seed(123)  # a different init, replaced by init_from
    model = create_model(FROZEN)
    assert fit(cfg_for(tmp_path / "stage2", epochs=0, init_from=str(tmp_path / "stage1")), model, data) == []
    a = evaluate_model(stage1, data["val"]).sim
    b = evaluate_model(model, data["val"]).sim
    np.testing.assert_allclose(a, b, atol=1e-6)

    # lr 0: nothing improves after epoch 1, patience 1 stops after epoch 2
    history = fit(cfg_for(tmp_path / "stop", epochs=10, lr=0.0, patience=1), create_model(FROZEN), data)
    assert len(history) == 2


@pytest.mark.parametrize("accum,batch", [(1, 8), (2, 4)])
def test_cosine_schedule_counts_optimizer_steps(toy_root, tmp_path, accum, batch):
    # 48 pairs: batch 8 -> 6 steps per epoch; batch 4 with 2 micro-batches per step -> also 6
    cfg = cfg_for(tmp_path, epochs=2, batch_size=batch, grad_accum=accum, lr=1e-2, head_lr=2e-2)
    history = train_once(cfg, FROZEN, toy_root)
    assert history[0]["lr"] == pytest.approx(0.5 * 2e-2)   # half way through the cosine (heads group)
    assert history[1]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert all(np.isfinite(h["train_loss"]) for h in history)


def test_epoch_order_and_random_crops(toy_root):
    ds = tone_dataset(toy_root, "train")

    class Inputs:
        caption_clip = torch.tensor(ds.caption_clip_index())

    a, b = epoch_order(Inputs, "captions", 0, 1), epoch_order(Inputs, "captions", 0, 1)
    assert a == b and sorted(a) == list(range(48)) and a != epoch_order(Inputs, "captions", 0, 2)
    clips = epoch_order(Inputs, "clips", 0, 0)
    assert len(clips) == 24 and sorted(Inputs.caption_clip[clips].tolist()) == list(range(24))

    wave = torch.arange(2 * 10, dtype=torch.float32).reshape(2, 10)    # (2, 10)
    torch.manual_seed(0)
    out = random_crops(wave, torch.tensor([10, 6]), 4)                # (2, 4)
    assert out.shape == (2, 4)
    for row, w, n in zip(out, wave, [10, 6]):
        s = int(row[0] - w[0])
        assert torch.equal(row, w[s:s + 4]) and s + 4 <= n            # contiguous, inside the real audio
    torch.manual_seed(0)
    assert torch.equal(out, random_crops(wave, torch.tensor([10, 6]), 4))


def test_scoring_runs_clips_unpadded(toy_root):
    """A clip's embedding does not depend on the zero padding it had in the batch tensor."""
    ds = tone_dataset(toy_root, "validation")
    torch.manual_seed(0)
    model = create_model(TRAINABLE).eval()
    inputs = SplitInputs(model, ds, progress=False)
    assert inputs.audio.shape == (12, SR) and sorted(set(inputs.lengths.tolist())) == [12000, 16000]
    a, _ = scoring.embed_split(model, inputs, batch_size=5)
    with torch.no_grad():
        for i in (0, 1):
            one = model.encode_audio(inputs.audio[i:i + 1, :int(inputs.lengths[i])])[0]
            assert torch.allclose(a[i], one, atol=1e-5)


# ----------------------------------------------------------------------------- distributed
def run_group(cmd, timeout):
    """Run ``cmd`` in its own process group; on timeout kill the whole group (no orphans)."""
    import signal

    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        return -1, "timed out\n" + out
    return p.returncode, out


def test_gather_with_grad_is_identity_in_one_process():
    x = torch.randn(3, 4, requires_grad=True)
    assert gather_with_grad(x) is x


DDP_SCRIPT = """
import atrlib, os, sys, torch, torch.distributed as dist
from atrlib.losses.distributed import gather_with_grad

def work(rank, world, init):
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    x = torch.full((2, 3), float(rank + 1), requires_grad=True)
    g = gather_with_grad(x)                                  # (world * 2, 3)
    assert g.shape == (world * 2, 3)
    assert torch.equal(g.detach(), torch.cat([torch.full((2, 3), float(r + 1)) for r in range(world)]))
    (g * torch.arange(1, world * 2 + 1.0)[:, None]).sum().backward()
    assert torch.equal(x.grad, torch.tensor([[2 * rank + 1.0] * 3, [2 * rank + 2.0] * 3])), x.grad
    dist.destroy_process_group()

if __name__ == "__main__":
    torch.multiprocessing.spawn(work, args=(2, "file://" + sys.argv[1]), nprocs=2)
    print("ok")
"""


def test_gather_with_grad_two_processes(tmp_path):
    """Two gloo processes: every rank sees both slices; gradient only flows into its own."""
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    rc, out = run_group([sys.executable, str(script), str(tmp_path / "rendezvous")], timeout=120)
    assert rc == 0 and "ok" in out, out[-3000:]


@pytest.mark.gpu
def test_fp16_on_cuda(toy_root, tmp_path):
    cfg = cfg_for(tmp_path, epochs=4, device="cuda", precision="fp16", lr=1e-2)
    history = train_once(cfg, TRAINABLE, toy_root)
    assert all(np.isfinite(h["train_loss"]) for h in history)
    assert max(h["val_mAP@10"] for h in history) > chance_map10(12)


# ----------------------------------------------------------------------------- CLI
def test_train_cli_config_and_overrides(toy_root, tmp_path, capsys):
    from atrlib.cli.train import build_config, main

    model_json = tmp_path / "toy.json"
    model_json.write_text(json.dumps(FROZEN))
    yml = tmp_path / "train.yaml"
    yml.write_text(f"dataset: tones-test\nroot: {toy_root}\ntest_split: validation\nmodel: {model_json}\n"
                   f"epochs: 5\nbatch_size: 8\ndevice: cpu\nprogress: false\nloss_kwargs: {{}}\n"
                   "allow_split_overlap: true\n")  # validation is also the test split here
    cfg = build_config(str(yml), ["epochs=2", "lr=3e-3", "out_dir=" + str(tmp_path / "run"), "warmup=0"])
    assert cfg.epochs == 2 and cfg.lr == 3e-3 and isinstance(cfg.lr, float) and cfg.batch_size == 8
    assert cfg.model == str(model_json)

    with pytest.raises(ValueError, match=r"(?s)unknown training option.*\['epoch'\].*batch_size: pairs per step"):
        build_config(str(yml), ["epoch=3"])
    assert main(argparse.Namespace(config=str(yml), overrides=["epochz=1"])) == 2
    assert "unknown training option" in capsys.readouterr().err

    rc = main(argparse.Namespace(config=str(yml), overrides=["epochs=2", "out_dir=" + str(tmp_path / "run")]))
    assert rc == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2 and 0 < metrics["test"]["t2a"]["mAP@10"] <= 1
    assert (tmp_path / "run" / "sim_validation.npz").exists() and (tmp_path / "run" / "best").is_dir()
    assert json.loads((tmp_path / "run" / "params.json").read_text())["epochs"] == 2


DDP_FIT_SCRIPT = """
import sys, json
sys.path.insert(0, {tests!r})
import atrlib
import test_training as T
from atrlib.train.config import TrainConfig
T.train_once(TrainConfig(**json.loads(sys.argv[1])), T.NO_DROPOUT, {root!r})
"""
NO_DROPOUT = dict(FROZEN, head_dropout=0.0)


def test_two_process_training_sees_the_global_batch(toy_root, tmp_path):
    """torchrun, 2 CPU processes × batch 8 == 1 process × batch 16: the gathered embeddings
    make the same loss; DDP's averaged gradient is half the full one, which AdamW does not see
    (no clipping, no dropout)."""
    kw = dict(epochs=2, max_grad_norm=0.0, lr=3e-3)
    single = train_once(cfg_for(tmp_path / "single", batch_size=16, **kw), NO_DROPOUT, toy_root)
    script = tmp_path / "ddp_fit.py"
    script.write_text(DDP_FIT_SCRIPT.format(tests=str(TESTS), root=str(toy_root)))
    cfg = cfg_for(tmp_path / "ddp", batch_size=8, **kw)
    torchrun = Path(sys.executable).with_name("torchrun")
    rc, out = run_group([str(torchrun), "--standalone", "--nproc_per_node", "2", str(script),
                         json.dumps(cfg.to_dict())], timeout=180)
    assert rc == 0, out[-3000:]
    ddp = json.loads((tmp_path / "ddp" / "history.json").read_text())
    for a, b in zip(strip_time(single), strip_time(ddp)):
        for k in ("train_loss", "val_mAP@10", "val_R@1", "logit_scale"):
            assert a[k] == pytest.approx(b[k], rel=1e-3, abs=1e-4), (k, a, b)


def test_python_m_atrlib_train_entry_point(tmp_path):
    """The real command line: help lists the TrainConfig fields; an unknown key exits with 2."""
    rc, out = run_group([sys.executable, "-m", "atrlib", "train", "--help"], timeout=120)
    assert rc == 0 and "train_crop_seconds" in out and "peak AdamW learning rate" in out, out[-2000:]
    rc, out = run_group([sys.executable, "-m", "atrlib", "train", "epochz=1"], timeout=120)
    assert rc == 2 and "unknown training option(s) ['epochz']" in out and "batch_size:" in out, out[-2000:]
