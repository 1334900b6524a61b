"""A tiny name -> factory registry, one per kind of thing (datasets, models, losses, ...)."""
from __future__ import annotations

from typing import Dict, Generic, Iterator, Optional, TypeVar

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
