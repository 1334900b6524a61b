"""A tiny name -> factory registry, one per kind of thing (datasets, models, losses, ...)."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Generic, Iterable, Iterator, Optional, Tuple, TypeVar, Union

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects (usually factories).

    >>> LOSSES = Registry("loss")
    >>> @LOSSES.register("infonce")
    ... class InfoNCE: ...
    >>> LOSSES.get("infonce")
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: Dict[str, T] = {}

    def register(self, name: str, obj: Optional[T] = None):
        key = name.lower()

        def _add(o: T) -> T:
            if key in self._items and self._items[key] is not o:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[key] = o
            return o

        return _add(obj) if obj is not None else _add

    def get(self, name: str) -> T:
        key = name.lower()
        if key not in self._items:
            raise KeyError(
                f"unknown {self.kind} {name!r}; registered: {', '.join(sorted(self._items)) or '(none)'}"
            )
        return self._items[key]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


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
    raise KeyError(f"unknown {kind} {str(text)!r}: neither a registered name ({', '.join(sorted(known.values())) or 'none'}) "
                   f"nor an existing path")
