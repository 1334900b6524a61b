"""The reports of a run: ``index.html`` / ``summary.md`` and the helpers that format metrics.

Files themselves (``metrics.json``, atomic writes) live in :mod:`atrlib.files`; this module
only renders. The batch runner (:mod:`atrlib.runs.batch`) calls ``write_index``. Everything here
works on plain dicts, so a run can be re-rendered from its ``run.json`` alone::

    write_index(run_dir, read_json(run_dir / "run.json"))

A stage's ``metrics.json`` is any JSON object. Nested dicts are fine and show in reports
as flattened keys (``{"t2a": {"mAP@10": 0.3}}`` -> ``t2a/mAP@10``). A stage nominates the
numbers its row in ``index.html`` shows with a ``"key_metrics"`` list of flattened keys;
without one, the report shows the top-level scalar metrics (at most :data:`MAX_KEY_NUMBERS`).

The run record (``run.json``, the dict form of :class:`atrlib.runs.records.RunResult`) that
``write_index`` reads::

    {"profile": str, "description": str, "run_dir": str, "started": iso str,
     "finished": iso str|None, "duration_s": float|None, "overrides": {...},
     "environment": {"atrlib": ..., "python": ..., "git_commit": ..., ...},
     "stages": [{"name": str, "notebook": str, "status": "ok|failed|skipped|pending|running",
                 "duration_s": float|None, "output_notebook": str|None, "html": str|None,
                 "metrics": dict|None, "error": {"ename", "evalue", "cell_index", ...}|None,
                 "skipped_reason": str|None, "parameters": {...}}]}

Paths in the stage records may be absolute or relative to the run dir; links in the
reports are always written relative to the run dir, so a run folder can be moved or zipped.
"""
from __future__ import annotations

import dataclasses
import html
import json
import os
import re
from pathlib import Path
from typing import Any, Mapping, Optional
from urllib.parse import quote

from atrlib.files import write_text_atomic
from atrlib.runs.environment import machine_text

MAX_KEY_NUMBERS = 8  # top-level scalars shown per stage when it names no key_metrics

__all__ = [
    "flatten_metrics",
    "key_numbers",
    "format_value",
    "format_duration",
    "write_index",
    "render_index_html",
    "export_html",
    "offline_notebook",
    "offline_html",
    "render_summary_md",
]


def flatten_metrics(d: Mapping[str, Any], sep: str = "/", prefix: str = "") -> dict[str, Any]:
    """Nested dicts to one level: ``{"t2a": {"mAP@10": 0.3}}`` -> ``{"t2a/mAP@10": 0.3}``.

    Lists and other values are kept as they are; key order is preserved.
    """
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{sep}{k}" if prefix else str(k)
        if isinstance(v, Mapping):
            out.update(flatten_metrics(v, sep=sep, prefix=key))
        else:
            out[key] = v
    return out


def _is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


def key_numbers(metrics: Optional[Mapping[str, Any]], limit: int = MAX_KEY_NUMBERS) -> list[tuple[str, Any]]:
    """The (key, value) pairs a report shows for one stage's metrics.

    If the metrics name ``"key_metrics"``, exactly those flattened keys in that order (a
    missing key shows as None). Otherwise the top-level scalar entries, at most ``limit``.
    """
    if not metrics:
        return []
    wanted = metrics.get("key_metrics")
    if isinstance(wanted, (list, tuple)):
        flat = flatten_metrics({k: v for k, v in metrics.items() if k != "key_metrics"})
        return [(str(k), flat.get(str(k))) for k in wanted]
    pairs = [(k, v) for k, v in metrics.items() if k != "key_metrics" and _is_scalar(v)]
    return pairs[:limit]


