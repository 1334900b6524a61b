"""Scoring captions as DCASE task 6a does: corpus-level and per-clip BLEU-1…4, METEOR,
ROUGE-L, CIDEr-D, SPICE, SPIDEr, SPIDEr-FL and FENSE, bootstrap 95 % intervals, paired tests.

    s = evaluate_captions(predicted, references)     # one caption per clip, a list of references each
    s.table()                                        # metric, value, low, high — or why it is missing
    s.per_clip["cider_d"]                            # one value per clip
    paired(s_a, s_b, "cider_d")                      # diff, p_value, low, high

Captions are tokenized first as the challenge's tools do (Stanford PTB tokenizer, lower case,
punctuation removed; :mod:`atrlib.captioning.external`); without Java or the jar a Python
approximation is used and ``tokenizer`` says so. A metric that cannot run here (no Java, a
missing jar or model, offline) is left out of ``corpus`` and listed in ``missing`` with the
reason and the command that fixes it — never a zero. SPIDEr is (CIDEr-D + SPICE) / 2 per clip;
SPIDEr-FL multiplies it by 0.1 where the fluency-error probability exceeds 0.9 (the DCASE 2023
rule); both are missing when SPICE (or the fluency detector) is.

Intervals: one shared bootstrap draw of clips (1000 resamples): BLEU is recomputed from the
resampled n-gram counts and METEOR by the jar from the resampled clips' statistics (its corpus
value aggregates statistics, it is not a mean); the other metrics are means of per-clip values.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from atrlib.captioning import external as X
from atrlib.captioning import metrics as M

METRICS = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider_d", "spice", "spider", "spider_fl",
           "fense")
LABELS = {"bleu_1": "BLEU-1", "bleu_2": "BLEU-2", "bleu_3": "BLEU-3", "bleu_4": "BLEU-4", "meteor": "METEOR",
          "rouge_l": "ROUGE-L", "cider_d": "CIDEr-D", "spice": "SPICE", "spider": "SPIDEr", "spider_fl": "SPIDEr-FL",
          "fense": "FENSE"}
FLUENCY_THRESHOLD, FLUENCY_PENALTY = 0.9, 0.9  # SPIDEr-FL: x (1 - 0.9) where P(fluency error) > 0.9


def python_tokenize(sentence: str) -> str:
    """A stand-in for the PTB tokenizer when Java is missing: lower case, words (with inner
    apostrophes split off as PTB does: "dog's" -> "dog 's"), punctuation removed."""
    s = sentence.lower().replace("\n", " ")
    toks = re.findall(r"[a-z0-9]+|'[a-z]+|[^\sa-z0-9]", s)
    return " ".join(t for t in toks if t not in X.PUNCTUATIONS and not re.fullmatch(r"[^\w']", t))


def tokenize(sentences: Sequence[str], java: bool = True) -> tuple:
    """(tokenized sentences, which tokenizer): PTB via Java when it can run, else Python."""
    st = X.status()["ptb_tokenizer"] if java else {"ok": False, "reason": "Java switched off (java=False)"}
    if st["ok"]:
        return X.ptb_tokenize(list(sentences)), "Stanford PTB tokenizer (CoreNLP 3.4.1), as the challenge"
    return [python_tokenize(s) for s in sentences], f"Python approximation of the PTB tokenizer ({st['reason']})"


@dataclass
class CaptionScores:
    corpus: Dict[str, float]                       # metric -> corpus value (available metrics only)
    per_clip: pd.DataFrame                         # clips x available metrics
    ci: Dict[str, tuple]                           # metric -> (low, high), bootstrap 95 %
    missing: Dict[str, Dict[str, str]] = field(default_factory=dict)  # metric -> {reason, fix}
    tokenizer: str = ""
    n_clips: int = 0

    def table(self) -> pd.DataFrame:
        """One row per metric, in the challenge's order: value, low, high; a missing one has
        empty numbers and its reason."""
        rows = {}
        for m in METRICS:
            if m in self.corpus:
                lo, hi = self.ci.get(m, (None, None))
                rows[LABELS[m]] = {"value": self.corpus[m], "low": lo, "high": hi, "missing because": ""}
            elif m in self.missing:
                rows[LABELS[m]] = {"value": None, "low": None, "high": None,
                                   "missing because": self.missing[m]["reason"]}
        df = pd.DataFrame(rows).T
        df.index.name = "metric"
        return df

    def to_dict(self) -> Dict:
        out: Dict = {m: {"value": v, "low": self.ci.get(m, (None, None))[0], "high": self.ci.get(m, (None, None))[1]}
                     for m, v in self.corpus.items()}
        out["missing"] = dict(self.missing)
        out["tokenizer"], out["n_clips"] = self.tokenizer, self.n_clips
        return out


def _check(candidates, references) -> None:
    from atrlib.errors import InputFileError

    if len(candidates) != len(references):
        raise InputFileError(f"{len(candidates)} predicted captions but {len(references)} reference lists")
    if not candidates:
        raise InputFileError("no clips to score: the predictions and references are empty")
    for i, refs in enumerate(references):
        if not refs or not any(str(r).strip() for r in refs):
            raise InputFileError(f"clip {i + 1}: no reference captions")


def evaluate_captions(candidates: Sequence[str], references: Sequence[Sequence[str]],
                      metrics: Sequence[str] | str = "all", n_boot: int = 1000, seed: int = 0,
                      java: bool = True, clip_ids: Optional[Sequence[str]] = None,
                      skip: Sequence[str] = ()) -> CaptionScores:
    """Score one caption per clip against that clip's references (see the module docstring).
    ``metrics``: ``"all"`` or names of :data:`METRICS`; ``java=False`` skips every Java tool
    (METEOR and SPICE are then missing, the Python tokenizer is used); ``skip``: metrics not to
    run here (e.g. METEOR's 9-s Java start-up in a timed demo), reported missing as skipped."""
    want = list(METRICS) if metrics == "all" else [str(m) for m in metrics]
    bad = [m for m in want if m not in METRICS]
    if bad:
        raise ValueError(f"unknown caption metric(s) {bad}; known: {', '.join(METRICS)}")
    _check(candidates, references)
    refs = [[str(r) for r in rs if str(r).strip()] for rs in references]
    flat = list(candidates) + [r for rs in refs for r in rs]
    tok, tokenizer = tokenize(flat, java)
    cands, pos, trefs = tok[:len(candidates)], len(candidates), []
    for rs in refs:
        trefs.append(tok[pos:pos + len(rs)])
        pos += len(rs)
    n = len(cands)
    rows = M.bootstrap_rows(n, n_boot, seed)
    corpus, per, ci, missing = {}, {}, {}, {}
    status = X.status()
    if not java:
        status = {k: ({"ok": False, "reason": "Java switched off (java=False)", "fix": "java=True"}
                      if k in ("meteor", "spice") else v) for k, v in status.items()}
    for k in set(skip) & {"meteor", "spice", "fense"}:
        status[k] = {"ok": False, "reason": "not run here: skipped by the caller (skip_metrics)",
                     "fix": f"leave {k} out of skip_metrics"}

    # 1. BLEU: corpus from summed counts
    if any(m.startswith("bleu") for m in want):
        stats = M.bleu_stats(cands, trefs)
        vals, sent, boot = stats.corpus(), stats.sentence(), stats.corpus(rows)        # (4,), (n, 4), (B, 4)
        for k in range(4):
            if f"bleu_{k + 1}" in want:
                corpus[f"bleu_{k + 1}"], per[f"bleu_{k + 1}"] = float(vals[k]), sent[:, k]
                ci[f"bleu_{k + 1}"] = M.interval(boot[:, k])
    # 2. ROUGE-L and CIDEr-D (Python); METEOR and SPICE (Java)
    if "rouge_l" in want:
        per["rouge_l"] = np.array([M.rouge_l(c, r) for c, r in zip(cands, trefs)])
    needs_cider = {"cider_d", "spider", "spider_fl"} & set(want)
    if needs_cider:
        if n < 2:
            for m in needs_cider:
                missing[m] = {"reason": "CIDEr-D needs at least 2 clips (document frequencies over clips)",
                              "fix": "score more than one clip"}
        else:
            per["cider_d"] = M.cider_d(cands, trefs)
    for name in ("meteor", "spice"):
        wanted = name in want or (name == "spice" and {"spider", "spider_fl"} & set(want))
        if not wanted:
            continue
        if not status[name]["ok"]:
            missing[name] = {"reason": status[name]["reason"], "fix": status[name]["fix"]}
            continue
        if name == "meteor":  # the jar's corpus value aggregates statistics: its interval re-aggregates them
            value, clips, boot = X.meteor(cands, trefs, rows)
            corpus["meteor"], ci["meteor"] = float(value), M.interval(np.asarray(boot))
        else:
            value, clips = X.spice(cands, trefs)
        per[name] = np.asarray(clips, dtype=float)
    if "cider_d" in per and "spice" in per:
        per["spider"] = (per["cider_d"] + per["spice"]) / 2
    elif {"spider", "spider_fl"} & set(want):
        why = missing.get("spice", missing.get("cider_d", {"reason": "", "fix": ""}))
        missing["spider"] = {"reason": f"SPIDEr = (CIDEr-D + SPICE) / 2 and SPICE is missing: {why['reason']}",
                             "fix": why["fix"]}
    # 3. FENSE and SPIDEr-FL: the fluency-error detector (aac-metrics)
    if {"fense", "spider_fl"} & set(want):
        if status["fense"]["ok"]:
            value, clips, fer = X.fense(list(candidates), refs)   # FENSE reads the sentences as written
            per["fense"], corpus["fense"] = np.asarray(clips), float(value)
            if "spider" in per:
                per["spider_fl"] = per["spider"] * np.where(np.asarray(fer) > FLUENCY_THRESHOLD,
                                                            1 - FLUENCY_PENALTY, 1.0)
        else:
            missing["fense"] = {"reason": str(status["fense"]["reason"]), "fix": str(status["fense"]["fix"])}
        if "spider_fl" not in per:
            why = missing.get("spider") if "spider" not in per else missing["fense"]
            missing["spider_fl"] = {"reason": "SPIDEr-FL needs SPIDEr and the fluency-error detector: "
                                              + why["reason"], "fix": why["fix"]}
    # 4. corpus values and intervals of the mean-type metrics
    for m, v in per.items():
        if m.startswith("bleu") or m == "meteor":
            continue
        corpus.setdefault(m, float(np.mean(v)))
        ci[m] = M.interval(v[rows].mean(axis=1))
    order = [m for m in METRICS if m in want and m in per]
    frame = pd.DataFrame({m: per[m] for m in order}, index=list(clip_ids) if clip_ids is not None else None)
    return CaptionScores({m: corpus[m] for m in order}, frame, {m: ci[m] for m in order},
                         {m: missing[m] for m in METRICS if m in missing and m in want}, tokenizer, n)


def paired(a: CaptionScores, b: CaptionScores, metric: str = "cider_d", n: int = 10000, seed: int = 0) -> Dict:
    """Paired bootstrap test on the per-clip ``metric`` of two captioners over the same clips:
    ``{"diff" (a - b), "p_value", "low", "high"}`` (:func:`atrlib.retrieval.metrics.paired_test`)."""
    from atrlib.retrieval.metrics import paired_test

    if metric not in a.per_clip or metric not in b.per_clip:
        raise ValueError(f"{metric} was not computed for both captioners")
    return paired_test(a.per_clip[metric].to_numpy(), b.per_clip[metric].to_numpy(), method="bootstrap", n=n,
                       seed=seed)


def compare_table(scores: Dict[str, CaptionScores], metrics: Sequence[str] = ("bleu_1", "bleu_4", "meteor", "rouge_l",
                                                                                "cider_d", "spice", "spider",
                                                                                "spider_fl", "fense")) -> pd.DataFrame:
    """One row per captioner (or baseline): each computed metric with its bootstrap 95 %
    interval (``<metric> low`` / ``<metric> high``); metrics computed for none are left out."""
    rows = {}
    for name, s in scores.items():
        row = {}
        for m in metrics:
            if m in s.corpus:
                row[LABELS[m]] = s.corpus[m]
                row[f"{LABELS[m]} low"], row[f"{LABELS[m]} high"] = s.ci[m]
        rows[name] = row
    return pd.DataFrame(rows).T


def missing_table(s: CaptionScores) -> pd.DataFrame:
    """The metrics that could not be computed here: why, and the command that fixes it."""
    df = pd.DataFrame([{"metric": LABELS[m], "missing because": d["reason"], "fix": d["fix"]}
                       for m, d in s.missing.items()], columns=["metric", "missing because", "fix"])
    return df.set_index("metric")
