"""Rankings a person can check by ear, and the search box of notebook 03.

A ranking is shown as an HTML table titled with its query: rank, clip, score, the retrieved
clip's own captions and an audio player, the correct clip marked. Players embed the audio
(base64 MP3, at the file's true level, each clip once per page), so a saved report plays
offline.

:func:`search_box` shows a text box, a *Search* button and an "or press Enter" hint; each
search replaces the previous ranking (one display, updated in place), so the page never
grows a stack of old results. In a batch report (no live kernel) the ranking for the
notebook's ``query`` parameter is what the reader sees.
"""
from __future__ import annotations

import base64
import html
import io
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from atrlib.retrieval.summaries import ranking_table, worst_queries


PLAYER_FORMATS = (("MP3", "MPEG_LAYER_III", "audio/mpeg"), ("FLAC", "PCM_16", "audio/flac"))


def encode_player_audio(wave: np.ndarray, sr: int) -> Tuple[bytes, str]:
    """(bytes, MIME type) of ``wave`` for an embedded player: MP3 (plays in every browser, a
    quarter to a half of FLAC's size; needs libsndfile ≥ 1.1), else lossless FLAC. Samples are
    clipped to [-1, 1], never normalised: the player plays the file's true level."""
    import soundfile as sf

    wave = np.clip(np.asarray(wave, dtype=np.float32), -1, 1)
    for fmt, subtype, mime in PLAYER_FORMATS:
        if sf.check_format(fmt, subtype):
            buf = io.BytesIO()
            try:
                sf.write(buf, wave, sr, format=fmt, subtype=subtype)
            except (sf.LibsndfileError, RuntimeError, ValueError):  # an encoder this libsndfile lacks
                continue
            return buf.getvalue(), mime
    raise RuntimeError("this libsndfile can write neither MP3 nor FLAC; install soundfile >= 0.12")


def audio_html(path: str, seconds: float = 10.0, sample_rate: int = 16000, element_id: str = "") -> str:
    """An ``<audio controls>`` element holding the first ``seconds`` of ``path`` (mono,
    ``sample_rate``) as base64 data (:func:`encode_player_audio`): plays without the file or a
    server, at the file's true level."""
    from atrlib.audio.io import load_audio

    wave, sr = load_audio(path, sample_rate=sample_rate, duration=seconds)
    data, mime = encode_player_audio(wave, sr)
    ident = f' id="{html.escape(element_id)}"' if element_id else ""
    return (f'<audio{ident} controls preload="none" style="height:2rem" '
            f'src="data:{mime};base64,{base64.b64encode(data).decode("ascii")}"></audio>')


def player_id(clip: str) -> str:
    return "play-" + "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(clip))


def ranking_html(table: pd.DataFrame, audio_paths: Mapping[str, str], title: str, note: str = "",
                 players: bool = True, seen: Optional[set] = None) -> str:
    """``table`` from :func:`atrlib.retrieval.summaries.ranking_table` as an HTML block: a heading
    with the query, then one row per retrieved clip with its captions and a player; the
    correct clip's row is marked ✓ and shaded. ``seen``: clips that already have a player on
    the page (updated here) get a link to it instead of a second copy of their audio."""
    esc = html.escape
    rows = []
    for _, r in table.iterrows():
        caps = "".join(f"<li>{esc(c)}</li>" for c in r["captions"]) or "<li>(no captions)</li>"
        mark = "✓ correct" if r["correct"] else ""
        style = ' style="background:#dafbe1"' if r["correct"] else ""
        player = ""
        if players and r["clip"] in audio_paths:
            if seen is not None and r["clip"] in seen:
                player = f'<a href="#{player_id(r["clip"])}">▶ player above</a>'
            else:
                player = audio_html(audio_paths[r["clip"]], element_id=player_id(r["clip"]))
                if seen is not None:
                    seen.add(r["clip"])
        rows.append(f"<tr{style}><td>{int(r['rank'])}</td><td><code>{esc(str(r['clip']))}</code><br>"
                    f"<strong>{mark}</strong></td><td>{r['score']:.3f}</td>"
                    f'<td style="text-align:left"><ul style="margin:0;padding-left:1.1rem;text-align:left">{caps}</ul></td>'
                    f"<td>{player}</td></tr>")
    head = ('<tr style="text-align:left"><th>rank</th><th>clip</th><th>score</th>'
            '<th style="text-align:left">the clip\'s captions</th><th>listen</th></tr>')
    note_html = f'<p style="margin:.2rem 0;color:#59636e">{esc(note)}</p>' if note else ""
    return (f'<div class="atrlib-ranking"><h4 style="margin:.8rem 0 .2rem">“{esc(title)}”</h4>{note_html}'
            f'<table style="border-collapse:collapse">{head}{"".join(rows)}</table></div>')


