"""Registries: name -> entry tables that a higher layer fills and a lower layer reads.

The lower layer (the config, the job graph, the report) owns the table and reads it; the package that defines an
entry (a task's config section, a variant, a score, an executor) registers it when it is imported. So the lower
layer never imports the higher one, and a new entry is one file that calls `register` (plus, for the built-in
entries, the import that loads it). Torch-free.
"""

from __future__ import annotations

from typing import Generic, Iterator, TypeVar

from ticketlab.errors import ConfigError

Entry = TypeVar("Entry")


class Registry(Generic[Entry]):
    """An ordered name -> entry table; `kind` names what it holds in its errors ("variant", "score", ...)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, entry: Entry, *, replace: bool = False) -> Entry:
        """Add `entry` under `name` and return it. A second entry under a taken name is refused (two files claiming
        one name is a bug) unless `replace` is set (a test swapping in a stub)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string, not {name!r}")
        if name in self._entries and not replace and self._entries[name] is not entry:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Remove `name` (tests that register a toy entry remove it again)."""
        self._entries.pop(name, None)

    def get(self, name: str) -> Entry:
        """The entry under `name`; ConfigError naming the bad value and the allowed names otherwise."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise ConfigError(f"unknown {self.kind} {name!r}; allowed: {', '.join(self._entries)}") from None

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def items(self):
        return self._entries.items()

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
