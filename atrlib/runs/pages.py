"""The pages of a run folder as one site: ``glossary.html`` (rendered from the glossary shipped
in the package) and a header on every stage page — previous stage · index · glossary · next
stage — so a reader moves between pages and looks a word up without leaving the run folder.

:func:`link_pages` is called with the index (:func:`atrlib.runs.reporting.write_index`) after
every stage; it rewrites the glossary page and each stage page's header in place (the header
sits between two marker comments, so rewriting it is idempotent).
"""
from __future__ import annotations

import html
import os
import re
from pathlib import Path
from typing import Optional, Sequence, Tuple

from atrlib.files import write_text_atomic
from atrlib.runs.report_text import anchor, glossary, glossary_aliases

GLOSSARY_PAGE = "glossary.html"
NAV_BEGIN, NAV_END = "<!-- atrlib-nav -->", "<!-- /atrlib-nav -->"
_NAV = re.compile(re.escape(NAV_BEGIN) + r".*?" + re.escape(NAV_END), re.S)
_BODY = re.compile(r"<body\b[^>]*>", re.I)
_CSS = ("nav.atrlib{font:14px system-ui,sans-serif;padding:6px 12px;background:#f4f4f4;"
        "border-bottom:1px solid #ddd}nav.atrlib a{margin-right:1.2em}")


def glossary_html() -> str:
    """Every glossary entry as a page, each under a heading whose id is the anchor the stage
    pages link to (``#term-map10``)."""
    import mistune

    also: dict = {}
    for alias, t in glossary_aliases().items():
        also.setdefault(t, []).append(alias)
    entries = "\n".join(f'<h2 id="{anchor(t)}">{html.escape(t)}</h2>\n'
                        + (f'<p class="also">also: {html.escape(", ".join(also[t]))}</p>\n' if t in also else "")
                        + mistune.html(d) for t, d in glossary().items())
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>atrlib glossary</title>"
            "<style>body{font:15px/1.5 system-ui,sans-serif;max-width:46em;margin:2em auto;padding:0 1em}"
            "h2{font-size:1.1em;margin-top:1.6em}</style></head><body>\n"
            '<p><a href="index.html">← run index</a></p>\n<h1>Glossary</h1>\n'
            "<p>Every term the run's pages use, as atrlib computes it.</p>\n" + entries + "\n</body></html>\n")


def nav_html(prefix: str, prev: Optional[Tuple[str, str]], nxt: Optional[Tuple[str, str]]) -> str:
    """The header: ``prev`` / ``nxt`` are (stage name, href from the stage page) or None;
    ``prefix`` leads from the stage page back to the run folder (``"../"``)."""
    parts = [f'<a href="{html.escape(prev[1])}">← {html.escape(prev[0])}</a>' if prev else "",
             f'<a href="{prefix}index.html">run index</a>', f'<a href="{prefix}{GLOSSARY_PAGE}">glossary</a>',
             f'<a href="{html.escape(nxt[1])}">{html.escape(nxt[0])} →</a>' if nxt else ""]
    return f'{NAV_BEGIN}<style>{_CSS}</style><nav class="atrlib">{"".join(p for p in parts if p)}</nav>{NAV_END}'


def set_nav(page: Path, nav: str) -> None:
    """Put ``nav`` at the top of ``page``'s body, replacing an earlier header."""
    text = page.read_text(encoding="utf-8")
    if _NAV.search(text):
        new = _NAV.sub(lambda _: nav, text, count=1)
    else:
        m = _BODY.search(text)
        new = text[:m.end()] + nav + text[m.end():] if m else nav + text
    if new != text:
        write_text_atomic(page, new)


def link_pages(run_dir: Path, stages: Sequence[Tuple[str, Optional[Path]]]) -> None:
    """Write ``glossary.html`` into ``run_dir`` and the header into every stage page that exists
    (``stages``: (name, its HTML path or None) in running order)."""
    run_dir = Path(run_dir)
    write_text_atomic(run_dir / GLOSSARY_PAGE, glossary_html())
    pages = [(name, Path(p)) for name, p in stages if p is not None and Path(p).is_file()]
    for i, (name, page) in enumerate(pages):
        def rel(j):
            return (pages[j][0], os.path.relpath(pages[j][1], page.parent)) if 0 <= j < len(pages) else None

        prefix = os.path.relpath(run_dir, page.parent).replace(os.sep, "/") + "/"
        set_nav(page, nav_html("" if prefix == "./" else prefix, rel(i - 1), rel(i + 1)))
