"""A small name -> entry registry shared by datasets, models, protocols and methods."""

from __future__ import annotations

import fnmatch
import importlib
import types
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps public names to entries; duplicate and unknown names raise ``ValueError``.

    A registry can fill itself on first use: ``providers`` are modules that register entries
    when imported (the suite's own packages), and ``entry_point_group`` names a Python entry-point
    group under which installed packages declare more entries (``name = "pkg.module:Object"``;
    an entry that names a module instead is imported for its registrations). Both are loaded
    when a name is missing or the names are listed, never at import time.

    Args:
        kind: what the registry holds (``"dataset"``, ``"model"``, ...), used in errors.
        providers: module names imported on first use.
        entry_point_group: the entry-point group of installed plugins.
        adapt: turns a plugin's declared object into an entry (and checks it); called with the
            declared name and object.
    """

    def __init__(
        self,
        kind: str,
        *,
        providers: Sequence[str] = (),
        entry_point_group: str | None = None,
        adapt: Callable[[str, Any], T] | None = None,
    ) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._providers = tuple(providers)
        self._entry_point_group = entry_point_group
        self._adapt = adapt
        self._discovered = not (providers or entry_point_group)
        self._discovery_error: Exception | None = None

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
        if name not in self._entries:
            self.discover()
        try:
            return self._entries[name]
        except KeyError:
            valid = ", ".join(sorted(self._entries)) or "(none registered)"
            raise ValueError(f"unknown {self.kind} {name!r}; valid {self.kind}s: {valid}") from None

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted registered names matching a shell-style ``pattern``."""
        self.discover()
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def discover(self) -> None:
        """Import the providers and load the installed plugins (once)."""
        if self._discovered:
            if self._discovery_error is not None:
                raise self._discovery_error  # the same error every time, not a half-filled registry
            return
        self._discovered = True
        try:
            for module in self._providers:
                importlib.import_module(module)
            if self._entry_point_group is not None:
                for entry_point in metadata.entry_points(group=self._entry_point_group):
                    self._load_plugin(entry_point)
        except Exception as error:
            self._discovery_error = error
            raise

    def _load_plugin(self, entry_point: metadata.EntryPoint) -> None:
        source = f"entry point {entry_point.name!r} = {entry_point.value!r} (group {self._entry_point_group})"
        try:
            declared = entry_point.load()
        except Exception as error:
            raise ImportError(f"{self.kind} plugin {source} failed to load: {error}") from error
        if isinstance(declared, types.ModuleType):
            return  # a module: importing it registered its entries
        entry = self._adapt(entry_point.name, declared) if self._adapt is not None else declared
        if entry_point.name in self._entries:
            if self._entries[entry_point.name] is entry:
                return  # the plugin's module registered it on import
            raise ValueError(f"{self.kind} {entry_point.name!r} from {source} is already registered")
        self.register(entry_point.name, entry)

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str) and name not in self._entries:
            self.discover()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self.discover()
        return len(self._entries)
