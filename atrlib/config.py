"""Typed-dataclass config helpers: fields with help strings, and one parser for ``key=value`` values.

Configs are dataclasses whose fields carry a help string (as transformers' ``run_clip.py``
declares its arguments); command lines list them with :func:`field_help`. Every place that
reads a value typed by a person — ``-p key=value`` in ``atrlib run``, ``key=value`` in
``atrlib train``, a profile YAML — parses it with :func:`parse_value`.
"""
from __future__ import annotations

import re
from dataclasses import MISSING, field, fields
from typing import Any, Callable, Dict, Optional

import yaml

__all__ = ["option", "field_help", "parse_value", "fix_floats", "read_yaml_mapping"]


def option(default: Any = MISSING, help: str = "", factory: Optional[Callable[[], Any]] = None) -> Any:
    """A dataclass field with a help string (``fields(cls)[i].metadata["help"]``)."""
    if factory is not None:
        return field(default_factory=factory, metadata={"help": help})
    return field(default=default, metadata={"help": help})


def field_help(cls) -> Dict[str, str]:
    """``{field name: "help (default: ...)"}`` of a config dataclass built with :func:`option`."""
    out = {}
    for f in fields(cls):
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else None)
        out[f.name] = f"{f.metadata.get('help', '')} (default: {default!r})"
    return out


_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def fix_floats(value: Any) -> Any:
    """``"1e-3"`` -> ``0.001``: PyYAML (YAML 1.1) reads exponents without a dot as strings."""
    if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        return float(value)
    if isinstance(value, list):
        return [fix_floats(v) for v in value]
    if isinstance(value, dict):
        return {k: fix_floats(v) for k, v in value.items()}
    return value


def parse_value(text: str) -> Any:
    """A typed-in value as a YAML scalar (3 -> int, 1e-3 -> float, true -> bool, [1, 2] -> list)."""
    if text == "":
        return ""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    # dates and other YAML-only types would not survive papermill's literal injection
    if not isinstance(value, (str, int, float, bool, list, dict, type(None))):
        return text
    return fix_floats(value)


def read_yaml_mapping(path, error=ValueError, what: str = "a mapping") -> dict:
    """A YAML file that must hold a mapping (a profile, a sweep spec, a training config); any
    other content raises ``error`` naming the file and what was expected."""
    from pathlib import Path

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise error(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise error(f"{path}: expected {what}, got {type(data).__name__}")
    return data

