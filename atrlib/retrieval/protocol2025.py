"""The DCASE 2025 Task 6 evaluation protocol beside the 2022–2024 one.

Until 2024 each caption had exactly one relevant clip (the one it was written for) and systems
were ranked by mAP@10. DCASE 2025 added crowd-sourced relevance annotations: for each query
several clips may be relevant (2.8 per caption on the development-evaluation set, 1.8 on the
evaluation set; the original clip is kept only where annotators judged it relevant), and
systems are ranked by mAP@16 over the annotated queries.

The relevance file (the format the official baseline reads, ``resources/metadata_eval.csv``
in ``d25_t6/retrieval_module.py``): a CSV with a header and at least the columns

    query            the caption text, exactly as in the captions CSV of the split
    audio_filenames  a Python / JSON list of the relevant clips' file names, e.g. "['a.wav', 'b.wav']"

Other columns are ignored. A long form is read too (one row per relevant pair, optionally
graded): ``query,file_name[,relevance]``. Queries are matched to the split's captions by exact
text (the first caption with that text, as the baseline does; then ignoring case and spacing),
file names to clip ids or audio file names.

    ann = load_relevance_file("metadata_eval.csv")
    table = both_protocols(sm, dataset, "metadata_eval.csv")   # one row per protocol, with CIs

Every number from here says its protocol: ``protocol_2024`` (one clip per caption, all
captions) or ``protocol_2025`` (the file's relevant clips, its queries only).
"""
from __future__ import annotations

import ast
import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from atrlib.errors import RelevanceFileError
from atrlib.retrieval.metrics import per_query_metrics, scores_with_ci

PROTOCOL_2024 = "2024: one clip per caption, every caption"
PROTOCOL_2025 = "2025: relevance file, its queries"
METRICS = ("R@1", "R@5", "R@10", "mAP@10", "mAP@16")


@dataclass
class RelevanceAnnotations:
    """Queries (caption texts) with their relevant clip file names, optionally graded."""

    path: str
    queries: List[str]
    files: List[List[str]]
    grades: Optional[List[List[float]]] = None
    rows: Optional[List[int]] = None  # the file's line number of each query (for messages)

    def __len__(self) -> int:
        return len(self.queries)


def _parse_list(text: str, path, line: int) -> List[str]:
    t = (text or "").strip()
    if not t:
        raise RelevanceFileError(f"{path}, line {line}: audio_filenames is empty; list at least one relevant clip, "
                                 "e.g. \"['clip_a.wav', 'clip_b.wav']\"")
    if t.startswith("["):
        try:
            v = ast.literal_eval(t)
        except (ValueError, SyntaxError):
            try:
                v = json.loads(t)
            except ValueError:
                raise RelevanceFileError(f"{path}, line {line}: audio_filenames {t[:60]!r} is not a list; write it as "
                                         "\"['clip_a.wav', 'clip_b.wav']\" (quoted, as the official file does)") from None
        if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
            raise RelevanceFileError(f"{path}, line {line}: audio_filenames must be a list of file names, got {t[:60]!r}")
        return [x.strip() for x in v]
    return [x.strip() for x in re.split(r"[;|]", t) if x.strip()]  # a bare name or 'a.wav;b.wav'