def dataset_lookup(ds) -> tuple:
    """(clip_id -> captions, clip_id -> audio path) of a dataset."""
    return ({it["clip_id"]: list(it["captions"]) for it in ds}, {it["clip_id"]: it["audio_path"] for it in ds})


def rank_text(retriever, ds, text: str, top: int = 5, true: Sequence[str] = ()) -> pd.DataFrame:
    """The ``top`` clips of ``ds`` for ``text`` (:func:`atrlib.retrieval.summaries.ranking_table`)."""
    scores = retriever.similarity([text], ds.audio_paths, progress=False)[0]          # (clips,)
    captions, _ = dataset_lookup(ds)
    return ranking_table(ds.clip_ids, scores, captions, true=true, top=top)


def worst_rankings_html(sm, ds, n: int = 5, top: int = 5, players: bool = True,
                        seen: Optional[set] = None) -> List[str]:
    """The ``n`` worst distinct captions of a scored split, each as a ranking block whose
    note says where the correct clip landed (it is added below the top rows when missed).
    Each clip's audio is embedded once (``seen``, shared with later blocks and the search box)."""
    seen = set() if seen is None else seen
    captions_flat = ds.captions_flat()
    captions, paths = dataset_lookup(ds)
    blocks = []
    for w in worst_queries(sm, n=n, top=top, texts=captions_flat):
        q = w["query_index"]
        table = ranking_table(sm.item_ids, sm.sim[q], captions, true=w["true"], top=top)
        if not table["correct"].any():  # show the clip it should have found, at its real rank
            i = sm.item_ids.index(w["true"][0])
            table = pd.concat([table, pd.DataFrame([{"rank": w["rank"], "clip": w["true"][0],
                                                     "score": float(sm.sim[q, i]), "correct": True,
                                                     "captions": captions.get(w["true"][0], [])}])],
                              ignore_index=True)
        blocks.append(ranking_html(table, paths, w["text"], note=f"correct clip ranked {w['rank']} of {len(sm.item_ids)}",
                                   players=players, seen=seen))
    return blocks


def search_box(retriever, ds, query: str, top: int = 5, seen: Optional[set] = None):
    """Show the ranking for ``query`` and, when ipywidgets is there, a box to search again:
    results replace the previous ones and are titled with their query. Returns the
    ranking table of ``query``."""
    from IPython.display import HTML, display

    captions, paths = dataset_lookup(ds)

    def render(text: str):
        table = rank_text(retriever, ds, text, top=top)
        return table, HTML(ranking_html(table, paths, text, note=f"top {top} of {len(ds)} clips",
                                         seen=None if seen is None else set(seen)))  # its own players: per render

    try:
        import ipywidgets as widgets
    except ImportError:  # a plain ranking without the box
        widgets = None
    if widgets is not None:
        box = widgets.Text(value=query, placeholder="type a sentence", description="query",
                           continuous_update=False, layout=widgets.Layout(width="60%"))  # value changes on Enter
        button = widgets.Button(description="Search", button_style="primary", icon="search")
        hint = widgets.Label("or press Enter")
        display(widgets.HBox([box, button, hint]))
    table, shown = render(query)
    handle = display(shown, display_id=True)
    if widgets is not None:
        def on_search(_=None):
            _, new = render(box.value)
            handle.update(new)

        button.on_click(on_search)
        box.observe(on_search, names="value")
    return table
