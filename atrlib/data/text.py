"""Caption text: normalisation as the DCASE seed systems do it (text towers call it before
tokenising when asked to), and word counts for the data report."""
from __future__ import annotations

import re
import string
from typing import List, Sequence

_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")
_SPACES = re.compile(r"\s+")


def normalize_caption(text: str, lower: bool = True, strip_punct: bool = True) -> str:
    """Lower-case, remove punctuation, collapse whitespace (the seed systems' preprocessing).

    >>> normalize_caption("A dog barks, then  a CAR passes!")
    'a dog barks then a car passes'
    """
    if lower:
        text = text.lower()
    if strip_punct:
        text = _PUNCT.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def word_counts(captions: Sequence[str], stopwords: Sequence[str] = ()) -> List[tuple]:
    """(word, count) pairs, most frequent first, after normalisation."""
    from collections import Counter

    stop = set(stopwords)
    c = Counter(w for t in captions for w in normalize_caption(t).split() if w not in stop)
    return c.most_common()


STOPWORDS = frozenset("a an the and or of in on at to is are was were be being been it its with by as from "
                      "for into while then that this there some someone something".split())
