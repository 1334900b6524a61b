"""Cross-modal objectives against slow references (per-pair loops, values and gradients), the
cross-attention text tower against transformers' own masks, and the terms inside fit().

Tiny random BERTs (MiniLM's tokenizer, 2 layers of 32) and random "cached" frame features;
dropout off so batched and per-example runs are comparable.
"""
import atrlib  # noqa: F401  (thread settings before torch)

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import atrlib.losses.crossmodal as obj
from atrlib.audio.frames import FrameStore
from atrlib.losses import LOSSES
from atrlib.losses.contrastive import InfoNCE
from atrlib.losses.crossmodal import CrossBatch, infonce_from_logits, mask_tokens, sample_hard_negatives
from atrlib.losses.objective import Objective, build_objective, parse_spec
from atrlib.models.crossattn import CrossAttnTextEncoder

CAPS = ["a dog barks twice", "rain on a metal roof", "a bell rings", "the dog barks loudly near a road",
        "wind and birds", "a car passes by quickly"]
CLIPS = torch.tensor([0, 1, 2, 0, 3, 4])        # captions 0 and 3 describe the same clip
FRAME_DIM = 12


@pytest.fixture(scope="module")
def head():
    torch.manual_seed(0)
    return CrossAttnTextEncoder(FRAME_DIM, "tiny", frame_stride=2, dropout=0.0).eval()


def frames_for(clips, seed=0, lengths=(9, 7, 10, 5, 8)):
    """Frames of each clip id (one clip, one random sequence; lengths differ: padding matters)."""
    g = torch.Generator().manual_seed(seed)
    store = FrameStore([torch.randn(n, FRAME_DIM, generator=g).numpy() for n in lengths], dtype=np.float32)
    return store.get(clips)


def cross_batch(seed=1, frames_grad=False):
    g = torch.Generator().manual_seed(seed)
    a = F.normalize(torch.randn(len(CAPS), 8, generator=g), dim=1)
    t = F.normalize(torch.randn(len(CAPS), 8, generator=g), dim=1)
    fr, fm = frames_for(CLIPS)
    return CrossBatch(a, t, CLIPS, torch.tensor(10.0), list(CAPS), fr.requires_grad_(frames_grad), fm)


# ----------------------------------------------------------------------------- spec parsing
def test_parse_spec_weights_and_registered_plus_names():
    assert parse_spec("infonce+0.5*acml+mlml") == [(1.0, "infonce"), (0.5, "acml"), (1.0, "mlml")]
    assert parse_spec("infonce+vicreg") == [(1.0, "infonce+vicreg")]
    assert parse_spec("infonce+vicreg+2*acml") == [(1.0, "infonce+vicreg"), (2.0, "acml")]
    for name in ("acml", "mlml", "atc", "atm", "atg", "tag_msle", "tag_mae", "claip"):
        assert name in LOSSES
    with pytest.raises(KeyError, match="unknown loss 'nope'"):
        parse_spec("infonce+nope")
    with pytest.raises(TypeError, match="cross-modal term"):
        LOSSES.get("acml")()(torch.zeros(2, 3), torch.zeros(2, 3), torch.arange(2), 1.0)


def test_plain_loss_stays_the_registered_module():
    assert isinstance(build_objective("infonce", model=None), InfoNCE)
    with pytest.raises(ValueError, match="name no term"):
        build_objective("infonce+ntxent", SimpleNamespace(), margin=0.2)


# ----------------------------------------------------------------------------- hard negatives
def test_hard_negatives_follow_the_softmax_and_never_the_same_clip():
    sim = torch.tensor([[2.0, 1.0, 0.0, 2.0, -1.0], [0.5, 0.5, 0.5, 0.5, 0.5], [0.0, 0.0, 3.0, 0.0, 0.0]])
    same = torch.tensor([[True, False, False, True, False], [True, True, True, True, True],
                         [False, False, True, False, False]])
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_hard_negatives(sim, same, g)[0] for _ in range(20000)])      # (draws, rows)
    _, valid = sample_hard_negatives(sim, same, g)
    assert valid.tolist() == [True, False, True]
    for r in (0, 2):
        allowed = [j for j in range(5) if not same[r, j]]
        w = torch.exp(sim[r, allowed]) / torch.exp(sim[r, allowed]).sum()                   # reference softmax
        freq = torch.tensor([(draws[:, r] == j).float().mean() for j in allowed])
        assert torch.allclose(freq, w, atol=0.015)
        assert not same[r][draws[:, r]].any()


