"""A held-out moment study on recordings made of a folder of real clips (``scripts/studies.py moments``).

Every choice is made without the test recordings, and no test sound is heard before the test:

1. **Clips in disjoint groups**: the folder's clips are cut into train / validation / test by a
   hash of their file names (``split_ratios``, ``split_seed``; :mod:`atrlib.data.folder`), and
   recordings are generated from each group separately (:func:`atrlib.moments.study.generated_splits`):
   a sound of a test recording never occurs in a train or validation recording. (Two different
   clips may share a caption, e.g. two "factory noise" files; :func:`caption_overlap` counts them.)
2. **Systems**, each tuned on the validation recordings by their mAP (then R1@0.5):

   * ``tag-bridge (zero-shot)`` — the analysis window (``windows``) and the span decoding
     (``span_grid``) are chosen on validation;
   * ``dual encoder (frames)`` — a dual encoder trained on the train clips' captions
     (:func:`atrlib.train.loop.run_training`, ``dual_model``: a frozen-tower config with heads;
     its checkpoint chosen by clip-level validation mAP@10 on the validation clips), scored window
     by window, its window and decoding chosen on validation like the tag-bridge's;
   * ``moment head`` — trained on the train recordings on frozen frame features; for each of
     ``head_frames`` (``mel-stats``, ``tagbridge``, ``dual``: the dual encoder above) its epoch is
     chosen on validation, then the features with the best validation mAP;
   * baselines ``random windows`` and ``whole recording``; the one with the higher validation
     mAP is the *best baseline* of the paired tests.
3. **The test recordings are scored once**: five metrics in percent with 95 % jackknife intervals
   over queries, and a paired bootstrap test of every system against the best baseline.

:func:`run_study` writes ``results.json`` (every number, every choice and its validation score)
and ``results.md`` (the tables) into ``out_dir``; the recordings, the dual encoder run and the
heads stay there too (``out_dir/dual``, ``out_dir/head-<frames>``) and are reused when a run is
started again with the same settings.
"""
from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from atrlib.moments.formats import MomentPrediction
from atrlib.moments.spans import SpanConfig, decode_spans

BASELINES = {"random windows": "random", "whole recording": "whole"}


@dataclass
class HeldoutConfig:
    """Settings of :func:`run_study` (defaults: the README's run, ~10 min on 2 CPU cores)."""

    root: str = ""                                   # the clip folder (captions.csv + audio); required
    split_ratios: Tuple[float, ...] = (0.5, 0.25, 0.25)  # clips to train / validation / test (by file-name hash)
    split_seed: int = 0                              # seed of that hash
    counts: Tuple[int, ...] = (40, 16, 24)           # recordings generated for train / validation / test
    duration: float = 60.0                           # seconds per recording
    min_events: int = 2                              # events per recording: min_events..max_events
    max_events: int = 3
    snr_db: float = 10.0                             # event RMS over the noise bed's
    sample_rate: int = 32000                         # of the generated audio (EfficientAT's rate)
    windows: Tuple[float, ...] = (2.0, 3.0, 4.0)     # analysis windows tried on validation (curve systems)
    smooth: Tuple[float, ...] = (1.0, 3.0)           # span decoding tried on validation: moving-average widths
    max_seconds: Tuple[float, ...] = (10.0, 20.0)    # ... and longest spans
    dual_model: str = "efficientat-minilm"           # frozen towers + trained heads (a shipped model config)
    dual_epochs: int = 15                            # its epochs (checkpoint chosen on the validation clips)
    head_frames: Tuple[str, ...] = ("mel-stats", "tagbridge", "dual")  # moment-head features tried on validation
    head_epochs: int = 40                            # moment-head epochs (epoch chosen on validation, every 5)
    seed: int = 0                                    # generator, training and baseline seed
    out_dir: str = "reports/studies/moments"         # everything goes here

    def span_grid(self) -> List[SpanConfig]:
        return [SpanConfig(smooth_seconds=s, max_seconds=m) for s in self.smooth for m in self.max_seconds]


