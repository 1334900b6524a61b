"""From a recipe to a run and back: its TrainConfig and batch profile, then the ``06_reproduce``
report (the paper's numbers next to the run's, the cost, the settings gap, what was learned).

    r = get_recipe("samsung2024")
    cfg = train_config(r)                                   # the paper's settings as a TrainConfig
    table = reproduction_table(r, "reports/samsung2024")    # paper vs this run, with CIs
    profile_dict("samsung2024")                              # notebooks/params/samsung2024.yaml as data

Every system a recipe trains is a *variant* of the ``05_ensemble`` stage — that stage takes
every :class:`~atrlib.train.config.TrainConfig` field per variant, so optimiser, warm-up,
schedule, weight decay, clipping and accumulation are the paper's — stored in
``<run>/05_ensemble/variants/<name>/``; ``06_reproduce`` (:func:`reproduce`) reads them back.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from atrlib.recipes import get_recipe, recipe_names
from atrlib.recipes.base import METRICS, Recipe, Score


def train_config(recipe: Recipe | str, variant: Optional[str] = None, tiny: bool = False, **overrides):
    """A variant's complete :class:`~atrlib.train.config.TrainConfig` (the first variant by default):
    the recipe's base, the variant's fields, then ``overrides``."""
    from atrlib.train.config import TrainConfig

    r = get_recipe(recipe) if isinstance(recipe, str) else recipe
    v = r.variants[0] if variant is None else next((x for x in r.variants if x.name == variant), None)
    if v is None:
        raise KeyError(f"{r.name}: no variant {variant!r}; known: {', '.join(x.name for x in r.variants)}")
    base = {**r.base, **(r.tiny_base if tiny else {})}
    if tiny:
        base["size"] = "tiny"
    fields_ = {**base, **v.as_dict(tiny)}
    fields_.pop("name")
    return TrainConfig(**{**fields_, **overrides})


# ----------------------------------------------------------------------------- reading a run
def _read(path: Path) -> Optional[dict]:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def variant_dir(run_dir, name: str) -> Path:
    return Path(run_dir) / "05_ensemble" / "variants" / name


def _run_scores(folder: Path, split: str = "test") -> Dict[str, Score]:
    """R@k / mAP@10 with jackknife 95 % CIs of a run folder's ``sim_<split>.npz`` (text-to-audio)."""
    from atrlib.retrieval.simfile import sim_path
    from atrlib.retrieval.metrics import scores_with_ci
    from atrlib.retrieval.simfile import load_similarity

    sm = load_similarity(sim_path(folder, split))
    ci = scores_with_ci(sm.sim, sm.relevant)
    return {m: Score(float(ci[m]["value"]), float(ci[m]["low"]), float(ci[m]["high"])) for m in METRICS}


def member_folders(recipe: Recipe, run_dir) -> Dict[str, Path]:
    """Every trained system of the run that has test similarities: the variants, then the k-fold members."""
    from atrlib.experiments.systems import find_systems

    run = Path(run_dir)
    found = find_systems([f"05_ensemble/variants/{v.name}" for v in recipe.variants], base=run,
                         val_split="validation", test_split="test")
    kf = sorted((run / "05_ensemble" / "kfold").glob("fold*"))
    found.update({f"kfold/{d.name}": d for d in kf if (d / "metrics.json").exists()})
    return found


def ensemble_scores(recipe: Recipe, run_dir) -> Tuple[Optional[Dict[str, Score]], List[str]]:
    """Our ensemble by ``recipe.ensemble_rule`` on the test split (z-scored per query, equal
    weights): ``top-k`` = the k variants with the best *validation* mAP@10; ``all`` = every
    member (variants and folds). Returns (scores with CIs, member names) or (None, [])."""
    from atrlib.retrieval import ensemble as E
    from atrlib.experiments.systems import load_systems
    from atrlib.retrieval.metrics import retrieval_scores, scores_with_ci

    if not recipe.ensemble_rule:
        return None, []
    folders = member_folders(recipe, run_dir)
    variants = {n: d for n, d in folders.items() if not n.startswith("kfold/")}
    if recipe.ensemble_rule == "all":
        chosen = list(folders)
    else:
        k = int(recipe.ensemble_rule.split("-")[1])
        val = E.align(load_systems(variants, "validation"))
        score = {n: float(retrieval_scores(sm.sim, sm.relevant)["mAP@10"]) for n, sm in val.items()}
        chosen = sorted(score, key=lambda n: -score[n])[:k]
    if len(chosen) < 2:
        return None, chosen
    test = E.align(load_systems({n: folders[n] for n in chosen}, "test"))
    sm = E.apply({n: 1.0 for n in chosen}, test, norm="zscore")
    ci = scores_with_ci(sm.sim, sm.relevant)
    return {m: Score(float(ci[m]["value"]), float(ci[m]["low"]), float(ci[m]["high"])) for m in METRICS}, chosen