# ----------------------------------------------------------------------------- masking
def test_mask_tokens_rates_and_specials():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 2000, (400, 30), generator=g)
    ids[:, 0], ids[:, -1] = 101, 102                                     # [CLS] ... [SEP]
    attn = torch.ones_like(ids)
    attn[:200, 20:] = 0                                                  # padding
    masked, labels = mask_tokens(ids, attn, [0, 101, 102, 103], 103, 30522, 0.6, g)
    chosen = labels != -100
    eligible = attn.bool() & (ids != 101) & (ids != 102)
    assert not (chosen & ~eligible).any()
    assert torch.equal(labels[chosen], ids[chosen])
    assert chosen.sum() / eligible.sum() == pytest.approx(0.6, abs=0.01)
    n = chosen.sum().float()
    assert ((masked == 103) & chosen).sum() / n == pytest.approx(0.8, abs=0.01)
    kept = ((masked == ids) & chosen).sum() / n                          # 10 % kept (+ random draws equal to it)
    assert kept == pytest.approx(0.1, abs=0.01)
    assert torch.equal(masked[~chosen], ids[~chosen])


# ----------------------------------------------------------------------------- the text tower
def test_causal_mask_equals_transformers_decoder_mask(head):
    tok = head.tokenize(CAPS)
    fr, fm = frames_for(CLIPS)
    states, smask = head.audio_states(fr, fm)
    mine = head.mlm_logits(tok["input_ids"], tok["attention_mask"], fr, fm, causal=True)
    ref = head.lm(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"], encoder_hidden_states=states,
                  encoder_attention_mask=smask.long(), use_cache=False).logits          # transformers' causal mask
    real = tok["attention_mask"].bool()
    assert torch.allclose(mine[real], ref[real], atol=1e-5)


def test_bidirectional_mask_equals_transformers_encoder_mask(head):
    ref_head = copy.deepcopy(head)
    ref_head.lm.config.is_decoder = False                                # transformers' bidirectional mask ...
    for m in ref_head.lm.modules():
        if hasattr(m, "is_causal") and not getattr(m, "is_cross_attention", False):
            m.is_causal = False                                          # ... and no causal flag in attention
    tok = head.tokenize(CAPS)
    fr, fm = frames_for(CLIPS)
    states, smask = ref_head.audio_states(fr, fm)
    ref = ref_head.lm.base_model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"],
                                 encoder_hidden_states=states, encoder_attention_mask=smask.long()).last_hidden_state
    mine = head.hidden_states(tok["input_ids"], tok["attention_mask"], fr, fm, causal=False)
    real = tok["attention_mask"].bool()
    assert torch.allclose(mine[real], ref[real], atol=1e-5)
    # and it really is bidirectional: the first token depends on the last word
    other = head.tokenize(["a dog barks thrice"] + CAPS[1:])
    assert not torch.allclose(head.hidden_states(other["input_ids"], other["attention_mask"], fr, fm)[0, 0], mine[0, 0])


def test_minilm_loads_with_new_cross_attention():
    torch.manual_seed(0)
    m = CrossAttnTextEncoder(FRAME_DIM, "minilm", num_layers=1)
    from transformers import AutoModel
    from atrlib.models.text_towers import minilm_path

    ref = AutoModel.from_pretrained(minilm_path())
    assert torch.equal(m.lm.base_model.encoder.layer[0].attention.self.query.weight,
                       ref.encoder.layer[0].attention.self.query.weight)
    assert len(m.lm.base_model.encoder.layer) == 1 and hasattr(m.lm.base_model.encoder.layer[0], "crossattention")
    assert m.lm.cls.predictions.decoder.weight is m.lm.base_model.embeddings.word_embeddings.weight


