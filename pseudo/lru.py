"""A bounded mapping that forgets the least recently used entry first (the memos' shared store)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRU(Generic[K, V]):
    """Up to ``max_items`` entries (``None``: no limit); iteration gives the keys, oldest use first."""

    def __init__(self, max_items: int | None = None) -> None:
        if max_items is not None and max_items < 1:
            raise ValueError(f"max_items must be at least 1 (or None), got {max_items}")
        self.max_items = max_items
        self._items: OrderedDict[K, V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[K]:
        return iter(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def lookup(self, keys: Iterable[K]) -> tuple[dict[K, V], list[K]]:
        """The distinct ``keys`` held (now the most recently used) and, in first-seen order, those not held."""
        found: dict[K, V] = {}
        missing: list[K] = []
        for k in dict.fromkeys(keys):
            if k in self._items:
                found[k] = self._items[k]
                self._items.move_to_end(k)
            else:
                missing.append(k)
        return found, missing

    def get_many(self, keys: Sequence[K], make: Callable[[list[K]], Iterable[V]]) -> list[V]:
        """The value of each of ``keys``: those held (now the most recently used), and the rest made by
        one call of ``make`` on them (distinct, in first-seen order) and held from now on."""
        found, missing = self.lookup(keys)
        if missing:
            for k, v in zip(missing, make(missing), strict=True):
                found[k] = v
                self.put(k, v)
        return [found[k] for k in keys]

    def put(self, key: K, value: V) -> None:
        """Hold ``value`` as the most recently used entry, forgetting the oldest past ``max_items``."""
        self._items[key] = value
        self._items.move_to_end(key)
        if self.max_items is not None:
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()
