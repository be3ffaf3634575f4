"""One registry per idea (metrics, similarity measures, data families, architectures): a
name → entry table that refuses duplicates and answers an unknown name with the valid
ones, as torchvision's ``register_model`` / ``get_model``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A named table of entries of one kind (``kind`` names it in error messages).

    ``register(name, entry)`` adds an entry (a second entry under the same name is an
    error unless ``replace=True``), ``get(name)`` returns it (a ValueError lists the valid
    names), ``names()`` lists them in registration order, ``unregister(name)`` removes one
    (used by tests that register toys at run time)."""

    def __init__(self, kind: str, aliases: dict[str, str] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = dict(aliases or {})

    def register(self, name: str, entry: T, *, replace: bool = False) -> T:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} needs a non-empty string name, got {name!r}")
        if name in self._entries and not replace:
            raise ValueError(f"{self.kind} {name!r} is already registered; pick another name or pass replace=True")
        self._entries[name] = entry
        return entry

    def decorator(self, name: str | None = None, make: Callable[[str, Callable], T] | None = None,
                  replace: bool = False) -> Callable[[Callable], Callable]:
        """``@registry.decorator()`` registers a function under its own name (or ``name``);
        ``make(name, fn)`` turns it into the entry."""

        def wrap(fn: Callable) -> Callable:
            key = name or fn.__name__
            self.register(key, make(key, fn) if make else fn, replace=replace)
            return fn

        return wrap

    def unregister(self, name: str) -> T:
        if name not in self._entries:
            raise ValueError(f"{self.kind} {name!r} is not registered")
        return self._entries.pop(name)

    def alias(self, alias: str, name: str) -> None:
        """Let ``alias`` (e.g. a study's short key) resolve to ``name``."""
        self._aliases[alias] = name

    def resolve(self, name: str) -> str:
        return self._aliases.get(name, name)

    def get(self, name: str) -> T:
        key = self.resolve(name) if isinstance(name, str) else name
        if key not in self._entries:
            valid = ", ".join(self._entries)
            extra = f" (or {', '.join(self._aliases)})" if self._aliases else ""
            raise ValueError(f"unknown {self.kind} {name!r}; valid: {valid}{extra}")
        return self._entries[key]

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def items(self):
        return self._entries.items()

    def values(self):
        return self._entries.values()

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.resolve(name) in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"