# ----------------------------------------------------------------------------- A-CML
def _record_negatives(monkeypatch):
    seen = []
    real = obj.sample_hard_negatives

    def rec(sim, same, generator=None):
        out = real(sim, same, generator)
        seen.append(out)
        return out
    monkeypatch.setattr(obj, "sample_hard_negatives", rec)
    return seen


def ref_match_logit(head, caption, frames, n_valid):
    """One pair, unpadded: the caption's own tokens, the clip's own frames."""
    tok = head.tokenize([caption])
    return head.match_logits(tok["input_ids"], tok["attention_mask"], frames[None, :n_valid],
                             torch.ones(1, n_valid, dtype=torch.bool))[0]


def test_acml_equals_per_pair_reference(head, monkeypatch):
    seen = _record_negatives(monkeypatch)
    b = cross_batch(frames_grad=True)
    model = SimpleNamespace(extra_heads={"crossattn": head})
    torch.manual_seed(3)
    loss = obj.ACML().term(b, model)["acml"]
    (neg_a, ok_a), (neg_t, ok_t) = seen
    g_mine = torch.autograd.grad(loss, [head.match_head[0].weight, b.frames])

    n_valid = b.frame_mask.sum(1)
    terms = []
    for i in range(len(CAPS)):                                        # positives
        terms.append(F.binary_cross_entropy_with_logits(ref_match_logit(head, CAPS[i], b.frames[i], n_valid[i]),
                                                        torch.tensor(1.0)))
    for j in range(len(CAPS)):                                        # caption j with a hard negative audio
        if ok_a[j]:
            k = int(neg_a[j])
            assert CLIPS[k] != CLIPS[j]
            terms.append(F.binary_cross_entropy_with_logits(ref_match_logit(head, CAPS[j], b.frames[k], n_valid[k]),
                                                            torch.tensor(0.0)))
    for i in range(len(CAPS)):                                        # audio i with a hard negative caption
        if ok_t[i]:
            k = int(neg_t[i])
            assert CLIPS[k] != CLIPS[i]
            terms.append(F.binary_cross_entropy_with_logits(ref_match_logit(head, CAPS[k], b.frames[i], n_valid[i]),
                                                            torch.tensor(0.0)))
    ref = sum(terms) / len(terms)
    g_ref = torch.autograd.grad(ref, [head.match_head[0].weight, b.frames])
    assert len(terms) == 3 * len(CAPS)
    assert loss.item() == pytest.approx(ref.item(), abs=1e-5)
    for x, y in zip(g_mine, g_ref):
        assert torch.allclose(x, y, atol=1e-5)


# ----------------------------------------------------------------------------- MLML
@pytest.mark.parametrize("causal", [True, False])
def test_mlml_equals_per_caption_reference(head, causal):
    b = cross_batch()
    model = SimpleNamespace(extra_heads={"crossattn": head})
    torch.manual_seed(5)
    loss = obj.MLML(causal=causal).term(b, model)["mlml"]
    w = head.lm.cls.predictions.transform.dense.weight
    g_mine = torch.autograd.grad(loss, w)[0]

    torch.manual_seed(5)                                              # the same masking draws
    tok = head.tokenize(CAPS)
    t = head.tokenizer
    masked, labels = mask_tokens(tok["input_ids"], tok["attention_mask"], t.all_special_ids, t.mask_token_id, len(t))
    total, count = 0.0, 0
    n_valid = b.frame_mask.sum(1)
    for i in range(len(CAPS)):
        L = int(tok["attention_mask"][i].sum())
        logits = head.mlm_logits(masked[i:i + 1, :L], torch.ones(1, L, dtype=torch.long),
                                 b.frames[i:i + 1, :n_valid[i]], torch.ones(1, int(n_valid[i]), dtype=torch.bool),
                                 causal=causal)[0]                       # (L, vocab), unpadded
        for p in range(L):
            if labels[i, p] != -100:
                total = total - torch.log_softmax(logits[p], -1)[labels[i, p]]
                count += 1
    ref = total / count
    assert count > 0
    assert loss.item() == pytest.approx(ref.item(), abs=1e-4)
    assert torch.allclose(g_mine, torch.autograd.grad(ref, w)[0], atol=1e-5)


