"""Caption metrics against independent references on the same sentences: pycocoevalcap 1.2
(BLEU, ROUGE-L, the PTB tokenizer, METEOR) and aac-metrics 0.5.4 (CIDEr-D); intervals, paired
tests, and metrics that cannot run reported missing with a reason, never as zero."""
import numpy as np
import pandas as pd
import pytest

from atrlib.captioning import evaluate as E
from atrlib.captioning import external as X
from atrlib.captioning import metrics as M

CANDS = ["a dog barks loudly in the distance", "rain falls on a tin roof", "a car passes by on a wet road",
         "birds are singing", "a man speaks while water runs", "a door is closing", ""]
REFS = [["a dog is barking far away", "in the distance a dog barks", "dog barking loudly outside",
         "a dog barks several times", "someone's dog is barking"],
        ["heavy rain falls onto a metal roof", "rain on a tin roof", "rain drops hit a roof",
         "it is raining on the roof", "rain is falling on a tin roof hard"],
        ["a car drives past on a wet street", "a vehicle passes on wet pavement", "cars pass by",
         "a car goes by in the rain", "traffic on a wet road"],
        ["birds chirp in the trees", "many birds are singing", "birdsong in a forest",
         "several birds chirping", "birds tweet outside"],
        ["a man talks as water flows", "water runs while a person speaks", "someone speaks near running water",
         "a man speaks", "water pours and a man talks"],
        ["a door creaks shut", "a door closes slowly", "someone closes a door", "the door is shut",
         "a wooden door closes"],
        ["silence", "nothing happens", "a quiet room", "very faint noise", "quiet background"]]


def _coco(cands, refs):
    return {i: [c] for i, c in enumerate(cands)}, {i: list(r) for i, r in enumerate(refs)}


def _tokenized():
    toks = [E.python_tokenize(s) for s in CANDS + [r for rs in REFS for r in rs]]
    cands, pos, refs = toks[:len(CANDS)], len(CANDS), []
    for rs in REFS:
        refs.append(toks[pos:pos + len(rs)])
        pos += len(rs)
    return cands, refs


def test_bleu_equals_pycocoevalcap():
    from pycocoevalcap.bleu.bleu import Bleu

    cands, refs = _tokenized()
    res, gts = _coco(cands, refs)
    ref_corpus, ref_sent = Bleu(4).compute_score(gts, res, verbose=0)
    stats = M.bleu_stats(cands, refs)
    np.testing.assert_allclose(stats.corpus(), ref_corpus, rtol=1e-12)
    np.testing.assert_allclose(stats.sentence(), np.array(ref_sent).T, rtol=1e-12)
    # the bootstrap re-sums resampled counts: the identity resample gives the corpus value
    np.testing.assert_allclose(stats.corpus(np.arange(len(cands))[None])[0], ref_corpus, rtol=1e-12)


def test_rouge_l_equals_pycocoevalcap():
    from pycocoevalcap.rouge.rouge import Rouge

    cands, refs = _tokenized()
    res, gts = _coco(cands, refs)
    ref_corpus, ref_sent = Rouge().compute_score(gts, res)
    ours = np.array([M.rouge_l(c, r) for c, r in zip(cands, refs)])
    np.testing.assert_allclose(ours, ref_sent, rtol=1e-12)
    assert ours.mean() == pytest.approx(ref_corpus, rel=1e-12)


def test_cider_d_equals_aac_metrics():
    from aac_metrics.functional import cider_d

    cands, refs = _tokenized()
    corpus, sents = cider_d(cands, refs)
    ours = M.cider_d(cands, refs)
    np.testing.assert_allclose(ours, sents["cider_d"].numpy(), rtol=1e-12)
    assert ours.mean() == pytest.approx(float(corpus["cider_d"]), rel=1e-12)
    with pytest.raises(ValueError, match="at least 2 clips"):
        M.cider_d(cands[:1], refs[:1])


needs_java = pytest.mark.skipif(not X.status()["ptb_tokenizer"]["ok"], reason="no Java or no CoreNLP 3.4.1 jar "
                                "(pip install --no-deps pycocoevalcap==1.2; apt-get install default-jre-headless)")


@needs_java
def test_ptb_tokenizer_equals_pycocoevalcap():
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    sents = ["A dog's bark, then (loud) rain...", "Birds -- singing; near a road!", "It is 5 o'clock."]
    ref = PTBTokenizer().tokenize({i: [{"caption": s}] for i, s in enumerate(sents)})
    assert X.ptb_tokenize(sents) == [ref[i][0] for i in range(len(sents))]


@pytest.mark.slow
@pytest.mark.skipif(not X.status()["meteor"]["ok"], reason="no Java or no meteor-1.5.jar")
def test_meteor_equals_pycocoevalcap():
    from pycocoevalcap.meteor.meteor import Meteor

    cands, refs = _tokenized()
    res, gts = _coco(cands[:-1], refs[:-1])
    ref_corpus, ref_sent = Meteor().compute_score(gts, res)
    n = len(cands) - 1
    corpus, per, boot = X.meteor(cands[:-1], refs[:-1], resamples=[list(range(n)), [0] * n])
    assert corpus == pytest.approx(ref_corpus, abs=1e-12)
    np.testing.assert_allclose(per, ref_sent, atol=1e-12)
    assert boot[0] == pytest.approx(corpus, abs=1e-12)                  # the identity resample: the corpus value
    assert boot[1] == pytest.approx(per[0], abs=1e-12)                  # one clip n times: that clip's METEOR


