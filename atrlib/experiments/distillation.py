"""The 2024–2025 additions as one call each, for a notebook: ensemble distillation (student vs
teacher vs the same student without distillation), any set of training variants side by side
(caption augmentation from a file), with confidence intervals, paired tests and cost.

    from atrlib.experiments.distillation import distillation_study, augmentation_ablation
    table = distillation_study(base_cfg, teachers=[{"name": "t1", "seed": 1}, {"name": "t2", "seed": 2},
                                                   {"name": "t3", "seed": 3}], out_dir="reports/x/distill")
    table = augmentation_ablation(base_cfg, "paraphrases.json", prob=0.3, out_dir="reports/x/augment")

Every choice (the teacher's ensemble weights) is fitted on the validation split; the test split
is only scored. Per-query AP@10 is averaged over student seeds before the statistics. Rows name
their protocol: the 2024 one (one clip per caption, mAP@10) always; the 2025 one (mAP@16 on a
relevance file, :mod:`atrlib.retrieval.protocol2025`) too when ``relevance_file`` is given.
"""
from __future__ import annotations

import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from atrlib.experiments.systems import load_systems, train_variants
from atrlib.files import write_json
from atrlib.retrieval import ensemble as E
from atrlib.retrieval.metrics import jackknife_ci, paired_test, per_query_metrics
from atrlib.retrieval.simfile import SimilarityMatrix, load_similarity, sim_path
from atrlib.retrieval.summaries import clip_interval

DEFAULT_TEACHERS = ({"name": "teacher-s1", "seed": 1}, {"name": "teacher-s2", "seed": 2},
                    {"name": "teacher-s3", "seed": 3})


# --------------------------------------------------------------------------- cost


def inference_cost(run_folders: Sequence[Path], dataset, n: int = 32, repeats: int = 2) -> Dict[str, float]:
    """What scoring costs for a system made of these runs (one model, or an ensemble of N):
    ``models``, ``parameters`` (sum over models, towers included) and ``seconds_per_100``:
    measured wall time to embed 100 clips from their waveforms and 100 captions from text,
    every model run separately (towers included, no cache), best of ``repeats``, scaled from
    the first ``n`` clips and their first captions."""
    import torch

    from atrlib.audio.embeddings import load_waves
    from atrlib.models.dual import load_model

    sub = dataset.subset(n)
    caps = [it["captions"][0] for it in sub.items]
    total_s, params = 0.0, 0
    for run in run_folders:
        run = Path(run)
        model = load_model(run / "best" if (run / "best" / "model.safetensors").exists() else run).eval()
        params += sum(p.numel() for p in model.parameters())
        waves = load_waves(sub, model.sample_rate, model.config.max_audio_seconds, progress=False)  # (n, samples)
        best = float("inf")
        with torch.no_grad():
            for _ in range(repeats):
                t0 = time.perf_counter()
                model.encode_audio(waves)                                         # (n, E)
                model.encode_text(caps)                                           # (n, E)
                best = min(best, time.perf_counter() - t0)
        total_s += best
    return {"models": len(run_folders), "parameters": int(params), "seconds_per_100": 100.0 * total_s / len(sub)}


# --------------------------------------------------------------------------- rows with statistics


def _per_query(sms: Sequence[SimilarityMatrix]) -> Dict[str, np.ndarray]:
    pq = [per_query_metrics(s.sim, s.relevant) for s in sms]
    return {k: np.mean([q[k] for q in pq], axis=0) for k in ("AP@10", "R@1", "R@10")}


def _ap16(sms: Sequence[SimilarityMatrix], dataset, relevance_file) -> np.ndarray:
    from atrlib.retrieval.protocol2025 import load_relevance_file, protocol_2025_values

    ann = load_relevance_file(relevance_file)
    return np.mean([protocol_2025_values(s, dataset, ann)["AP@16"] for s in sms], axis=0)