# ----------------------------------------------------------------------------- CLA-IP
def test_claip_equals_loop_reference(tmp_path):
    g = torch.Generator().manual_seed(0)
    img = torch.randn(5, 7, generator=g)
    np.savez(tmp_path / "img.npz", captions=np.array(CAPS[:5]), embeddings=img.numpy())  # the last caption has none
    term = obj.CLAIP(path=str(tmp_path / "img.npz"))
    proj = torch.nn.Linear(7, 8)
    b = cross_batch()
    b.text_emb.requires_grad_(True)
    loss = term.term(b, SimpleNamespace(extra_heads={"image": proj}))["claip"]
    g_mine = torch.autograd.grad(loss, [proj.weight, b.text_emb])

    e = F.normalize(proj(img), dim=1)                                 # captions 0..4 have images
    total = 0.0
    for i in range(5):
        den = sum(torch.exp(10.0 * e[i] @ b.text_emb[j]) for j in range(5) if j == i or CLIPS[j] != CLIPS[i])
        total = total - (10.0 * e[i] @ b.text_emb[i] - torch.log(den))
    ref = total / 5
    assert loss.item() == pytest.approx(ref.item(), abs=1e-5)
    for x, y in zip(g_mine, torch.autograd.grad(ref, [proj.weight, b.text_emb])):
        assert torch.allclose(x, y, atol=1e-5)