def test_scores_table_has_intervals_and_missing_metrics_with_reasons(monkeypatch):
    s = E.evaluate_captions(CANDS, REFS, metrics=["bleu_4", "rouge_l", "cider_d", "meteor", "spider"], java=False)
    t = s.table()
    assert list(t.index) == ["BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D", "SPIDEr"]
    for m in ("BLEU-4", "ROUGE-L", "CIDEr-D"):
        assert t.loc[m, "low"] <= t.loc[m, "value"] <= t.loc[m, "high"]
    assert pd.isna(t.loc["METEOR", "value"]) and "Java switched off" in t.loc["METEOR", "missing because"]
    assert "SPICE is missing" in s.missing["spider"]["reason"] and s.missing["spider"]["fix"]
    assert "meteor" not in s.corpus and "spider" not in s.corpus        # never a zero
    assert s.per_clip.shape == (len(CANDS), 3) and "Python approximation" in s.tokenizer
    assert s.corpus["cider_d"] == pytest.approx(s.per_clip["cider_d"].mean())
    # SPICE's CoreNLP 3.6.0 jars are not on this machine: missing, with the command that fixes it
    monkeypatch.setattr(X, "find_jar", lambda kind, name: None)
    st = X.status()
    assert not st["spice"]["ok"] and "aac-metrics-download" in st["spice"]["fix"]
    assert not st["meteor"]["ok"] and "pycocoevalcap" in st["meteor"]["fix"]


def test_paired_test_between_two_captioners_and_bad_input():
    from atrlib.errors import InputFileError

    a = E.evaluate_captions(CANDS, REFS, metrics=["cider_d"], java=False)
    b = E.evaluate_captions(["a sound"] * len(CANDS), REFS, metrics=["cider_d"], java=False)
    p = E.paired(a, b, "cider_d", n=2000)
    assert p["diff"] == pytest.approx(a.corpus["cider_d"] - b.corpus["cider_d"]) and p["diff"] > 0
    assert 0 < p["p_value"] <= 1 and p["low"] <= p["diff"] <= p["high"]
    with pytest.raises(InputFileError, match="clip 2: no reference"):
        E.evaluate_captions(CANDS[:2], [REFS[0], [" "]], java=False)
    with pytest.raises(InputFileError, match="empty"):
        E.evaluate_captions([], [], java=False)


def test_spice_client_and_spider_with_a_stand_in_for_the_spice_jar(tmp_path, monkeypatch):
    """The SPICE client's protocol (a JSON file in, ``-out`` JSON with each clip's F-score) and
    SPIDEr = (CIDEr-D + SPICE) / 2, with a stand-in program where the real CoreNLP 3.6.0 jars
    are missing; the tokenizer and METEOR still run the real jars through the real Java."""
    import shutil
    import sys

    java = X.java_path()
    spice_dir = tmp_path / "aac-metrics" / "spice"
    (spice_dir / "lib").mkdir(parents=True)
    for name in ["spice-1.0.jar"] + [f"lib/{j}" for j in X.SPICE_CORENLP]:
        (spice_dir / name).write_bytes(b"stand-in")
    fake = tmp_path / "java"
    fake.write_text(f"""#!{sys.executable}
import json, os, sys
args = sys.argv[1:]
if not any(a.endswith("spice-1.0.jar") for a in args):
    os.execv({str(java or "java")!r}, [{str(java or "java")!r}] + args)   # tokenizer, METEOR: the real Java
src, dst = args[args.index("-Xmx8G") + 2], args[args.index("-out") + 1]
assert "-subset" in args and "-silent" in args and "-cache" in args
rows = json.load(open(src))
json.dump([{{"image_id": r["image_id"], "scores": {{"All": {{"f": len(r["test"].split()) / 10}}}}}} for r in rows],
          open(dst, "w"))
""")
    fake.chmod(0o755)
    monkeypatch.setenv("AAC_METRICS_CACHE_PATH", str(tmp_path))
    monkeypatch.setenv("AAC_METRICS_JAVA_PATH", str(fake))
    assert X.status()["spice"]["ok"]
    s = E.evaluate_captions(CANDS, REFS, metrics=["cider_d", "spice", "spider"], skip=["meteor"],
                            java=shutil.which("java") is not None)
    if "spice" not in s.corpus:
        pytest.skip(f"no Java to run the tokenizer: {s.missing}")
    words = [len(c.split()) for c in E.tokenize(CANDS)[0]]                # what the program was handed: PTB words
    np.testing.assert_allclose(s.per_clip["spice"], np.array(words) / 10)
    np.testing.assert_allclose(s.per_clip["spider"], (s.per_clip["cider_d"] + s.per_clip["spice"]) / 2)
    assert s.corpus["spider"] == pytest.approx(s.per_clip["spider"].mean())
    assert s.ci["spider"][0] <= s.corpus["spider"] <= s.ci["spider"][1]
