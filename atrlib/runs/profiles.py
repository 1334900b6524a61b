"""Profiles: the YAML that names a batch run's stage notebooks and their parameters (pure, no execution).

A *profile* is ``notebooks/params/NAME.yaml``::

    description: tiny run for tests
    defaults:            # offered to every stage; each stage gets only those its notebook declares
      dataset: synth
      size: tiny
    stages:
      - notebook: 01_data.ipynb       # relative to the notebooks dir
        parameters: {max_clips: 20}   # stage-specific, override defaults
      - notebook: 02_train.ipynb
      - notebook: 03_evaluate.ipynb
        needs: [02_train]             # skipped (and recorded so) if 02_train failed or was skipped

Rules, in the order they apply:

* Stage name = notebook stem (``01_data``). A stage entry may also be just the notebook
  file name. ``needs`` names earlier stages.
* A stage's parameters are: ``defaults`` it declares < its own ``parameters`` < ``-p key=value``
  overrides < ``-p stage.key=value`` overrides. Only parameters the notebook declares (its
  cell tagged ``parameters``, read with ``papermill.inspect_notebook``) are injected; a
  stage ``parameters`` entry or an override that no stage declares is an error that lists
  the declared ones, raised before anything runs. A ``-p`` value takes the type of the
  declared default in the notebook: a string parameter gets the text exactly
  (``-p 'query=a dog #1 barking'``, ``-p query=no``), ``-p epochs=3`` is the int 3 where
  ``epochs`` is an int, ``-p epochs=abc`` is an error naming ``epochs``, lists and dicts are
  YAML. Values with a rule in :data:`atrlib.train.config.RULES` (``epochs >= 1``, ``lr > 0``,
  ...) are checked for every stage before anything runs. Unlike plain PyYAML, ``1e-3`` (no
  dot) is read as a float here and in profiles.
* A stage's notebook must lie inside the notebooks folder (the project's ``notebooks/``,
  the folder above the profile's ``params/`` folder, or ``--notebooks``): absolute paths,
  ``..`` and symlinks leading out are refused, so a shared profile cannot run other code.
* The runner always offers ``out_dir`` (the stage's folder) and ``run_dir`` (the run
  root), both absolute; later stages read earlier ones' files from
  ``<run_dir>/<stage>/...``. They cannot be overridden.

Conditional overrides (``when``): one profile can hold a full-size run and its tiny CPU
twin on the same code path. Each ``when`` entry maps a condition ``key=value`` to overrides
written like ``-p`` ones (``key`` for every stage that declares it, ``stage.key`` for one)::

    defaults: {dataset: clotho, train_split: development, test_split: evaluation}
    stages: [...]
    when:
      size=tiny:                      # python -m atrlib run --profile P -p size=tiny
        dataset: synth
        test_split: test
        02_train.model: huawei2022-tiny
        epochs: 2

* A condition looks at the value a parameter has *without* any ``when`` block: ``-p`` overrides
  and the profile's own values (for ``key``: the first stage, in profile order, that declares
  it; for ``stage.key``: that stage). The text after ``=`` takes that parameter's declared
  type, as a ``-p`` value does. Conditions do not chain: an override that sets ``size``
  does not trigger another block.
* A matching block's overrides sit above the profile's ``defaults`` and stage ``parameters``
  and below every ``-p`` override: ``-p epochs=5 -p size=tiny`` trains 5 epochs. Blocks that
  match apply in file order (a later one wins a shared key).
* Every block is checked like ``-p`` overrides whether or not it matches (an unknown key or
  stage is an error before anything runs), and so is each condition's key.

"""
from __future__ import annotations

import ast
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence, Union


from atrlib.config import fix_floats, parse_value, read_yaml_mapping
from atrlib.errors import PreflightError, ProfileError
from atrlib.paths import REPO_ROOT
from atrlib.train.config import check_values

RUNNER_PARAMS = ("out_dir", "run_dir")  # always offered by the runner; not overridable