def reproduction_table(recipe: Recipe | str, run_dir):
    """The paper's numbers next to this run's: one row per (system, metric) with ``paper``,
    ``paper_low``/``paper_high`` (where reported), ``run``, ``run_low``/``run_high`` (jackknife
    95 %), ``diff`` (run - paper) and ``paper_in_run_ci``. Systems: the single run (the recipe's
    first variant) against ``recipe.single``, our ensemble against ``recipe.ensemble``."""
    import pandas as pd

    r = get_recipe(recipe) if isinstance(recipe, str) else recipe
    rows = []
    pairs = [("single", r.single, _run_scores(variant_dir(run_dir, r.single_variant.name)), r.single_variant.name)]
    if r.ensemble:
        ens, members = ensemble_scores(r, run_dir)
        if ens is not None:
            pairs.append(("ensemble", r.ensemble, ens, f"{r.ensemble_rule} of {len(members)}: " + ", ".join(members)))
    for kind, paper_name, ours, what in pairs:
        paper = r.reported_system(paper_name).scores()
        for m in METRICS:
            p, o = paper[m], ours[m]
            inside = None if o.low is None else bool(o.low <= p.value <= o.high)
            rows.append({"system": kind, "paper system": paper_name, "metric": m, "paper": p.value,
                         "paper_low": p.low, "paper_high": p.high, "run": o.value, "run_low": o.low,
                         "run_high": o.high, "diff": o.value - p.value, "paper_in_run_ci": inside, "run system": what})
    return pd.DataFrame(rows)


CAPTIONING_STAGE = "07_captioning"


def captioning_spec(recipe: Recipe) -> Optional[Dict[str, Any]]:
    """A recipe's task 6a part (its module's ``CAPTIONING``: Table 2's rows, which 07 row stands
    for which system, the stage's parameters), or None."""
    import importlib

    try:
        module = importlib.import_module(f"atrlib.recipes.{recipe.name}")
    except ImportError:
        return None
    return getattr(module, "CAPTIONING", None)


def captioning_table(recipe: Recipe | str, run_dir):
    """The report's captioning table beside this run's ``07_captioning`` numbers: one row per
    (paper system, metric) with ``paper``, ``run``, ``run_low``/``run_high`` (bootstrap 95 %),
    ``diff`` and ``missing because`` (a metric this machine could not compute, or a system not
    formed here). None when the recipe has no captioning part or the run no 07 stage."""
    import pandas as pd

    from atrlib.captioning.evaluate import LABELS

    r = get_recipe(recipe) if isinstance(recipe, str) else recipe
    spec = captioning_spec(r)
    got = _read(Path(run_dir) / CAPTIONING_STAGE / "metrics.json")
    if spec is None or got is None:
        return None
    metrics = spec["metrics"]
    rows = []
    for name, (what, *paper) in spec["reported"].items():
        ours_name = spec["systems"].get(name)
        ours = (got.get("systems") or {}).get(ours_name) if ours_name else None
        for m, p in zip(metrics, paper):
            row = {"paper system": name, "metric": LABELS[m], "paper": p, "run": None, "run_low": None, "run_high": None,
                   "diff": None, "run system": ours_name or "", "missing because": ""}
            if ours is None:
                row["missing because"] = ("the baseline of the challenge, not trained here" if name == "Baseline" else
                                          "not formed in this run (see what is left out)")
            elif m in ours:
                v = ours[m]
                row.update(run=v["value"], run_low=v["low"], run_high=v["high"], diff=v["value"] - p)
            else:
                row["missing because"] = (ours.get("missing") or {}).get(m, {}).get("reason", "not computed")
            rows.append(row)
    return pd.DataFrame(rows)


