"""A sweep's index page and its systems: what the sweep folder says about its trials.

:func:`trial_status` reads a trial's status record; :func:`sweep_table` gathers every trial's
parameters, status and flattened metrics and picks the chosen trial on a validation metric
(:func:`choose_trial`); :func:`write_sweep_index` renders them to ``<sweep>/index.html``
(sortable) and ``summary.md``. :func:`sweep_systems` maps each ok trial to its folder of
similarity files, for the ensemble stage. Everything here reads the folder; only the index
is written.
"""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from atrlib.errors import SweepError
from atrlib.files import read_json, write_text_atomic
from atrlib.runs.reporting import flatten_metrics, format_duration, format_value, key_numbers
from atrlib.runs.sweep_spec import _check_validation_metric

__all__ = ["trial_status", "sweep_table", "choose_trial", "write_sweep_index", "sweep_systems"]


# --------------------------------------------------------------------------------------
# trial status records
# --------------------------------------------------------------------------------------
def _status_path(sweep_dir: Path, tid: str) -> Path:
    return sweep_dir / "status" / f"{tid}.json"


def trial_status(sweep_dir: Union[str, Path], tid: str) -> dict:
    """A trial's status record (``{"status": "pending"}`` when it never started)."""
    p = _status_path(Path(sweep_dir), tid)
    try:
        return read_json(p)
    except (OSError, json.JSONDecodeError):
        return {"id": tid, "status": "pending", "attempt": 0}


# --------------------------------------------------------------------------------------
# the sweep index
# --------------------------------------------------------------------------------------
def _trial_metrics(rec: Mapping[str, Any]) -> Dict[str, Any]:
    """Every stage's flattened metrics, keys prefixed with the stage name."""
    out: Dict[str, Any] = {}
    for stage, st in (rec.get("stages") or {}).items():
        m = st.get("metrics") or {}
        out.update({f"{stage}/{k}": v for k, v in flatten_metrics({k: v for k, v in m.items() if k != "key_metrics"}).items()})
    return out


def _key_columns(recs: Sequence[Mapping[str, Any]]) -> List[str]:
    cols: List[str] = []
    for rec in recs:
        for stage, st in (rec.get("stages") or {}).items():
            for k, v in key_numbers(st.get("metrics")):
                key = f"{stage}/{k}"
                if key not in cols and (v is None or isinstance(v, (int, float))):
                    cols.append(key)
    return cols


def choose_trial(rows: Sequence[Mapping[str, Any]], metric: Optional[str], mode: str = "max") -> Optional[int]:
    """Index of the best ok row by ``metric`` (a validation metric; ties: the first), or None."""
    if not metric:
        return None
    _check_validation_metric(metric)
    best, best_i = None, None
    for i, r in enumerate(rows):
        v = r["metrics"].get(metric)
        if r["status"] != "ok" or not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if best is None or (v > best if mode == "max" else v < best):
            best, best_i = v, i
    return best_i


def _default_metric(rows: Sequence[Mapping[str, Any]]) -> Optional[str]:
    for r in rows:
        for k, v in r["metrics"].items():
            if isinstance(v, (int, float)) and k.endswith("mAP@10"):
                try:
                    _check_validation_metric(k)
                    return k
                except SweepError:
                    continue
    return None


def sweep_table(sweep_dir: Union[str, Path]) -> dict:
    """Rows of the sweep index: ``{"rows", "params", "columns", "metric", "mode", "chosen"}``.

    Each row: id, label, status, attempt, duration_s, error, overrides, metrics (flattened,
    ``stage/key``). ``chosen`` is the id of the best ok trial by the validation metric.
    """
    sweep_dir = Path(sweep_dir)
    info = read_json(sweep_dir / "sweep.json")
    rows = []
    for t in info["trials"]:
        rec = trial_status(sweep_dir, t["id"])
        rows.append({"id": t["id"], "label": t["label"], "status": rec.get("status", "pending"),
                     "attempt": rec.get("attempt", 0), "duration_s": rec.get("duration_s"), "error": rec.get("error"),
                     "host": rec.get("host"), "overrides": t["overrides"], "metrics": _trial_metrics(rec), "rec": rec})
    params = [k for k in dict.fromkeys(k for r in rows for k in r["overrides"])  # the parameters that vary
              if len({json.dumps(r["overrides"].get(k), sort_keys=True, default=str) for r in rows}) > 1]
    metric = (info.get("select") or {}).get("metric") or _default_metric(rows)
    mode = (info.get("select") or {}).get("mode") or "max"
    columns = _key_columns([r["rec"] for r in rows])
    if metric and metric not in columns:
        columns.insert(0, metric)
    i = choose_trial(rows, metric, mode)
    return {"rows": rows, "params": params, "columns": columns, "metric": metric, "mode": mode,
            "chosen": rows[i]["id"] if i is not None else None, "info": info}