class RawValue(str):
    """A ``-p key=value`` value as typed; it gets its type from the parameter it sets
    (:func:`atrlib.train.config.typed_value`) when the stages are resolved."""


# --------------------------------------------------------------------------------------
# Profiles
# --------------------------------------------------------------------------------------
def default_notebooks_dir() -> Path:
    """``notebooks/`` of the repository atrlib lives in, else ``./notebooks``."""
    repo = REPO_ROOT / "notebooks"
    return repo if repo.is_dir() else Path.cwd() / "notebooks"


def default_reports_dir() -> Path:
    """``reports/`` of the repository atrlib lives in, else ``./reports``."""
    return REPO_ROOT / "reports" if (REPO_ROOT / "notebooks").is_dir() else Path.cwd() / "reports"


@dataclass
class Stage:
    name: str  # notebook stem, e.g. "01_data"
    notebook: Path  # absolute path of the source notebook
    parameters: dict[str, Any] = field(default_factory=dict)  # stage-specific, from the profile
    needs: list[str] = field(default_factory=list)  # earlier stages that must be ok


@dataclass
class Profile:
    name: str
    path: Path
    description: str
    defaults: dict[str, Any]
    stages: list[Stage]
    notebooks_dir: Path
    when: dict[str, dict[str, Any]] = field(default_factory=dict)  # "key=value" -> overrides (module docstring)

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)


def list_profiles(notebooks_dir: Optional[Path] = None) -> list[str]:
    """Names of the profiles in ``<notebooks_dir>/params/``."""
    d = Path(notebooks_dir or default_notebooks_dir()) / "params"
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def find_profile(profile: Union[str, Path], notebooks_dir: Optional[Path] = None) -> Path:
    """A profile's YAML file: an existing path (``x.yaml``), or a name in ``<notebooks_dir>/params/``."""
    p = Path(profile)
    if p.suffix in (".yaml", ".yml") or p.is_file():
        if not p.is_file():
            raise ProfileError(f"profile file not found: {p}")
        return p.resolve()
    d = Path(notebooks_dir or default_notebooks_dir()) / "params"
    for suffix in (".yaml", ".yml"):
        if (d / f"{profile}{suffix}").is_file():
            return (d / f"{profile}{suffix}").resolve()
    known = ", ".join(list_profiles(d.parent)) or "(none)"
    raise ProfileError(f"no profile {str(profile)!r} in {d}; available: {known}")