def caption_overlap(data) -> Dict[str, int]:
    """Test queries whose caption also names a train recording's event, and all test queries."""
    train = {q.query for q in data["train"].queries}
    test = [q.query for q in data["test"].queries]
    return {"test_queries": len(test), "caption_seen_in_train": sum(q in train for q in test)}


def query_blind_r1(ds) -> float:
    """R1 (percent) of a system that ignores the query but finds one of its recording's events
    exactly, at random: the mean over queries of 1 / (events in that recording). A system above
    it uses the sentence, not only where the sound is."""
    from collections import Counter

    k = Counter(q.vid for q in ds.queries)
    return 100.0 * float(np.mean([1.0 / k[q.vid] for q in ds.queries]))


def first_answers(ds, preds: Sequence[MomentPrediction]) -> Dict[str, int]:
    """Where each query's first answer lands: ``hit`` (IoU >= 0.5 with its window), ``partial``
    (overlaps it less), ``other event`` (misses it but overlaps another event of the recording),
    ``nothing`` (overlaps no event), ``none`` (no answer)."""
    from atrlib.moments.metrics import iou_cross

    events: Dict[str, list] = {}
    for q in ds.queries:
        events.setdefault(q.vid, []).extend(q.windows)
    by = {p.qid: p.windows for p in preds}
    out = {"hit": 0, "partial": 0, "other event": 0, "nothing": 0, "none": 0}
    for q in ds.queries:
        w = by.get(q.qid, ())
        if not w:
            out["none"] += 1
            continue
        own = float(iou_cross([w[0][:2]], q.windows).max())
        rest = float(iou_cross([w[0][:2]], events[q.vid]).max())
        out["hit" if own >= 0.5 else "partial" if own > 0 else "other event" if rest > 0 else "nothing"] += 1
    return out


def _scores(ds, preds):
    from atrlib.moments.study import scores_of

    return scores_of(ds, preds)


def _summary(ds, preds) -> Dict[str, float]:
    return _scores(ds, preds).summary()


def _better(a: Dict[str, float], b: Optional[Dict[str, float]]) -> bool:
    return b is None or (a["mAP"], a["R1@0.5"]) > (b["mAP"], b["R1@0.5"])


def curve_predictions(retriever, ds, grid: Sequence[SpanConfig]) -> List[List[MomentPrediction]]:
    """For each span decoding of ``grid``, the predictions of every query of ``ds`` (each
    recording encoded once; its window vectors cached)."""
    out: List[Dict[str, MomentPrediction]] = [{} for _ in grid]
    for vid in ds.recordings:
        qs = [q for q in ds.queries if q.vid == vid]
        curves, rec = retriever.curves(ds.audio[vid], [q.query for q in qs])  # (frames, queries)
        for g, cfg in enumerate(grid):
            for i, q in enumerate(qs):
                out[g][q.qid] = MomentPrediction(q.qid, q.query, q.vid, tuple(decode_spans(curves[:, i], rec.duration, cfg)))
    return [[o[q.qid] for q in ds.queries] for o in out]


def tune_curve(make, data, cfg: HeldoutConfig) -> Tuple[object, dict]:
    """The curve retriever (``make(window)``) and span decoding with the best validation mAP ->
    (the tuned retriever, {window, spans, val metrics, every trial})."""
    best, best_val, trials = None, None, []
    grid = cfg.span_grid()
    for w in cfg.windows:
        r = make(w)
        for spans, preds in zip(grid, curve_predictions(r, data["validation"], grid)):
            val = _summary(data["validation"], preds)
            trials.append({"window": w, "smooth_seconds": spans.smooth_seconds, "max_seconds": spans.max_seconds,
                           "val_mAP": val["mAP"], "val_R1@0.5": val["R1@0.5"]})
            if _better(val, best_val):
                best, best_val = (r, spans), val
    r, spans = best
    r.spans = spans
    return r, {"window": r.window, "spans": spans.to_dict(), "val": best_val, "trials": trials}


