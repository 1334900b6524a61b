"""The embedded dataset's captions: a small grammar over a clip's attributes.

Caption grammar
---------------
Five captions per clip. Each caption mentions every event (a noun from the kind's
synonyms, some of which imply an attribute: "whistle" = high tone, "beep" = short tone,
"hiss" = white noise, "whoosh" = pink noise, "rattle" = fast clicks) and a random subset of
its attributes as adjectives or phrases ("a shrill tone", "a deep hum", "rapid clicks", "beeps
at a slow pace"); every attribute of every event is forced into at least one caption, so
the five together describe the clip but each one leaves different things out. Events are
joined in time order by a connector for their relation (then: ", then", "followed by",
". After that,", "B after A", "B, preceded by A"; while: "while B joins in", "B over A",
"B as A continues", "at the same time", "meanwhile"), wrapped in a frame ("There is X",
"You can hear X", "X can be heard", ...) and, in some captions, a background phrase ("in the
rain", "over a background hum", "against a silent background"). The five captions of a
clip are distinct strings.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np

from atrlib.data.synth_scenes import EVENT_ATTRS, _pick

N_CAPTIONS = 5


# ----------------------------------------------------------------------------- captions
_ADJ = {
    "pitch": {"low": ["low-pitched", "low", "deep", "bass"],
              "mid": ["mid-pitched", "medium-pitched", "mid-range", "moderately pitched"],
              "high": ["high-pitched", "high", "shrill", "piercing"]},
    "loudness": {"quiet": ["quiet", "faint", "soft", "gentle"],
                 "loud": ["loud", "strong", "powerful", "intense"]},
    "length": {"short": ["short", "brief"], "long": ["long", "lengthy", "prolonged", "sustained"]},
    "tempo": {"slow": ["slow", "unhurried", "leisurely"], "fast": ["fast", "rapid", "quick"]},
    "direction": {"up": ["rising", "upward", "ascending"], "down": ["falling", "downward", "descending"]},
}
_TEMPO_POST = {"slow": ["at a slow tempo", "at a slow pace", "spaced far apart"],
               "fast": ["at a fast tempo", "at a rapid pace", "in quick succession"]}
_ADJ_ORDER = ("loudness", "length", "tempo", "direction", "pitch")
# (noun, number: sg | pl | mass, attributes the noun itself expresses)
_NOUNS: Dict[str, List[Tuple[str, str, dict]]] = {
    "tone": [("tone", "sg", {}), ("note", "sg", {}), ("steady tone", "sg", {}),
             ("whistle", "sg", {"pitch": "high"}), ("beep", "sg", {"length": "short"}),
             ("single beep", "sg", {"length": "short"})],
    "sweep": [("sweep", "sg", {}), ("chirp", "sg", {}), ("glide", "sg", {}), ("frequency sweep", "sg", {}),
              ("tone that rises", "sg", {"direction": "up"}), ("tone that falls", "sg", {"direction": "down"}),
              ("siren-like rise", "sg", {"direction": "up"})],
    "noise": [("burst of noise", "sg", {}), ("noise burst", "sg", {}), ("blast of noise", "sg", {}),
              ("hiss", "sg", {"color": "white"}), ("burst of white noise", "sg", {"color": "white"}),
              ("hissing noise", "mass", {"color": "white"}), ("burst of static", "sg", {"color": "white"}),
              ("whoosh", "sg", {"color": "pink"}), ("burst of pink noise", "sg", {"color": "pink"}),
              ("rushing noise", "mass", {"color": "pink"}), ("muffled rumble", "sg", {"color": "pink"})],
    "clicks": [("clicks", "pl", {}), ("clicking", "mass", {}), ("click train", "sg", {}),
               ("ticking", "mass", {}), ("series of clicks", "sg", {}),
               ("rattle", "sg", {"tempo": "fast"}), ("clock-like ticking", "mass", {"tempo": "slow"})],
    "hum": [("hum", "sg", {}), ("buzz", "sg", {}), ("electrical hum", "sg", {}), ("mains hum", "sg", {}),
            ("low hum", "sg", {"pitch": "low"}), ("deep buzz", "sg", {"pitch": "low"})],
    "beeps": [("beeps", "pl", {}), ("beeping", "mass", {}), ("series of beeps", "sg", {}), ("pips", "pl", {}),
              ("repeated beeps", "pl", {}), ("pulsing beeps", "pl", {}),
              ("alarm-like beeping", "mass", {"tempo": "fast"})],
}
# connectors in time order: L + link.format(R=...); {Rs} is the verb ending for R
_LINK = {"then": [", then {R}", " followed by {R}", ". After that, {R}", ", and after that {R}",
                  "; then {R}", ", and then {R}"],
         "while": [" while {R} join{Rs} in", " with {R} at the same time", ", and meanwhile {R}",
                   ", overlapped by {R}", " as {R} start{Rs}"]}
# two-event forms that reorder the words
_PAIR = {"then": ["First {A}, then {B}", "{B} after {A}", "{B}, preceded by {A}"],
         "while": ["{B} over {A}", "{B} as {A} continue{As}", "{A} and {B} at the same time"]}
_FRAMES = ["{X}", "{X}", "{X}", "There {is} {X}", "You can hear {X}", "We hear {X}",
           "A recording of {X}", "{X} can be heard"]
# background phrases: (suffix, prefix, sentence); none uses a pitch, loudness, tempo,
# direction or order word, and each names only its own background
_BG = {
    "silence": ([" in silence", " against a silent background", " with nothing in the background",
                 " in an otherwise silent recording"],
                ["In silence, ", "Against a silent background, "],
                ["The background is silent.", "Otherwise there is silence."]),
    "noise": ([" over steady background noise", " with a constant noise floor", " against background static",
               " with some background noise"],
              ["Over steady background noise, ", "With static in the background, "],
              ["Background noise runs throughout.", "There is a constant noise floor."]),
    "rain": ([" in the rain", " over pouring rain", " with rain pattering in the background",
              " against the sound of rain"],
             ["In the rain, ", "Over steady rain, ", "With rain pouring down, "],
             ["Rain patters in the background.", "It is raining throughout."]),
    "hum": ([" over a background hum", " with an electrical hum behind it", " against a steady mains hum"],
            ["Over a steady background hum, ", "With a mains hum behind it, "],
            ["A mains hum runs in the background.", "An electrical hum is present throughout."]),
}


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _event_phrase(e: dict, include: set, rng: np.random.Generator) -> Tuple[str, str]:
    """A noun phrase for event ``e`` mentioning (at least) the attributes in ``include``."""
    nouns = [nn for nn in _NOUNS[e["kind"]] if all(e.get(a) == v for a, v in nn[2].items())]
    if "color" in include:  # colour has no adjective: only a noun can say it
        nouns = [nn for nn in nouns if "color" in nn[2]]
    noun, number, fixed = _pick(rng, nouns)
    rest = [a for a in _ADJ_ORDER if a in include and a not in fixed]
    post = ""
    if "tempo" in rest and rng.random() < 0.4:
        rest.remove("tempo")
        posts = _TEMPO_POST[e["tempo"]] if number == "pl" else _TEMPO_POST[e["tempo"]][:2]  # "in quick
        post = " " + _pick(rng, posts)  # succession" / "spaced far apart" want a plural
    words = [_pick(rng, _ADJ[a][e[a]]) for a in rest]
    text = " ".join(words + [noun]) + post
    if number == "sg":
        text = _article(text)
    elif number == "pl" and rng.random() < 0.25:
        text = "some " + text
    return text, number


def _tidy(text: str) -> str:
    parts = [p.strip() for p in text.split(". ")]
    text = ". ".join(p[:1].upper() + p[1:] for p in parts if p)
    return text if text.endswith(".") else text + "."


def _one_caption(spec: dict, include: List[set], background: bool, rng: np.random.Generator) -> str:
    phrases = [_event_phrase(e, inc, rng) for e, inc in zip(spec["events"], include)]
    rels = spec["relations"]
    verb = {"pl": ""}
    if len(phrases) == 2 and rng.random() < 0.35:
        (a, na), (b, nb) = phrases
        body = _pick(rng, _PAIR[rels[0]]).format(A=a, B=b, As=verb.get(na, "s"))
    else:
        body, used = phrases[0][0], set()
        for rel, (r, nr) in zip(rels, phrases[1:]):
            link = _pick(rng, [x for x in _LINK[rel] if x not in used])
            used.add(link)
            body += link.format(R=r, Rs=verb.get(nr, "s"))
    if not body.startswith("First"):
        has_verb = ". " in body or any(w in body for w in (" join", " start", " continue"))
        frames = [f for f in _FRAMES if not (has_verb and f.endswith("heard")) and not (background and f.startswith("A rec"))]
        frame = _pick(rng, frames)
        if frame[0] != "{":
            body = body[0].lower() + body[1:]
        body = frame.format(X=body, **{"is": "are" if phrases[0][1] == "pl" else "is"})
    if background:
        suffixes, prefixes, sentences = _BG[spec["background"]["kind"]]
        where = rng.random()
        if where < 0.5:
            body = body.rstrip(".") + _pick(rng, suffixes)
        elif where < 0.75:
            body = _pick(rng, prefixes) + body[0].lower() + body[1:]
        else:
            body = _tidy(body) + " " + _pick(rng, sentences)
    return _tidy(body)


def make_captions(spec: dict, rng: np.random.Generator, n: int = N_CAPTIONS) -> List[str]:
    """``n`` distinct captions for a realised clip spec (see the module docstring)."""
    events = spec["events"]
    # every attribute of every event, and the background, is forced into some caption
    forced = {(i, a): int(rng.integers(n)) for i, e in enumerate(events) for a in EVENT_ATTRS[e["kind"]]}
    bg_kind = spec["background"]["kind"]
    bg_forced = set(rng.choice(n, size=1 if bg_kind == "silence" else 2, replace=False).tolist())
    p_bg = 0.1 if bg_kind == "silence" else 0.3
    captions: List[str] = []
    for c in range(n):
        include = [{a for a in EVENT_ATTRS[e["kind"]]
                    if forced[(i, a)] == c or rng.random() < (0.5 if a in ("direction", "color") else 0.35)}
                   for i, e in enumerate(events)]
        with_bg = c in bg_forced or rng.random() < p_bg
        for attempt in range(40):
            cap = _one_caption(spec, include, with_bg, rng)
            if cap not in captions:
                break
            i = int(rng.integers(len(events)))  # a repeat: say one more thing and retry
            include[i].add(_pick(rng, EVENT_ATTRS[events[i]["kind"]]))
        captions.append(cap)
    return captions


def describe_clip(spec: dict) -> str:
    """A compact canonical description, e.g. ``tone(high,loud,long) then beeps(low,fast,quiet) | rain``."""
    parts = []
    for i, e in enumerate(spec["events"]):
        attrs = ",".join(str(e[a]) for a in EVENT_ATTRS[e["kind"]])
        parts.append((f" {spec['relations'][i - 1]} " if i else "") + f"{e['kind']}({attrs})")
    return "".join(parts) + f" | {spec['background']['kind']}"