def load_profile(profile: Union[str, Path], notebooks_dir: Optional[Path] = None) -> Profile:
    """Read and check a profile (see the module docstring for the format).

    ``profile`` is a name in ``<notebooks_dir>/params/`` or a path to a YAML file. Without
    ``notebooks_dir``, notebooks are looked up in the folder above the profile's ``params/``
    folder when it lives in one (``notebooks/params/x.yaml`` -> ``notebooks/``), else in
    the repository's ``notebooks/``.
    """
    path = find_profile(profile, notebooks_dir)
    if notebooks_dir is None:
        notebooks_dir = path.parent.parent if path.parent.name == "params" else default_notebooks_dir()
    notebooks_dir = Path(notebooks_dir).resolve()
    data = read_yaml_mapping(path, ProfileError, "a mapping with 'stages'")
    unknown = set(data) - {"description", "defaults", "stages", "when"}
    if unknown:
        raise ProfileError(f"{path}: unknown top-level keys {sorted(unknown)}; allowed: description, defaults, stages, when")
    when = _load_when(path, data.get("when"))
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise ProfileError(f"{path}: 'defaults' must be a mapping")
    defaults = fix_floats(defaults)
    raw_stages = data.get("stages")
    if not isinstance(raw_stages, list) or not raw_stages:
        raise ProfileError(f"{path}: 'stages' must be a non-empty list")

    stages: list[Stage] = []
    for i, entry in enumerate(raw_stages):
        if isinstance(entry, str):
            entry = {"notebook": entry}
        if not isinstance(entry, dict) or "notebook" not in entry:
            raise ProfileError(f"{path}: stage {i + 1} needs a 'notebook' entry")
        bad = set(entry) - {"notebook", "parameters", "needs"}
        if bad:
            raise ProfileError(f"{path}: stage {entry['notebook']}: unknown keys {sorted(bad)}; allowed: notebook, parameters, needs")
        rel = str(entry["notebook"])
        nb = notebooks_dir / rel
        name = nb.stem
        real = Path(os.path.realpath(nb))
        if Path(rel).is_absolute() or ".." in Path(rel).parts or notebooks_dir.resolve() not in real.parents:
            raise ProfileError(f"{path}: stage {name}: notebook {rel!r} is outside the notebooks folder {notebooks_dir}; "
                               "a profile may only run notebooks inside it (name another folder with --notebooks)")
        if not nb.is_file():
            raise ProfileError(f"{path}: stage {name}: notebook not found: {nb}")
        if any(s.name == name for s in stages):
            raise ProfileError(f"{path}: stage {name} appears twice")
        params = entry.get("parameters") or {}
        if not isinstance(params, dict):
            raise ProfileError(f"{path}: stage {name}: 'parameters' must be a mapping")
        params = fix_floats(params)
        needs = entry.get("needs") or []
        needs = [needs] if isinstance(needs, str) else list(needs)
        earlier = [s.name for s in stages]
        for n in needs:
            if n not in earlier:
                raise ProfileError(f"{path}: stage {name} needs {n!r}, which is not an earlier stage ({', '.join(earlier) or 'none'})")
        stages.append(Stage(name=name, notebook=nb, parameters=dict(params), needs=[str(n) for n in needs]))
    return Profile(
        name=path.stem,
        path=path,
        description=str(data.get("description") or ""),
        defaults=dict(defaults),
        stages=stages,
        notebooks_dir=notebooks_dir,
        when=when,
    )


