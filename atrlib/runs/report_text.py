"""Words for reports: "What we learned" sentences generated from a stage's numbers (with
their uncertainty and chance level), and links to the glossary.

Every function returns Markdown. Terms link to anchors (``#term-map10``) that
:func:`terms_section` writes at the end of the same report from the package's ``resources/glossary.md``, so a
report explains its words offline and the glossary stays one file.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

from atrlib.paths import GLOSSARY_PATH
ALPHA = 0.05


# ----------------------------------------------------------------------------- glossary
def anchor(term: str) -> str:
    """``"mAP@10"`` -> ``"term-map10"`` (the id :func:`terms_section` gives the entry)."""
    return "term-" + re.sub(r"[^a-z0-9]+", "", term.lower())


@lru_cache(maxsize=1)
def _read_glossary() -> tuple:
    terms: Dict[str, str] = {}
    aliases: Dict[str, str] = {}
    if not GLOSSARY_PATH.is_file():
        return terms, aliases
    term, lines = None, []
    for line in GLOSSARY_PATH.read_text(encoding="utf-8").splitlines() + ["## "]:
        if line.startswith("## "):
            if term:
                terms[term] = " ".join(x.strip() for x in lines if x.strip())
            term, lines = line[3:].strip(), []
        elif term is not None and line.startswith("Also:"):
            for a in line[5:].strip().rstrip(".").split(","):
                if a.strip():
                    aliases[a.strip().lower()] = term
        elif term is not None:
            lines.append(line)
    return terms, aliases


def glossary() -> Dict[str, str]:
    """term -> definition (one paragraph), read from the glossary shipped in the package
    (``atrlib/resources/glossary.md``; {} when absent)."""
    return _read_glossary()[0]


def glossary_aliases() -> Dict[str, str]:
    """alias (lower case) -> its entry's term: an entry's ``Also: R@1, R@10, hit rate`` line."""
    return _read_glossary()[1]


def _lookup(term: str) -> Optional[str]:
    g = glossary()
    for k in g:
        if k.lower() == term.lower():
            return k
    return glossary_aliases().get(term.lower())


def term(word: str, text: Optional[str] = None) -> str:
    """Markdown link from ``text`` (default ``word``) to the glossary entry ``word``; plain
    text when the glossary has no such entry."""
    key = _lookup(word)
    shown = text or word
    return f"[{shown}](#{anchor(key)})" if key else shown


def terms_section(words: Iterable[str]) -> str:
    """The glossary entries for ``words`` (unknown ones left out), each with the anchor
    :func:`term` links to, and a pointer to the whole glossary."""
    parts = []
    for w in dict.fromkeys(words):
        key = _lookup(w)
        if key:
            parts.append(f'<a id="{anchor(key)}"></a>**{key}** — {glossary()[key]}')
    parts.append("All terms: the run folder's glossary page (`glossary.html`, from `atrlib/resources/glossary.md`).")
    return "\n\n".join(parts)


# ----------------------------------------------------------------------------- numbers
def pct(x: float, digits: int = 1) -> str:
    """0.135 -> ``'13.5 %'``."""
    return f"{100 * float(x):.{digits}f} %"


def num(x: float, digits: int = 3) -> str:
    return f"{float(x):.{digits}f}"


def interval(low: float, high: float, as_pct: bool = False, method: str = "jackknife") -> str:
    f = pct if as_pct else num
    return f"95 % CI {f(low)}–{f(high)}, {method}"


def p_text(p: Optional[float]) -> str:
    """``'p = 0.034, significant'`` / ``'p = 0.41, not significant'`` (at 0.05)."""
    if p is None or p != p:
        return "no test"
    shown = format_number(p, p_value=True)
    return f"p {shown if shown.startswith('<') else '= ' + shown}, {'significant' if p < ALPHA else 'not significant'}"


def format_number(v, digits: int = 3, p_value: bool = False) -> str:
    """One rule for a number in a table or a sentence: ``digits`` decimals, '—' when missing
    (None or NaN), and a p-value below 0.001 as '< 0.001' (never '0.000')."""
    if v is None or (isinstance(v, float) and v != v):
        return "—"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if p_value and v < 0.001:
        return "< 0.001"
    return str(v) if isinstance(v, int) else f"{v:.{digits}f}"



def sentences(lines: Sequence[str]) -> str:
    """A bulleted Markdown list (what every "What we learned" section is)."""
    return "\n".join(f"- {s}" for s in lines if s)


# ----------------------------------------------------------------------------- per stage
def learned_data(m: Mapping[str, Any], split: str) -> List[str]:
    """From 01's metrics: size, captions, vocabulary, leakage."""
    out = [f"The {split} split has {m['clips']} clips and {m['captions']} captions "
           f"({m['captions_per_clip']:.1f} per clip), {m['hours'] * 60:.1f} minutes of audio "
           f"({m['duration_min_s']:.1f}–{m['duration_max_s']:.1f} s per clip).",
           f"The captions use {m['vocabulary']} distinct words once stop words are removed; "
           f"{m.get('duplicate_captions', 0)} caption(s) occur for more than one clip."]
    audited = m.get("audited_splits") or []
    if len(audited) > 1:
        leaks = m.get("leaked_groups", 0)
        out.append(f"{term('leakage', 'Leakage')} audit over {', '.join(audited)}: " +
                   ("no clip is shared between the splits." if not leaks else
                    f"**{leaks} group(s) of clips occur in more than one split** — test scores on them are not "
                    "held-out scores."))
    else:
        out.append("No leakage audit was run (fewer than two splits available).")
    if m.get("skipped_clips"):
        out.append(f"{m['skipped_clips']} clip(s) could not be read and were skipped.")
    return out