def run_cost(run_dir) -> Dict[str, Any]:
    """Wall time per finished stage from ``run.json``, their sum, and the device this process
    sees (the reproduction stage runs on the run's machine): GPU-hours on a GPU, CPU seconds
    otherwise, of the retrieval systems; a captioning stage's time is ``captioning_s`` beside it."""
    import torch

    rec = _read(Path(run_dir) / "run.json") or {}
    stages = {s["name"]: float(s["duration_s"]) for s in rec.get("stages", []) if s.get("duration_s") is not None}
    total = float(sum(stages.values()))
    captioning = stages.get(CAPTIONING_STAGE, 0.0)  # the task 6a systems, apart from the retrieval ones
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    out = {"stages_s": stages, "total_s": total, "device": gpu or "cpu", "profile": rec.get("profile")}
    out["gpu_hours" if gpu else "cpu_seconds"] = (total - captioning) / 3600 if gpu else total - captioning
    if CAPTIONING_STAGE in stages:
        out["captioning_s"] = captioning
    return out


# ----------------------------------------------------------------------------- projected cost
# Training pairs of the corpora the published rows name (pairs = clips x captions per clip):
#   Clotho v2.1 development: 3,839 clips x 5 captions (Drossos et al., ICASSP 2020; Clotho v2.1 release notes);
#   AudioCaps train: 49,838 clips x 1 caption (Kim et al., NAACL 2019, Table 1; fewer are still on YouTube);
#   WavCaps: 403,050 clips x 1 caption (Mei et al., 2023, Table 1: FreeSound 262,300, BBC Sound Effects
#   31,201, SoundBible 1,232, AudioSet SL 108,317); the 2025 baseline drops the Freesound ids of Clotho's
#   held-out splits first (at most 7,942, aac-datasets' list: under 2 %), which this count keeps.
CLOTHO_CLIPS = {"development": 3_839, "validation": 1_045}   # Clotho v2.1, five captions per clip
CORPUS_PAIRS = {"Clotho": CLOTHO_CLIPS["development"] * 5, "AudioCaps": 49_838, "WavCaps": 403_050}
# Epochs the published runs trained, where the recipe trains fewer: the 2025 baseline's train.py runs 20
# (its schedule ends at 16; dcase2025_baseline's choices note "epochs").
PUBLISHED_EPOCHS = {"dcase2025_baseline": 20}
# The recipes' own training data at full size (the 06 table projects a recipe on it whatever data the
# run had: a dry run's few clips, a tiny run's synth): Clotho v2.1 development 3,839 and validation
# 1,045 clips, five captions each; the 9:1 re-split of their 4,884 (Xiaomi 2023): 4,395 / 489 clips.
RECIPE_DATA = {"clotho": (CLOTHO_CLIPS["development"], CLOTHO_CLIPS["validation"]),   # dataset -> (train clips,
               "clotho-resplit": (4_395, 489)}                                         #            val clips)


def on_recipe_data(cost: dict, dataset: str, kfold: int = 0) -> dict:
    """``cost`` (a run's cost.json) with its training pairs and validation FLOPs per epoch on the
    recipe's full-size data (:data:`RECIPE_DATA`, five captions per clip); a k-fold member trains
    on (k-1)/k of development + validation and validates on the rest. Unchanged for a dataset the
    table does not know."""
    if dataset not in RECIPE_DATA:
        return cost
    train, val = RECIPE_DATA[dataset]
    if kfold:
        pooled = sum(CLOTHO_CLIPS.values())
        train, val = pooled * (kfold - 1) // kfold, pooled // kfold
    out = dict(cost, data={**cost.get("data", {}), "train_pairs_full": train * 5, "clips_per_pair": 0.2, "val_clips": val,
                           "val_captions": val * 5, "on": f"{dataset}{f' (k-fold member of {kfold})' if kfold else ''}"})
    f = cost.get("forward_flops")
    if f:  # validation each epoch: every clip and caption through the towers (the similarity matmul is negligible)
        out["val_flops_per_epoch"] = f["per_clip"] * val + f["per_caption"] * val * 5
    return out