# ----------------------------------------------------------------------------- CLAP-TAG
class Tagger(torch.nn.Module):
    """A stub tower with a tagging head."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(16, 5)

    def tag(self, wave):
        return self.lin(wave)


@pytest.mark.parametrize("name", ["tag_msle", "tag_mae"])
def test_tag_regulariser_equals_formula(name):
    torch.manual_seed(0)
    tower = Tagger()
    model = SimpleNamespace(audio_tower=tower, config=SimpleNamespace(audio=SimpleNamespace(name="stub", frozen=False)))
    term = LOSSES.get(name)(teacher="copy")
    term.prepare(model)
    wave = torch.randn(4, 16)
    b = SimpleNamespace(wave=wave)
    assert term.term(b, model)[name].item() == 0.0                     # the student starts as its teacher
    with torch.no_grad():
        tower.lin.weight.add_(0.3 * torch.randn_like(tower.lin.weight))
    loss = term.term(b, model)[name]
    g_mine = torch.autograd.grad(loss, tower.lin.weight)[0]
    p_t = torch.sigmoid(term._teacher[0].tag(wave)).detach()
    p_s = torch.sigmoid(tower.tag(wave))
    total = 0.0
    for i in range(4):
        for c in range(5):
            d = torch.log1p(p_s[i, c]) - torch.log1p(p_t[i, c]) if name == "tag_msle" else p_s[i, c] - p_t[i, c]
            total = total + (d * d if name == "tag_msle" else d.abs())
    ref = total / 20
    assert loss.item() == pytest.approx(ref.item(), abs=1e-7) and loss.item() > 0
    assert torch.allclose(g_mine, torch.autograd.grad(ref, tower.lin.weight)[0], atol=1e-7)
    frozen = SimpleNamespace(audio_tower=tower, config=SimpleNamespace(audio=SimpleNamespace(name="stub", frozen=True)))
    with pytest.raises(ValueError, match="frozen"):
        LOSSES.get(name)(teacher="copy").prepare(frozen)


# ----------------------------------------------------------------------------- weights and fit()
def test_objective_weights_and_terms(head):
    b = cross_batch()
    model = SimpleNamespace(extra_heads={"crossattn": head}, config=SimpleNamespace(audio=SimpleNamespace(frozen=True)),
                            parameters=lambda: iter([torch.zeros(1)]))
    o = Objective("infonce+0.25*acml", model, weights={"acml": 2.0})
    batch = {"captions": b.captions, "frames": b.frames, "frame_mask": b.frame_mask}
    torch.manual_seed(3)
    terms = o(b.audio_emb, b.text_emb, CLIPS, b.logit_scale, batch=batch, model=model)
    torch.manual_seed(3)
    plain = obj.ACML().term(cross_batch(), model)["acml"]
    assert terms["acml"].item() == pytest.approx(0.5 * plain.item(), rel=1e-6)
    assert terms["infonce"].item() == pytest.approx(InfoNCE()(b.audio_emb, b.text_emb, CLIPS, b.logit_scale)["infonce"].item())


def test_infonce_from_logits_equals_infonce():
    g = torch.Generator().manual_seed(0)
    a, t = F.normalize(torch.randn(6, 5, generator=g), dim=1), F.normalize(torch.randn(6, 5, generator=g), dim=1)
    assert infonce_from_logits(7.0 * a @ t.T, CLIPS).item() == pytest.approx(InfoNCE()(a, t, CLIPS, 7.0)["infonce"].item())
    masked = InfoNCE(positives="mask")(a, t, CLIPS, 7.0)["infonce"].item()
    assert infonce_from_logits(7.0 * a @ t.T, CLIPS, positives="mask").item() == pytest.approx(masked)


def test_fit_trains_acml_and_mlml_and_saves_the_head(tmp_path):
    from atrlib.models.dual import create_model, load_model
    from atrlib.data.splits import load_splits
    from atrlib.train.config import TrainConfig
    from atrlib.train.loop import fit

    cfg = TrainConfig(dataset="synth", size="tiny", model="synth-stats-minilm", epochs=2, batch_size=16, lr=3e-3,
                      device="cpu", progress=False, out_dir=str(tmp_path / "run"), loss="infonce+acml+0.5*mlml",
                      loss_kwargs={"crossattn": {"text_model": "tiny", "frame_stride": 10}})
    data = load_splits(cfg)
    torch.manual_seed(0)
    model = create_model(cfg.model)
    history = fit(cfg, model, data)
    h = history[-1]
    assert {"train_infonce", "train_acml", "train_mlml"} <= set(h)
    assert h["train_loss"] == pytest.approx(h["train_infonce"] + h["train_acml"] + h["train_mlml"], rel=1e-5)
    assert history[-1]["train_mlml"] < history[0]["train_mlml"]       # the MLM learns (0.5 x ~10 nats at the start)
    loaded = load_model(tmp_path / "run" / "best")
    assert loaded.config.heads["crossattn"]["text_model"] == "tiny"
    sd = model.state_dict()
    assert all(torch.equal(v, sd[k].cpu()) for k, v in loaded.state_dict().items())


def test_two_stage_training_adds_a_matching_head_to_a_stage_one_model(tmp_path):
    """Stage 1 (InfoNCE, no heads) -> stage 2 (InfoNCE + A-CML, init_from stage 1): the shared
    weights start from stage 1, the new matching head from its fresh initialisation."""
    from safetensors.torch import load_file

    from atrlib.models.dual import create_model
    from atrlib.data.splits import load_splits
    from atrlib.train.config import TrainConfig
    from atrlib.train.loop import fit

    one = TrainConfig(dataset="synth", size="tiny", model="synth-stats-minilm", epochs=1, batch_size=16,
                      device="cpu", progress=False, out_dir=str(tmp_path / "stage1"))
    data = load_splits(one)
    fit(one, create_model(one.model), data)
    two = TrainConfig(dataset="synth", size="tiny", model="synth-stats-minilm", epochs=0, batch_size=16,
                      device="cpu", progress=False, out_dir=str(tmp_path / "stage2"), loss="infonce+acml",
                      init_from=str(tmp_path / "stage1"), loss_kwargs={"crossattn": {"text_model": "tiny"}})
    model = create_model(two.model)
    fit(two, model, data)                                       # epochs=0 + init_from: load, no training
    stage1 = load_file(str(tmp_path / "stage1" / "best" / "model.safetensors"))
    sd = model.state_dict()
    assert stage1 and all(torch.equal(v, sd[k].cpu()) for k, v in stage1.items())


def test_objectives_ablation_staged_with_head_and_tuned_reranking(tmp_path):
    """The ablation grid, staged (the A-CML run starts from the InfoNCE run), re-ranked two ways:
    the head alone and similarity + w x probability with w chosen on validation — 0 is in the
    grid, so the tuned row's validation score is never below the run without re-ranking."""
    from atrlib.experiments.objective_ablation import objectives_ablation
    from atrlib.files import read_json
    from atrlib.retrieval.simfile import load_similarity
    from atrlib.train.config import TrainConfig

    base = TrainConfig(dataset="synth", size="tiny", model="synth-stats-minilm", epochs=1, batch_size=16,
                       device="cpu", progress=False, loss_kwargs={"crossattn": {"text_model": "tiny", "frame_stride": 10}})
    out = tmp_path / "obj"
    table = objectives_ablation(base, contrastive=["infonce"], auxiliary=["", "acml"], rerank_k=[0, 3], seeds=[0],
                                out_dir=out, progress=False, staged=True, n=200)
    assert list(table.index) == ["infonce | rerank 0", "infonce continued | rerank 0", "infonce+acml | rerank 0",
                                 "infonce+acml | rerank 3 head", "infonce+acml | rerank 3 tuned"]
    staged = out / "staged" / "infonce+acml-s0"
    for run in (staged, out / "staged" / "infonce-s0"):             # stage 2 and its control start from stage 1
        assert read_json(run / "params.json")["init_from"] == str(out / "infonce-s0" / "best")
    assert np.isnan(table.loc["infonce continued | rerank 0", "p_vs_baseline"])   # the baseline of the tests
    head, tuned, plain = (table.loc[f"infonce+acml | rerank {s}"] for s in ("3 head", "3 tuned", "0"))
    from atrlib.retrieval.rerank import WEIGHTS, weight_name

    assert head["rerank_weight"] == "head" and tuned["rerank_weight"] in {weight_name(w) for w in WEIGHTS}
    assert tuned["val_mAP@10"] >= plain["val_mAP@10"] - 1e-12
    assert tuned["val_mAP@10"] >= head["val_mAP@10"] - 1e-12          # the head alone is one of the grid's weights
    z = np.load(staged / "rerank3_test.npz")
    test = load_similarity(staged / "sim_test.npz")
    assert z["top"].shape == z["scores"].shape == (test.sim.shape[0], 3)
    assert ((z["scores"] >= 0) & (z["scores"] <= 1)).all()
    assert (out / "objectives.csv").exists() and 0 < head["p_vs_no_rerank"] <= 1