def _direction_sentences(d: Mapping[str, float], n_items: int, label: str, method: str = "jackknife") -> List[str]:
    out = [f"{label}: the right clip was ranked first for {pct(d['R@1'])} of captions "
           f"({interval(d['R@1_low'], d['R@1_high'], True, method)}; chance {pct(d['R@1_chance'])}) "
           f"and among the first ten for {pct(d['R@10'])} (chance {pct(d['R@10_chance'])}) of {n_items} clips.",
           f"{term('mAP@10')} is {num(d['mAP@10'])} ({interval(d['mAP@10_low'], d['mAP@10_high'], False, method)}) "
           f"against {num(d['mAP@10_chance'])} by {term('chance level', 'chance')} — "
           f"{d['mAP@10'] / max(d['mAP@10_chance'], 1e-12):.1f}× chance."]
    if d["mAP@10_low"] <= d["mAP@10_chance"]:
        out.append("The interval reaches down to chance level: on this many queries the system is not "
                   "distinguishable from a random ranking.")
    return out


def learned_evaluate(metrics: Mapping[str, Any], n_items: int, worst_rank: Optional[int] = None) -> List[str]:
    """From a :func:`atrlib.retrieval.summaries.table_to_metrics` dict (03, and 02's test split)."""
    method = metrics.get("ci_method", "jackknife")
    out = _direction_sentences(metrics["t2a"], n_items, f"Text to audio ({term('t2a')})", method)
    a = metrics["a2t"]
    hit = (f"a clip had one of its captions among the first ten for {pct(a['R@10'])} of clips "
           f"(chance {pct(a['R@10_chance'])}; {term('R@k', 'R@10')}, the field's hit rate); " if "R@10_chance" in a else "")
    out.append(f"Audio to text ({term('a2t')}): {hit}mAP@10 {num(a['mAP@10'])} "
               f"({interval(a['mAP@10_low'], a['mAP@10_high'], False, method)}), chance {num(a['mAP@10_chance'])}.")
    if worst_rank is not None:
        out.append(f"The hardest caption put its clip at rank {worst_rank} of {n_items}.")
    return out


def learned_training(history: Sequence[Mapping[str, float]], chosen_epoch: int) -> List[str]:
    """How training went: the epoch the validation chose, and whether it was still improving."""
    if not history:
        return ["No epoch was run."]
    best = max(history, key=lambda h: h["val_mAP@10"])
    out = [f"Training ran {len(history)} {term('epoch', 'epochs')}; validation mAP@10 went from "
           f"{num(history[0]['val_mAP@10'])} after the first to {num(best['val_mAP@10'])} at its best, and the "
           f"{term('best checkpoint')} (epoch {chosen_epoch}, chosen on the {term('validation split')}) is the one scored on test."]
    if chosen_epoch == len(history) and len(history) > 1:
        out.append("The best epoch was the last one: more epochs may still help.")
    return out