def _load_when(path: Path, raw: Any) -> dict[str, dict[str, Any]]:
    """The ``when`` block: ``{"key=value": {override key: value}}`` (shape checked here, names
    checked against the notebooks in :func:`resolve_parameters`)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ProfileError(f"{path}: 'when' must map conditions 'key=value' to overrides, got {type(raw).__name__}")
    out: dict[str, dict[str, Any]] = {}
    for cond, block in raw.items():
        key, eq, _ = str(cond).partition("=")
        if not eq or not key.strip():
            raise ProfileError(f"{path}: when: condition {cond!r} must read key=value (e.g. size=tiny)")
        if not isinstance(block, dict) or not block:
            raise ProfileError(f"{path}: when {cond}: expected a non-empty mapping of overrides")
        out[str(cond)] = fix_floats(dict(block))
    return out


# --------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------
def parse_overrides(overrides: Union[Mapping[str, Any], Iterable[str], None]) -> dict[str, Any]:
    """``["epochs=3", "02_train.lr=1e-3"]`` (or a dict) -> ``{"epochs": RawValue("3"), ...}``.

    Typed-in values stay text (:class:`RawValue`) until :func:`resolve_parameters` gives each
    the type its notebook declares; a dict's values are taken as already typed."""
    if not overrides:
        return {}
    if isinstance(overrides, Mapping):
        return {str(k): v for k, v in overrides.items()}
    out: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ProfileError(f"-p expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ProfileError(f"-p expects key=value, got {item!r}")
        out[key] = RawValue(value)
    return out


def _declared_default(info: Any) -> Any:
    """The declared default of a parameter (papermill's info dict) as a Python value, or None."""
    text = info.get("default") if isinstance(info, Mapping) else None
    if text is None:
        return None
    try:
        return ast.literal_eval(str(text))
    except (ValueError, SyntaxError):
        return None


def _typed(key: str, value: Any, info: Any, where: str) -> Any:
    if not isinstance(value, RawValue):
        return value
    from atrlib.train.config import typed_value
    from atrlib.errors import PreflightError

    like = _declared_default(info)
    try:
        return typed_value(key, str(value), like) if like is not None else parse_value(str(value))
    except PreflightError as e:
        raise ProfileError(f"-p {where}{e}") from None


def declared_parameters(notebook: Path) -> dict[str, dict]:
    """The parameters a notebook declares in its ``parameters`` cell (name -> papermill's info)."""
    import papermill

    return papermill.inspect_notebook(str(notebook))


def resolve_parameters(
    profile: Profile,
    overrides: Mapping[str, Any],
    run_dir: Path,
    declared: Optional[Mapping[str, Mapping[str, Any]]] = None,
) -> dict[str, dict[str, Any]]:
    """Parameters to inject per stage (all stages of the profile), checking every name.

    ``declared`` maps stage name -> declared parameter names (read from the notebooks when
    not given). Raises :class:`ProfileError` for a stage parameter its notebook does not
    declare, an override no stage declares, a ``stage.key`` override naming an unknown
    stage or a key that stage does not declare, or an override of ``out_dir``/``run_dir`` —
    in ``-p`` overrides and in every ``when`` block. Precedence, lowest first: ``defaults``,
    stage ``parameters``, matching ``when`` blocks, ``-p key``, ``-p stage.key``.
    """
    if declared is None:
        declared = {s.name: declared_parameters(s.notebook) for s in profile.stages}
    run_dir = Path(run_dir).resolve()
    names = [s.name for s in profile.stages]

    def listing(stage: Optional[str] = None) -> str:
        if stage is not None:
            return f"{stage} declares: {', '.join(declared[stage]) or '(nothing)'}"
        return "; ".join(f"{s} declares: {', '.join(declared[s]) or '(nothing)'}" for s in names)

    def split(ov: Mapping[str, Any], what: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """(global overrides, stage -> overrides), every name checked against the notebooks."""
        g: dict[str, Any] = {}
        st: dict[str, dict[str, Any]] = {n: {} for n in names}
        for key, value in ov.items():
            stage, _, pkey = key.rpartition(".")
            if pkey in RUNNER_PARAMS:
                raise ProfileError(f"{what}{key}: out_dir and run_dir are set by the runner (use --out)")
            if stage:
                if stage not in st:
                    raise ProfileError(f"{what}{key}: no stage {stage!r} in profile {profile.name}; stages: {', '.join(names)}")
                if pkey not in declared[stage]:
                    raise ProfileError(f"{what}{key}: stage {stage} does not declare {pkey!r}; {listing(stage)}")
                st[stage][pkey] = value
            else:
                if not any(pkey in declared[s] for s in names):
                    raise ProfileError(f"{what}{key}: no stage declares {pkey!r}; {listing()}")
                g[pkey] = value
        return g, st

    user = split(overrides, "-p ")
    blocks = {cond: split(block, f"{profile.path}: when {cond}: ") for cond, block in profile.when.items()}
    for s in profile.stages:
        decl = declared[s.name]
        for k in s.parameters:
            if k in RUNNER_PARAMS:
                raise ProfileError(f"{profile.path}: stage {s.name}: {k} is set by the runner")
            if k not in decl:
                raise ProfileError(f"{profile.path}: stage {s.name} sets {k!r}, which its notebook does not declare; {listing(s.name)}")

    def stage_params(s: Stage, layers: Sequence[tuple[dict[str, Any], dict[str, dict[str, Any]]]]) -> dict[str, Any]:
        decl = declared[s.name]
        params = {k: v for k, v in profile.defaults.items() if k in decl}
        params.update(s.parameters)
        for g, st in layers:  # lowest first: matching when blocks, then -p
            params.update({k: _typed(k, v, decl[k] if isinstance(decl, Mapping) else None, "")
                           for k, v in g.items() if k in decl})
            params.update({k: _typed(k, v, decl[k] if isinstance(decl, Mapping) else None, f"{s.name}.")
                           for k, v in st[s.name].items()})
        return params

    # conditions see the values without any when block
    plain = {s.name: stage_params(s, [user]) for s in profile.stages}
    conditions = [c for c in profile.when if _condition_holds(c, profile, plain, declared, listing)]
    matched = [blocks[c] for c in conditions]

    resolved: dict[str, dict[str, Any]] = {}
    for s in profile.stages:
        params = stage_params(s, [*matched, user])
        runner = {"out_dir": str(run_dir / s.name), "run_dir": str(run_dir)}
        params.update({k: v for k, v in runner.items() if k in declared[s.name]})
        _check_root_is_used(profile, s.name, params, plain[s.name], user, [(c, blocks[c]) for c in conditions])
        try:
            check_values(params, where=f"stage {s.name}: ")
        except PreflightError as e:
            raise ProfileError(str(e)) from None
        resolved[s.name] = {k: str(v) if isinstance(v, RawValue) else v for k, v in params.items()}
    return resolved


def _check_root_is_used(profile: Profile, stage: str, params: Mapping[str, Any], plain: Mapping[str, Any],
                        user: tuple, matched: Sequence[tuple]) -> None:
    """A ``-p root=DIR`` names the user's data; a matching ``when`` block that switches the
    stage to another dataset (``size=tiny`` -> the embedded ``synth``, which generates itself)
    would not read it: an error naming the path and the condition, never a silent switch."""
    g, st = user
    root = st[stage].get("root", g.get("root"))
    if root is None or not str(root).strip():
        return
    for cond, (bg, bst) in matched:
        switched = bst[stage].get("dataset", bg.get("dataset"))
        if switched is not None and str(params.get("dataset")) == str(switched) \
                and str(plain.get("dataset")) != str(switched):
            raise ProfileError(
                f"-p root={root}: `when {cond}` in {profile.path} switches stage {stage} from dataset "
                f"{plain.get('dataset')!r} to {switched!r}, which does not read the data in {root} (the root would "
                f"be dropped or used as {switched}'s own folder). Drop -p root for this run, or drop -p {cond} to "
                f"run on {root}")


def _condition_holds(cond: str, profile: Profile, plain: Mapping[str, Mapping[str, Any]],
                     declared: Mapping[str, Mapping[str, Any]], listing) -> bool:
    """Whether ``key=value`` (or ``stage.key=value``) holds for the parameters resolved without
    ``when`` blocks (``plain``: stage -> parameters); an undeclared key is an error."""
    left, _, text = cond.partition("=")
    stage, _, key = left.strip().rpartition(".")
    if stage:
        if stage not in plain:
            raise ProfileError(f"{profile.path}: when {cond}: no stage {stage!r}; stages: {', '.join(plain)}")
        if key not in declared[stage]:
            raise ProfileError(f"{profile.path}: when {cond}: stage {stage} does not declare {key!r}; {listing(stage)}")
    else:
        stage = next((s.name for s in profile.stages if key in declared[s.name]), "")
        if not stage:
            raise ProfileError(f"{profile.path}: when {cond}: no stage declares {key!r}; {listing()}")
    decl = declared[stage]
    info = decl[key] if isinstance(decl, Mapping) else None
    value = plain[stage].get(key, _declared_default(info))
    want = _typed(key, RawValue(text.strip()), info, f"when {cond}: ")
    return value == want or str(value) == text.strip()


def select_stages(profile: Profile, stages: Optional[Sequence[str]], done: Sequence[str] = ()) -> list[Stage]:
    """The profile's stages to run, in profile order; every needed stage must be selected too,
    or be among ``done`` (a resumed run's stages that finished ok)."""
    if not stages:
        return list(profile.stages)
    wanted = [s.strip() for item in stages for s in str(item).split(",") if s.strip()]
    names = [s.name for s in profile.stages]
    unknown = [w for w in wanted if w not in names]
    if unknown:
        raise ProfileError(f"--stages: unknown {', '.join(unknown)}; profile {profile.name} has: {', '.join(names)}")
    chosen = [s for s in profile.stages if s.name in wanted]
    for s in chosen:
        missing = [n for n in s.needs if n not in wanted and n not in done]
        if missing:
            raise ProfileError(f"--stages: {s.name} needs {', '.join(missing)}; select it too (--stages {','.join(sorted(set(wanted) | set(missing), key=names.index))})")
    return chosen
