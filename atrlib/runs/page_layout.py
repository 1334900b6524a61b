"""A stage page that puts its result first: the layout of a stage's HTML report.

The executed notebook keeps its natural order (settings, work, figures, "What we learned" at
the end) and everything in it; its HTML page is laid out for a reader:

1. the title, then a **result box**: what the stage did (the notebook's opening paragraph),
   the key tables (outputs of the cells tagged ``result``, e.g. test metrics with CIs, chance
   and seed spread) and "What we learned" (the first output of the cell tagged ``learned``,
   moved here from the end);
2. then the sections with their figures and tables, each code cell folded behind a
   "show code" toggle (``<details>``: works offline, without scripts), and the parameter
   cells (the defaults and the values the batch runner injected) folded the same way.

:func:`result_first` does this on a notebook node; :func:`atrlib.runs.reporting.export_html`
calls it before nbconvert renders the page with inputs excluded.
"""
from __future__ import annotations

import copy
import html
from typing import List, Optional

RESULT_TAG, LEARNED_TAG = "result", "learned"
PARAMETER_TAGS = {"parameters": "show the notebook's default parameters",
                  "injected-parameters": "show the parameters this run was given"}
BOX_CSS = ("section.atrlib-result{border:2px solid #4c72b0;border-radius:6px;background:#f5f8fc;"
           "padding:.4em 1.2em 1em;margin:1em 0 2em}section.atrlib-result h2{margin-top:.4em}"
           "details.atrlib-code{margin:.3em 0 .6em;font-size:.85em}details.atrlib-code summary"
           "{cursor:pointer;color:#4c72b0}details.atrlib-code pre{background:#f7f7f7;padding:.6em;"
           "overflow-x:auto}")


def _tags(cell) -> List[str]:
    return list((cell.get("metadata") or {}).get("tags") or [])


def _markdown_html(text: str) -> str:
    import mistune

    return mistune.html(text)


def _output_html(output) -> Optional[str]:
    """The HTML of one output for the box: HTML as is, Markdown rendered, images inline."""
    data = output.get("data") or {}
    if "text/html" in data:
        return "".join(data["text/html"]) if isinstance(data["text/html"], list) else data["text/html"]
    if "text/markdown" in data:
        text = data["text/markdown"]
        return _markdown_html("".join(text) if isinstance(text, list) else text)
    if "image/png" in data:
        return f'<img src="data:image/png;base64,{data["image/png"]}" style="max-width:100%">'
    return None


def code_html(source: str, summary: str = "show code") -> str:
    """``source`` folded behind a ``<details>`` toggle, highlighted with inline styles (no
    stylesheet or script needed)."""
    try:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer

        body = highlight(source, PythonLexer(), HtmlFormatter(noclasses=True, nowrap=True))
    except ImportError:
        body = html.escape(source)
    return f'<details class="atrlib-code"><summary>{html.escape(summary)}</summary><pre>{body}</pre></details>'


def _raw(text: str):
    """A cell that shows ``text`` as HTML: an output (nbconvert passes outputs through; a raw
    cell's HTML would be sanitised away)."""
    import nbformat

    return nbformat.v4.new_code_cell("", outputs=[nbformat.v4.new_output("display_data", data={"text/html": text})])


def result_first(nb):
    """A copy of executed notebook ``nb`` laid out result first (module docstring); render it
    with nbconvert's ``exclude_input=True``: every code cell's source is in its toggle."""
    import nbformat

    nb = copy.deepcopy(nb)
    cells = list(nb.cells)
    title_i = next((i for i, c in enumerate(cells) if c.cell_type == "markdown"), None)
    intro = ""
    head: list = []
    if title_i is not None:
        lines = cells[title_i].source.splitlines()
        title = [ln for ln in lines if ln.startswith("# ")][:1]
        intro = "\n".join(ln for ln in lines if ln not in title).strip()
        head = [nbformat.v4.new_markdown_cell(title[0])] if title else []
    parts: List[str] = []
    if intro:
        parts.append(f"<p><b>What this stage did.</b></p>{_markdown_html(intro)}")
    for c in cells:  # the key tables (figures stay in their sections, after the box)
        if c.cell_type == "code" and RESULT_TAG in _tags(c):
            parts += [h for o in c.get("outputs", []) if "image/png" not in (o.get("data") or {})
                      and (h := _output_html(o))]
    for c in cells:
        if c.cell_type == "code" and LEARNED_TAG in _tags(c):
            outs = [o for o in c.get("outputs", []) if o.get("output_type") in ("display_data", "execute_result")]
            if outs and (h := _output_html(outs[0])):
                parts.append(h)
                c.outputs = [o for o in c.outputs if o is not outs[0]]
    body: list = []
    for i, c in enumerate(cells):
        if i == title_i:
            continue
        if c.cell_type == "code":
            tags = _tags(c)
            label = next((PARAMETER_TAGS[t] for t in tags if t in PARAMETER_TAGS), "show code")
            if c.source.strip():
                body.append(_raw(code_html(c.source, label)))
            if c.get("outputs"):
                body.append(c)
        else:
            body.append(c)
    box = []
    if parts:
        box = [_raw(f"<style>{BOX_CSS}</style><section class=\"atrlib-result\"><h2>Result</h2>\n"
                    + "\n".join(parts) + "\n</section>")]
    else:
        box = [_raw(f"<style>{BOX_CSS}</style>")]
    nb.cells = head + box + body
    return nb