def load_relevance_file(path) -> RelevanceAnnotations:
    """Read a DCASE 2025 relevance file (module docstring): the official ``query,
    audio_filenames`` form or the long ``query,file_name[,relevance]`` form. A query listed
    on several rows of the long form collects all its clips. Raises
    :class:`RelevanceFileError` naming the file, the line and the fix."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no relevance file here (the DCASE 2025 annotations, e.g. metadata_eval.csv)")
    with open(p, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        cols = [c.strip() for c in (reader.fieldnames or [])]
        reader.fieldnames = cols
        wide, long = {"query", "audio_filenames"} <= set(cols), {"query", "file_name"} <= set(cols)
        if not (wide or long):
            raise RelevanceFileError(f"{p}, line 1: header {cols} lacks the columns 'query' and 'audio_filenames' "
                                     "(official form) or 'query' and 'file_name' (one row per relevant clip)")
        graded = long and "relevance" in cols
        order: Dict[str, int] = {}
        queries: List[str] = []
        files: List[List[str]] = []
        grades: List[List[float]] = []
        lines: List[int] = []
        for n, row in enumerate(reader, start=2):
            q = (row.get("query") or "").strip()
            if not q:
                raise RelevanceFileError(f"{p}, line {n}: empty query; every row needs the caption text in 'query'")
            names = _parse_list(row["audio_filenames"], p, n) if wide else [(row.get("file_name") or "").strip()]
            if not all(names):
                raise RelevanceFileError(f"{p}, line {n}: empty file_name; name the relevant clip's audio file")
            g = [1.0] * len(names)
            if graded:
                try:
                    g = [float(row["relevance"])]
                except (TypeError, ValueError):
                    raise RelevanceFileError(f"{p}, line {n}: relevance {row.get('relevance')!r} is not a number") from None
                if not (np.isfinite(g[0]) and g[0] >= 0):
                    raise RelevanceFileError(f"{p}, line {n}: relevance must be a finite number >= 0, got {g[0]}")
            if q in order and wide:
                raise RelevanceFileError(f"{p}, line {n}: query {q[:60]!r} repeats line {lines[order[q]]}; list all its "
                                         "clips in one audio_filenames list")
            if q not in order:
                order[q] = len(queries)
                queries.append(q)
                files.append([])
                grades.append([])
                lines.append(n)
            k = order[q]
            for name, w in zip(names, g):
                if name in files[k]:
                    raise RelevanceFileError(f"{p}, line {n}: clip {name!r} is listed twice for query {q[:60]!r}")
                if w > 0:  # a zero grade: annotated as not relevant
                    files[k].append(name)
                    grades[k].append(w)
    if not queries:
        raise RelevanceFileError(f"{p}: no rows after the header")
    empty = next((i for i, f in enumerate(files) if not f), None)
    if empty is not None:
        raise RelevanceFileError(f"{p}, line {lines[empty]}: query {queries[empty][:60]!r} has no clip with relevance > 0")
    return RelevanceAnnotations(str(p), queries, files, grades if graded else None, lines)


def write_relevance_file(path, queries: Sequence[str], files: Sequence[Sequence[str]]) -> Path:
    """Write the official two-column form (``query,audio_filenames``)."""
    from atrlib.files import write_text_atomic
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["query", "audio_filenames"])
    for q, fs in zip(queries, files):
        w.writerow([q, repr([str(x) for x in fs])])
    write_text_atomic(Path(path), buf.getvalue())
    return Path(path)


def _norm(t: str) -> str:
    return re.sub(r"\s+", " ", t.strip().lower())


def align(ann: RelevanceAnnotations, dataset, on_missing: str = "raise") -> Dict[str, Any]:
    """Rows of ``dataset``'s captions and relevant clip indices for the annotated queries.

    Returns ``{"query_rows": [caption index], "relevant": [[clip index]], "graded": [[w]] | None,
    "skipped": [message]}``. ``on_missing="skip"`` leaves out (and lists) queries or clips that
    are not in the split instead of raising."""
    if on_missing not in ("raise", "skip"):
        raise ValueError(f"on_missing must be 'raise' or 'skip', not {on_missing!r}")
    caps = dataset.captions_flat()
    exact: Dict[str, int] = {}
    loose: Dict[str, int] = {}
    for i, c in enumerate(caps):
        exact.setdefault(c.strip(), i)
        loose.setdefault(_norm(c), i)
    clip_of: Dict[str, int] = {}
    for i, (cid, ap) in enumerate(zip(dataset.clip_ids, dataset.audio_paths)):
        for key in (cid, Path(cid).name, Path(ap).name):
            clip_of.setdefault(key, i)
    out_rows, out_rel, out_g, skipped = [], [], [], []
    for k, q in enumerate(ann.queries):
        line = ann.rows[k] if ann.rows else k + 2
        row = exact.get(q, loose.get(_norm(q)))
        if row is None:
            msg = (f"{ann.path}, line {line}: query {q[:60]!r} is not a caption of {dataset.name}/{dataset.split}; "
                   "check the split (the 2025 files annotate the evaluation captions), or leave such lines out with "
                   "on_missing='skip' (`atrlib evaluate --relevance-missing skip`)")
            if on_missing == "raise":
                raise RelevanceFileError(msg)
            skipped.append(msg)
            continue
        rel, g = [], []
        for j, name in enumerate(ann.files[k]):
            c = clip_of.get(name, clip_of.get(Path(name).name))
            if c is None:
                msg = (f"{ann.path}, line {line}: clip {name!r} is not in {dataset.name}/{dataset.split} "
                       f"({len(dataset)} clips, e.g. {dataset.clip_ids[0]!r}); check the split, or leave such lines out with "
                       "on_missing='skip' (`atrlib evaluate --relevance-missing skip`)")
                if on_missing == "raise":
                    raise RelevanceFileError(msg)
                skipped.append(msg)
                continue
            rel.append(c)
            g.append(ann.grades[k][j] if ann.grades else 1.0)
        if rel:
            out_rows.append(row)
            out_rel.append(rel)
            out_g.append(g)
    if not out_rows:
        raise RelevanceFileError(f"{ann.path}: none of its {len(ann)} queries matches a caption of "
                                 f"{dataset.name}/{dataset.split}")
    return {"query_rows": out_rows, "relevant": out_rel, "graded": out_g if ann.grades else None, "skipped": skipped}


def _ci_row(sim, relevant, graded=None) -> Dict[str, Any]:
    ci = scores_with_ci(sim, relevant, ks=(1, 5, 10), map_at=(10, 16), graded=graded)
    row: Dict[str, Any] = {"queries": int(len(relevant)), "relevant_per_query": float(np.mean([len(r) for r in relevant]))}
    for m in METRICS:
        row[m] = ci[m]["value"]
    row["mAP@16_low"], row["mAP@16_high"] = ci["mAP@16"]["low"], ci["mAP@16"]["high"]
    row["mAP@10_low"], row["mAP@10_high"] = ci["mAP@10"]["low"], ci["mAP@10"]["high"]
    return row


def protocol_2025_values(sm, dataset, relevance, on_missing: str = "raise", graded: bool = False) -> Dict[str, Any]:
    """Per-query 2025 values: ``{"query_rows", "relevant", "AP@16", "AP@10"}`` (for paired tests
    between systems on the same annotated queries). ``relevance``: a path or annotations."""
    ann = relevance if isinstance(relevance, RelevanceAnnotations) else load_relevance_file(relevance)
    a = align(ann, dataset, on_missing)
    sim = np.asarray(sm.sim)[a["query_rows"]]
    pq = per_query_metrics(sim, a["relevant"], map_at=(10, 16), graded=a["graded"] if graded else None)
    return {**a, "AP@16": pq["AP@16"], "AP@10": pq["AP@10"], "sim": sim}


def both_protocols(sm, dataset, relevance, on_missing: str = "raise", graded: bool = False) -> pd.DataFrame:
    """One row per protocol (index ``PROTOCOL_2024``, ``PROTOCOL_2025``): number of queries,
    relevant clips per query, R@1/5/10, mAP@10, mAP@16 and jackknife 95 % intervals of mAP@10
    and mAP@16. ``sm``: the split's text-to-audio :class:`~atrlib.retrieval.simfile.SimilarityMatrix`;
    ``relevance``: the 2025 file (path) or loaded annotations; ``graded``: use the long
    form's grades as weights (:mod:`atrlib.retrieval.metrics`); the official ranking is binary."""
    v = protocol_2025_values(sm, dataset, relevance, on_missing, graded)
    if len(v["query_rows"]) < 2:
        where = getattr(relevance, "path", relevance)
        raise RelevanceFileError(f"{where}: only {len(v['query_rows'])} of its queries match captions of "
                                 f"{dataset.name}/{dataset.split} ({len(v['skipped'])} left out); a protocol's "
                                 "interval needs at least 2 — check that the file annotates this split")
    rows = {PROTOCOL_2024: _ci_row(np.asarray(sm.sim), sm.relevant),
            PROTOCOL_2025: _ci_row(v["sim"], v["relevant"], v["graded"] if graded else None)}
    table = pd.DataFrame(rows).T
    table.index.name = "protocol"
    table.attrs["skipped"] = v["skipped"]
    table.attrs["ranking_metric"] = {PROTOCOL_2024: "mAP@10", PROTOCOL_2025: "mAP@16"}
    return table


