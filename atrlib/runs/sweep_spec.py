"""A sweep spec and its trials: the YAML read, checked and expanded, before anything runs.

:func:`load_spec` reads a spec (the format is in :mod:`atrlib.runs.sweep`) into a
:class:`SweepSpec`; :func:`expand_trials` makes its trials, ``trials × grid × seeds × folds``
merged onto the shared parameters, each with an id that stays the same when the spec grows and
changes with the profile or the stages (:func:`trial_identity`): another profile's finished
trials never count.
:func:`_validate` resolves every trial's parameters against the profile's notebooks. Nothing
here touches a sweep folder.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from atrlib.config import read_yaml_mapping
from atrlib.errors import SweepError

SPEC_KEYS = ("profile", "stages", "parameters", "trials", "grid", "seeds", "folds", "select", "resources",
             "description")
RESOURCE_KEYS = ("num_cpus", "num_gpus", "memory", "resources")  # Ray task options a trial may request

__all__ = ["SweepError", "Trial", "SweepSpec", "load_spec", "expand_trials", "trial_identity"]


@dataclass
class Trial:
    id: str  # folder name: label + hash of the overrides
    label: str  # the values this trial sets beyond the shared parameters, e.g. "loss=ntxent,seed=1"
    overrides: Dict[str, Any]  # every override (shared parameters included), -p syntax


@dataclass
class SweepSpec:
    path: Optional[Path]
    profile: str  # a profile name or an absolute YAML path
    stages: Optional[List[str]]
    parameters: Dict[str, Any]
    trials: List[Trial]
    select_metric: Optional[str]
    select_mode: str
    resources: Dict[str, Any]
    description: str = ""
    raw: dict = field(default_factory=dict)


def _slug(text: str, limit: int = 48) -> str:
    s = re.sub(r"[^A-Za-z0-9._=,+-]+", "_", text).strip("_")
    return s[:limit] or "base"


def _label_value(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))


def trial_identity(profile: str, stages: Optional[Sequence[str]]) -> Dict[str, Any]:
    """What a trial's id depends on beyond its overrides: the profile and the stages it runs
    (``None``: all of the profile's), so a finished trial of another profile or another stage
    selection never counts as this one."""
    return {"profile": str(profile), "stages": sorted(str(s) for s in stages) if stages else "all"}


def expand_trials(parameters: Mapping[str, Any], trials: Sequence[Mapping[str, Any]] = (),
                  grid: Optional[Mapping[str, Sequence[Any]]] = None, seeds: Sequence[Any] = (),
                  folds: int = 0, identity: Optional[Mapping[str, Any]] = None) -> List[Trial]:
    """``trials × grid × seeds × folds`` merged onto ``parameters`` (see the module docstring).

    ``identity`` (:func:`trial_identity`: profile and stages) is hashed into every id with the
    overrides. Raises :class:`SweepError` for an empty grid axis or two identical trials.
    """
    from atrlib.runs.profiles import parse_overrides

    axes: Dict[str, List[Any]] = {}
    for k, values in (grid or {}).items():
        values = list(values) if isinstance(values, (list, tuple)) else [values]
        if not values:
            raise SweepError(f"grid: {k!r} has no values")
        axes[str(k)] = values
    if seeds:
        axes["seed"] = list(seeds)
    if folds:
        if int(folds) < 2:
            raise SweepError(f"folds must be at least 2, got {folds}")
        axes["fold"] = list(range(int(folds)))
    configs = [dict(parse_overrides(t)) for t in trials] or [{}]
    base = parse_overrides(parameters)
    if folds:  # every fold trial also says how many folds there are (notebook 02's ``folds``)
        base = dict(base, folds=int(folds))
    out: List[Trial] = []
    seen: Dict[str, str] = {}
    for cfg in configs:
        for combo in itertools.product(*axes.values()):
            varied = dict(cfg, **dict(zip(axes, combo)))
            overrides = dict(base, **varied)
            key = overrides if identity is None else {"overrides": overrides, **identity}
            digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:8]
            label = ",".join(f"{k}={_label_value(v)}" for k, v in varied.items()) or "base"
            tid = f"{_slug(label)}-{digest}"
            if tid in seen:
                raise SweepError(f"two trials have the same parameters: {label} (check trials/grid for duplicates)")
            seen[tid] = label
            out.append(Trial(id=tid, label=label, overrides=overrides))
    return out


def load_spec(spec: Union[str, Path, Mapping[str, Any]]) -> SweepSpec:
    """Read and check a sweep spec (a YAML path or the same mapping); see the module docstring."""
    path = None
    if not isinstance(spec, Mapping):
        path = Path(spec).resolve()
        if not path.is_file():
            raise SweepError(f"sweep spec not found: {path}")
        spec = read_yaml_mapping(path, SweepError, "a mapping with 'profile'")
    where = str(path) if path else "sweep spec"
    unknown = set(spec) - set(SPEC_KEYS)
    if unknown:
        raise SweepError(f"{where}: unknown keys {sorted(unknown)}; allowed: {', '.join(SPEC_KEYS)}")
    if not spec.get("profile"):
        raise SweepError(f"{where}: 'profile' is required (a profile name or a YAML path)")
    profile = str(spec["profile"])
    if path is not None and profile.endswith((".yaml", ".yml")) and not Path(profile).is_absolute():
        profile = str((path.parent / profile).resolve())
    for key, kind in (("parameters", Mapping), ("grid", Mapping), ("resources", Mapping), ("select", Mapping),
                      ("trials", list), ("seeds", list)):
        if spec.get(key) is not None and not isinstance(spec[key], kind):
            raise SweepError(f"{where}: {key!r} must be a {'mapping' if kind is Mapping else 'list'}")
    if any(not isinstance(t, Mapping) for t in spec.get("trials") or []):
        raise SweepError(f"{where}: every entry of 'trials' must be a mapping of overrides")
    resources = dict(spec.get("resources") or {})
    bad = set(resources) - set(RESOURCE_KEYS)
    if bad:
        raise SweepError(f"{where}: unknown resources {sorted(bad)}; allowed: {', '.join(RESOURCE_KEYS)}")
    select = dict(spec.get("select") or {})
    mode = str(select.get("mode", "max"))
    if mode not in ("max", "min"):
        raise SweepError(f"{where}: select.mode must be 'max' or 'min', not {mode!r}")
    metric = select.get("metric")
    if metric is not None:
        _check_validation_metric(str(metric))
    stages = spec.get("stages")
    if isinstance(stages, str):
        stages = [s.strip() for s in stages.split(",") if s.strip()]
    from atrlib.config import fix_floats  # "1e-3" is a float here too, as in profiles

    parameters = fix_floats(dict(spec.get("parameters") or {}))
    trials = expand_trials(parameters, fix_floats(list(spec.get("trials") or [])), fix_floats(spec.get("grid")),
                           spec.get("seeds") or [], int(spec.get("folds") or 0), trial_identity(profile, stages))
    return SweepSpec(path=path, profile=profile, stages=list(stages) if stages else None,
                     parameters=parameters, trials=trials,
                     select_metric=str(metric) if metric else None, select_mode=mode, resources=resources,
                     description=str(spec.get("description") or ""), raw=dict(spec))


def _tokens(key: str) -> List[str]:
    return [t.lower() for t in re.split(r"[/_.\s-]+", key) if t]


def _check_validation_metric(key: str) -> None:
    toks = _tokens(key)
    if any(t.startswith("test") or t in ("eval", "evaluation") for t in toks) or not any(t.startswith("val") for t in toks):
        raise SweepError(f"select.metric {key!r}: the chosen trial is picked on validation metrics only; name a "
                         "flattened key with 'val' and without 'test', e.g. 02_train/best_val_mAP@10")


def _validate(spec: SweepSpec):
    """Load the profile and resolve every trial's parameters (raises before anything runs)."""
    from atrlib.runs.profiles import declared_parameters, load_profile, resolve_parameters, select_stages
    from atrlib.errors import ProfileError

    try:
        prof = load_profile(spec.profile)
        select_stages(prof, spec.stages)
        declared = {s.name: declared_parameters(s.notebook) for s in prof.stages}
        for t in spec.trials:
            try:
                resolve_parameters(prof, t.overrides, Path("/tmp/atrlib-sweep-check"), declared)
            except ProfileError as e:
                raise SweepError(f"trial {t.label}: {e}") from e
    except ProfileError as e:
        raise SweepError(str(e)) from e
    return prof