ACML_DDP_SCRIPT = '''
import atrlib, sys, torch, torch.distributed as dist
import torch.nn.functional as F
from types import SimpleNamespace
import atrlib.losses.crossmodal as obj
from atrlib.losses.distributed import rank_offset
from atrlib.models.crossattn import CrossAttnTextEncoder

CAPS = ["a dog barks twice", "rain on a metal roof", "a bell rings", "the dog barks loudly near a road",
        "wind and birds", "a car passes by quickly", "water drips", "a door slams shut"]
CLIPS = torch.tensor([0, 1, 2, 0, 3, 4, 5, 6])

def argmax_negatives(sim, same, generator=None):      # deterministic: the hardest negative
    logits = sim.detach().float().masked_fill(same, float("-inf"))
    return logits.argmax(1), (~same).any(1)

def setup():
    torch.manual_seed(0)
    head = CrossAttnTextEncoder(12, "tiny", frame_stride=2, dropout=0.0).eval()
    g = torch.Generator().manual_seed(1)
    a = F.normalize(torch.randn(8, 8, generator=g), dim=1)
    t = F.normalize(torch.randn(8, 8, generator=g), dim=1)
    fr = torch.randn(8, 10, 12, generator=g)
    fm = torch.arange(10)[None] < torch.tensor([10, 7, 9, 10, 5, 8, 10, 6])[:, None]
    return SimpleNamespace(extra_heads={"crossattn": head}), a, t, fr, fm

def loss_of(b, model):
    obj.sample_hard_negatives = argmax_negatives
    return float(obj.ACML().term(b, model)["acml"])

def work(rank, world, init, out):
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    model, a, t, fr, fm = setup()
    n = 8 // world
    s = slice(rank * n, rank * n + n)                 # this process's rows; embeddings are the global batch
    b = obj.CrossBatch(a, t, CLIPS, torch.tensor(10.0), CAPS[s], fr[s], fm[s], offset=rank * n)
    assert b.distributed and rank_offset(n) == rank * n
    losses = [torch.zeros(1) for _ in range(world)]
    dist.all_gather(losses, torch.tensor([loss_of(b, model)]))
    if rank == 0:
        open(out, "w").write(repr([float(x) for x in losses]))
    dist.destroy_process_group()

if __name__ == "__main__":
    torch.multiprocessing.spawn(work, args=(2, "file://" + sys.argv[1], sys.argv[2]), nprocs=2)
    model, a, t, fr, fm = setup()
    single = loss_of(obj.CrossBatch(a, t, CLIPS, torch.tensor(10.0), CAPS, fr, fm), model)
    print("single", repr(single))
'''