_SORT_JS = """
document.querySelectorAll('table.sweep th').forEach(function(th, col){
  th.addEventListener('click', function(){
    var tb = th.closest('table').tBodies[0], rows = Array.from(tb.rows);
    var dir = th.dataset.dir === 'asc' ? -1 : 1; th.dataset.dir = dir === 1 ? 'asc' : 'desc';
    rows.sort(function(a, b){
      var x = a.cells[col].dataset.v ?? a.cells[col].textContent, y = b.cells[col].dataset.v ?? b.cells[col].textContent;
      var nx = parseFloat(x), ny = parseFloat(y);
      if (!isNaN(nx) && !isNaN(ny)) return dir * (nx - ny);
      if (isNaN(nx) !== isNaN(ny)) return isNaN(nx) ? 1 : -1;
      return dir * x.localeCompare(y);
    });
    rows.forEach(function(r){ tb.appendChild(r); });
  });
});
"""


_CSS = """
body{font-family:-apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:2rem auto;
     max-width:1300px;padding:0 1rem;color:#1f2328;line-height:1.45}
table{border-collapse:collapse;width:100%;margin:1rem 0;font-size:.9rem}
th,td{border-bottom:1px solid #d1d9e0;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa;font-weight:600;cursor:pointer;user-select:none} td.num{text-align:right;white-space:nowrap}
tr.chosen{background:#dafbe1} .badge{padding:.1rem .5rem;border-radius:1rem;font-size:.8rem;font-weight:600;color:#fff}
.ok{background:#1a7f37} .failed{background:#cf222e} .pending,.running{background:#9a6700}
.error{color:#cf222e;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.8rem} .note{color:#59636e}
"""


def _render_html(sweep_dir: Path, tab: dict) -> str:
    esc = html.escape
    info, rows = tab["info"], tab["rows"]
    counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "failed", "running", "pending")}
    title = f"atrlib sweep: {sweep_dir.name}"
    head = (["trial", "status"] + [f"{p}" for p in tab["params"]] + ["duration"]
            + [c + (" (selects)" if c == tab["metric"] else "") for c in tab["columns"]] + ["report"])
    body = []
    for r in rows:
        report = sweep_dir / "trials" / r["id"] / "index.html"
        link = f'<a href="trials/{esc(r["id"])}/index.html">report</a>' if report.exists() else "—"
        cells = [f'<td data-v="{esc(r["label"])}"><strong>{esc(r["label"])}</strong>'
                 + (" ★ chosen" if r["id"] == tab["chosen"] else "")
                 + (f'<br><span class="error">{esc(str(r["error"]))}</span>' if r["error"] else "") + "</td>",
                 f'<td><span class="badge {esc(r["status"])}">{esc(r["status"])}</span></td>']
        cells += [f"<td>{esc(format_value(r['overrides'].get(p)))}</td>" for p in tab["params"]]
        d = r["duration_s"]
        cells.append(f'<td class=num data-v="{d if d is not None else ""}">{esc(format_duration(d))}</td>')
        for c in tab["columns"]:
            v = r["metrics"].get(c)
            dv = v if isinstance(v, (int, float)) and not isinstance(v, bool) else ""
            cells.append(f'<td class=num data-v="{dv}">{esc(format_value(v))}</td>')
        cells.append(f"<td>{link}</td>")
        body.append(f'<tr class="{"chosen" if r["id"] == tab["chosen"] else ""}">' + "".join(cells) + "</tr>")
    chosen = next((r for r in rows if r["id"] == tab["chosen"]), None)
    choice = (f"chosen: <strong>{esc(chosen['label'])}</strong> — best {esc(str(tab['metric']))} ({tab['mode']}) "
              f"= {esc(format_value(chosen['metrics'].get(tab['metric'])))}, on validation only" if chosen
              else "no trial chosen yet (none finished ok with the selection metric)")
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{esc(title)}</title>",
        f"<style>{_CSS}</style></head><body>", f"<h1>{esc(title)}</h1>",
        f'<p class="note">profile {esc(str(info.get("profile")))}; stages {esc(", ".join(info.get("stages") or ["all"]))}; '
        f'{len(rows)} trials: ' + ", ".join(f"{n} {s}" for s, n in counts.items() if n) + f"; updated {esc(str(info.get('updated')))}</p>",
        f"<p>{choice}</p>", '<p class="note">click a column header to sort</p>',
        '<table class="sweep"><thead><tr>' + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead><tbody>",
        "\n".join(body), "</tbody></table>", f"<script>{_SORT_JS}</script>", "</body></html>", ""])


