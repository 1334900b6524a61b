"""A tiny name -> factory registry, one per kind of thing (datasets, models, losses, ...)."""
from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points
from pathlib import Path
from typing import Dict, Generic, Iterable, Iterator, Optional, Sequence, Tuple, TypeVar, Union

from atrlib.errors import RegistryError, UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects (usually factories), filled by discovery.

    >>> LOSSES = Registry("loss", package="atrlib.losses", entry_point="atrlib.losses")
    >>> @LOSSES.register("infonce")
    ... class InfoNCE: ...
    >>> LOSSES.get("infonce")

    With ``package``, the first look-up (``get``, ``names``, ``in``, iteration) imports every
    module of that package (``pkgutil``), so each module's ``register`` calls have run; with
    ``modules``, it imports those modules by name (for a package whose other modules must not
    be imported just to fill the registry); with ``entry_point``, it then loads every installed
    entry point of that group, so a user's own package can add items without editing atrlib
    (``[project.entry-points."atrlib.towers"] mytower = "mypkg.towers"``). A module or entry
    point that fails to import is an error naming it, never skipped.
    """

    def __init__(self, kind: str, package: Optional[str] = None, entry_point: Optional[str] = None,
                 modules: Sequence[str] = ()):
        self.kind = kind
        self.package = package
        self.entry_point = entry_point
        self.modules: Tuple[str, ...] = (modules,) if isinstance(modules, str) else tuple(modules)
        self._items: Dict[str, T] = {}
        self._discovered = package is None and entry_point is None and not self.modules

    def register(self, name: str, obj: Optional[T] = None):
        key = name.lower()

        def _add(o: T) -> T:
            if key in self._items and self._items[key] is not o:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[key] = o
            return o

        return _add(obj) if obj is not None else _add

    def discover(self) -> None:
        """Import every module of ``package``, each of ``modules``, and every ``entry_point`` (once)."""
        if self._discovered:
            return
        self._discovered = True  # first: a module that looks itself up while importing must not recurse
        try:
            if self.package:
                pkg = importlib.import_module(self.package)
                for info in pkgutil.iter_modules(pkg.__path__):
                    if not info.name.startswith("_"):
                        _import_named(f"{self.package}.{info.name}", self.kind)
            for module in self.modules:
                _import_named(module, self.kind)
            if self.entry_point:
                for ep in entry_points(group=self.entry_point):
                    try:
                        ep.load()
                    except Exception as e:
                        raise RegistryError(f"{self.kind} entry point {ep.name!r} = {ep.value!r} (group "
                                            f"{self.entry_point!r}) failed to load: {type(e).__name__}: {e}") from e
        except BaseException:
            self._discovered = False  # the next look-up raises again instead of serving a partial registry
            raise

    def get(self, name: str) -> T:
        self.discover()
        key = name.lower()
        if key not in self._items:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; registered: {', '.join(sorted(self._items)) or '(none)'}"
            )
        return self._items[key]

    def names(self) -> list[str]:
        self.discover()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        self.discover()
        return name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def _import_named(module: str, kind: str) -> None:
    try:
        importlib.import_module(module)
    except Exception as e:
        raise RegistryError(f"{kind} module {module!r} failed to import: {type(e).__name__}: {e}") from e


def name_or_path(text: Union[str, Path], names: Iterable[str], kind: str,
                 suffixes: Tuple[str, ...] = ()) -> Tuple[str, Union[str, Path]]:
    """The one rule for "is this string a registered name or a path?".

    A string that looks like a path (it has a folder separator, or ends in one of ``suffixes``,
    e.g. ``.json``) is a path and must exist; otherwise a registered name (case-insensitive)
    wins; otherwise an existing file or folder of that name is taken as a path. Returns
    ``("name", key)`` or ``("path", Path)``; anything else is an error listing the names.
    """
    if isinstance(text, Path):
        looks_like_path = True
    else:
        looks_like_path = "/" in text or "\\" in text or (bool(suffixes) and text.lower().endswith(tuple(suffixes)))
    known = {n.lower(): n for n in names}
    p = Path(text)
    if looks_like_path:
        if not p.exists():
            raise FileNotFoundError(f"{kind} path {str(text)!r} does not exist")
        return "path", p
    if str(text).lower() in known:
        return "name", known[str(text).lower()]
    if p.exists():
        return "path", p
    raise UnknownNameError(f"unknown {kind} {str(text)!r}: neither a registered name ({', '.join(sorted(known.values())) or 'none'}) "
                   f"nor an existing path")