def train_dual(cfg: HeldoutConfig, progress: bool = False) -> Tuple[Path, dict]:
    """The dual encoder trained on the train clips (validated on the validation clips) -> (run
    folder, {model, epochs, chosen epoch, its val mAP@10}); a finished run in the folder is reused."""
    from atrlib.train.config import TrainConfig
    from atrlib.train.loop import run_training

    out = Path(cfg.out_dir) / "dual"
    tc = TrainConfig(dataset="folder", root=cfg.root, test_split="",
                     dataset_kwargs={"split_ratios": list(cfg.split_ratios), "split_seed": cfg.split_seed},
                     model=cfg.dual_model, epochs=cfg.dual_epochs, batch_size=16, lr=1e-3, seed=cfg.seed,
                     device="cpu", progress=progress, out_dir=str(out))
    def same(params: dict) -> bool:  # the settings that change the weights
        keep = lambda d: {k: v for k, v in d.items() if k not in ("overwrite", "progress")}
        return keep(params) == keep(json.loads(json.dumps(tc.to_dict())))

    reused = (out / "metrics.json").is_file() and same(json.loads((out / "params.json").read_text()))
    if reused:
        history = json.loads((out / "history.json").read_text())
    else:
        tc = replace(tc, overwrite=True)
        history = run_training(tc)["history"]
    best = max(history, key=lambda h: h["val_mAP@10"])
    return out, {"model": cfg.dual_model, "epochs": cfg.dual_epochs, "chosen_epoch": int(best["epoch"]),
                 "val_clip_mAP@10": float(best["val_mAP@10"]), "reused": bool(reused)}


def train_heads(data, cfg: HeldoutConfig, dual_run: Optional[Path], progress: bool = False) -> Tuple[object, dict]:
    """One moment head per ``head_frames`` (epoch chosen on validation), then the features with the
    best validation mAP -> (that head's retriever, {frames, epoch, val metrics, every trial})."""
    from atrlib.moments.head_train import HeadTrainConfig, train_head

    best, best_val, info, trials = None, None, {}, []
    for frames in cfg.head_frames:
        spec = str(dual_run) if frames == "dual" else frames
        if frames == "dual" and dual_run is None:
            continue
        hc = HeadTrainConfig(frames=spec, epochs=cfg.head_epochs, seed=cfg.seed, device="cpu",
                             out_dir=str(Path(cfg.out_dir) / f"head-{frames}"))
        resumed = (Path(hc.out_dir) / "last").is_dir()  # train_head resumes a run with the same settings
        head, history, epoch = train_head(data["train"], data["validation"], hc, progress=progress)
        row = next(h for h in history if h["epoch"] == epoch)
        val = {k[4:]: v for k, v in row.items() if k.startswith("val_")}
        trials.append({"frames": frames, "epoch": epoch, "val_mAP": val["mAP"], "val_R1@0.5": val["R1@0.5"],
                       "train_seconds": history[-1]["seconds"], "resumed": resumed})
        if _better(val, best_val):
            best, best_val, info = head, val, {"frames": frames, "epoch": epoch}
    return best, {**info, "val": best_val, "trials": trials}


