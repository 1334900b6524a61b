"""Caption metrics computed in Python, exactly as the challenge's tools compute them, on
sentences already tokenized (lower case, PTB word pieces, punctuation removed, one space
between words; :mod:`atrlib.captioning.external` tokenizes):

- BLEU-1…4: coco-caption's ``BleuScorer`` with the "closest" reference length. Corpus BLEU
  comes from n-gram counts summed over clips (:class:`BleuStats`), so its bootstrap
  interval re-sums resampled counts; the per-clip values are coco's sentence-level BLEU.
- ROUGE-L: coco-caption's ``Rouge`` (longest common subsequence, beta 1.2, the best
  precision and recall over the references); corpus = the mean over clips.
- CIDEr-D: aac-metrics' ``cider_d`` (= coco-caption's CIDEr-D: tf-idf of 1–4-grams with document
  frequencies from the references of every clip, clipped counts, a Gaussian length
  penalty with sigma 6, × 10); corpus = the mean over clips. Needs at least 2 clips.

Each equals its reference on the same sentences (``tests/captioning/test_caption_metrics.py``:
pycocoevalcap 1.2's Bleu and Rouge, aac-metrics 0.5.4's cider_d).
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np

TINY, SMALL = 1e-15, 1e-9  # coco-caption's guards: a zero count still gives zero


def ngrams(words: Sequence[str], n: int = 4) -> Counter:
    c: Counter = Counter()
    for k in range(1, n + 1):
        for i in range(len(words) - k + 1):
            c[tuple(words[i:i + k])] += 1
    return c


# ----------------------------------------------------------------------------- BLEU
@dataclass
class BleuStats:
    """Per-clip counts of coco's BLEU: ``testlen`` (clips,), ``reflen`` (clips,) the closest
    reference length, ``guess`` and ``correct`` (clips, 4)."""

    testlen: np.ndarray
    reflen: np.ndarray
    guess: np.ndarray
    correct: np.ndarray

    def corpus(self, rows=None) -> np.ndarray:
        """(4,) corpus BLEU-1…4 of the clips ``rows`` (all by default; repeats allowed)."""
        return corpus_bleu(*(a if rows is None else a[rows] for a in (self.testlen, self.reflen, self.guess,
                                                                      self.correct)))

    def sentence(self) -> np.ndarray:
        """(clips, 4) coco's sentence-level BLEU-1…4."""
        ratio = (self.testlen + TINY) / (self.reflen + SMALL)                            # (clips,)
        prec = (self.correct + TINY) / (self.guess + SMALL)                              # (clips, 4)
        out = np.cumprod(prec, axis=1) ** (1.0 / np.arange(1, 5))[None]
        bp = np.where(ratio < 1, np.exp(1 - 1 / np.minimum(ratio, 1)), 1.0)
        return out * bp[:, None]


def corpus_bleu(testlen, reflen, guess, correct) -> np.ndarray:
    """coco-caption's corpus BLEU from summed counts (leading axes of ``guess``/``correct``
    before the last two are kept: (..., clips, 4) -> (..., 4))."""
    t, r = np.sum(testlen, axis=-1), np.sum(reflen, axis=-1)
    g, c = np.sum(guess, axis=-2), np.sum(correct, axis=-2)                               # (..., 4)
    bleu = np.cumprod((c + TINY) / (g + SMALL), axis=-1) ** (1.0 / np.arange(1, 5))
    ratio = (t + TINY) / (r + SMALL)
    bp = np.where(ratio < 1, np.exp(1 - 1 / np.minimum(ratio, 1)), 1.0)
    return bleu * np.asarray(bp)[..., None]