def compare_systems(systems: Mapping[str, Dict[str, Any]], baseline: str, reference: Optional[str] = None,
                    test_data=None, relevance_file: str = "", n: int = 10000, seed: int = 0) -> pd.DataFrame:
    """One row per system: ``val_mAP@10``, test ``mAP@10`` with its jackknife 95 % CI, R@1,
    R@10, paired permutation tests of per-query AP@10 against ``baseline`` (``diff_vs_<baseline>``,
    ``p_vs_<baseline>``) and ``reference``, the cost columns, and — with ``relevance_file`` —
    the 2025 protocol's mAP@16 with CI and the same tests on per-query AP@16.

    ``systems[name]``: ``{"test": [SimilarityMatrix per seed], "val": [...], "cost": {...}}``."""
    pq = {k: _per_query(v["test"]) for k, v in systems.items()}
    ap16 = {k: _ap16(v["test"], test_data, relevance_file) for k, v in systems.items()} if relevance_file else {}
    rows = []
    for name, v in systems.items():
        ci = clip_interval(jackknife_ci(pq[name]["AP@10"]))
        row: Dict[str, Any] = {"system": name, "val_mAP@10": float(np.mean([per_query_metrics(s.sim, s.relevant)["AP@10"].mean()
                                                                             for s in v["val"]])),
                               "mAP@10": ci["value"], "low": ci["low"], "high": ci["high"],
                               "R@1": float(pq[name]["R@1"].mean()), "R@10": float(pq[name]["R@10"].mean()),
                               "seeds": len(v["test"]), **v.get("cost", {})}
        if ap16:
            c16 = clip_interval(jackknife_ci(ap16[name]))
            row.update({"mAP@16 (2025)": c16["value"], "mAP@16_low": c16["low"], "mAP@16_high": c16["high"]})
        for other in (baseline, reference):
            if other and other != name and other in systems:
                t = paired_test(pq[name]["AP@10"], pq[other]["AP@10"], method="permutation", n=n, seed=seed)
                row.update({f"diff_vs_{other}": t["diff"], f"p_vs_{other}": t["p_value"]})
                if ap16:
                    t = paired_test(ap16[name], ap16[other], method="permutation", n=n, seed=seed)
                    row.update({f"diff16_vs_{other}": t["diff"], f"p16_vs_{other}": t["p_value"]})
        rows.append(row)
    table = pd.DataFrame(rows).set_index("system")
    table.attrs["protocols"] = {"mAP@10": "2024: one clip per caption, every test caption"}
    if ap16:
        table.attrs["protocols"]["mAP@16 (2025)"] = f"2025: relevant clips of {relevance_file}, its queries"
    return table


# --------------------------------------------------------------------------- distillation


def distillation_study(base, teachers: Sequence[dict] = DEFAULT_TEACHERS, student_loss: str = "infonce+distill",
                       baseline_loss: str = "infonce", temperature: float = 0.05, norm: str = "none",
                       weights: str = "equal", seeds: Sequence[int] = (0,), out_dir="distillation",
                       relevance_file: str = "", cost_clips: int = 32, n: int = 10000) -> pd.DataFrame:
    """Train the teachers (``teachers``: TrainConfig overrides with a ``name`` each, trained
    into ``out_dir/teachers/<name>``; finished ones are reused), score them on the training
    split, combine them (``weights="equal"``, as CP-JKU averaged their models; ``"validation"``:
    grid search on the validation split, :func:`atrlib.retrieval.ensemble.grid_search`, which may drop
    members), then train per seed the student
    (``student_loss`` with the teacher, ``out_dir/student-s<seed>``) and the same student
    without distillation (``baseline_loss``, ``out_dir/plain-s<seed>``). Returns
    :func:`compare_systems` over: the teacher ensemble, each teacher, the student and the plain
    student (tests against the plain student and against the teacher); writes
    ``distillation.csv`` and ``distillation.json`` into ``out_dir``."""
    from atrlib.data.splits import load_splits
    from atrlib.losses.distill import teacher_sim

    out = Path(out_dir)
    data = load_splits(base)
    t_runs = train_variants(base, list(teachers), out / "teachers", data)                  # name -> folder
    for folder in t_runs.values():                                                        # sim_<train split>.npz
        teacher_sim(folder, data["train"])
    val, test = E.align(load_systems(t_runs, base.val_split)), E.align(load_systems(t_runs, base.test_split))
    for sm in val.values():
        sm.meta["role"] = "validation"
    if weights == "validation":
        w = E.grid_search(val, step=0.1, norm=norm).weights if len(val) > 1 else {n_: 1.0 for n_ in val}
    elif weights == "equal":
        w = {n_: 1.0 / len(val) for n_ in val}
    else:
        raise ValueError(f"weights must be 'validation' or 'equal', not {weights!r}")
    used = {k: x for k, x in w.items() if x > 0}
    kw = {"teacher": [str(t_runs[k]) for k in used], "weights": [used[k] for k in used], "norm": norm,
          "temperature": float(temperature)}
    variants = []
    for s in seeds:
        variants.append({"name": f"student-s{s}", "loss": student_loss, "loss_kwargs": {"distill": kw}, "seed": s})
        variants.append({"name": f"plain-s{s}", "loss": baseline_loss, "loss_kwargs": {}, "seed": s})
    s_runs = train_variants(base, variants, out, data)
    teacher_name = f"teacher: ensemble of {len(used)}"
    systems: Dict[str, Dict[str, Any]] = {
        teacher_name: {"test": [E.apply(w, test, norm=norm, name="teacher")],
                       "val": [E.apply(w, val, norm=norm, name="teacher", allow_fit_data=True)],
                       "cost": inference_cost([t_runs[k] for k in used], data["test"], cost_clips)},
        "student (distilled)": {"test": [load_similarity(sim_path(s_runs[f"student-s{s}"], base.test_split)) for s in seeds],
                                "val": [load_similarity(sim_path(s_runs[f"student-s{s}"], base.val_split)) for s in seeds],
                                "cost": inference_cost([s_runs[f"student-s{seeds[0]}"]], data["test"], cost_clips)},
        "student without distillation": {"test": [load_similarity(sim_path(s_runs[f"plain-s{s}"], base.test_split))
                                                  for s in seeds],
                                         "val": [load_similarity(sim_path(s_runs[f"plain-s{s}"], base.val_split))
                                                 for s in seeds],
                                         "cost": inference_cost([s_runs[f"plain-s{seeds[0]}"]], data["test"], cost_clips)},
    }
    for k in t_runs:
        systems[f"teacher member {k}"] = {"test": [test[k]], "val": [val[k]],
                                          "cost": inference_cost([t_runs[k]], data["test"], cost_clips)}
    table = compare_systems(systems, baseline="student without distillation", reference=teacher_name,
                            test_data=data["test"], relevance_file=relevance_file, n=n)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "distillation.csv")
    write_json(out / "distillation.json", {"teacher_weights": {k: float(x) for k, x in w.items()},
                                           "weights_fitted_on": weights, "temperature": float(temperature),
                                           "norm": norm, "student_loss": student_loss, "baseline_loss": baseline_loss,
                                           "seeds": list(seeds), "protocols": table.attrs["protocols"],
                                           "table": {k: {c: (None if pd.isna(x) else x) for c, x in r.items()}
                                                     for k, r in table.iterrows()}})
    return table