def run_study(cfg: HeldoutConfig, progress: bool = False) -> dict:
    """The whole study (see the module text) -> the record written to ``out_dir/results.json``."""
    from atrlib.files import write_json
    from atrlib.moments.baselines import baseline_predictions
    from atrlib.moments.formats import write_predictions
    from atrlib.moments.predict import predict_queries
    from atrlib.moments.retrieve import curve_retriever
    from atrlib.moments.study import best_baseline, generated_splits, metrics_record, paired_table, zero_shot

    if not cfg.root or not (Path(cfg.root) / "captions.csv").is_file():
        from atrlib.errors import DatasetError

        raise DatasetError(f"root {cfg.root!r}: not a clip folder with a captions.csv (the held-out study needs one)")
    t0 = time.perf_counter()
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # 1. recordings from disjoint clip groups
    data = generated_splits("folder", "", cfg.root, cfg.counts, cfg.duration, cfg.snr_db, cfg.seed, cfg.max_events,
                            cfg.sample_rate, cache_root=out / "recordings", min_events=cfg.min_events,
                            dataset_kwargs={"split_ratios": list(cfg.split_ratios), "split_seed": cfg.split_seed})
    test = data["test"]
    sources = {s: {q.extra.get("source") for q in d.queries} for s, d in data.items()}
    assert not (sources["test"] & (sources["train"] | sources["validation"])), "a test clip in train / validation"
    # 2. systems, every choice on validation
    preds = {name: baseline_predictions(test.queries, b, cfg.seed) for name, b in BASELINES.items()}
    val_base = {name: _scores(data["validation"], baseline_predictions(data["validation"].queries, b, cfg.seed))
                for name, b in BASELINES.items()}
    best_base = best_baseline(val_base)
    choices: Dict[str, dict] = {"best baseline": {"name": best_base, "val": {n: s.summary() for n, s in val_base.items()}}}
    seconds: Dict[str, float] = {}
    skipped: List[str] = []

    t = time.perf_counter()
    zs, why = zero_shot()
    if zs is not None:
        r, choices["tag-bridge (zero-shot)"] = tune_curve(lambda w: curve_retriever("tagbridge", window=w), data, cfg)
        preds["tag-bridge (zero-shot)"] = predict_queries(r, test.queries, test.audio, progress=False)
        seconds["tag-bridge (zero-shot)"] = time.perf_counter() - t
    else:
        skipped.append(why)
        cfg = replace(cfg, head_frames=tuple(f for f in cfg.head_frames if f != "tagbridge"))

    t = time.perf_counter()
    dual_run, choices["dual encoder (frames)"] = train_dual(cfg, progress)
    r, tuned = tune_curve(lambda w: curve_retriever(str(dual_run), window=w), data, cfg)
    choices["dual encoder (frames)"].update(tuned)
    preds["dual encoder (frames)"] = predict_queries(r, test.queries, test.audio, progress=False)
    seconds["dual encoder (frames)"] = time.perf_counter() - t

    t = time.perf_counter()
    head, choices["moment head"] = train_heads(data, cfg, dual_run, progress)
    preds["moment head"] = predict_queries(head, test.queries, test.audio, progress=False)
    seconds["moment head"] = time.perf_counter() - t
    # 3. the test recordings, once
    for name, p in preds.items():
        write_predictions(out / "predictions" / f"{name.split(' (')[0].replace(' ', '_')}.jsonl", p)
    scores = {name: _scores(test, p) for name, p in preds.items()}
    paired = paired_table(scores, best_base).reset_index()
    record = {
        "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()},
        "data": {s: {"clips": len(sources[s]), "recordings": len(d.recordings), "queries": len(d)}
                 for s, d in data.items()},
        "caption_overlap": caption_overlap(data),
        "query_blind_R1": query_blind_r1(test),
        "first_answers": {name: first_answers(test, p) for name, p in preds.items()},
        "test": metrics_record(scores),
        "best_baseline": best_base,
        "paired_vs_best_baseline": paired.to_dict(orient="records"),
        "choices": choices, "seconds": seconds, "skipped": skipped,
        "machine": machine(), "total_seconds": time.perf_counter() - t0,
    }
    write_json(out / "results.json", record)
    (out / "results.md").write_text(markdown(record) + "\n", encoding="utf-8")
    return record


def machine() -> str:
    import os

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = "CUDA GPU present" if torch.cuda.is_available() else "CPU only"
    load = "/".join(f"{v:.1f}" for v in os.getloadavg())  # other jobs on a shared machine show here
    return f"{cpu}, {os.cpu_count()} cores, {gpu}, torch {torch.__version__}; load average at the end {load}"


def _ci(row: dict, k: str) -> str:
    if f"{k}_low" not in row:
        return f"{row[k]:.1f}"
    return f"{row[k]:.1f} ({row[k + '_low']:.1f}–{row[k + '_high']:.1f})"