_TIME = re.compile(r"(?:NVIDIA\s+)?(?P<gpu>A40|A100|H100|V100|RTX 2080 Ti)\b.*?(?P<h>\d+)\s*h\s*(?P<m>\d+)\s*min")


def _cost_of(folder: Path) -> Optional[dict]:
    from atrlib.train.cost import COST_FILE

    return _read(Path(folder) / COST_FILE)


def single_cost(recipe: Recipe | str, run_dir) -> Optional[dict]:
    """The single system's ``cost.json`` (None when it wrote none)."""
    r = get_recipe(recipe) if isinstance(recipe, str) else recipe
    return _cost_of(variant_dir(run_dir, r.single_variant.name))


def cost_table(recipe: Recipe | str, run_dir, gpu: str = "A40", utilisation: float = 0.35):
    """One row per trained system of the run (the variants, then the k-fold members as one row of
    ``recipe.kfold`` members): parameters, FLOPs per step and memory at the recipe's batch,
    projected GPU-hours on ``gpu`` for the recipe's epochs over the recipe's full-size training set
    (:func:`on_recipe_data`: Clotho, whatever data the run itself had), with
    the interval of the utilisation range; a variant the run did not train is projected from the
    single system's measurement at its own batch. The last row, ``recipe``, sums the hours.
    None when no system of the run wrote a ``cost.json``."""
    import pandas as pd

    from atrlib.train.cost import project

    r = get_recipe(recipe) if isinstance(recipe, str) else recipe
    single = _cost_of(variant_dir(run_dir, r.single_variant.name))
    systems = [(v.name, v.name, _cost_of(variant_dir(run_dir, v.name)), 1) for v in r.variants]
    folds = sorted((Path(run_dir) / "05_ensemble" / "kfold").glob("fold*"))
    if r.kfold and folds:
        systems.append((f"kfold ({r.kfold} members)", None, _cost_of(folds[0]), r.kfold))
    rows = []
    for name, variant, cost, members in systems:
        note = "measured"
        if cost is None and single is not None and variant is not None:
            cost, note = single, f"projected from {r.single_variant.name}'s measurement"
        if cost is None:
            continue
        rc = train_config(r, variant)  # the recipe's full-size settings (a k-fold member: the base's)
        cost = on_recipe_data(cost, rc.dataset, r.kfold if variant is None else 0)
        p = project(cost, gpu=gpu, utilisation=utilisation, batch_size=rc.batch_size, epochs=rc.epochs,
                    precision=rc.precision)
        par = cost["parameters"]["parts"]["total"]
        rows.append({"system": name, "model": cost["model"], "trainable params": par["trainable"],
                     "frozen params": par["frozen"], "batch": p["batch"], "epochs": p["epochs"],
                     "train pairs": p["train_pairs"], "GFLOP/step": p["flops_per_step"] / 1e9,
                     "memory GiB": p["memory_bytes"] / 2 ** 30, "members": members,
                     "GPU-hours": members * p["gpu_hours"], "GPU-hours low": members * p["gpu_hours_low"],
                     "GPU-hours high": members * p["gpu_hours_high"], "how": note})
    if not rows:
        return None
    table = pd.DataFrame(rows)
    total = {"system": "recipe", "members": int(table["members"].sum()),
             **{k: float(table[k].sum()) for k in ("GPU-hours", "GPU-hours low", "GPU-hours high")},
             "how": f"sum over systems and members, one {gpu} at {utilisation:.0%} utilisation"}
    return pd.concat([table, pd.DataFrame([total])], ignore_index=True)


