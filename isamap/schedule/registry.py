"""Schedule strategies by name: isamap's own (`strategies.py`) and the vendor libraries' baselines.

A vendor library's baseline (Gemmini's `tiled_matmul_auto`) is not core code: it lives beside its
target (`isamap/targets/<name>/`) and registers itself here by name, with `register_strategy`,
when that package is imported. The packages of the shipped targets are imported the first time a
name is not found (or the names are listed), so a target file can name a shipped library's
baseline whatever path it is loaded from. Only isamap's own packages are imported: a target a
user gives by path is data, and no Python beside it is ever run.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

from isamap.hardware.target import Target
from isamap.ir.errors import IsamapError
from isamap.ir.mapping import Mapping
from isamap.schedule.strategies import STRATEGIES, Strategy

__all__ = [
    "SHIPPED_PACKAGES",
    "Issue",
    "Library",
    "library_issue",
    "register_strategy",
    "strategy",
    "strategy_names",
]

#: The package holding the shipped targets, one folder each; a folder with Python is a package.
SHIPPED_PACKAGES = "isamap.targets"

#: How a vendor library issues a mapping's calls before they are tiled, beyond running each
#: product unswapped (`schedule/baseline.py`): Gemmini's runs a convolution on its conv path.
Issue = Callable[[Mapping, Target], Mapping]


@dataclass(frozen=True)
class Library:
    """A vendor library's baseline: the schedule it picks for a call, and how it issues calls."""

    schedule: Strategy
    issue: Issue | None = None


_LIBRARIES: dict[str, Library] = {}
_loaded = False


def register_strategy(name: str, schedule: Strategy, issue: Issue | None = None) -> None:
    """Register a vendor library's baseline as strategy `name` (a target file selects it with
    `baseline_schedule = "<name>"`, a user with `--schedule <name>`). `issue`, if given, rewrites
    the mapping the baseline is timed on (`schedule/baseline.py`, `own_mapping`). Registering a
    name twice with different functions, or one of isamap's own names, is an error."""
    library = Library(schedule, issue)
    if name in STRATEGIES or _LIBRARIES.get(name, library) != library:
        raise IsamapError(f"schedule strategy '{name}' is already registered")
    _LIBRARIES[name] = library


def _load_shipped() -> None:
    """Import every shipped target package once, so each registers its library's baseline."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    package = importlib.import_module(SHIPPED_PACKAGES)
    for info in pkgutil.iter_modules(package.__path__, f"{SHIPPED_PACKAGES}."):
        if info.ispkg:
            importlib.import_module(info.name)


def _library(name: str) -> Library | None:
    if name not in _LIBRARIES:
        _load_shipped()
    return _LIBRARIES.get(name)


def strategy_names() -> list[str]:
    """Every strategy name: isamap's own, then the shipped libraries' baselines."""
    _load_shipped()
    return [*STRATEGIES, *_LIBRARIES]


def strategy(name: str) -> Strategy:
    """A strategy by name; IsamapError listing the known ones."""
    if name in STRATEGIES:
        return STRATEGIES[name]
    library = _library(name)
    if library is None:
        known = ", ".join(strategy_names())
        raise IsamapError(f"unknown schedule strategy '{name}' (known: {known})")
    return library.schedule


def library_issue(name: str) -> Issue | None:
    """How the library behind strategy `name` issues a mapping's calls (None: as they are)."""
    library = None if name in STRATEGIES else _library(name)
    return None if library is None else library.issue
