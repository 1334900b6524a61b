"""cost.json: FLOPs and saved-tensor bytes against hand counts, AdamW state against the bytes a
real optimizer keeps, the projection's arithmetic, a tiny run writing it, and the run unchanged by
the measurement (same weights and history with and without it)."""
import atrlib  # noqa: F401  (thread settings before torch)

import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from atrlib.train import cost as C
from atrlib.train.config import TrainConfig
from atrlib.train.loop import run_training


# ----------------------------------------------------------------------------- hand counts
def test_flops_of_linear_layers_by_hand():
    b, i, h, o = 3, 5, 7, 4
    m = nn.Sequential(nn.Linear(i, h), nn.ReLU(), nn.Linear(h, o))
    x = torch.randn(b, i)
    s = C.measure_step(lambda: m(x).sum(), list(m.parameters()), b)
    assert s.forward_flops == 2 * b * (i * h + h * o)                    # one multiply-add = 2 FLOPs
    # backward: the second layer needs grads of its input and weight (2x forward), the first only
    # of its weight (x needs none): 1x forward
    assert s.flops == s.forward_flops + 2 * (2 * b * h * o) + 2 * b * i * h
    xg = torch.randn(b, i, requires_grad=True)
    lin = nn.Linear(i, o, bias=False)
    s = C.measure_step(lambda: lin(xg).sum(), list(lin.parameters()), b)
    assert (s.forward_flops, s.flops) == (2 * b * i * o, 3 * 2 * b * i * o)   # x3 with backward


def test_activation_bytes_of_a_tiny_mlp_by_hand():
    b, i, h, o = 3, 5, 7, 4
    m = nn.Sequential(nn.Linear(i, h), nn.ReLU(), nn.Linear(h, o))
    x = torch.randn(b, i)
    s = C.measure_step(lambda: m(x).sum(), list(m.parameters()), b)
    # saved: x by the first matmul, ReLU's output (also the second matmul's input: one storage);
    # the weights are parameters, .sum() saves only a shape
    assert s.activation_bytes == 4 * b * (i + h)
    m2 = nn.Sequential(nn.Linear(i, h), nn.Tanh(), nn.Linear(h, o))
    s = C.measure_step(lambda: m2(x).pow(2).sum(), list(m2.parameters()), b)
    assert s.activation_bytes == 4 * b * (i + h + o)                      # + the output pow squares
    s = C.measure_step(lambda: m2(x).pow(2).sum(), [], b)   # parameters not left out: the second layer's
    assert s.activation_bytes == 4 * b * (i + h + o) + 4 * h * o  # weight (the first's would serve only x's grad)


@pytest.mark.parametrize("fused", [False, True])
def test_adamw_state_bytes_exact(fused):
    m = nn.ModuleDict({"a": nn.Linear(6, 3), "b": nn.Linear(3, 2), "frozen": nn.Linear(4, 4)})
    m["frozen"].requires_grad_(False)
    trainable = [p for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-3, fused=fused)
    (m["b"](m["a"](torch.randn(2, 6))).sum() + m["frozen"](torch.randn(1, 4)).sum()).backward()
    opt.step()
    kept = sum(v.numel() * v.element_size() for s in opt.state.values() for v in s.values())
    assert C.adamw_state_bytes(trainable) == kept == 2 * 4 * (6 * 3 + 3 + 3 * 2 + 2) + 4 * 4


def test_linear_fit_and_its_check():
    f = C.linear_fit(2, 100.0, 4, 210.0)
    assert (f["per_pair"], f["fixed"]) == (55.0, -10.0)
    assert C.at_batch(f, 64) == pytest.approx(55 * 64 - 10)
    assert f["predicted_b2"] == 200.0 and f["rel_error"] == pytest.approx(10 / 210)


def _cost(**kw):
    base = {"paper_batch": 64, "epochs": 16, "grad_accum": 1, "precision": "fp16",
            "flops_fit": {"per_pair": 3e12, "fixed": 1e9}, "activation_fit": {"per_pair": 2 ** 28, "fixed": 0.0},
            "val_flops_per_epoch": 5e15, "memory_bytes": {"params_grads_adamw": 2 ** 32},
            "data": {"train_pairs_full": 19_195}}
    base.update(kw)
    return base