# --------------------------------------------------------------------------- variants side by side


def variant_ablation(base, variants: Mapping[str, dict], seeds: Sequence[int] = (0,), out_dir="variants",
                     baseline: Optional[str] = None, relevance_file: str = "", n: int = 10000) -> pd.DataFrame:
    """Train every variant (name -> TrainConfig overrides) per seed into ``out_dir/<name>-s<seed>``
    (finished runs reused) and compare them (:func:`compare_systems`, tests against
    ``baseline``, default the first variant)."""
    from atrlib.data.splits import load_splits

    data = load_splits(base)
    folder = {name: re.sub(r"[^A-Za-z0-9_.=+-]+", "_", name).strip("_") for name in variants}  # a safe folder name
    todo = [{"name": f"{folder[name]}-s{s}", **dict(ov), "seed": s} for name, ov in variants.items() for s in seeds]
    runs = train_variants(base, todo, out_dir, data)
    systems = {name: {"test": [load_similarity(sim_path(runs[f"{folder[name]}-s{s}"], base.test_split)) for s in seeds],
                      "val": [load_similarity(sim_path(runs[f"{folder[name]}-s{s}"], base.val_split)) for s in seeds]}
               for name in variants}
    table = compare_systems(systems, baseline=baseline or next(iter(variants)), test_data=data["test"],
                            relevance_file=relevance_file, n=n)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    table.to_csv(Path(out_dir) / "variants.csv")
    return table


def augmentation_ablation(base, paraphrases: str, prob: float = 0.3, seeds: Sequence[int] = (0,),
                          out_dir="augmentation", relevance_file: str = "", n: int = 10000) -> pd.DataFrame:
    """The ablation row of caption augmentation: the same training with and without the
    paraphrase file (:mod:`atrlib.train.augment`), per seed, compared with CIs and a paired test."""
    return variant_ablation(base, {"without paraphrases": {"paraphrases": "", "paraphrase_prob": 0.0},
                                   f"with paraphrases (p={prob:g})": {"paraphrases": str(paraphrases),
                                                                      "paraphrase_prob": float(prob)}},
                            seeds, out_dir, relevance_file=relevance_file, n=n)


def same_clip_paraphrases(dataset, path) -> Path:
    """A paraphrase file for tests and the demo: each caption's paraphrases are the other
    captions of its clip (a stand-in for LLM / back-translation output). JSON."""
    table: Dict[str, List[str]] = {}
    for it in dataset.items:
        caps = [c.strip() for c in it["captions"]]
        for c in caps:
            table.setdefault(c, [])
            table[c].extend(x for x in caps if x != c and x not in table[c])
    write_json(Path(path), table)
    return Path(path)
