"""A small name -> factory registry shared by datasets, models, protocols and methods."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps public names to entries; duplicate and unknown names raise ``ValueError``.

    Args:
        kind: what the registry holds (``"dataset"``, ``"model"``, ...), used in errors.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T | None = None) -> Callable[[T], T] | T:
        """Register ``entry`` under ``name``; usable as ``@registry.register("name")``."""

        def _add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = obj
            return obj

        return _add(entry) if entry is not None else _add

    def get(self, name: str) -> T:
        """Return the entry for ``name`` or raise listing the valid names."""
        try:
            return self._entries[name]
        except KeyError:
            valid = ", ".join(sorted(self._entries)) or "(none registered)"
            raise ValueError(f"unknown {self.kind} {name!r}; valid {self.kind}s: {valid}") from None

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted registered names matching a shell-style ``pattern``."""
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