def test_projection_arithmetic():
    p = C.project(_cost(), gpu="A40", utilisation=0.35)
    steps = 19_195 // 64                                                   # drop_last, as fit counts
    per_step = 3e12 * 64 + 1e9
    total = 16 * (steps * per_step + 5e15)
    assert p["batches_per_epoch"] == steps == 299 and p["flops_per_step"] == per_step
    assert p["total_flops"] == pytest.approx(total) and p["peak_tflops"] == 149.7   # A40 FP16 tensor, dense
    assert p["gpu_hours"] == pytest.approx(total / (149.7e12 * 0.35) / 3600)
    assert p["gpu_hours_low"] == pytest.approx(total / (149.7e12 * 0.5) / 3600)
    assert p["gpu_hours_high"] == pytest.approx(total / (149.7e12 * 0.2) / 3600)
    assert p["memory_bytes"] == 2 ** 32 + 64 * 2 ** 28 and p["fits_in_memory"]          # 20 GiB of 48
    q = C.project(_cost(precision="no"), gpu="H100", batch_size=4, epochs=2, train_pairs=10)
    assert (q["batches_per_epoch"], q["precision_peak"], q["flops_per_step"]) == (2, "fp32", 3e12 * 4 + 1e9)
    assert C.project(_cost(), gpu="RTX 2080 Ti")["peak_tflops"] == 53.8
    assert C.precision_key("no", tf32=True) == "tf32" and C.precision_key("bf16") == "half"
    with pytest.raises(KeyError, match="A40"):
        C.project(_cost(), gpu="B300")


# ----------------------------------------------------------------------------- a tiny run
def _cfg(tmp_path, name="run", **kw):
    base = dict(dataset="synth", size="tiny", model="synth-tiny", epochs=2, batch_size=16, lr=3e-3, device="cpu",
                progress=False, out_dir=str(tmp_path / name))
    base.update(kw)
    return TrainConfig(**base)


def test_tiny_run_writes_cost_json(tmp_path):
    res = run_training(_cfg(tmp_path, epochs=1))
    c = json.loads((tmp_path / "run" / "cost.json").read_text())
    model = res["model"]
    summary = model.summary()
    assert c["parameters"]["parts"]["total"] == {"trainable": summary["total"]["trainable"],
                                                 "frozen": summary["total"]["params"] - summary["total"]["trainable"]}
    assert c["parameters"]["parts"]["text_tower"]["trainable"] == 0          # frozen MiniLM (cached)
    n_all = sum(p.numel() for p in model.parameters())
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_tr = sum(p.numel() for p in trainable)
    assert c["memory_bytes"]["params_grads_adamw"] == 4 * n_all + 4 * n_tr + 8 * n_tr + 4 * len(trainable)
    b = [m["batch"] for m in c["measured"]["batches"]]
    assert b == [2, 4]
    assert c["flops_fit"]["rel_error"] < 1e-3 and c["activation_fit"]["rel_error"] < 1e-3   # linear in the batch
    assert c["flops_per_step"] == pytest.approx(c["flops_fit"]["fixed"] + 16 * c["flops_fit"]["per_pair"])
    assert c["data"] == {"train_pairs": 120, "train_pairs_full": 120, "clips_per_pair": 24 / 120, "val_clips": 8.0,
                         "val_captions": 40.0, "pairs_mode": "captions"}
    # the frozen MiniLM runs once over every caption (120 training, 40 validation): once, not per epoch
    fz = c["frozen_tower_flops"]
    assert fz["per_clip"] == 0.0 and fz["per_caption"] > 0
    assert c["projection"]["frozen_tower_flops"] == pytest.approx(fz["per_caption"] * (120 + 40))
    p = c["projection"]
    assert p["batches_per_epoch"] == 120 // 16 and p["gpu"] == "A40" and p["precision_peak"] == "fp32"
    # preloaded 3-s waveforms at the tower's rate (float32), MiniLM's 384-d caption features
    sr = model.sample_rate
    assert c["feature_cache"]["train"]["audio_bytes"] == 24 * 3 * sr * 4
    assert c["feature_cache"]["train"]["text_bytes"] == 120 * 384 * 4
    assert any("CPU" in u for u in c["uncertain"])


