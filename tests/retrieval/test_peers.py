"""Public models as systems: a transformers ClapModel (LAION CLAP) through `--system hf-clap:<folder>`,
end to end in `atrlib evaluate`, on a tiny random model and a tokenizer this test builds (offline)."""
import atrlib  # noqa: F401

import json

import numpy as np
import pytest
import torch

from atrlib.errors import AtrlibError


@pytest.fixture(scope="module")
def tiny_clap(tmp_path_factory):
    from transformers import AutoTokenizer, ClapAudioConfig, ClapConfig, ClapFeatureExtractor, ClapModel, ClapTextConfig

    from atrlib.models.text_towers import minilm_path

    folder = tmp_path_factory.mktemp("clap") / "tiny-clap"
    tok = AutoTokenizer.from_pretrained(str(minilm_path()))  # any tokenizer whose vocabulary the text model covers
    text = ClapTextConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=37, projection_dim=16, max_position_embeddings=128, type_vocab_size=2)
    audio = ClapAudioConfig(window_size=4, num_mel_bins=16, spec_size=64, patch_size=2, patch_stride=[2, 2],
                            hidden_size=64, projection_dim=16, depths=[1, 1], num_attention_heads=[2, 2],
                            patch_embeds_hidden_size=32, num_hidden_layers=2)
    torch.manual_seed(0)
    ClapModel(ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=16)).save_pretrained(folder)
    ClapFeatureExtractor(feature_size=16, sampling_rate=16000, max_length_s=2).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_hf_clap_embeds_with_the_models_own_features(tiny_clap, tmp_path):
    """The retriever's embeddings are the model's get_*_features on its extractor's input; a clip
    longer than the window is the mean of its windows (deterministic)."""
    import soundfile as sf
    from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel

    from atrlib.retrieval.search import resolve_retriever

    r = resolve_retriever(f"hf-clap:{tiny_clap}")
    assert r.name == "hf-clap:tiny-clap" and r.window == 32000
    rng = np.random.default_rng(0)
    short, long_ = tmp_path / "short.wav", tmp_path / "long.wav"
    sf.write(short, (0.1 * rng.standard_normal(32000)).astype(np.float32), 16000)
    wave = (0.1 * rng.standard_normal(80000)).astype(np.float32)
    sf.write(long_, wave, 16000)
    model, fe = ClapModel.from_pretrained(tiny_clap).eval(), ClapFeatureExtractor.from_pretrained(tiny_clap)
    tok = AutoTokenizer.from_pretrained(tiny_clap)

    def feats(x):
        with torch.no_grad():
            out = model.get_audio_features(**fe(x, sampling_rate=16000, return_tensors="pt", truncation="rand_trunc",
                                                padding="repeatpad"))
        return (out if isinstance(out, torch.Tensor) else out.pooler_output).numpy()

    got = r.embed_audio([short, long_], progress=False)
    ref_short = feats([sf.read(short, dtype="float32")[0]])[0]
    pieces = [wave[0:32000], wave[32000:64000], np.tile(wave[64000:], 2)[:32000]]
    ref_long = feats(pieces).mean(axis=0)
    assert np.abs(got[0] - ref_short).max() < 1e-5 and np.abs(got[1] - ref_long).max() < 1e-5
    with torch.no_grad():
        t = model.get_text_features(**{k: v for k, v in tok(["a dog barks"], return_tensors="pt").items()
                                       if k in ("input_ids", "attention_mask")})
    t = (t if isinstance(t, torch.Tensor) else t.pooler_output).numpy()
    assert np.abs(r.embed_text(["a dog barks"]) - t).max() < 1e-5
    assert np.array_equal(r.embed_audio([long_], progress=False), got[1:])  # the same every time (cached or not)


def test_hf_clap_is_evaluated_end_to_end_like_any_system(tiny_clap, tmp_path, capsys):
    from atrlib.__main__ import main

    out = tmp_path / "ev"
    rc = main(["evaluate", "--system", f"hf-clap:{tiny_clap}", "--dataset", "synth", "--size", "tiny", "--split", "test",
               "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    m = json.loads((out / "metrics.json").read_text())
    ci = m["t2a_ci"]["mAP@10"]
    assert m["t2a"]["n_queries"] == 40 and 0 <= ci["low"] <= m["t2a"]["mAP@10"] <= ci["high"] <= 1
    from atrlib.retrieval.simfile import load_similarity

    sm = load_similarity(out / "sim_test.npz")  # the folder is a system 05's ensembles can take
    assert sm.sim.shape == (40, 8) and sm.meta.get("system", "").startswith("hf-clap:")


def test_a_missing_peer_model_is_one_message(tmp_path):
    from atrlib.retrieval.search import resolve_retriever

    with pytest.raises(AtrlibError, match="hf-clap:.*nowhere.*no ClapModel"):
        resolve_retriever(f"hf-clap:{tmp_path / 'nowhere'}")
    try:
        import msclap  # noqa: F401
    except ImportError:
        with pytest.raises(AtrlibError, match="pip install msclap"):
            resolve_retriever("msclap:2023")