def protocol_metrics(table: pd.DataFrame) -> Dict[str, Dict[str, float]]:
    """``{"protocol_2024": {...}, "protocol_2025": {...}}`` of a :func:`both_protocols` table
    for ``metrics.json`` (each with ``protocol``: its description and ``ranking_metric``)."""
    out = {}
    for key, name in (("protocol_2024", PROTOCOL_2024), ("protocol_2025", PROTOCOL_2025)):
        r = table.loc[name]
        out[key] = {"protocol": name, "ranking_metric": table.attrs["ranking_metric"][name],
                    **{c: int(v) if c == "queries" else float(v) for c, v in r.items()}}
    out["protocol_2025"]["skipped"] = list(table.attrs.get("skipped", []))
    return out


# --------------------------------------------------------------------------- a file for the demo data


def synth_relevance_file(path, dataset, metadata: Sequence[dict], per_clip: int = 1) -> Path:
    """A 2025-style relevance file for the embedded ``synth`` data (tests, demo): for the first
    ``per_clip`` captions of every clip, the relevant clips are all clips with the same
    background kind and the same multiset of event kinds (what the captions name); the
    original clip is always among them. ``metadata``: :func:`atrlib.data.synth.synth_metadata`
    of the same split."""
    by_id = {m["clip_id"]: m for m in metadata}

    def content(cid):
        m = by_id[cid]
        return (m["background"]["kind"], tuple(sorted(e["kind"] for e in m["events"])))

    keys = [content(c) for c in dataset.clip_ids]
    file_of = [Path(p).name for p in dataset.audio_paths]
    queries, files = [], []
    for i, item in enumerate(dataset.items):
        rel = [file_of[j] for j, k in enumerate(keys) if k == keys[i]]
        for cap in item["captions"][:per_clip]:
            if cap.strip() in queries:
                continue
            queries.append(cap.strip())
            files.append(rel)
    return write_relevance_file(path, queries, files)