def test_full_training_set_scales_the_projection(tmp_path):
    from atrlib.data.splits import load_splits
    from atrlib.losses.objective import build_objective
    from atrlib.models.dual import create_model
    from atrlib.models.inputs import SplitInputs

    cfg = _cfg(tmp_path, model="synth-stats-minilm")
    data = load_splits(cfg)
    m = create_model(cfg.model)
    tr, va = SplitInputs(m, data["train"], 32, False), SplitInputs(m, data["val"], 32, False)
    loss = build_objective(cfg.loss, m, tr)
    own = C.measure_run_cost(cfg, m, tr, va, loss, "cpu")
    big = C.measure_run_cost(cfg, m, tr, va, loss, "cpu", train_pairs_full=1200)
    assert own["flops_fit"] == big["flops_fit"]                           # the same measured step
    assert big["projection"]["batches_per_epoch"] == 1200 // 16 and own["projection"]["batches_per_epoch"] == 7
    assert big["feature_cache"]["train_bytes_full"] == 10 * own["feature_cache"]["train_bytes_full"]
    assert big["val_flops_per_epoch"] > 10 * own["val_flops_per_epoch"]    # 10x clips x 10x captions similarity
    assert any("fewer pairs" in u for u in big["uncertain"])


def test_measuring_leaves_the_run_unchanged(tmp_path, monkeypatch):
    """Random crops draw from torch's RNG in the measurement too: without restoring it, the run's
    crops (and so its weights) would differ."""
    import atrlib.train.loop as loop

    kw = dict(train_crop_seconds=1.0)
    run_training(_cfg(tmp_path, "with", **kw))
    monkeypatch.setattr(loop, "write_run_cost", lambda *a, **k: None)
    run_training(_cfg(tmp_path, "without", **kw))
    assert (tmp_path / "with" / "cost.json").exists() and not (tmp_path / "without" / "cost.json").exists()
    a, b = (load_file(str(tmp_path / d / "last" / "model.safetensors")) for d in ("with", "without"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ha, hb = (json.loads((tmp_path / d / "history.json").read_text()) for d in ("with", "without"))
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in ha] == \
        [{k: v for k, v in h.items() if k != "seconds"} for h in hb]


def test_measurement_restores_rng_and_touches_no_weight(tmp_path):
    from atrlib.data.splits import load_splits
    from atrlib.losses.objective import build_objective
    from atrlib.models.dual import create_model
    from atrlib.models.inputs import SplitInputs

    cfg = _cfg(tmp_path, train_crop_seconds=1.0)
    data = load_splits(cfg)
    m = create_model(cfg.model)
    m.train()
    tr, va = SplitInputs(m, data["train"], 32, False), SplitInputs(m, data["val"], 32, False)
    loss = build_objective(cfg.loss, m, tr)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    modes = [x.training for x in m.modules()]
    rng = torch.get_rng_state()
    C.measure_run_cost(cfg, m, tr, va, loss, "cpu")
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert all(p.grad is None for p in m.parameters()) and [x.training for x in m.modules()] == modes


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_measured_on_the_gpu_under_fp16(tmp_path):
    from atrlib.data.splits import load_splits
    from atrlib.losses.objective import build_objective
    from atrlib.models.dual import create_model
    from atrlib.models.inputs import SplitInputs

    cfg = _cfg(tmp_path, precision="fp16", device="cuda")
    data = load_splits(cfg)
    m = create_model(cfg.model)
    tr, va = SplitInputs(m, data["train"], 32, False), SplitInputs(m, data["val"], 32, False)
    loss = build_objective(cfg.loss, m, tr)
    cpu = C.measure_run_cost(cfg, m, tr, va, loss, "cpu")
    m.cuda()
    gpu = C.measure_run_cost(cfg, m, tr, va, loss, "cuda")
    assert gpu["device"].startswith("cuda") and gpu["measured"]["cuda_max_allocated_bytes"] > 0
    assert gpu["flops_fit"]["per_pair"] == pytest.approx(cpu["flops_fit"]["per_pair"], rel=1e-6)  # FLOPs: device-free
    assert gpu["activation_fit"]["per_pair"] < cpu["activation_fit"]["per_pair"]      # half-precision activations
