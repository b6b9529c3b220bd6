"""Name -> builder registries, the pattern of ActionFormer's ``make_*`` and open_clip's factory.

A registry may name *provider modules*: modules whose import registers the built-in entries. They
are imported on the first lookup or listing, so what a registry holds never depends on which
modules the caller happened to import first, and importing the registry itself does no work.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

from pseudo.errors import PseudoError

T = TypeVar("T")


class UnknownNameError(PseudoError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    """A named table of builders (or specs) of one kind, filled with a decorator."""

    def __init__(self, kind: str, providers: Sequence[str] = ()) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._providers = tuple(providers)
        self._loaded = not self._providers

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True  # set first: a provider that looks itself up must not recurse
        for module in self._providers:
            importlib.import_module(module)

    def register(self, name: str) -> Callable[[T], T]:
        def deco(item: T) -> T:
            self.add(name, item)
            return item

        return deco

    def add(self, name: str, item: T) -> None:
        key = name.lower()
        if key in self._items:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[key] = item

    def get(self, name: str) -> T:
        self._load()
        try:
            return self._items[name.lower()]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self._load()
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())
