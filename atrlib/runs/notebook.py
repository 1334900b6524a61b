"""What every stage notebook does before and after its own work, in one call each.

- :func:`stage_dirs` — where a notebook writes: the batch runner's folders, or
  ``reports/lab/<stage>/`` when it runs in JupyterLab (never into ``notebooks/``).
- :func:`config_from` — a typed config built from the notebook's parameters (the names it
  shares with the dataclass), so nothing is copied by hand.
- :func:`changed_settings` — the settings that differ from the library defaults: what a
  report shows instead of every internal field.
- :func:`resolve_system` — ``system = "auto"``: the demo's trained run when one exists.
- :func:`quiet` — keep a step's log lines out of the report (written to a file instead).
- :func:`learned` — the closing "What we learned" block with its glossary entries.
"""
from __future__ import annotations

import contextlib
import io
import re
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence, Tuple

from atrlib.runs.profiles import default_reports_dir
from atrlib.runs.report_text import format_number  # noqa: F401  (the one rule; numbers_table applies it)

LAB_RUN = "lab"  # reports/lab/: runs started by hand in JupyterLab


def stage_dirs(out_dir: str, run_dir: str, stage: str) -> Tuple[Path, Path]:
    """(output folder, run folder), both created. Empty ``out_dir`` / ``run_dir`` (the
    notebooks' defaults) mean ``reports/lab/<stage>`` and ``reports/lab``."""
    run = Path(run_dir).resolve() if run_dir else default_reports_dir() / LAB_RUN
    out = Path(out_dir).resolve() if out_dir else run / stage
    out.mkdir(parents=True, exist_ok=True)
    return out, run


def data_options(on_error: str = "raise", encoding: str = "utf-8") -> Dict[str, Any]:
    """Dataset loader keywords from the notebooks' ``on_error`` / ``encoding`` parameters,
    only those that differ from the loaders' defaults (so runs that keep the defaults
    record no extra settings)."""
    out: Dict[str, Any] = {}
    if on_error != "raise":
        out["on_error"] = on_error
    if encoding != "utf-8":
        out["encoding"] = encoding
    return out


def config_from(cls, namespace: Mapping[str, Any], **overrides):
    """``cls(**{name: namespace[name] for every field of cls in namespace}, **overrides)``.

    A notebook passes ``globals()`` right after its parameters cell: every parameter named
    like a config field reaches the config, and a new parameter needs no extra line."""
    names = {f.name for f in fields(cls)}
    kw = {k: namespace[k] for k in names if k in namespace and not k.startswith("_")}
    kw.update(overrides)
    return cls(**kw)


def changed_settings(cfg, keep: Iterable[str] = ()) -> Dict[str, Any]:
    """Fields of a dataclass config whose value differs from the field's default (plus
    ``keep``, always shown) — the settings a reader needs to reproduce the run."""
    from dataclasses import MISSING

    out = {}
    keep = set(keep)
    for f in fields(cfg):
        if f.name.startswith("_") or f.name in ("progress", "out_dir"):  # out_dir: where, not what
            continue
        default = f.default if f.default is not MISSING else (f.default_factory() if f.default_factory is not MISSING else MISSING)
        value = getattr(cfg, f.name)
        if f.name in keep or value != default:
            out[f.name] = value
    return out


def resolve_system(system: str, run_dir: Path, fallback: str = "tagbridge") -> Tuple[str, str]:
    """(system, note). ``"auto"`` picks ``<run_dir>/02_train``, else the demo's trained run
    ``reports/demo/02_train``, else ``fallback`` (a zero-shot retriever); other values are
    returned unchanged."""
    if system != "auto":
        return system, ""
    for cand in (Path(run_dir) / "02_train", default_reports_dir() / "demo" / "02_train"):
        if (cand / "best" / "model.safetensors").exists() or (cand / "best" / "config.json").exists():
            return str(cand), f"system = auto: the trained run in {cand}"
    return fallback, f"system = auto: no trained run found (run `make demo` first), using the zero-shot {fallback}"


