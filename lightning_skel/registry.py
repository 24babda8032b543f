"""Name -> object registries, so that configs can name models, attacks, readers and datasets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of classes or functions (timm's ``_registry.py``).

    ``register(name)`` is a decorator (default name: the object's ``__name__``); a name registered twice is
    a ``KeyError``. ``get(name)`` of an unknown name is a ``KeyError`` listing the known ones.

    Args:
        kind: what the entries are, for the messages (``"model"``, ``"attack"``, ...).

    Example:
        >>> LOSSES = Registry("loss")
        >>> @LOSSES.register("l2")
        ... def l2(x):
        ...     return (x**2).sum()
        >>> LOSSES.get("l2") is l2, LOSSES.names(), "l1" in LOSSES
        (True, ['l2'], False)
        >>> LOSSES.get("l1")
        Traceback (most recent call last):
        KeyError: "unknown loss 'l1'; known: l2"
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str | None = None) -> Callable[[T], T]:
        def add(obj: T) -> T:
            key = name or obj.__name__  # type: ignore[attr-defined]
            if key in self._items:
                raise KeyError(f"{self.kind} {key!r} is already registered")
            self._items[key] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