def published_time_table(recipe: Recipe | str, run_dir, utilisation: float = 0.35):
    """The reported rows that print their training time and GPU (``"NVIDIA A40, 34 h 44 min"``)
    beside this run's projection for that row: the single system's measurement at the row's
    variant's batch, the row's corpora (:data:`CORPUS_PAIRS`, named in the row's name), the
    published epochs, on the row's GPU. ``ratio`` = projected / published. None when no row
    prints a time or the run has no ``cost.json``."""
    import pandas as pd

    from atrlib.train.cost import project

    r = get_recipe(recipe) if isinstance(recipe, str) else recipe
    cost = _cost_of(variant_dir(run_dir, r.single_variant.name))
    if cost is None:
        return None
    rows = []
    for row in r.reported:
        m = _TIME.search(row.description)
        if not m:
            continue
        corpora = [c for c in CORPUS_PAIRS if c.lower() in row.name.lower()] or ["Clotho"]
        variant = next((v.name for v in r.variants if v.stands_for == row.name), r.single_variant.name)
        rc = train_config(r, variant)
        epochs = PUBLISHED_EPOCHS.get(r.name, rc.epochs)
        pairs = sum(CORPUS_PAIRS[c] for c in corpora)
        p = project(on_recipe_data(cost, rc.dataset), gpu=m["gpu"], utilisation=utilisation,
                    batch_size=rc.batch_size, epochs=epochs, train_pairs=pairs, precision=rc.precision)
        published = int(m["h"]) + int(m["m"]) / 60
        rows.append({"paper system": row.name, "GPU": m["gpu"], "corpora": " + ".join(corpora), "train pairs": pairs,
                     "batch": rc.batch_size, "epochs": epochs, "published hours": published,
                     "projected hours": p["gpu_hours"], "projected low": p["gpu_hours_low"],
                     "projected high": p["gpu_hours_high"], "ratio": p["gpu_hours"] / published,
                     "model measured": cost["model"]})
    return pd.DataFrame(rows) if rows else None


def map16_row(recipe: Recipe | str, run_dir, relevance_file: str = "") -> Optional[Dict[str, Any]]:
    """This run's mAP@16 (the DCASE 2025 protocol, :mod:`atrlib.retrieval.protocol2025`, jackknife
    95 %) beside the paper's for the single system, when the paper reports one. ``relevance_file``
    empty: ``run`` is None and ``missing because`` says so. None when the paper has no mAP@16."""
    r = get_recipe(recipe) if isinstance(recipe, str) else recipe
    paper = r.reported_system(r.single).scores().get("mAP@16")
    if paper is None:
        return None
    row: Dict[str, Any] = {"system": "single", "paper system": r.single, "metric": "mAP@16", "paper": paper.value,
                           "run": None, "run_low": None, "run_high": None, "diff": None, "queries": None,
                           "missing because": ""}
    if not relevance_file:
        row["missing because"] = "not scored: no relevance file (06's relevance_file, e.g. metadata_eval.csv)"
        return row
    from atrlib.data.splits import load_splits
    from atrlib.retrieval.protocol2025 import PROTOCOL_2025, both_protocols
    from atrlib.retrieval.simfile import load_similarity, sim_path
    from atrlib.train.config import TrainConfig

    folder = variant_dir(run_dir, r.single_variant.name)
    cfg = TrainConfig.from_dict(_read(folder / "params.json") or {})
    test = load_splits(cfg)["test"]
    got = both_protocols(load_similarity(sim_path(folder, "test")), test, relevance_file).loc[PROTOCOL_2025]
    row.update(run=float(got["mAP@16"]), run_low=float(got["mAP@16_low"]), run_high=float(got["mAP@16_high"]),
               diff=float(got["mAP@16"]) - paper.value, queries=int(got["queries"]))
    return row


GAP_FIELDS = ("model", "dataset", "loss", "epochs", "batch_size", "grad_accum", "lr", "weight_decay", "warmup",
              "scheduler", "max_grad_norm", "patience", "fast_dev_run", "pretrained")


def settings_gap(recipe: Recipe | str, run_dir) -> List[Dict[str, Any]]:
    """Fields of the single system's saved ``params.json`` that differ from the recipe's full-size
    settings (a tiny run differs in model, data and epochs; a full run should differ in nothing)."""
    r = get_recipe(recipe) if isinstance(recipe, str) else recipe
    params = _read(variant_dir(run_dir, r.single_variant.name) / "params.json") or {}
    want = train_config(r).to_dict()
    return [{"setting": k, "recipe": want[k], "run": params.get(k)} for k in GAP_FIELDS
            if k in params and params[k] != want[k]]