def bleu_stats(candidates: Sequence[str], references: Sequence[Sequence[str]], n: int = 4) -> BleuStats:
    tl, rl, gs, cs = [], [], [], []
    for cand, refs in zip(candidates, references):
        words = cand.split()
        maxref: Dict[tuple, int] = {}
        lens = []
        for ref in refs:
            rw = ref.split()
            lens.append(len(rw))
            for g, k in ngrams(rw, n).items():
                maxref[g] = max(maxref.get(g, 0), k)
        testlen = len(words)
        correct = [0] * n
        for g, k in ngrams(words, n).items():
            correct[len(g) - 1] += min(maxref.get(g, 0), k)
        tl.append(testlen)
        rl.append(min((abs(l - testlen), l) for l in lens)[1])
        gs.append([max(0, testlen - k + 1) for k in range(1, n + 1)])
        cs.append(correct)
    f = lambda x: np.asarray(x, dtype=np.float64)  # noqa: E731
    return BleuStats(f(tl), f(rl), f(gs).reshape(-1, n), f(cs).reshape(-1, n))


# ----------------------------------------------------------------------------- ROUGE-L
def lcs(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence."""
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l(candidate: str, references: Sequence[str], beta: float = 1.2) -> float:
    """coco-caption's ROUGE-L of one candidate (words split on single spaces, as coco does)."""
    c = candidate.split(" ")
    prec, rec = [], []
    for ref in references:
        r = ref.split(" ")
        n = lcs(r, c)
        prec.append(n / len(c))
        rec.append(n / len(r))
    p, r = max(prec), max(rec)
    return ((1 + beta ** 2) * p * r) / (r + beta ** 2 * p) if p != 0 and r != 0 else 0.0


# ----------------------------------------------------------------------------- CIDEr-D
def _tfidf(counts: Counter, log_n: float, df: Counter, n: int) -> Tuple[List[Dict], np.ndarray, int]:
    vec: List[Dict] = [defaultdict(float) for _ in range(n)]
    norm = np.zeros(n)
    length = 0
    for g, tf in counts.items():
        k = len(g) - 1
        vec[k][g] = float(tf) * (log_n - np.log(max(1.0, df[g])))
        norm[k] += vec[k][g] ** 2
        if k == 1:
            length += tf
    return vec, np.sqrt(norm), length


def cider_d(candidates: Sequence[str], references: Sequence[Sequence[str]], n: int = 4, sigma: float = 6.0,
            scale: float = 10.0) -> np.ndarray:
    """(clips,) CIDEr-D of each candidate; the corpus score is their mean."""
    if len(candidates) < 2:
        raise ValueError(f"CIDEr-D needs at least 2 clips (its document frequencies come from the references of "
                         f"every clip); got {len(candidates)}")
    cooked_refs = [[ngrams(r.split(), n) for r in refs] for refs in references]
    df: Counter = Counter()
    for refs in cooked_refs:
        for g in {g for r in refs for g in r}:
            df[g] += 1
    log_n = np.log(float(len(cooked_refs)))
    out = np.empty(len(candidates))
    for i, (cand, refs) in enumerate(zip(candidates, cooked_refs)):
        vec, norm, length = _tfidf(ngrams(cand.split(), n), log_n, df, n)
        scores = np.zeros((len(refs), n))
        for j, ref in enumerate(refs):
            rvec, rnorm, rlen = _tfidf(ref, log_n, df, n)
            penalty = math.e ** (-(float(length - rlen) ** 2) / (2 * sigma ** 2))
            for k in range(n):
                s = sum(min(c, rvec[k][g]) * rvec[k][g] for g, c in vec[k].items())
                if norm[k] != 0 and rnorm[k] != 0:
                    s /= norm[k] * rnorm[k]
                scores[j, k] = s * penalty
        out[i] = scores.sum(axis=0).mean() / len(refs)
    return out * scale


# ----------------------------------------------------------------------------- intervals
def bootstrap_rows(n: int, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """(n_boot, n) clip indices drawn with replacement (one shared draw for every metric, so
    the intervals of different metrics come from the same resampled corpora)."""
    return np.random.default_rng(seed).integers(0, n, size=(int(n_boot), int(n)))


def interval(values: np.ndarray, alpha: float = 0.05) -> Tuple[float, float]:
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)
