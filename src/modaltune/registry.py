"""Name -> class registries for methods, encoders and text encoders.

Registries reject duplicate names and list the known names when a lookup fails.
"""

from __future__ import annotations

from typing import Any, Callable, Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of classes or factories."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering an object under ``name`` (duplicates raise KeyError)."""
        def deco(obj: T) -> T:
            if name in self._items:
                raise KeyError(f"{self.kind} '{name}' is already registered ({self._items[name]!r})")
            self._items[name] = obj
            try:
                setattr(obj, "registry_name", name)
            except (AttributeError, TypeError):
                pass
            return obj
        return deco

    def get(self, name: str) -> T:
        """The object registered as ``name`` (ConfigError listing the known names otherwise)."""
        if name not in self._items:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise ConfigError(f"unknown {self.kind} '{name}'; known: {known}")
        return self._items[name]

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def items(self) -> list[tuple[str, Any]]:
        """(name, object) pairs, sorted by name."""
        return sorted(self._items.items())


def load_builtin() -> None:
    """Register the built-in methods, slide encoders and text encoders (idempotent).

    The one place where registration by import happens; callers that look a name up call this first.
    """
    import importlib

    for module in ("modaltune.methods", "modaltune.encoders.slide", "modaltune.encoders.text"):
        importlib.import_module(module)


METHODS: Registry = Registry("method")
TEXT_ENCODERS: Registry = Registry("text encoder")
SLIDE_ENCODERS: Registry = Registry("slide encoder")