def seed_finding(check: Optional[Mapping[str, Any]], a: str, b: str, test: str = "paired test") -> str:
    """One sentence from :func:`atrlib.retrieval.summaries.seed_verdict`: "a beats b in every
    seed" only when the difference survives the seed; otherwise "not distinguishable from",
    with the mean difference, the seed spread and the p-value beside it."""
    if not check:
        return ""
    n, mean, sd = check["n"], check["mean"], check["sd"]
    spread = (f"{term('seed spread')} sd {num(sd)}, per seed {check['low']:+.3f} to {check['high']:+.3f}"
              if n > 1 else "one seed, so its spread is unknown")
    p = p_text(check.get("p_value"))
    a = "The " + a[4:] if a.startswith("the ") else a  # the sentence starts with it (names keep their case)
    if check["distinguishable"]:
        verb = "beats" if mean > 0 else "falls below"
        return (f"**{a} {verb} {b}** in every one of {n} seeds: {mean:+.3f} test mAP@10 on average "
                f"({spread}; {p}, {term(test)}).")
    why = ("one seed cannot show it" if n < 2 else
           "the seed spread covers the difference" if check["same_sign"] < n or abs(mean) <= sd else
           "the paired test is not significant")
    return (f"**{a} is not distinguishable from {b}**: {mean:+.3f} test mAP@10 over {n} seed{'s' if n != 1 else ''} "
            f"({spread}; {p}, {term(test)}) — {why}.")


def learned_seeds(table, chance: float, what: str = "The model") -> List[str]:
    """From :func:`atrlib.experiments.seeds.seed_table`: the seed spread of test mAP@10 and
    whether every seed's interval clears chance."""
    n = len(table)
    if n < 2:
        return ["One seed: how far the numbers move with the seed is unknown."]
    above = int((table["low"].astype(float) > chance).sum())
    vals = table["test mAP@10"].astype(float)
    out = [f"Over {n} seeds test mAP@10 is {num(vals.mean())} on average ({term('seed spread')} sd "
           f"{num(vals.std(ddof=1))}, from {num(vals.min())} to {num(vals.max())}); the epoch chosen on validation "
           f"ranges over {int(table['chosen epoch'].min())}–{int(table['chosen epoch'].max())}."]
    if above == n:
        out.append(f"{what} beats a random ranking whatever the seed: every seed's 95 % CI lies above chance "
                   f"({num(chance)}).")
    else:
        out.append(f"In {n - above} of {n} seeds the 95 % CI reaches down to chance ({num(chance)}): **not "
                   "distinguishable from a random ranking** in those seeds.")
    return out


def learned_ablation(table, baseline: str, chosen: str, seed_check: Optional[Mapping[str, Any]] = None) -> List[str]:
    """From :func:`atrlib.experiments.loss_ablation.summarise`'s table, the loss chosen on
    validation and :func:`atrlib.experiments.loss_ablation.seed_check` (the comparison with the
    baseline stated over seeds)."""
    r = table.loc[chosen]
    out = [f"Chosen on the {term('validation split')}: **{chosen}** (validation mAP@10 {num(r['val_mAP@10'])}). "
           f"On test it scores {num(r['mAP@10'])} ({interval(r['low'], r['high'])})."]
    if seed_check:
        out.append(seed_finding(seed_check, chosen, baseline, "permutation test"))
    elif chosen != baseline and "p_value" in table and r.get("p_value") == r.get("p_value"):
        out.append(f"Against {baseline} on test: {r['diff_vs_baseline']:+.3f} ({p_text(r['p_value'])}, "
                   f"{term('permutation test')}).")
    test_best = table["mAP@10"].idxmax()
    if test_best != chosen:
        out.append(f"On test, {test_best} happens to score highest ({num(table.loc[test_best, 'mAP@10'])}); "
                   "a choice made on test would be optimistic, so it is reported, not chosen.")
    if "p_value" in table:
        worse = [l for l, x in table.iterrows() if x.get("p_value") == x.get("p_value") and x["p_value"] < ALPHA
                 and x["diff_vs_baseline"] < 0]
        better = [l for l, x in table.iterrows() if x.get("p_value") == x.get("p_value") and x["p_value"] < ALPHA
                  and x["diff_vs_baseline"] > 0]
        same = [l for l, x in table.iterrows() if x.get("p_value") == x.get("p_value") and x["p_value"] >= ALPHA]
        if better:
            out.append(f"Significantly better than {baseline}: {', '.join(better)}.")
        if worse:
            out.append(f"Significantly worse than {baseline}: {', '.join(worse)}.")
        if same:
            out.append(f"Not significantly different from {baseline} (p ≥ {ALPHA}): {', '.join(same)}.")
    seeds = int(table["seeds"].max()) if "seeds" in table else 1
    if seeds < 2:
        out.append("One seed per loss: the spread between seeds is unknown.")
    return out