def learned_text(recipe: Recipe, table, gaps: Sequence[Mapping[str, Any]]) -> str:
    """One or two sentences from the numbers: how far this run is from the paper and whether the
    paper's value lies in this run's interval; a tiny run is said to be a smoke test."""
    single = table[(table["system"] == "single") & (table["metric"] == "mAP@10")].iloc[0]
    out = (f"This run's single system reaches mAP@10 {single['run']:.3f} (95 % CI {single['run_low']:.3f}–"
           f"{single['run_high']:.3f}) against the paper's {single['paper']:.3f} for {single['paper system']}: "
           f"{single['diff']:+.3f}, the paper's value {'inside' if single['paper_in_run_ci'] else 'outside'} our interval.")
    ens = table[(table["system"] == "ensemble") & (table["metric"] == "mAP@10")]
    if len(ens):
        e = ens.iloc[0]
        out += (f" Our ensemble: {e['run']:.3f} against {e['paper']:.3f} ({e['diff']:+.3f}), "
                f"{e['run'] - single['run']:+.3f} over our single system (the paper: "
                f"{e['paper'] - single['paper']:+.3f}).")
    changed = {g["setting"] for g in gaps}
    dry = {g["setting"]: g["run"] for g in gaps if g["setting"] in ("fast_dev_run", "pretrained")}
    if dry.get("fast_dev_run"):
        return (f"A dry run (fast_dev_run={dry['fast_dev_run']}"
                + (", random weights" if dry.get("pretrained") is False else "")
                + "): every system took that many optimiser steps on a few clips, so its numbers only show that "
                  "every stage runs at this size, and mean nothing about the paper's. What it measured is the cost "
                  "projection below.")
    if changed & {"dataset", "model"}:
        out += (" This run changed " + ", ".join(sorted(changed)) + " from the paper's settings (a tiny smoke run "
                "on other data checks the code path, not the paper's numbers).")
    return out


def reproduce(recipe: str, run_dir, out_dir, relevance_file: str = "", gpu: str = "A40",
              utilisation: float = 0.35) -> Dict[str, Any]:
    """What ``06_reproduce`` does: the table, this run's mAP@16 where the paper has one (with a
    ``relevance_file``), cost (stage times, the projection per system on ``gpu`` at
    ``utilisation``, published training times beside their projection), settings gap and what
    was left out; writes ``<out_dir>/metrics.json`` and returns everything (tables as DataFrames)."""
    from atrlib.files import write_metrics

    if not recipe:  # the notebook's default: the run's profile is named after its recipe
        recipe = (_read(Path(run_dir) / "run.json") or {}).get("profile") or ""
    r = get_recipe(recipe)
    table = reproduction_table(r, run_dir)
    gaps = settings_gap(r, run_dir)
    cost = run_cost(run_dir)
    text = learned_text(r, table, gaps)
    map16 = map16_row(r, run_dir, relevance_file)
    costs = cost_table(r, run_dir, gpu, utilisation)
    times = published_time_table(r, run_dir, utilisation)

    def nums(kind):
        sub = table[table["system"] == kind]
        return {row["metric"]: {k: row[k] for k in ("paper", "run", "run_low", "run_high", "diff")}
                for _, row in sub.iterrows()}

    cap = captioning_table(r, run_dir)
    single = nums("single")
    if map16 is not None:
        single["mAP@16"] = {k: map16[k] for k in ("paper", "run", "run_low", "run_high", "diff", "missing because")}
    metrics = {"recipe": r.name, "paper": r.paper.title, "single_system": r.single, "single": single,
               "ensemble_system": r.ensemble, "ensemble": nums("ensemble") or None, "cost": cost,
               "projected_cost": None if costs is None else costs.to_dict("records"),
               "published_times": None if times is None else times.to_dict("records"),
               "settings_gap": gaps, "left_out": [n.what for n in r.left_out], "learned": text,
               "captioning": None if cap is None else cap.to_dict("records")}
    key = ["single/mAP@10/run", "single/mAP@10/paper", "single/mAP@10/diff"]
    if r.ensemble and metrics["ensemble"]:
        key += ["ensemble/mAP@10/run", "ensemble/mAP@10/paper"]
    if map16 is not None and map16["run"] is not None:
        key += ["single/mAP@16/run", "single/mAP@16/paper"]
    write_metrics(out_dir, metrics, params={"recipe": r.name, "relevance_file": relevance_file, "gpu": gpu,
                                            "utilisation": utilisation}, key_metrics=key)
    return {"recipe": r, "table": table, "gaps": gaps, "cost": cost, "learned": text, "metrics": metrics,
            "captioning": cap, "map16": map16, "cost_table": costs, "published_times": times}


