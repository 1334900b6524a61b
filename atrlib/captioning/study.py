"""What notebook 07 shows about captions, one call per view: the captions beside their
references (best and worst by CIDEr-D), the words the captioner confuses, and the two
baselines every captioner must beat — the caption of the most similar training clip and one
constant caption for every clip.

Pure functions over captions and arrays; the page's HTML players come from the caller
(``player(path) -> html``), so nothing here reads audio.
"""
from __future__ import annotations

import difflib
import html
import re
from collections import Counter
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

STOP = frozenset("a an the of and or in on at to is are with by from as it its then while into over under "
                 "there this that be being been for some can heard".split())


def words(sentence: str) -> List[str]:
    return re.findall(r"[a-z0-9']+", sentence.lower())


# ----------------------------------------------------------------------------- side by side
def side_by_side(file_names: Sequence[str], generated: Sequence[str], references: Sequence[Sequence[str]],
                 per_clip: Optional[pd.DataFrame] = None, metric: str = "cider_d") -> pd.DataFrame:
    """One row per clip: file, generated caption, its references, and ``metric`` per clip."""
    df = pd.DataFrame({"file": list(file_names), "generated": list(generated),
                       "references": [" · ".join(r) for r in references]})
    if per_clip is not None and metric in per_clip:
        df[metric] = per_clip[metric].to_numpy()
    return df


def best_and_worst(per_clip: pd.DataFrame, metric: str = "cider_d", k: int = 3) -> Dict[str, List[int]]:
    """Row positions of the ``k`` best and ``k`` worst clips by ``metric`` (ties: file order)."""
    v = per_clip[metric].to_numpy()
    order = np.argsort(-v, kind="stable")
    return {"best": order[:k].tolist(), "worst": order[::-1][:k].tolist()}  # worst: the lowest first


def clips_html(rows: Sequence[int], table: pd.DataFrame, paths: Sequence[str], title: str,
               player: Optional[Callable[[str], str]] = None, metric: str = "cider_d") -> str:
    """An HTML block: per clip its player, the generated caption and the references."""
    out = [f"<h4>{html.escape(title)}</h4>", '<table class="atrlib-captions">',
           "<tr><th>clip</th><th>generated</th><th>references</th><th>" + html.escape(metric) + "</th></tr>"]
    for i in rows:
        r = table.iloc[int(i)]
        play = player(paths[int(i)]) if player is not None else ""
        refs = "<br>".join(html.escape(x) for x in str(r["references"]).split(" · "))
        score = f"{float(r[metric]):.3f}" if metric in r else ""
        out.append(f"<tr><td>{html.escape(str(r['file']))}<br>{play}</td><td>{html.escape(str(r['generated']))}"
                   f"</td><td>{refs}</td><td>{score}</td></tr>")
    return "\n".join(out + ["</table>"])


# ----------------------------------------------------------------------------- word confusions
def word_confusions(generated: Sequence[str], references: Sequence[Sequence[str]], top: int = 10
                    ) -> Dict[str, pd.DataFrame]:
    """Word-level differences between each caption and its closest reference (the one with
    the longest common word sequence): ``substituted`` (reference word -> generated word, from
    the aligned replacements), ``invented`` (generated content words in none of the clip's
    references) and ``missed`` (content words in at least half of the references but not in
    the caption); each with counts over clips, most frequent first."""
    subs: Counter = Counter()
    invented: Counter = Counter()
    missed: Counter = Counter()
    for gen, refs in zip(generated, references):
        g = words(gen)
        rws = [words(r) for r in refs]
        if not rws:
            continue
        best = max(rws, key=lambda r: sum(b.size for b in difflib.SequenceMatcher(None, r, g, autojunk=False)
                                          .get_matching_blocks()))
        for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, best, g, autojunk=False).get_opcodes():
            if op == "replace":
                for a, b in zip(best[i1:i2], g[j1:j2]):
                    if a not in STOP and b not in STOP:
                        subs[(a, b)] += 1
        ref_words = set().union(*map(set, rws))
        invented.update({w for w in g if w not in ref_words and w not in STOP})
        common = Counter(w for r in rws for w in set(r))
        missed.update({w for w, c in common.items() if c >= len(rws) / 2 and w not in g and w not in STOP})
    return {
        "substituted": pd.DataFrame([{"reference word": a, "generated instead": b, "clips": n}
                                     for (a, b), n in subs.most_common(top)],
                                    columns=["reference word", "generated instead", "clips"]),
        "invented": pd.DataFrame([{"word": w, "clips": n} for w, n in invented.most_common(top)],
                                 columns=["word", "clips"]),
        "missed": pd.DataFrame([{"word": w, "clips": n} for w, n in missed.most_common(top)], columns=["word", "clips"]),
    }