def learned_objectives(table) -> List[str]:
    """From :func:`atrlib.experiments.objective_ablation.objectives_ablation`'s table: the system chosen
    on validation, what the cross-modal terms did, and what re-ranking did (head alone vs fused
    with a weight chosen on validation), with paired tests and the cost."""
    chosen = table["val_mAP@10"].idxmax()
    r = table.loc[chosen]
    out = [f"Chosen on the {term('validation split')}: **{chosen}** (validation mAP@10 {num(r['val_mAP@10'])}); "
           f"on test {num(r['mAP@10'])} ({interval(r['low'], r['high'])})."]
    plain = [n for n, x in table.iterrows() if not x["rerank_k"]]
    for n in plain[1:]:
        x = table.loc[n]
        if x.get("p_vs_baseline") == x.get("p_vs_baseline"):
            out.append(f"Adding the cross-modal terms ({x['loss']}) changes test mAP@10 by {x['diff_vs_baseline']:+.3f} "
                       f"against {plain[0].split(' | ')[0]} ({p_text(x['p_vs_baseline'])}).")
    for n, x in table.iterrows():
        if not x["rerank_k"] or x.get("p_vs_no_rerank") != x.get("p_vs_no_rerank"):
            continue
        how = ("the matching head alone orders" if x["rerank_weight"] == "head" else
               f"similarity + {x['rerank_weight']} × match probability (weight chosen on validation) orders")
        verdict = "helps" if x["p_vs_no_rerank"] < ALPHA and x["diff_vs_no_rerank"] > 0 else \
            "hurts" if x["p_vs_no_rerank"] < ALPHA else "makes no significant difference"
        out.append(f"Re-ranking the top {int(x['rerank_k'])} ({how} them) {verdict}: {x['diff_vs_no_rerank']:+.3f} test "
                   f"mAP@10 ({p_text(x['p_vs_no_rerank'])}), {1000 * x['seconds_per_query']:.0f} ms per query.")
    return out


def learned_ensemble(verdict: Mapping[str, Any]) -> List[str]:
    """From :func:`atrlib.experiments.ensembles.verdict`."""
    v = verdict
    out = [f"Chosen on the {term('validation split')}: **{v['method']}** (validation mAP@10 {num(v['val_mAP@10'])}); "
           f"the single system with the best validation score is {v['best_single']}."]
    if v["method"] == v["best_single_label"]:
        out.append(f"No ensemble beat it on validation, so the single system is the answer: test mAP@10 "
                   f"{num(v['test_mAP@10'])} ({interval(v['low'], v['high'])}).")
    else:
        out.append(f"On test it scores {num(v['test_mAP@10'])} ({interval(v['low'], v['high'])}), "
                   f"{v['diff']:+.3f} over {v['best_single']} ({p_text(v['p_value'])}, {term('paired bootstrap test')}).")
    if v.get("test_best") and v["test_best"] != v["method"]:
        out.append(f"On test, {v['test_best']} happens to score highest; it was not chosen because the choice is "
                   "made on validation only.")
    if v.get("size_k"):
        out.append(f"The equal-weight ensemble of the n best systems peaks on validation at n = {v['size_k']} "
                   f"(test mAP@10 {num(v['size_test'])}).")
    if v.get("kfold"):
        k = v["kfold"]
        out.append(f"The {k['folds']}-fold ensemble scores {num(k['ensemble_mAP@10']['value'])} on test against its "
                   f"best fold's {num(k['best_fold_mAP@10']['value'])} ({p_text(k['p_value'])}).")
    return out
