"""The extraction methods by name: `exact` (an ILP, the default) and `greedy` (its warm start).

One place dispatches, so the greedy extractor and the ILP built on it import in one direction.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from isamap.extract.exact import extract_exact, variants_exact
from isamap.extract.extractor import extract_greedy, variants_greedy
from isamap.ir.errors import IsamapError
from isamap.ir.mapping import Mapping

if TYPE_CHECKING:
    from isamap.egraph.saturate import Saturation

__all__ = ["METHODS", "extract", "extract_variants"]

#: Extraction methods by name, the default first.
METHODS = ("exact", "greedy")


def _method(method: str) -> str:
    if method not in METHODS:
        raise IsamapError(f"unknown extraction method '{method}' (known: {', '.join(METHODS)})")
    return method


def extract(
    sat: Saturation,
    cost: str | object = "latency",
    method: str = "exact",
    seconds: float | None = None,
) -> Mapping:
    """The cheapest mapping of `sat`'s kernel under `cost`: by ILP (within `seconds`, from the
    greedy mapping; see exact.py), or with `method="greedy"` by greedy DAG extraction plus
    local search."""
    if _method(method) == "exact":
        return extract_exact(sat, cost, seconds)
    deadline = None if seconds is None else time.perf_counter() + seconds
    return extract_greedy(sat, cost, deadline)


def extract_variants(
    sat: Saturation,
    n: int,
    cost: str | object = "latency",
    method: str = "exact",
    seconds: float | None = None,
) -> list[Mapping]:
    """Up to `n` distinct mappings, cheapest first. `exact`: the n best of all mappings (ILP
    k-best, within `seconds`). `greedy`: a neighbourhood of the greedy mapping, not a k-best."""
    if _method(method) == "exact":
        return variants_exact(sat, n, cost, seconds)
    deadline = None if seconds is None else time.perf_counter() + seconds
    return variants_greedy(sat, n, cost, deadline)