def readme_table() -> str:
    """Markdown: each recipe's GPU command and the paper's numbers beside it."""
    lines = ["| recipe | command (GPU, Clotho) | paper single: R@1 / R@10 / mAP@10 | paper ensemble mAP@10 |",
             "|---|---|---|---|"]
    for r in map(get_recipe, recipe_names()):
        s = r.reported_system(r.single)
        e = r.reported_system(r.ensemble).map10.text() if r.ensemble else "—"
        lines.append(f"| `{r.name}` | `python -m atrlib run --profile {r.name} -p root=/data/clotho` | "
                     f"{r.single}: {s.r1.value:.3f} / {s.r10.value:.3f} / {s.map10.value:.3f} | {e} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the batch profile
def profile_dict(recipe: Recipe | str, notebook_defaults: Optional[Mapping[str, Mapping[str, Any]]] = None) -> dict:
    """The recipe's batch profile (``notebooks/params/<name>.yaml``) as data: ``05_ensemble``
    trains the variants (full size), ``07_captioning`` their captioners (a recipe with a
    ``CAPTIONING`` part), ``06_reproduce`` compares; ``when: size=tiny`` swaps in the
    tiny towers, the synth data and 2 epochs. Values equal to a notebook's own default are left
    out (profiles say only what differs); ``notebook_defaults`` maps stage -> its parameters."""
    r = get_recipe(recipe) if isinstance(recipe, str) else recipe
    nd = notebook_defaults or {}
    ens = {"systems": [], "include_tagbridge": False, **{k: v for k, v in r.base.items() if k != "dataset"},
           "variants": r.variant_dicts(), **({"kfold": r.kfold} if r.kfold else {})}
    ens = {k: v for k, v in ens.items() if nd.get("05_ensemble", {}).get(k, object()) != v}
    tiny: Dict[str, Any] = {"dataset": r.tiny_base["dataset"], "05_ensemble.model": r.tiny_base["model"],
                            "epochs": r.tiny_base["epochs"], "batch_size": r.tiny_base["batch_size"]}
    if any(v.tiny_fields or not v.in_tiny for v in r.variants):
        tiny["05_ensemble.variants"] = r.variant_dicts(tiny=True)
    if r.kfold:
        tiny["05_ensemble.kfold"] = 2
    stages = [{"notebook": "05_ensemble.ipynb", "parameters": ens}]
    cap = captioning_spec(r)
    what = "trained by 05_ensemble"
    if cap is not None:  # task 6a: captioners on the variants' audio towers, before 06 compares both tables
        stages.append({"notebook": f"{CAPTIONING_STAGE}.ipynb", "needs": ["05_ensemble"], "parameters": dict(cap["stage"])})
        tiny.update(cap["tiny"])
        what += f", its captioners by {CAPTIONING_STAGE}"
    stages.append({"notebook": "06_reproduce.ipynb", "needs": ["05_ensemble"], "parameters": {"recipe": r.name}})
    return {
        "description": f"{r.paper.team} {r.paper.year} ({r.paper.task}) reproduced: every system of the recipe "
                       f"atrlib.recipes.{r.name} {what}, compared with the report by 06_reproduce. "
                       f"GPU: -p root=/path/to/clotho; CPU smoke test: -p size=tiny",
        "defaults": {"dataset": r.base["dataset"]},
        "stages": stages,
        "when": {"size=tiny": tiny},
    }
