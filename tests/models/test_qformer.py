"""The audio Q-Former: equal to transformers' BLIP-2 retrieval model and to BERT on the same
weights, BLIP-2's three attention masks, and ATC / ATM / ATG against per-pair loops."""
import atrlib  # noqa: F401  (thread settings before torch)

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

import atrlib.losses.crossmodal as obj
from atrlib.losses.crossmodal import CrossBatch
from atrlib.models.qformer import AudioQFormer

CAPS = ["a dog barks twice", "rain on a metal roof", "a bell rings", "the dog barks loudly near a road", "wind"]
CLIPS = torch.tensor([0, 1, 2, 0, 3])
FRAME_DIM, Q = 12, 4


@pytest.fixture(scope="module")
def qf():
    torch.manual_seed(0)
    return AudioQFormer(FRAME_DIM, "tiny", num_queries=Q, embed_dim=8,
                        config_overrides={"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}).eval()


def frames(n=len(CAPS), t=9, seed=0, ragged=True):
    g = torch.Generator().manual_seed(seed)
    fr = torch.randn(n, t, FRAME_DIM, generator=g)
    m = torch.ones(n, t, dtype=torch.bool)
    if ragged:
        for i in range(n):
            m[i, t - i:] = False
    return fr, m


def test_text_path_equals_bert_after_init_from_bert(tmp_path):
    from transformers import AutoTokenizer, BertConfig, BertModel
    from atrlib.models.text_towers import minilm_path

    torch.manual_seed(1)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                     max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    bert = BertModel(cfg).eval()
    with torch.no_grad():
        bert.embeddings.token_type_embeddings.weight.normal_()     # a visible type-0 embedding to fold in
    bert.save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(tmp_path)
    q = AudioQFormer(FRAME_DIM, str(tmp_path), num_queries=Q, embed_dim=8).eval()
    tok = q.tokenize(CAPS)
    mine = q.text_states(tok["input_ids"], tok["attention_mask"])
    ref = bert(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]).last_hidden_state
    real = tok["attention_mask"].bool()
    assert torch.allclose(mine[real], ref[real], atol=1e-5)


def test_equal_to_transformers_blip2_retrieval(qf):
    from transformers import Blip2Config, Blip2ForImageTextRetrieval

    cfg = Blip2Config(vision_config=dict(hidden_size=FRAME_DIM, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=16, image_size=8, patch_size=4),
                      qformer_config=qf.config.to_dict(), num_query_tokens=Q, image_text_hidden_size=8)
    ref = Blip2ForImageTextRetrieval(cfg).eval()
    ref.query_tokens, ref.embeddings, ref.qformer = qf.query_tokens, qf.embeddings, qf.qformer
    ref.vision_projection, ref.text_projection, ref.itm_head = qf.audio_proj, qf.text_proj, qf.itm_head

    class Frames(torch.nn.Module):  # audio frames in place of the vision tower's patches
        def forward(self, pixel_values, **kw):
            return (qf.frame_norm(pixel_values),)
    ref.vision_model = Frames()
    fr, m = frames(ragged=False)                                   # BLIP-2 attends to every patch
    tok = qf.tokenize(CAPS)
    with torch.no_grad():
        itm = ref(pixel_values=fr, input_ids=tok["input_ids"], attention_mask=tok["attention_mask"],
                  use_image_text_matching_head=True).logits_per_image      # (B, 2)
        itc = ref(pixel_values=fr, input_ids=tok["input_ids"], attention_mask=tok["attention_mask"],
                  use_image_text_matching_head=False).logits_per_image     # (clips, captions)
        assert torch.allclose(qf.itm_logits(tok["input_ids"], tok["attention_mask"], fr, m), itm, atol=1e-5)
        assert torch.allclose(qf.similarity(CAPS, fr, m), itc.T, atol=1e-5)


def test_blip2_masks(qf):
    fr, m = frames()
    tok = qf.tokenize(CAPS)
    ids, am = tok["input_ids"], tok["attention_mask"]
    with torch.no_grad():
        causal = qf.joint_states(ids, am, fr, m, "causal")
        # queries never see the text: their outputs equal the audio-only (uni-modal) pass
        assert torch.allclose(causal[:, :Q], qf.audio_queries(fr, m), atol=1e-5)
        # text token 1 sees only earlier text: changing the last word leaves it unchanged ...
        other = qf.tokenize(["a dog barks thrice"] + CAPS[1:])
        causal2 = qf.joint_states(other["input_ids"], other["attention_mask"], fr, m, "causal")
        assert torch.allclose(causal2[0, Q + 1], causal[0, Q + 1], atol=1e-5)
        # ... while under the bidirectional (matching) mask the queries see the text
        bi = qf.joint_states(ids, am, fr, m, "bidirectional")
        bi2 = qf.joint_states(other["input_ids"], other["attention_mask"], fr, m, "bidirectional")
        assert not torch.allclose(bi[0, :Q], bi2[0, :Q], atol=1e-4)


def batch(fr, m):
    g = torch.Generator().manual_seed(2)
    a = F.normalize(torch.randn(len(CAPS), 8, generator=g), dim=1)
    return CrossBatch(a, a.clone(), CLIPS, torch.tensor(10.0), list(CAPS), fr, m)


@pytest.mark.parametrize("positives", ["mask", "diagonal"])
def test_atc_equals_loop_reference(qf, positives):
    fr, m = frames()
    model = SimpleNamespace(extra_heads={"qformer": qf})
    loss = obj.ATC(positives=positives).term(batch(fr, m), model)["atc"]
    w = qf.audio_proj.weight
    g_mine = torch.autograd.grad(loss, w)[0]
    s = qf.logit_scale
    qa = [qf.embed_audio(fr[i:i + 1, :int(m[i].sum())], m[i:i + 1, :int(m[i].sum())])[0] for i in range(len(CAPS))]
    te = [qf.embed_text(**{k: v[:, :int(v.shape[1])] for k, v in qf.tokenize([c]).items()})[0] for c in CAPS]
    sim = [[max(qa[i][k] @ te[j] for k in range(Q)) for j in range(len(CAPS))] for i in range(len(CAPS))]
    total = 0.0
    for i in range(len(CAPS)):
        for row in ([sim[i][j] for j in range(len(CAPS))], [sim[j][i] for j in range(len(CAPS))]):
            den = sum(torch.exp(s * row[j]) for j in range(len(CAPS))
                      if positives == "diagonal" or j == i or CLIPS[j] != CLIPS[i])
            total = total - (s * row[i] - torch.log(den))
    ref = total / (2 * len(CAPS))
    assert loss.item() == pytest.approx(ref.item(), abs=1e-5)
    assert torch.allclose(g_mine, torch.autograd.grad(ref, w)[0], rtol=1e-3, atol=2e-5)  # float32, max over queries


def test_atm_and_atg_equal_per_pair_references(qf, monkeypatch):
    fr, m = frames()
    model = SimpleNamespace(extra_heads={"qformer": qf})
    seen = []
    real = obj.sample_hard_negatives
    monkeypatch.setattr(obj, "sample_hard_negatives", lambda *a, **k: seen.append(real(*a, **k)) or seen[-1])
    torch.manual_seed(0)
    atm = obj.ATM().term(batch(fr, m), model)["atm"]
    (neg_a, ok_a), (neg_t, ok_t) = seen
    n = m.sum(1)

    def itm(cap, i):
        tok = qf.tokenize([cap])
        return qf.itm_logits(tok["input_ids"], tok["attention_mask"], fr[i:i + 1, :n[i]], m[i:i + 1, :n[i]])[0]
    pairs = [(CAPS[i], i, 1) for i in range(len(CAPS))]
    pairs += [(CAPS[j], int(neg_a[j]), 0) for j in range(len(CAPS)) if ok_a[j]]
    pairs += [(CAPS[int(neg_t[i])], i, 0) for i in range(len(CAPS)) if ok_t[i]]
    ref = sum(-torch.log_softmax(itm(c, i), -1)[y] for c, i, y in pairs) / len(pairs)
    assert all(CLIPS[i] != CLIPS[CAPS.index(c)] for c, i, y in pairs if y == 0)
    assert atm.item() == pytest.approx(ref.item(), abs=1e-5)

    atg = obj.ATG().term(batch(fr, m), model)["atg"]
    g_mine = torch.autograd.grad(atg, qf.itm_head.weight, allow_unused=True)[0]
    assert g_mine is None                                          # ATG does not touch the matching head
    total, count = 0.0, 0
    for i, c in enumerate(CAPS):
        tok = qf.tokenize([c])
        logits = qf.lm_logits(tok["input_ids"], tok["attention_mask"], fr[i:i + 1, :n[i]], m[i:i + 1, :n[i]])[0]
        ids = tok["input_ids"][0]
        for p in range(len(ids) - 1):                               # predict token p+1 from tokens <= p
            total = total - torch.log_softmax(logits[p], -1)[ids[p + 1]]
            count += 1
    assert atg.item() == pytest.approx((total / count).item(), abs=1e-4)


@pytest.fixture(scope="module")
def qformer_run(tmp_path_factory):
    """A dual encoder with an (untrained) tiny Q-Former head, saved as a run."""
    from atrlib.models.dual import create_model, save_model

    torch.manual_seed(0)
    model = create_model("synth-stats-minilm")
    model.add_head("qformer", {"text_model": "tiny", "num_queries": Q, "config_overrides": {
        "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}})
    out = tmp_path_factory.mktemp("qrun")
    save_model(model.eval(), out / "best")
    return model, out


def test_qformer_score_retriever_equals_max_over_queries(qformer_run, tmp_path):
    """``TrainedRetriever(score="qformer")``: every (caption, clip) score equals the max over the
    clip's query embeddings of query . caption, computed directly from the tower's frames."""
    from atrlib.audio.io import load_audio
    from atrlib.data import load_dataset
    from atrlib.retrieval.retrievers import TrainedRetriever
    from atrlib.audio.cache import FeatureCache

    model, run = qformer_run
    ds = load_dataset("synth", split="test", size="tiny")
    caps, paths = ds.captions_flat()[:7], ds.audio_paths[:5]
    r = TrainedRetriever(run, score="qformer", cache=FeatureCache(root=tmp_path, namespace="t"))
    got = r.similarity(caps, paths, progress=False)                           # (7, 5)
    q = model.extra_heads["qformer"].eval()
    tok = q.tokenize(caps)
    with torch.no_grad():
        t = q.embed_text(tok["input_ids"], tok["attention_mask"])             # (7, E)
        for j, p in enumerate(paths):
            x, _ = load_audio(p, sample_rate=model.audio_tower.sample_rate,
                              duration=getattr(model.config, "max_audio_seconds", None))
            fr, m = model.audio_tower.forward_frames(torch.from_numpy(x)[None])
            a = q.embed_audio(fr, m)[0]                                       # (Q, E)
            for i in range(len(caps)):
                assert got[i, j] == pytest.approx(max(float(a[k] @ t[i]) for k in range(Q)), abs=1e-5)
    dual = TrainedRetriever(run, cache=FeatureCache(root=tmp_path, namespace="t")).similarity(caps, paths, progress=False)
    assert not torch.allclose(torch.from_numpy(dual), torch.from_numpy(got))  # a different score


def test_cli_evaluate_with_qformer_score(qformer_run, tmp_path, capsys):
    import json

    from atrlib.__main__ import main
    from atrlib.models.dual import create_model, save_model

    _, run = qformer_run
    out = tmp_path / "eval"
    assert main(["evaluate", "--system", str(run), "--score", "qformer", "--dataset", "synth", "--size", "tiny",
                 "--split", "test", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert 0 <= m["t2a"]["mAP@10"] <= 1 and ":qformer" in capsys.readouterr().out
    plain = tmp_path / "plain"
    save_model(create_model("synth-stats-minilm").eval(), plain / "best")
    assert main(["evaluate", "--system", str(plain), "--score", "qformer", "--dataset", "synth", "--size", "tiny",
                 "--split", "test", "--out", str(tmp_path / "e2")]) == 2
    assert "has no Q-Former" in capsys.readouterr().err
    assert main(["search", "--system", str(run), "--score", "qformer", "--index", str(tmp_path), "--query", "x"]) == 2
    assert "--index and --like need the dual score" in capsys.readouterr().err