def _render_md(sweep_dir: Path, tab: dict) -> str:
    def md(x: Any) -> str:
        return html.escape(str(x), quote=False).replace("|", "\\|").replace("\n", " ")

    rows = tab["rows"]
    head = ["trial", "status"] + tab["params"] + ["duration"] + tab["columns"]
    lines = [f"# atrlib sweep: {md(sweep_dir.name)}", ""]
    chosen = next((r for r in rows if r["id"] == tab["chosen"]), None)
    lines += [f"Chosen on validation ({md(tab['metric'])}, {tab['mode']}): **{md(chosen['label'])}**" if chosen
              else "No trial chosen yet.", "", "| " + " | ".join(md(h) for h in head) + " |",
              "|" + "---|" * len(head)]
    for r in rows:
        cells = [f"[{md(r['label'])}](trials/{r['id']}/index.html)" + (" ★" if r is chosen else ""),
                 md(r["status"]) + (f": {md(r['error'])}" if r["error"] else "")]
        cells += [md(format_value(r["overrides"].get(p))) for p in tab["params"]]
        cells += [format_duration(r["duration_s"])] + [md(format_value(r["metrics"].get(c))) for c in tab["columns"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_sweep_index(sweep_dir: Union[str, Path]) -> Path:
    """Write ``<sweep>/index.html`` (sortable) and ``<sweep>/summary.md``; returns the HTML path."""
    sweep_dir = Path(sweep_dir)
    tab = sweep_table(sweep_dir)
    write_text_atomic(sweep_dir / "summary.md", _render_md(sweep_dir, tab))
    return write_text_atomic(sweep_dir / "index.html", _render_html(sweep_dir, tab))


# --------------------------------------------------------------------------------------
# the ensemble stage reads a sweep
# --------------------------------------------------------------------------------------
def sweep_systems(sweep_dir: Union[str, Path], splits: Sequence[str] = ("validation", "test"),
                  only_ok: bool = True) -> Dict[str, Path]:
    """name -> folder holding a similarity file for every split in ``splits`` (names or roles,
    as :func:`atrlib.retrieval.simfile.sim_path` resolves them), for every (ok) trial of a
    sweep: the dict :func:`atrlib.experiments.systems.load_systems` takes. The ensemble
    notebook reads a sweep with ``systems = ["sweep:<sweep folder>"]``.

    Names are trial labels; when a trial has several such folders (stages, sub-runs), the
    folder's path inside the trial is appended (``"seed=1/02_train"``).
    """
    from atrlib.retrieval.simfile import sim_path

    def has(d: Path, split: str) -> bool:
        try:
            return sim_path(d, split).is_file()
        except FileNotFoundError:
            return False

    sweep_dir = Path(sweep_dir)
    if not (sweep_dir / "sweep.json").is_file():
        raise FileNotFoundError(f"{sweep_dir}: no sweep.json here; run `python -m atrlib sweep SPEC --out {sweep_dir}` first")
    found: Dict[str, Path] = {}
    for t in read_json(sweep_dir / "sweep.json")["trials"]:
        if only_ok and trial_status(sweep_dir, t["id"]).get("status") != "ok":
            continue
        run = sweep_dir / "trials" / t["id"]
        hits = sorted({p.parent for p in run.rglob("sim_*.npz") if all(has(p.parent, s) for s in splits)})
        for d in hits:
            found[t["label"] if len(hits) == 1 else f"{t['label']}/{d.relative_to(run).as_posix()}"] = d
    return found
