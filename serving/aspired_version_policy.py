"""Which versions a model should serve, and in what order to load and unload them.

Two ideas from TF Serving's core live here as pure functions so they can be tested alone:
- the *version policy* of a model's config (`latest: n`, `all`, `specific: [..]`) picks the
  aspired versions among those the source found on disk;
- the *availability-preserving* plan: load aspired versions before unloading old ones, and never
  unload the last serving version just because a newer one is wanted but not (yet) loadable.
  A version whose directory is gone from disk is unloaded regardless: its files are no longer
  there to answer for.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable


@dataclass(frozen=True)
class VersionPolicy:
    """`latest` (the n newest), `all`, or `specific` (exactly the listed versions)."""
    kind: str = "latest"
    latest: int = 1
    versions: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ("latest", "all", "specific"):
            raise ValueError(f"version policy must be latest, all or specific, not {self.kind!r}")
        if self.kind == "latest" and self.latest < 1:
            raise ValueError("version policy latest: n needs n >= 1")
        if self.kind == "specific" and not self.versions:
            raise ValueError("version policy specific needs at least one version")

    def select(self, on_disk: Iterable[int]) -> set[int]:
        """The aspired versions among those present on disk."""
        present = sorted(set(on_disk))
        if self.kind == "all":
            return set(present)
        if self.kind == "specific":
            return set(present) & set(self.versions)
        return set(present[-self.latest:])

    def describe(self) -> str:
        if self.kind == "latest":
            return f"latest: {self.latest}"
        if self.kind == "specific":
            return f"specific: {list(self.versions)}"
        return "all"


@dataclass(frozen=True)
class Plan:
    """What the manager should do next: load these (newest first), then unload those."""
    load: list[int] = field(default_factory=list)
    unload: list[int] = field(default_factory=list)


def plan(aspired: set[int], on_disk: set[int], available: set[int], loadable: set[int]) -> Plan:
    """Availability-preserving transition from `available` towards `aspired`.

    `loadable` are the aspired versions worth trying now (not waiting out a retry backoff).
    Old versions are unloaded only once some aspired version is available, except when their
    directory was deleted.
    """
    load = sorted((aspired & loadable) - available, reverse=True)
    aspired_serving = bool(aspired & available)
    unload = sorted(v for v in available - aspired if v not in on_disk or aspired_serving)
    return Plan(load=load, unload=unload)