def headline(metrics: Optional[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(plain label, text) for each key number a stage recorded as ``headline``
    (:func:`atrlib.runs.notebook.headline_item`): ``"0.274 (95 % CI 0.240–0.307; chance 0.037;
    seed sd 0.010 over 3 seeds)"``. Empty when the stage recorded none."""
    from atrlib.runs.report_text import format_number

    out = []
    for item in (metrics or {}).get("headline") or []:
        v = item.get("value")
        text = format_number(v) if not isinstance(v, str) else v
        extra = []
        if item.get("low") is not None and item.get("high") is not None:
            extra.append(f"95 % CI {format_number(item['low'])}–{format_number(item['high'])}")
        if item.get("chance") is not None:
            extra.append(f"chance {format_number(item['chance'])}")
        if item.get("sd") is not None:
            extra.append(f"seed sd {format_number(item['sd'])} over {item.get('n_seeds', '?')} seeds")
        elif item.get("n_seeds"):
            extra.append(f"{item['n_seeds']} seed{'s' if item['n_seeds'] != 1 else ''}")
        if item.get("note"):
            extra.append(str(item["note"]))
        out.append((str(item.get("label", "")), text + (f" ({'; '.join(extra)})" if extra else "")))
    return out


def stage_numbers(metrics: Optional[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """What the index shows for a stage: its headline, else its key metrics by raw key."""
    return headline(metrics) or [(k, format_value(v)) for k, v in key_numbers(metrics)]


def format_value(v: Any) -> str:
    """Short text for a metric: 4 significant digits for floats, '—' for missing."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, str):
        return v if len(v) <= 60 else v[:57] + "..."
    text = json.dumps(v, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def format_duration(seconds: Optional[float]) -> str:
    """``3.2 s``, ``2 min 05 s``, ``1 h 02 min``; '—' when unknown."""
    if seconds is None:
        return "—"
    s = float(seconds)
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


# --------------------------------------------------------------------------------------
# index.html / summary.md
# --------------------------------------------------------------------------------------
def _as_dict(result: Any) -> dict:
    if isinstance(result, Mapping):
        return dict(result)
    if hasattr(result, "to_dict"):
        return result.to_dict()
    if dataclasses.is_dataclass(result):
        return dataclasses.asdict(result)
    raise TypeError(f"expected a run record (dict or RunResult), got {type(result).__name__}")


def _rel(run_dir: Path, p: Optional[str]) -> Optional[str]:
    """``p`` relative to the run dir (posix form), or None when missing."""
    if not p:
        return None
    path = Path(p)
    if path.is_absolute():
        try:
            path = path.relative_to(run_dir)
        except ValueError:
            return path.as_posix()
    return path.as_posix()


def _href(rel: str, fragment: str = "") -> str:
    url = quote(rel, safe="/")
    return html.escape(url + (f"#{fragment}" if fragment else ""), quote=True)


def _stage_links(run_dir: Path, st: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, relative path) for each output of a stage that exists."""
    links = []
    for label, key in (("report", "html"), ("notebook", "output_notebook")):
        rel = _rel(run_dir, st.get(key))
        if rel and (run_dir / rel).exists():
            links.append((label, rel))
    name = st.get("name", "")
    if (run_dir / name / "metrics.json").is_file():
        links.append(("metrics.json", f"{name}/metrics.json"))
    return links


def _error_text(err: Optional[Mapping[str, Any]]) -> str:
    if not err:
        return ""
    text = f"{err.get('ename') or 'Error'}: {err.get('evalue') or ''}".strip()
    if err.get("exec_count") is not None:  # the "In [n]" label the notebook shows
        text += f" (at In [{err['exec_count']}])"
    elif err.get("cell_index") is not None:
        text += f" (cell {err['cell_index']})"
    return text


_CSS = """
body{font-family:-apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
     margin:2rem auto;max-width:1100px;padding:0 1rem;color:#1f2328;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem} .desc{color:#59636e;margin-top:0}
table{border-collapse:collapse;width:100%;margin:1rem 0}
th,td{border-bottom:1px solid #d1d9e0;padding:.45rem .6rem;text-align:left;vertical-align:top}
th{background:#f6f8fa;font-weight:600} td.num{text-align:right;white-space:nowrap}
dl.info{display:grid;grid-template-columns:max-content auto;gap:.15rem 1rem;font-size:.9rem}
dl.info dt{color:#59636e} dl.info dd{margin:0;font-family:ui-monospace,Menlo,Consolas,monospace}
.badge{display:inline-block;padding:.1rem .5rem;border-radius:1rem;font-size:.8rem;font-weight:600;color:#fff}
.ok{background:#1a7f37} .failed{background:#cf222e} .skipped{background:#818b98}
.pending,.running{background:#9a6700}
.metrics{margin:0;font-size:.85rem;display:grid;grid-template-columns:max-content auto;gap:0 .8rem}
.metrics dt{color:#59636e} .metrics dd{margin:0;font-family:ui-monospace,Menlo,Consolas,monospace}
.error{color:#cf222e;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85rem;
       white-space:pre-wrap;word-break:break-word;margin:.3rem 0 0}
.note{color:#59636e;font-size:.85rem} a{color:#0969da}
.overall{font-size:1rem;margin:.5rem 0}
"""


READING_NOTE = ("Every \"best\" (epoch, loss, method, ensemble size) is chosen on the validation split; the test "
                "numbers are for what was chosen, intervals are 95 % jackknife CIs clipped to [0, 1]. ")


def _stage_title(name: str, st: Mapping[str, Any]) -> str:
    """What a stage does (:data:`atrlib.runs.stages.STAGES`); a notebook not in that list shows its file."""
    from atrlib.runs.stages import STAGES

    titles = {s.name: s.title for s in STAGES}
    return titles.get(name) or str(st.get("notebook") or "")


def _glossary_link(run_dir: Path) -> str:
    """A link to the run's own ``glossary.html`` (:mod:`atrlib.runs.pages`), else to the glossary
    shipped in the package, relative to the run folder ('' when neither exists)."""
    from atrlib.paths import GLOSSARY_PATH as g

    if (run_dir / "glossary.html").is_file():
        return 'Terms: <a href="glossary.html">glossary</a>.'
    if not g.is_file():
        return ""
    rel = os.path.relpath(g, run_dir.resolve())
    return f'Terms: <a href="{_href(Path(rel).as_posix())}">glossary</a>.'


def render_index_html(run_dir: str | os.PathLike, result: Any) -> str:
    """The run's ``index.html`` as a string (self-contained: inline CSS, no scripts)."""
    run_dir = Path(run_dir)
    r = _as_dict(result)
    esc = html.escape
    stages = r.get("stages") or []
    counts = {s: sum(1 for st in stages if st.get("status") == s) for s in ("ok", "failed", "skipped")}
    title = f"atrlib run: {r.get('profile') or run_dir.name}"

    info: list[tuple[str, Any]] = [
        ("profile", r.get("profile")),
        ("run dir", r.get("run_dir") or str(run_dir)),
        ("started", r.get("started")),
        ("finished", r.get("finished") or "(running)"),
        ("duration", format_duration(r.get("duration_s"))),
    ]
    if r.get("overrides"):
        info.append(("overrides", ", ".join(f"{k}={v!r}" for k, v in r["overrides"].items())))
    env = r.get("environment") or {}
    for key in ("atrlib", "git_commit", "python", "torch", "host"):
        if env.get(key):
            info.append((key, env[key]))
    if env.get("cpu") or env.get("vector_unit"):
        info.append(("machine", machine_text(env)))

    rows = []
    for i, st in enumerate(stages, 1):
        status = str(st.get("status") or "pending")
        name = str(st.get("name") or "")
        links = _stage_links(run_dir, st)
        link_html = " · ".join(f'<a href="{_href(rel)}">{esc(label)}</a>' for label, rel in links) or "—"
        nums = stage_numbers(st.get("metrics"))
        nums_html = (
            '<dl class="metrics">'
            + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in nums)
            + "</dl>"
            if nums
            else ""
        )
        detail = ""
        if status == "failed":
            detail = f'<p class="error">{esc(_error_text(st.get("error")) or "failed")}</p>'
            html_rel = _rel(run_dir, st.get("html"))
            if html_rel and (run_dir / html_rel).exists():
                detail += (
                    f'<p class="note"><a href="{_href(html_rel, "papermill-error-cell")}">'
                    "partial output up to the error</a></p>"
                )
        elif status == "skipped" and st.get("skipped_reason"):
            detail = f'<p class="note">{esc(str(st["skipped_reason"]))}</p>'
        rows.append(
            "<tr>"
            f"<td class=num>{i}</td>"
            f"<td><strong>{esc(name)}</strong><br><span class=note>{esc(_stage_title(name, st))}</span></td>"
            f'<td><span class="badge {esc(status)}">{esc(status)}</span></td>'
            f"<td class=num>{esc(format_duration(st.get('duration_s')))}</td>"
            f"<td>{link_html}</td>"
            f"<td>{nums_html}{detail}</td>"
            "</tr>"
        )

    overall = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no stages"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
    ]
    if r.get("description"):
        parts.append(f'<p class="desc">{esc(str(r["description"]))}</p>')
    parts.append(f'<p class="overall">{esc(overall)}</p>')
    parts.append(
        '<dl class="info">'
        + "".join(f"<dt>{esc(k)}</dt><dd>{esc(str(v))}</dd>" for k, v in info if v is not None)
        + "</dl>"
    )
    parts.append(
        "<table><thead><tr><th>#</th><th>stage</th><th>status</th><th>duration</th>"
        "<th>outputs</th><th>key numbers</th></tr></thead><tbody>"
        + "\n".join(rows)
        + "</tbody></table>"
    )
    parts.append(f'<p class="note">{esc(READING_NOTE)}{_glossary_link(run_dir)}</p>')
    files = [f for f in ("params.json", "run.json", "summary.md") if (run_dir / f).exists()]
    if files:
        parts.append(
            '<p class="note">run files: '
            + " · ".join(f'<a href="{_href(f)}">{esc(f)}</a>' for f in files)
            + "</p>"
        )
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _md(text: Any) -> str:
    """Text safe inside a Markdown table cell (no raw HTML, no cell breaks)."""
    s = html.escape(str(text), quote=False)
    return s.replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def render_summary_md(run_dir: str | os.PathLike, result: Any) -> str:
    """The run's ``summary.md``: the same table as ``index.html`` in Markdown."""
    run_dir = Path(run_dir)
    r = _as_dict(result)
    stages = r.get("stages") or []
    lines = [f"# atrlib run: {_md(r.get('profile') or run_dir.name)}", ""]
    if r.get("description"):
        lines += [_md(r["description"]), ""]
    env = r.get("environment") or {}
    lines += [
        f"- started: {_md(r.get('started') or '—')}; duration: {format_duration(r.get('duration_s'))}",
        f"- atrlib {_md(env.get('atrlib') or '?')}, git {_md(env.get('git_commit') or '?')}",
        f"- machine: {_md(machine_text(env))}, torch {_md(env.get('torch') or '?')}",
    ]
    if r.get("overrides"):
        lines.append("- overrides: " + _md(", ".join(f"{k}={v!r}" for k, v in r["overrides"].items())))
    lines += ["", "| # | stage | status | duration | outputs | key numbers |", "|---|---|---|---|---|---|"]
    for i, st in enumerate(stages, 1):
        links = ", ".join(f"[{label}]({quote(rel, safe='/')})" for label, rel in _stage_links(run_dir, st)) or "—"
        heads = headline(st.get("metrics"))
        nums = "; ".join(f"{_md(k)}: {_md(v)}" for k, v in heads) if heads else \
            "; ".join(f"{_md(k)} = {_md(format_value(v))}" for k, v in key_numbers(st.get("metrics")))
        status = str(st.get("status") or "pending")
        if status == "failed":
            nums = (nums + "; " if nums else "") + "**" + _md(_error_text(st.get("error")) or "failed") + "**"
        elif status == "skipped" and st.get("skipped_reason"):
            nums = _md(st["skipped_reason"])
        lines.append(
            f"| {i} | {_md(st.get('name', ''))} | {_md(status)} | {format_duration(st.get('duration_s'))} "
            f"| {links} | {nums or '—'} |"
        )
    return "\n".join(lines) + "\n"


def write_index(run_dir: str | os.PathLike, result: Any) -> Path:
    """Write ``<run_dir>/index.html`` and ``<run_dir>/summary.md``; returns the index path.

    ``result`` is a :class:`atrlib.runs.records.RunResult` or its dict form (``run.json``).
    """
    from atrlib.runs.pages import link_pages

    run_dir = Path(run_dir)
    r = _as_dict(result)
    link_pages(run_dir, [(str(st.get("name") or ""), (run_dir / rel) if (rel := _rel(run_dir, st.get("html"))) else None)
                         for st in r.get("stages") or []])  # glossary.html, and each page's header
    write_text_atomic(run_dir / "summary.md", render_summary_md(run_dir, result))
    return write_text_atomic(run_dir / "index.html", render_index_html(run_dir, result))


# --------------------------------------------------------------------------------------
# a stage's HTML: offline, no widgets, no scripts
# --------------------------------------------------------------------------------------
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script>", re.S | re.I)


def offline_notebook(nb):
    """A copy of an executed notebook without live-widget outputs (progress bars, the
    search box: they need a kernel and scripts from the internet) and their saved state."""
    import copy

    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        cell["outputs"] = [o for o in cell.get("outputs", []) if WIDGET_VIEW not in (o.get("data") or {})]
    return nb


def offline_html(body: str) -> str:
    """``body`` without any ``<script>``: nbconvert's template fetches require.js, MathJax,
    mermaid and the widget manager from CDNs; a report needs none of them (figures are
    images, players are ``<audio>`` elements), and it must open without a network."""
    return _SCRIPT.sub("", body)


def export_html(ipynb: str | os.PathLike, html_path: str | os.PathLike) -> Path:
    """Write the HTML report of an executed notebook: result first, code folded
    (:func:`atrlib.runs.page_layout.result_first`), widgets dropped, no scripts, so it opens
    offline and shows the same thing everywhere."""
    import nbformat
    from nbconvert import HTMLExporter

    from atrlib.runs.page_layout import result_first

    nb = result_first(offline_notebook(nbformat.read(str(ipynb), as_version=4)))
    body, _ = HTMLExporter(exclude_input=True, exclude_input_prompt=True,
                           exclude_output_prompt=True).from_notebook_node(nb)
    return write_text_atomic(Path(html_path), offline_html(body))