@contextlib.contextmanager
def quiet(log_file: Optional[Path] = None):
    """Capture what the block prints (per-epoch lines, …) and write it to ``log_file``
    instead of the report; errors still show."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        try:
            yield buf
        finally:
            if log_file is not None:
                Path(log_file).write_text(buf.getvalue(), encoding="utf-8")


def is_p_column(name) -> bool:
    """``p``, ``p_value``, ``p_vs_x``, ``p16_vs_x``: a column of p-values."""
    return bool(re.match(r"^p(16)?(_value|_vs_.+)?$", str(name)))


def numbers_table(df, digits: int = 3):
    """A table of numbers for display (:func:`format_number` on every cell; p-value columns
    by :func:`is_p_column`). The DataFrame itself keeps the full values."""
    import html

    import numpy as np

    def cell(p_value):  # the Styler shows the text as HTML: "< 0.001" must be escaped here
        return lambda v: html.escape(format_number(v.item() if isinstance(v, np.generic) else v, digits, p_value))

    return df.style.format({c: cell(is_p_column(c)) for c in df.columns})


def text_table(df):
    """A table of words (not numbers) for display: left-aligned cells and headers."""
    return df.style.set_properties(**{"text-align": "left"}).set_table_styles(
        [{"selector": "th", "props": [("text-align", "left")]}])


def learned(lines: Sequence[str], terms: Iterable[str] = ()):
    """Display "What we learned" (bullets) and the glossary entries of ``terms`` plus every
    term the bullets link to."""
    import re

    from IPython.display import Markdown, display

    from atrlib.runs.report_text import glossary, sentences, terms_section

    text = sentences(lines)
    linked = re.findall(r"\]\(#(term-[a-z0-9]+)\)", text)
    from atrlib.runs.report_text import anchor

    by_anchor = {anchor(k): k for k in glossary()}
    words = list(terms) + [by_anchor[a] for a in linked if a in by_anchor]
    display(Markdown("### What we learned\n\n" + text))  # the result box at the top of the page takes this one
    display(Markdown("### Terms used here\n\n" + terms_section(words)))


def setup_plots() -> None:
    """One plotting style for every report (seaborn's whitegrid, readable fonts)."""
    try:
        import seaborn as sns

        sns.set_theme(style="whitegrid", context="notebook", font_scale=0.9)
    except ImportError:  # matplotlib defaults are fine too
        pass
    import matplotlib as mpl
    import pandas as pd

    pd.set_option("display.max_colwidth", None)  # sentences in tables are shown whole
    mpl.rcParams.update({"figure.dpi": 100, "axes.titleweight": "bold"})
    if "ipykernel" in sys.modules:
        try:
            from IPython import get_ipython

            ip = get_ipython()
            if ip is not None:
                ip.run_line_magic("config", "InlineBackend.figure_format = 'png'")
        except Exception:
            pass


def headline_item(label: str, value: Any, low: Optional[float] = None, high: Optional[float] = None,
                  chance: Optional[float] = None, sd: Optional[float] = None, n_seeds: Optional[int] = None,
                  note: str = "") -> Dict[str, Any]:
    """One key number of a stage for the run's index, with a plain label ("Test mAP@10,
    text → audio"), its 95 % CI, chance level and seed spread where they exist. ``value`` may
    be a word (the loss chosen on validation)."""
    def f(x):
        if x is None or (isinstance(x, float) and x != x):
            return None
        if isinstance(x, str):
            return x
        return int(x) if float(x).is_integer() and not isinstance(x, float) and hasattr(x, "__index__") else float(x)

    item = {"label": label, "value": f(value), "low": f(low), "high": f(high), "chance": f(chance), "sd": f(sd),
            "n_seeds": None if n_seeds is None else int(n_seeds), "note": note}
    return {k: v for k, v in item.items() if v not in (None, "")}


def record_headline(out_dir: str | Path, items: Sequence[Mapping[str, Any]], **extra: Any) -> None:
    """Store ``items`` (:func:`headline_item`) as ``headline`` in the stage's ``metrics.json``
    (and ``extra`` entries beside it): the index shows them, in this order, instead of raw
    metric keys."""
    from atrlib.files import read_json, write_json

    path = Path(out_dir) / "metrics.json"
    record = read_json(path) if path.is_file() else {}
    record["headline"] = [dict(i) for i in items]
    record.update(extra)
    write_json(path, record)


def ci_headline(metrics: Mapping[str, Any], direction: str, metric: str, label: str, **extra) -> Dict[str, Any]:
    """A :func:`headline_item` from a :func:`atrlib.retrieval.summaries.table_to_metrics` dict."""
    d = metrics[direction]
    return headline_item(label, d[metric], d.get(f"{metric}_low"), d.get(f"{metric}_high"), d.get(f"{metric}_chance"),
                         **extra)


def evaluation_headline(metrics: Mapping[str, Any], chosen_epoch: Optional[int] = None, seeds=None) -> list:
    """02's and 03's key numbers: test mAP@10 and R@1 text → audio, mAP@10 audio → text, each
    with CI and chance. With several seeds (:func:`atrlib.experiments.seeds.seed_table`) the
    seed-averaged test mAP@10 comes first, with its CI and the seed spread: the number another
    machine's run should fall near."""
    when = f" (epoch {chosen_epoch}, chosen on validation)" if chosen_epoch else ""
    items = []
    chance = metrics["t2a"].get("mAP@10_chance")
    if seeds is not None and len(seeds) > 1 and seeds.attrs.get("mean_ci"):
        ci = seeds.attrs["mean_ci"]
        items.append(headline_item(f"Test mAP@10, text → audio, mean of {len(seeds)} seeds", ci["value"], ci["low"],
                                   ci["high"], chance, sd=seeds.attrs["sd"], n_seeds=len(seeds)))
        when = f" (seed {seeds.index[0]}, epoch {chosen_epoch})" if chosen_epoch else f" (seed {seeds.index[0]})"
    return items + [ci_headline(metrics, "t2a", "mAP@10", f"Test mAP@10, text → audio{when}"),
                    ci_headline(metrics, "t2a", "R@1", "Test R@1, text → audio"),
                    ci_headline(metrics, "a2t", "mAP@10", "Test mAP@10, audio → text")]