def test_acml_across_two_processes_equals_one_process(tmp_path):
    """A-CML with the batch split over two gloo processes (tokens and frames gathered, hard
    negatives drawn from the global batch) averages to the one-process loss on the whole batch
    (the hardest negative taken deterministically so both see the same pairs)."""
    import subprocess
    import sys

    script = tmp_path / "acml_ddp.py"
    script.write_text(ACML_DDP_SCRIPT)
    p = subprocess.run([sys.executable, str(script), str(tmp_path / "rendezvous"), str(tmp_path / "losses.txt")],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    per_rank = eval((tmp_path / "losses.txt").read_text())
    single = float(p.stdout.split("single")[-1])
    assert len(per_rank) == 2 and per_rank[0] != per_rank[1]
    assert np.mean(per_rank) == pytest.approx(single, rel=1e-5)


def test_train_only_the_matching_head_on_a_frozen_dual_encoder(tmp_path):
    """``train_only="extra_heads"``: a second stage trains the new matching head and nothing else."""
    from atrlib.models.dual import create_model
    from atrlib.data.splits import load_splits
    from atrlib.train.config import TrainConfig
    from atrlib.train.loop import fit

    cfg = TrainConfig(dataset="synth", size="tiny", model="synth-stats-minilm", epochs=2, batch_size=16, lr=3e-3,
                      device="cpu", progress=False, out_dir=str(tmp_path / "run"), loss="infonce+acml",
                      train_only="extra_heads", select_on="last",
                      loss_kwargs={"crossattn": {"text_model": "tiny", "frame_stride": 10}})
    data = load_splits(cfg)
    torch.manual_seed(0)
    model = create_model(cfg.model)
    model.add_head("crossattn", {"text_model": "tiny", "frame_stride": 10})   # the objective trains this one
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fit(cfg, model, data)
    after = model.state_dict()
    dual = [k for k in before if not k.startswith("extra_heads")]
    assert dual and all(torch.equal(before[k], after[k].cpu()) for k in dual)
    head = [k for k in before if k.startswith("extra_heads.crossattn.match_head")]
    assert head and all(not torch.equal(before[k], after[k].cpu()) for k in head)
    from safetensors.torch import load_file   # select_on="last": best/ = epoch 2 (the dual's val score cannot move)

    best, last = (load_file(str(tmp_path / "run" / d / "model.safetensors")) for d in ("best", "last"))
    assert best.keys() == last.keys() and all(torch.equal(best[k], last[k]) for k in best)
    with pytest.raises(ValueError, match="select_on"):
        TrainConfig(select_on="best")
    fresh = create_model(cfg.model)
    with pytest.raises(ValueError, match="no trainable parameter starts with 'nope'.*audio_head"):
        from atrlib.train.loop import freeze_except
        freeze_except(fresh, "nope")