# ----------------------------------------------------------------------------- baselines
def consensus_caption(captions: Sequence[str]) -> str:
    """The caption of a clip that shares most words with the clip's other captions (mean
    Jaccard overlap; ties: the first)."""
    sets = [set(words(c)) for c in captions]
    if len(sets) == 1:
        return captions[0]
    score = [np.mean([len(a & b) / max(1, len(a | b)) for j, b in enumerate(sets) if j != i]) for i, a in enumerate(sets)]
    return captions[int(np.argmax(score))]


def nearest_neighbour_captions(train_emb: np.ndarray, test_emb: np.ndarray, train_captions: Sequence[Sequence[str]]
                               ) -> List[str]:
    """For each test clip, the consensus caption of the training clip whose audio embedding is
    most similar (cosine) — a captioner that only retrieves."""
    a = train_emb / np.maximum(np.linalg.norm(train_emb, axis=1, keepdims=True), 1e-12)
    b = test_emb / np.maximum(np.linalg.norm(test_emb, axis=1, keepdims=True), 1e-12)
    nn_idx = np.argmax(b @ a.T, axis=1)                                              # (test,)
    return [consensus_caption(train_captions[int(i)]) for i in nn_idx]


def most_common_caption(train_captions: Sequence[Sequence[str]]) -> str:
    """One caption for every clip: the most frequent training caption (after lower-casing and
    removing punctuation); when every caption is unique, the one whose words are the most
    common in the training captions on average."""
    flat = [c for cs in train_captions for c in cs]
    norm = Counter(" ".join(words(c)) for c in flat)
    text, n = norm.most_common(1)[0]
    if n > 1:
        return next(c for c in flat if " ".join(words(c)) == text)
    df = Counter(w for c in flat for w in set(words(c)))
    score = [np.mean([df[w] for w in words(c)]) if words(c) else 0.0 for c in flat]
    return flat[int(np.argmax(score))]


def _p(p) -> str:
    if p is None or p != p:
        return "no test"
    return ("p < 0.001" if p < 0.001 else f"p = {p:.3f}") + (", significant" if p < 0.05 else ", not significant")


def learned_lines(table, main: str, tests: Dict[str, Dict], bridge: Optional[Dict] = None,
                  metric: str = "CIDEr-D") -> List[str]:
    """07's "What we learned", from the numbers: the main captioner's ``metric`` with its CI
    against each baseline (paired bootstrap test on per-clip values), then the caption bridge."""
    r = table.loc[main]
    out = [f"The captioner reaches {metric} {r[metric]:.3f} (95 % CI {r[metric + ' low']:.3f}–"
           f"{r[metric + ' high']:.3f}) on the test clips."]
    for name, t in tests.items():
        better = "above" if t["diff"] > 0 else "below"
        out.append(f"Against the {name} ({table.loc[name, metric]:.3f}) it is {abs(t['diff']):.3f} {better} "
                   f"({_p(t['p_value'])}, [paired bootstrap test](#term-pairedbootstraptest) over clips).")
    if bridge:
        out.append(f"Ranking clips by their generated captions (the [caption bridge](#term-captionbridge)) gives "
                   f"test mAP@10 {bridge['alone']:.3f} against chance {bridge['chance']:.3f}; joined to the "
                   f"retrieval systems, the ensemble chosen on validation moves test mAP@10 by {bridge['diff']:+.3f} "
                   f"({_p(bridge['p_value'])}).")
    return out