def markdown(record: dict) -> str:
    """The study's tables: test metrics with CIs, paired tests against the best baseline, choices."""
    from atrlib.moments.metrics import METRICS

    d = record["data"]
    lines = [f"Test recordings: {d['test']['recordings']} × {record['settings']['duration']:g} s, "
             f"{d['test']['queries']} queries, made of {d['test']['clips']} clips that no train or validation "
             f"recording contains (train: {d['train']['clips']} clips, {d['train']['recordings']} recordings; "
             f"validation: {d['validation']['clips']} clips, {d['validation']['recordings']} recordings). "
             f"{record['caption_overlap']['caption_seen_in_train']} of {d['test']['queries']} test captions also "
             "caption some train clip. Percent, 95 % jackknife CI over queries. A system blind to the query that "
             f"found one of its recording's events exactly would reach R1 {record['query_blind_R1']:.1f}.", "",
             "| system | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS)]
    for name, row in record["test"].items():
        mark = " (best baseline)" if name == record["best_baseline"] else ""
        lines.append(f"| {name}{mark} | " + " | ".join(_ci(row, k) for k in METRICS) + " |")
    lines += ["", f"Paired bootstrap against {record['best_baseline']} (difference in points, 95 % CI, p):", "",
              "| system | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS)]
    by: Dict[str, Dict[str, dict]] = {}
    for r in record["paired_vs_best_baseline"]:
        by.setdefault(r["system"], {})[r["metric"]] = r
    for name, cells in by.items():
        if name in BASELINES:
            continue
        lines.append(f"| {name} | " + " | ".join(
            f"{cells[k]['difference']:+.1f} ({cells[k]['low']:+.1f}–{cells[k]['high']:+.1f}), p "
            + ("< 0.001" if cells[k]["p_value"] < 0.001 else f"{cells[k]['p_value']:.3f}") for k in METRICS) + " |")
    kinds = ["hit", "partial", "other event", "nothing"]
    lines += ["", "Where the first answer lands (queries): hit = IoU ≥ 0.5 with its window; partial = overlaps it "
              "less; other event = on another event of the recording; nothing = on the bed alone.", "",
              "| system | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
    lines += [f"| {name} | " + " | ".join(str(f[k]) for k in kinds) + " |" for name, f in record["first_answers"].items()]
    c = record["choices"]
    lines += ["", "Chosen on validation:"]
    for name in ("tag-bridge (zero-shot)", "dual encoder (frames)"):
        if name in c:
            s = c[name]
            extra = (f"; trained {s['epochs']} epochs on the train clips' captions ({s['model']}), checkpoint of epoch "
                     f"{s['chosen_epoch']} (validation-clip mAP@10 {s['val_clip_mAP@10']:.3f})" if "model" in s else "")
            lines.append(f"- {name}: window {s['window']:g} s, smoothing {s['spans']['smooth_seconds']:g} s, spans ≤ "
                         f"{s['spans']['max_seconds']:g} s (validation mAP {s['val']['mAP']:.1f}){extra}")
    h = c["moment head"]
    tried = ", ".join(f"{t['frames']} {t['val_mAP']:.1f} (epoch {t['epoch']})" for t in h["trials"])
    lines.append(f"- moment head: {h['frames']} features, epoch {h['epoch']} (validation mAP of each: {tried})")
    lines.append(f"- best baseline: {record['best_baseline']}")
    lines += [f"- skipped: {s}" for s in record["skipped"]]
    reused = (["the dual encoder"] if c["dual encoder (frames)"].get("reused") else []) + \
        [f"the {t['frames']} head" for t in h["trials"] if t.get("resumed")]
    took = f"{record['total_seconds'] / 60:.1f} min in all" + (f" (reusing {', '.join(reused)} from an earlier run)"
                                                              if reused else "")
    lines.append(f"\n{record['machine']}; {took}.")
    return "\n".join(lines)
